// The command lines of the fault suites (npm run chaos, npm run test:hosts): `--flag value`
// options read one at a time, every mistake an Error that names the flag and carries the usage.

export class OptionReader {
  private i = -1;

  constructor(
    private readonly argv: readonly string[],
    private readonly usage: string,
  ) {}

  /** The next flag, or undefined at the end. */
  next(): string | undefined {
    this.i++;
    return this.argv[this.i];
  }

  /** The value of the flag just read. */
  value(): string {
    const flag = this.argv[this.i];
    const v = this.argv[++this.i];
    if (v === undefined) throw new Error(`${flag} needs a value\n${this.usage}`);
    return v;
  }

  /** The value of the flag just read, an integer of at least `min`. */
  int(min: number): number {
    const flag = this.argv[this.i];
    const n = Number(this.value());
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${flag} needs an integer >= ${min}`);
    return n;
  }

  /** The error for a flag the suite does not know. */
  unknown(flag: string): Error {
    return new Error(`unknown option ${flag}\n${this.usage}`);
  }
}
