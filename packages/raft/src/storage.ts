// What the core reads from stable storage. The runtime writes storage (it persists each Ready);
// the core only reads it, synchronously. A read may find entries temporarily unavailable (the
// runtime's memory tier has evicted them and is loading them from disk): the core then skips that
// work and retries later, it never blocks.
import type { Entry, HardState, SnapshotMeta } from './types';

export interface InitialState {
  readonly hardState: HardState;
  /** The latest snapshot: its index and term start the log, its membership is the base. */
  readonly snapshot: SnapshotMeta;
  /** The membership entries persisted after the snapshot, in index order (replayed at start). */
  readonly membershipEntries: readonly Entry[];
}

export interface LogStorage {
  /** The persisted hard state and the latest snapshot's metadata. */
  initialState(): InitialState;
  /** The index of the first entry still in the log (snapshot index + 1). */
  firstIndex(): number;
  /** The index of the last persisted entry (the snapshot index when the log is empty). */
  lastIndex(): number;
  /**
   * The term of the entry at `index`, for index in [firstIndex() - 1, lastIndex()] (firstIndex - 1
   * is the snapshot's index). Terms are always available synchronously. Undefined outside.
   */
  term(index: number): number | undefined;
  /**
   * Entries in [lo, hi), lo >= firstIndex(), hi <= lastIndex() + 1, at most `bytesMax` bytes of
   * data but always at least one entry. Null while the entries are temporarily unavailable.
   */
  entries(lo: number, hi: number, bytesMax: number): readonly Entry[] | null;
  /**
   * The latest snapshot a leader may send to a follower, or null while none is ready (the runtime
   * is writing one); the core retries later.
   */
  snapshot(): SnapshotMeta | null;
}

/** The size the byte limits count for an entry (its data; the fixed header is not counted). */
export function entrySizeBytes(entry: Entry): number {
  return entry.data.length;
}

/** Takes entries from the front of `entries` until adding the next would exceed `bytesMax`. */
export function limitEntriesBytes<T extends Entry>(entries: readonly T[], bytesMax: number): T[] {
  if (entries.length === 0) return [];
  let size = entrySizeBytes(entries[0]);
  let count = 1;
  while (count < entries.length) {
    size += entrySizeBytes(entries[count]);
    if (size > bytesMax) break;
    count++;
  }
  return entries.slice(0, count);
}
