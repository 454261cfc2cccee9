// RaftLog: the log as the core sees it, stable storage followed by unstable entries, with the
// commit and apply cursors. Every rule about which entries may be appended, committed or applied
// is checked here.
import { UnstableLog } from './log-unstable';
import { limitEntriesBytes, type LogStorage } from './storage';
import { invariant, type Entry, type SnapshotMeta } from './types';

export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: UnstableLog;
  /** The highest index known to be committed. */
  committed: number;
  /** The highest index handed to the application in a Ready (applying <= committed). */
  applying: number;
  /** The highest index the application has applied (applied <= applying). */
  applied: number;

  constructor(storage: LogStorage, applied: number) {
    this.storage = storage;
    this.unstable = new UnstableLog(storage.lastIndex() + 1);
    const snapshotIndex = storage.firstIndex() - 1;
    const { hardState } = storage.initialState();
    this.committed = Math.max(hardState.commit, snapshotIndex);
    invariant(
      applied <= this.committed,
      () => `applied index ${applied} is beyond the commit index ${this.committed}`,
    );
    this.applied = Math.max(applied, snapshotIndex);
    this.applying = this.applied;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** The term of the entry at `index`; undefined when it is compacted away or beyond the log. */
  term(index: number): number | undefined {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    return this.unstable.maybeTerm(index) ?? this.storage.term(index);
  }

  lastTerm(): number {
    const term = this.term(this.lastIndex());
    invariant(term !== undefined, () => `no term for the last index ${this.lastIndex()}`);
    return term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft 5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Appends `entries` that follow (prevIndex, prevTerm) if our log matches there, dropping any
   * conflicting suffix. Returns the index of the last new entry and the entries actually written;
   * 'mismatch' when the log does not match at prevIndex (the leader must back up); and
   * 'conflicts-with-committed' when an entry differs from one we know is committed, which no
   * correct leader can send (the append changes nothing).
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    leaderCommit: number,
    entries: readonly Entry[],
  ):
    { lastNewIndex: number; appended: readonly Entry[] } | 'mismatch' | 'conflicts-with-committed' {
    if (!this.matchTerm(prevIndex, prevTerm)) return 'mismatch';
    const lastNewIndex = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    let appended: readonly Entry[] = [];
    if (conflict !== 0) {
      if (conflict <= this.committed) return 'conflicts-with-committed';
      appended = entries.slice(conflict - entries[0].index);
      this.append(appended);
    }
    this.commitTo(Math.min(leaderCommit, lastNewIndex));
    return { lastNewIndex, appended };
  }

  /** Appends entries at the end of the log (possibly replacing an uncommitted suffix). */
  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0].index - 1;
    invariant(
      after >= this.committed,
      () => `append after ${after} would overwrite committed entries (committed ${this.committed})`,
    );
    invariant(
      after <= this.lastIndex(),
      () => `append after ${after} leaves a gap (last index ${this.lastIndex()})`,
    );
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  /**
   * The index of the first entry that conflicts with ours (same index, different term), or of the
   * first new entry beyond our log; 0 when every entry is already present.
   */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term`, with that term. The
   * leader can skip every index above it. An unknown (compacted) term is reported as 0.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.lastIndex()); i > 0; i--) {
      const ourTerm = this.term(i);
      if (ourTerm === undefined) return { index: i, term: 0 };
      if (ourTerm <= term) return { index: i, term: ourTerm };
    }
    return { index: 0, term: 0 };
  }

  unstableEntries(): readonly Entry[] {
    return this.unstable.entries;
  }

  /** Entries in [lo, hi), at most `bytesMax` bytes (at least one); null if unavailable now. */
  slice(lo: number, hi: number, bytesMax: number): Entry[] | null {
    invariant(
      lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi,
      () => `slice [${lo}, ${hi}) outside [${this.firstIndex()}, ${this.lastIndex() + 1})`,
    );
    if (lo === hi) return [];
    const result: Entry[] = [];
    const offset = this.unstable.offset;
    if (lo < offset) {
      const stored = this.storage.entries(lo, Math.min(hi, offset), bytesMax);
      if (stored === null) return null;
      invariant(stored.length > 0, () => `storage returned no entries for [${lo}, ${hi})`);
      invariant(stored[0].index === lo, () => `storage returned ${stored[0].index} for ${lo}`);
      result.push(...stored);
      // Storage stopped early because of the byte limit: return what fits.
      if (stored.length < Math.min(hi, offset) - lo) return result;
    }
    if (hi > offset) {
      result.push(...this.unstable.slice(Math.max(lo, offset), hi));
    }
    return limitEntriesBytes(result, bytesMax);
  }

  /** Committed entries not yet handed to the application, or null if unavailable now. */
  nextCommittedEntries(bytesMax: number): Entry[] | null {
    const lo = Math.max(this.applying + 1, this.firstIndex());
    const hi = Math.min(this.committed, this.lastIndex()) + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, bytesMax);
  }

  hasNextCommittedEntries(): boolean {
    return this.unstable.snapshot === null && this.committed > this.applying;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    invariant(
      index <= this.lastIndex(),
      () => `commit index ${index} is beyond the last index ${this.lastIndex()}`,
    );
    this.committed = index;
  }

  /**
   * Raft 5.4.2: commits `index` only if it holds an entry of the leader's current `term`;
   * earlier entries then commit indirectly.
   */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.term(index) === term) {
      this.commitTo(index);
      return true;
    }
    return false;
  }

  acceptApplying(index: number): void {
    invariant(
      index <= this.committed && index >= this.applying,
      () => `applying ${index} outside [${this.applying}, ${this.committed}]`,
    );
    this.applying = index;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    invariant(
      index <= this.committed && index >= this.applied,
      () => `applied ${index} outside [${this.applied}, ${this.committed}]`,
    );
    this.applied = index;
    if (this.applying < index) this.applying = index;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapshotTo(index: number): void {
    this.unstable.stableSnapshotTo(index);
  }

  /** Replaces the whole log with a snapshot (the follower installs what the leader sent). */
  restore(snapshot: SnapshotMeta): void {
    this.committed = snapshot.index;
    this.unstable.restore(snapshot);
  }
}
