// 64-bit protocol fields are JavaScript numbers (ts-proto forceLong=number). Decoding already
// refuses values outside the safe-integer range; these helpers make the same promise on the way
// out and at API boundaries, so a term or index can never silently lose precision.

/** Throws a RangeError unless `value` is an integer in [0, Number.MAX_SAFE_INTEGER]. */
export function assertSafeIndex(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${value}`);
  }
  return value;
}
