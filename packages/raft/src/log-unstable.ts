// Entries (and at most one incoming snapshot) that the core has accepted but that the runtime has
// not yet persisted. They reach storage through Ready; `stableTo` drops them once persisted.
import { invariant, type Entry, type SnapshotMeta } from './types';

export class UnstableLog {
  /** Entries not yet persisted; entries[i] has index offset + i. */
  entries: Entry[] = [];
  offset: number;
  /** An incoming snapshot not yet persisted. */
  snapshot: SnapshotMeta | null = null;

  constructor(offset: number) {
    this.offset = offset;
  }

  /** The index of the first unstable entry, when it is known from a pending snapshot. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.index + 1 : undefined;
  }

  /** The index of the last unstable entry or pending snapshot, if any. */
  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot?.index;
  }

  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      return this.snapshot && this.snapshot.index === index ? this.snapshot.term : undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || index > last) return undefined;
    return this.entries[index - this.offset].term;
  }

  /** Drops entries up to and including `index` once they are persisted with term `term`. */
  stableTo(index: number, term: number): void {
    const actual = this.maybeTerm(index);
    // A later append may have replaced the persisted entry with one of another term: then the
    // new entry is still unstable and must stay.
    if (actual !== term || index < this.offset) return;
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }

  stableSnapshotTo(index: number): void {
    if (this.snapshot && this.snapshot.index === index) this.snapshot = null;
  }

  restore(snapshot: SnapshotMeta): void {
    this.offset = snapshot.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  /** Appends entries that follow `entries[0].index - 1`, truncating any conflicting suffix. */
  truncateAndAppend(entries: readonly Entry[]): void {
    const first = entries[0].index;
    if (first === this.offset + this.entries.length) {
      this.entries.push(...entries);
    } else if (first <= this.offset) {
      // Everything unstable is replaced (the storage suffix from `first` is truncated too, when
      // the runtime persists these entries).
      this.offset = first;
      this.entries = [...entries];
    } else {
      this.entries = [...this.entries.slice(0, first - this.offset), ...entries];
    }
  }

  /** Unstable entries in [lo, hi). */
  slice(lo: number, hi: number): Entry[] {
    invariant(
      lo >= this.offset && hi <= this.offset + this.entries.length && lo <= hi,
      () =>
        `unstable slice [${lo}, ${hi}) out of bounds [${this.offset}, ${this.offset + this.entries.length})`,
    );
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
