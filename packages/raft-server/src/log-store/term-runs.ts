// The term of every index in the log, kept compactly as runs (a term changes only with a new
// leader), so that term lookups never touch the disk.

export class TermRuns {
  /** runs[i] = [first index of the run, term]; ascending by index. */
  private runs: [number, number][] = [];
  private last = 0;

  /** The log now starts after `index`, whose term is `term` (a compaction or snapshot point). */
  reset(index: number, term: number): void {
    this.runs = [[index, term]];
    this.last = index;
  }

  lastIndex(): number {
    return this.last;
  }

  firstIndex(): number {
    return this.runs.length === 0 ? 0 : this.runs[0][0];
  }

  /** Appends `index` (which must follow the last one) with `term`. */
  push(index: number, term: number): void {
    if (index !== this.last + 1)
      throw new Error(`term runs: ${index} does not follow ${this.last}`);
    const tail = this.runs[this.runs.length - 1];
    if (tail === undefined || tail[1] !== term) this.runs.push([index, term]);
    this.last = index;
  }

  /** Drops every index >= `index`. */
  truncateFrom(index: number): void {
    while (this.runs.length > 0 && this.runs[this.runs.length - 1][0] >= index) this.runs.pop();
    this.last = Math.min(this.last, index - 1);
  }

  /** Drops every index < `index` (keeping `index` itself). */
  dropBefore(index: number): void {
    let i = 0;
    while (i + 1 < this.runs.length && this.runs[i + 1][0] <= index) i++;
    this.runs = this.runs.slice(i);
    if (this.runs.length > 0 && this.runs[0][0] < index) this.runs[0] = [index, this.runs[0][1]];
  }

  term(index: number): number | undefined {
    if (this.runs.length === 0 || index < this.runs[0][0] || index > this.last) return undefined;
    // Binary search for the last run starting at or before index.
    let lo = 0;
    let hi = this.runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runs[mid][0] <= index) lo = mid;
      else hi = mid - 1;
    }
    return this.runs[lo][1];
  }
}
