// An in-memory LogStorage for unit tests and the simulation: it plays the part of the disk.
// Everything written here survives a simulated crash; everything only in the RawNode does not.
import {
  emptyHardState,
  invariant,
  isMembershipEntry,
  type Entry,
  type HardState,
  type Membership,
  type SnapshotMeta,
} from '../types';
import { limitEntriesBytes, type InitialState, type LogStorage } from '../storage';

export class MemoryStorage implements LogStorage {
  hardState: HardState = emptyHardState;
  private snapshotMeta: SnapshotMeta;
  /** Entries after the snapshot: log[i] has index snapshotMeta.index + 1 + i. */
  private log: Entry[] = [];
  /**
   * Entries below this index answer "temporarily unavailable" (as if evicted from the runtime's
   * memory tier); the simulation moves it to exercise the core's retry paths.
   */
  unavailableBelow = 0;
  /** Whether snapshot() answers (a runtime may still be writing one). */
  snapshotReady = true;

  constructor(snapshot: SnapshotMeta, hardState: HardState = emptyHardState) {
    this.snapshotMeta = snapshot;
    this.hardState = hardState;
  }

  /** Storage for a node bootstrapped as a member of `membership` (snapshot at 1/1, term 1). */
  /** A new group's first state: `membership` as the snapshot at index 1 of term `term`. */
  static bootstrap(membership: Membership, term = 1): MemoryStorage {
    return new MemoryStorage({ index: 1, term, membership }, { term, vote: 0, commit: 1 });
  }

  initialState(): InitialState {
    return {
      hardState: this.hardState,
      snapshot: this.snapshotMeta,
      membershipEntries: this.log.filter((e) => isMembershipEntry(e.type)),
    };
  }

  firstIndex(): number {
    return this.snapshotMeta.index + 1;
  }

  lastIndex(): number {
    return this.snapshotMeta.index + this.log.length;
  }

  term(index: number): number | undefined {
    if (index === this.snapshotMeta.index) return this.snapshotMeta.term;
    if (index < this.firstIndex() || index > this.lastIndex()) return undefined;
    return this.log[index - this.firstIndex()].term;
  }

  entries(lo: number, hi: number, bytesMax: number): readonly Entry[] | null {
    invariant(
      lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo < hi,
      () =>
        `storage entries [${lo}, ${hi}) outside [${this.firstIndex()}, ${this.lastIndex() + 1})`,
    );
    if (lo < this.unavailableBelow) return null;
    return limitEntriesBytes(
      this.log.slice(lo - this.firstIndex(), hi - this.firstIndex()),
      bytesMax,
    );
  }

  snapshot(): SnapshotMeta | null {
    return this.snapshotReady ? this.snapshotMeta : null;
  }

  currentSnapshot(): SnapshotMeta {
    return this.snapshotMeta;
  }

  allEntries(): readonly Entry[] {
    return this.log;
  }

  // Writes, as the runtime does them while handling a Ready.

  setHardState(hardState: HardState): void {
    this.hardState = hardState;
  }

  /** Appends entries, replacing the stored suffix from entries[0].index on. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    invariant(
      first >= this.firstIndex() && first <= this.lastIndex() + 1,
      () => `append at ${first} outside [${this.firstIndex()}, ${this.lastIndex() + 1}]`,
    );
    this.log = [...this.log.slice(0, first - this.firstIndex()), ...entries];
  }

  /** Replaces everything with a snapshot received from the leader. */
  applySnapshot(snapshot: SnapshotMeta): void {
    this.snapshotMeta = snapshot;
    this.log = [];
  }

  /** Drops entries up to `index` after a local snapshot at `index` (with its membership). */
  compact(index: number, membership: Membership): void {
    invariant(
      index > this.snapshotMeta.index && index <= this.lastIndex(),
      () => `compact to ${index} outside (${this.snapshotMeta.index}, ${this.lastIndex()}]`,
    );
    const term = this.term(index);
    invariant(term !== undefined, () => `no term at ${index}`);
    this.log = this.log.slice(index + 1 - this.firstIndex());
    this.snapshotMeta = { index, term, membership };
  }
}
