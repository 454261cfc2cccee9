// Key -> slot routing shared by the client and both servers: slot = crc64_jones(key) % slotCount,
// the hash ERaftKV routes with (CRC-64/Jones as in Redis: reflected, polynomial 0xad93d23594c935a9,
// initial value 0, no final xor; check value 0xe9c6d914c4b8d9ca for "123456789").

/** The number of slots a cluster gets when ClusterInit does not name one. */
export const slotCountDefault = 1024;
/** The largest slot count ClusterInit accepts. */
export const slotCountMax = 65536;

// The 64-bit table is kept as two 32-bit halves so that hashing needs no BigInt.
const tableLo = new Uint32Array(256);
const tableHi = new Uint32Array(256);
(function buildTable(): void {
  // The reflected form of the Jones polynomial.
  const polyLo = 0xac4bc9b5;
  const polyHi = 0x95ac9329;
  for (let i = 0; i < 256; i++) {
    let lo = i;
    let hi = 0;
    for (let bit = 0; bit < 8; bit++) {
      const carry = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (carry) {
        lo = (lo ^ polyLo) >>> 0;
        hi = (hi ^ polyHi) >>> 0;
      }
    }
    tableLo[i] = lo;
    tableHi[i] = hi;
  }
})();

/** The CRC-64/Jones of `data` as its high and low 32-bit halves. */
export function crc64Jones(data: Uint8Array): { hi: number; lo: number } {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < data.length; i++) {
    const index = (lo ^ data[i]) & 0xff;
    lo = (((lo >>> 8) | (hi << 24)) ^ tableLo[index]) >>> 0;
    hi = ((hi >>> 8) ^ tableHi[index]) >>> 0;
  }
  return { hi, lo };
}

/** The CRC-64/Jones of `data` as a bigint (for tests and diagnostics; routing uses slotOfKey). */
export function crc64JonesBigInt(data: Uint8Array): bigint {
  const { hi, lo } = crc64Jones(data);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** The slot that owns `key` in a cluster of `slotCount` slots. */
export function slotOfKey(key: Uint8Array, slotCount: number): number {
  if (!Number.isInteger(slotCount) || slotCount < 1 || slotCount > slotCountMax) {
    throw new RangeError(`slot count must be an integer in [1, ${slotCountMax}], got ${slotCount}`);
  }
  const { hi, lo } = crc64Jones(key);
  // (hi * 2^32 + lo) mod n without leaving the safe-integer range: every factor is below n <= 2^16.
  const twoTo32ModN = 4294967296 % slotCount;
  return ((hi % slotCount) * twoTo32ModN + lo) % slotCount;
}

/** Compresses sorted slot ids into ranges: [0,1,2,5] -> "0-2,5". */
export function formatSlotRanges(slots: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < slots.length) {
    let j = i;
    while (j + 1 < slots.length && slots[j + 1] === slots[j] + 1) j++;
    parts.push(i === j ? `${slots[i]}` : `${slots[i]}-${slots[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Parses "0-511" or "3" or "0-9,20-29" into slot ids; throws RangeError on nonsense. */
export function parseSlotRanges(text: string, slotCount?: number): number[] {
  const slots = new Set<number>();
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (m === null) throw new RangeError(`"${part}" is not a slot or a range like 0-511`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new RangeError(`slot range ${part} runs backwards`);
    if (slotCount !== undefined && to >= slotCount) {
      throw new RangeError(`slot ${to} is out of range: the cluster has slots 0-${slotCount - 1}`);
    }
    for (let s = from; s <= to; s++) slots.add(s);
  }
  if (slots.size === 0) throw new RangeError('no slots given');
  return [...slots].sort((a, b) => a - b);
}
