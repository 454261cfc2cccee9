// RaftLog over MemoryStorage: stable storage followed by unstable entries, with the commit and
// apply cursors.
import {
  EntryType,
  RaftInvariantError,
  type Entry,
  type HardState,
  type SnapshotMeta,
} from '../src/types';
import { RaftLog } from '../src/log';
import { MemoryStorage } from '../src/simulation';

function entry(index: number, term: number, sizeBytes = 0): Entry {
  return { index, term, type: EntryType.Normal, data: new Uint8Array(sizeBytes) };
}

/** Entries first, first + 1, ... with the given terms (and data sizes, if given). */
function entries(first: number, terms: readonly number[], sizeBytes = 0): Entry[] {
  return terms.map((term, i) => entry(first + i, term, sizeBytes));
}

function indexTerms(list: readonly Entry[] | null): [number, number][] | null {
  return list === null ? null : list.map((e) => [e.index, e.term]);
}

interface LogSetup {
  /** The snapshot the storage starts from (default: index 0, term 0). */
  snapshot?: SnapshotMeta;
  /** Entries already persisted after the snapshot. */
  stable?: readonly Entry[];
  /** Entries appended to the RaftLog but not persisted. */
  unstable?: readonly Entry[];
  hardState?: HardState;
  applied?: number;
}

function makeLog(setup: LogSetup = {}): { log: RaftLog; storage: MemoryStorage } {
  const storage = new MemoryStorage(
    setup.snapshot ?? { index: 0, term: 0, membership: [] },
    setup.hardState ?? { term: 0, vote: 0, commit: 0 },
  );
  storage.append(setup.stable ?? []);
  const log = new RaftLog(storage, setup.applied ?? 0);
  if (setup.unstable !== undefined) log.append(setup.unstable);
  return { log, storage };
}

/** The successful outcome of maybeAppend; fails the test on a refusal. */
function ok(result: ReturnType<RaftLog['maybeAppend']>): {
  lastNewIndex: number;
  appended: readonly Entry[];
} {
  if (typeof result === 'string') throw new Error(`append refused: ${result}`);
  return result;
}

describe('RaftLog', () => {
  describe('construction', () => {
    it('starts with the commit index of the hard state and the given applied index', () => {
      const { log } = makeLog({
        stable: entries(1, [1, 1, 1]),
        hardState: { term: 1, vote: 0, commit: 2 },
        applied: 1,
      });
      expect(log.committed).toBe(2);
      expect(log.applied).toBe(1);
      expect(log.applying).toBe(1);
      expect(log.firstIndex()).toBe(1);
      expect(log.lastIndex()).toBe(3);
    });

    it('counts the snapshot as committed and applied', () => {
      const { log } = makeLog({ snapshot: { index: 5, term: 2, membership: [] } });
      expect(log.committed).toBe(5);
      expect(log.applied).toBe(5);
      expect(log.firstIndex()).toBe(6);
      expect(log.lastIndex()).toBe(5);
    });

    it('refuses an applied index beyond the commit index', () => {
      expect(() =>
        makeLog({
          stable: entries(1, [1, 1, 1]),
          hardState: { term: 1, vote: 0, commit: 2 },
          applied: 3,
        }),
      ).toThrow(RaftInvariantError);
    });
  });

  describe('term', () => {
    const { log } = makeLog({
      snapshot: { index: 3, term: 2, membership: [] },
      stable: entries(4, [2, 3]),
      unstable: entries(6, [4, 4]),
    });

    it("knows the snapshot's index (firstIndex - 1)", () => {
      expect(log.term(3)).toBe(2);
    });

    it('reads stable entries from storage', () => {
      expect(log.term(4)).toBe(2);
      expect(log.term(5)).toBe(3);
    });

    it('reads unstable entries', () => {
      expect(log.term(6)).toBe(4);
      expect(log.term(7)).toBe(4);
      expect(log.lastTerm()).toBe(4);
    });

    it('is undefined below the snapshot and beyond the last index', () => {
      expect(log.term(2)).toBeUndefined();
      expect(log.term(0)).toBeUndefined();
      expect(log.term(8)).toBeUndefined();
    });

    it('prefers an unstable entry that replaced a stored one', () => {
      const { log: replaced } = makeLog({ stable: entries(1, [1, 1, 1]), unstable: [entry(2, 5)] });
      expect(replaced.term(2)).toBe(5);
      expect(replaced.term(1)).toBe(1);
      // Stored entry 3 was truncated by the unstable append.
      expect(replaced.term(3)).toBeUndefined();
      expect(replaced.lastIndex()).toBe(2);
    });
  });

  describe('matchTerm', () => {
    const { log } = makeLog({ stable: entries(1, [1, 2]), unstable: entries(3, [3]) });

    it('matches an entry with the same index and term', () => {
      expect(log.matchTerm(0, 0)).toBe(true);
      expect(log.matchTerm(2, 2)).toBe(true);
      expect(log.matchTerm(3, 3)).toBe(true);
    });

    it('does not match a different term or a missing index', () => {
      expect(log.matchTerm(2, 1)).toBe(false);
      expect(log.matchTerm(3, 2)).toBe(false);
      expect(log.matchTerm(4, 3)).toBe(false);
    });
  });

  describe('isUpToDate', () => {
    // Our last entry: 3/3 (index 3, term 3).
    const { log } = makeLog({ stable: entries(1, [1, 2, 3]) });

    it('accepts a higher last term whatever the index', () => {
      expect(log.isUpToDate(1, 4)).toBe(true);
    });

    it('accepts the same last term with an equal or longer log', () => {
      expect(log.isUpToDate(3, 3)).toBe(true);
      expect(log.isUpToDate(9, 3)).toBe(true);
    });

    it('rejects the same last term with a shorter log', () => {
      expect(log.isUpToDate(2, 3)).toBe(false);
    });

    it('rejects a lower last term even with a longer log', () => {
      expect(log.isUpToDate(100, 2)).toBe(false);
    });
  });

  describe('maybeAppend', () => {
    it('rejects an append whose prev term differs', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 2]) });
      expect(log.maybeAppend(3, 1, 3, [entry(4, 2)])).toBe('mismatch');
      expect(log.lastIndex()).toBe(3);
      expect(log.committed).toBe(0);
    });

    it('rejects an append whose prev index is beyond the log', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1]) });
      expect(log.maybeAppend(5, 1, 0, [entry(6, 1)])).toBe('mismatch');
      expect(log.lastIndex()).toBe(2);
    });

    it('appends entries that follow a matching prev entry', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1]) });
      const result = log.maybeAppend(2, 1, 0, entries(3, [2, 2]));
      expect(ok(result).lastNewIndex).toBe(4);
      expect(indexTerms(ok(result).appended)).toEqual([
        [3, 2],
        [4, 2],
      ]);
      expect(indexTerms(log.unstableEntries())).toEqual([
        [3, 2],
        [4, 2],
      ]);
    });

    it('writes nothing when every entry is already present', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 2, 2]) });
      const result = log.maybeAppend(1, 1, 0, entries(2, [1, 2]));
      expect(result).toEqual({ lastNewIndex: 3, appended: [] });
      expect(log.lastIndex()).toBe(4);
      expect(log.unstableEntries()).toEqual([]);
    });

    it('appends only the entries after those already present', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 2]) });
      const result = log.maybeAppend(1, 1, 0, entries(2, [1, 2, 3]));
      expect(ok(result).lastNewIndex).toBe(4);
      expect(indexTerms(ok(result).appended)).toEqual([[4, 3]]);
      expect(log.lastIndex()).toBe(4);
    });

    it('truncates the conflicting suffix from the first conflicting entry', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 2, 2, 2]) });
      const result = log.maybeAppend(2, 1, 0, entries(3, [2, 3]));
      expect(ok(result).lastNewIndex).toBe(4);
      expect(indexTerms(ok(result).appended)).toEqual([[4, 3]]);
      // Entry 5 of term 2 followed the conflict and is gone.
      expect(log.lastIndex()).toBe(4);
      expect(log.term(3)).toBe(2);
      expect(log.term(4)).toBe(3);
      expect(log.term(5)).toBeUndefined();
    });

    it('truncates conflicting unstable entries as well', () => {
      const { log } = makeLog({ stable: entries(1, [1]), unstable: entries(2, [1, 1, 1]) });
      log.maybeAppend(2, 1, 0, entries(3, [4]));
      expect(indexTerms(log.unstableEntries())).toEqual([
        [2, 1],
        [3, 4],
      ]);
      expect(log.lastIndex()).toBe(3);
    });

    it('refuses to overwrite committed entries', () => {
      const { log } = makeLog({
        stable: entries(1, [1, 1, 1]),
        hardState: { term: 1, vote: 0, commit: 3 },
      });
      expect(log.maybeAppend(2, 1, 3, [entry(3, 2)])).toBe('conflicts-with-committed');
      expect(log.term(3)).toBe(1);
      expect(log.lastIndex()).toBe(3);
    });

    it('accepts a conflict just after the commit index', () => {
      const { log } = makeLog({
        stable: entries(1, [1, 1, 1]),
        hardState: { term: 1, vote: 0, commit: 2 },
      });
      expect(ok(log.maybeAppend(2, 1, 2, [entry(3, 2)])).lastNewIndex).toBe(3);
      expect(log.term(3)).toBe(2);
    });

    it('commits up to the leader commit when it is below the last new entry', () => {
      const { log } = makeLog({ stable: entries(1, [1]) });
      log.maybeAppend(1, 1, 2, entries(2, [1, 1, 1]));
      expect(log.committed).toBe(2);
    });

    it('commits only up to the last new entry, not to entries beyond it', () => {
      // Our log holds 5 entries, but this append only vouches for those up to 3.
      const { log } = makeLog({ stable: entries(1, [1, 1, 1, 1, 1]) });
      const result = log.maybeAppend(1, 1, 10, entries(2, [1, 1]));
      expect(ok(result).lastNewIndex).toBe(3);
      expect(log.committed).toBe(3);
    });

    it('commits up to prev index for an empty append', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 1]) });
      expect(log.maybeAppend(2, 1, 3, [])).toEqual({ lastNewIndex: 2, appended: [] });
      expect(log.committed).toBe(2);
    });

    it('never moves the commit index backwards', () => {
      const { log } = makeLog({
        stable: entries(1, [1, 1, 1]),
        hardState: { term: 1, vote: 0, commit: 3 },
      });
      log.maybeAppend(3, 1, 1, []);
      expect(log.committed).toBe(3);
    });
  });

  describe('append', () => {
    it('refuses entries that would leave a gap', () => {
      const { log } = makeLog({ stable: entries(1, [1]) });
      expect(() => log.append([entry(3, 1)])).toThrow(RaftInvariantError);
    });

    it('refuses entries that would overwrite committed ones', () => {
      const { log } = makeLog({
        stable: entries(1, [1, 1]),
        hardState: { term: 1, vote: 0, commit: 2 },
      });
      expect(() => log.append([entry(2, 2)])).toThrow(RaftInvariantError);
      expect(log.append([entry(3, 2)])).toBe(3);
    });

    it('returns the last index for no entries', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1]) });
      expect(log.append([])).toBe(2);
    });
  });

  describe('findConflict', () => {
    const { log } = makeLog({ stable: entries(1, [1, 1, 2]), unstable: entries(4, [3]) });

    it('is 0 when every entry is present', () => {
      expect(log.findConflict([])).toBe(0);
      expect(log.findConflict(entries(1, [1, 1, 2, 3]))).toBe(0);
      expect(log.findConflict(entries(3, [2, 3]))).toBe(0);
    });

    it('is the first entry whose term differs', () => {
      expect(log.findConflict(entries(2, [1, 3, 3]))).toBe(3);
      expect(log.findConflict(entries(4, [5]))).toBe(4);
    });

    it('is the first entry beyond the log when nothing conflicts before it', () => {
      expect(log.findConflict(entries(3, [2, 3, 3, 3]))).toBe(5);
    });
  });

  describe('findConflictByTerm', () => {
    // Terms by index: 1:1 2:1 3:2 4:2 5:4 6:4
    const { log } = makeLog({ stable: entries(1, [1, 1, 2, 2]), unstable: entries(5, [4, 4]) });

    it('is the index itself when its term is not above the given term', () => {
      expect(log.findConflictByTerm(6, 4)).toEqual({ index: 6, term: 4 });
      expect(log.findConflictByTerm(6, 9)).toEqual({ index: 6, term: 4 });
    });

    it('skips back over every entry whose term is above the given term', () => {
      expect(log.findConflictByTerm(6, 3)).toEqual({ index: 4, term: 2 });
      expect(log.findConflictByTerm(4, 1)).toEqual({ index: 2, term: 1 });
    });

    it('starts from the last index when the given index is beyond it', () => {
      expect(log.findConflictByTerm(20, 4)).toEqual({ index: 6, term: 4 });
    });

    it('is 0/0 when every entry has a higher term', () => {
      expect(log.findConflictByTerm(6, 0)).toEqual({ index: 0, term: 0 });
    });

    it('reports the first compacted index with term 0 (unknown)', () => {
      // Snapshot at 3 (term 2), entries 4..6 with terms 3, 3, 5.
      const { log: compacted } = makeLog({
        snapshot: { index: 3, term: 2, membership: [] },
        stable: entries(4, [3, 3, 5]),
      });
      expect(compacted.findConflictByTerm(6, 2)).toEqual({ index: 3, term: 2 });
      expect(compacted.findConflictByTerm(6, 1)).toEqual({ index: 2, term: 0 });
    });
  });

  describe('slice', () => {
    // Entries 1..3 in storage, 4..6 unstable, 10 bytes each.
    function splitLog(): { log: RaftLog; storage: MemoryStorage } {
      return makeLog({ stable: entries(1, [1, 1, 1], 10), unstable: entries(4, [2, 2, 2], 10) });
    }
    const indexes = (list: readonly Entry[] | null): number[] | null =>
      list === null ? null : list.map((e) => e.index);

    it('joins stable and unstable entries across the boundary', () => {
      const { log } = splitLog();
      expect(indexTerms(log.slice(2, 6, 1000))).toEqual([
        [2, 1],
        [3, 1],
        [4, 2],
        [5, 2],
      ]);
      expect(indexes(log.slice(1, 7, 1000))).toEqual([1, 2, 3, 4, 5, 6]);
    });

    it('returns an empty slice for an empty range', () => {
      const { log } = splitLog();
      expect(log.slice(3, 3, 1000)).toEqual([]);
    });

    it('stops within storage when the byte limit is reached there', () => {
      const { log } = splitLog();
      expect(indexes(log.slice(1, 7, 25))).toEqual([1, 2]);
    });

    it('applies the byte limit to unstable entries after stable ones', () => {
      const { log } = splitLog();
      expect(indexes(log.slice(3, 7, 25))).toEqual([3, 4]);
      expect(indexes(log.slice(3, 7, 15))).toEqual([3]);
    });

    it('applies the byte limit to a purely unstable range', () => {
      const { log } = splitLog();
      expect(indexes(log.slice(4, 7, 20))).toEqual([4, 5]);
    });

    it('stops at a stored entry that does not fit, even if later entries would', () => {
      // Entry 3 is large and entry 4 is empty: skipping 3 to take 4 would leave a gap.
      const { log } = makeLog({
        stable: [entry(1, 1, 10), entry(2, 1, 10), entry(3, 1, 100)],
        unstable: [entry(4, 2, 0)],
      });
      expect(indexes(log.slice(1, 5, 25))).toEqual([1, 2]);
    });

    it('returns at least one entry, however small the limit', () => {
      const { log } = splitLog();
      expect(indexes(log.slice(1, 7, 0))).toEqual([1]);
      expect(indexes(log.slice(5, 7, 0))).toEqual([5]);
    });

    it('counts an entry that fills the limit exactly', () => {
      const { log } = splitLog();
      expect(indexes(log.slice(2, 7, 30))).toEqual([2, 3, 4]);
    });

    it('is null while stored entries are unavailable', () => {
      const { log, storage } = splitLog();
      storage.unavailableBelow = 3;
      expect(log.slice(2, 6, 1000)).toBeNull();
      expect(log.slice(1, 2, 1000)).toBeNull();
      expect(indexes(log.slice(3, 6, 1000))).toEqual([3, 4, 5]);
      // Unstable entries never depend on storage.
      expect(indexes(log.slice(4, 6, 1000))).toEqual([4, 5]);
    });

    it('refuses a range outside the log', () => {
      const { log } = makeLog({ snapshot: { index: 2, term: 1, membership: [] } });
      log.append(entries(3, [1, 1]));
      expect(() => log.slice(2, 4, 1000)).toThrow(RaftInvariantError);
      expect(() => log.slice(3, 6, 1000)).toThrow('slice [3, 6) outside [3, 5)');
    });
  });

  describe('committed entries and the apply cursors', () => {
    function committedLog(): { log: RaftLog; storage: MemoryStorage } {
      return makeLog({ stable: entries(1, [1, 1, 1, 1, 1], 10), unstable: entries(6, [2], 10) });
    }
    const indexes = (list: readonly Entry[] | null): number[] | null =>
      list === null ? null : list.map((e) => e.index);

    it('hands out nothing until something is committed', () => {
      const { log } = committedLog();
      expect(log.hasNextCommittedEntries()).toBe(false);
      expect(log.nextCommittedEntries(1000)).toEqual([]);
    });

    it('hands out committed entries once, after acceptApplying', () => {
      const { log } = committedLog();
      log.commitTo(3);
      expect(log.hasNextCommittedEntries()).toBe(true);
      expect(indexes(log.nextCommittedEntries(1000))).toEqual([1, 2, 3]);
      log.acceptApplying(3);
      expect(log.applying).toBe(3);
      expect(log.applied).toBe(0);
      expect(log.hasNextCommittedEntries()).toBe(false);
      expect(log.nextCommittedEntries(1000)).toEqual([]);
      log.commitTo(6);
      expect(indexes(log.nextCommittedEntries(1000))).toEqual([4, 5, 6]);
    });

    it('limits the committed entries by bytes', () => {
      const { log } = committedLog();
      log.commitTo(5);
      expect(indexes(log.nextCommittedEntries(20))).toEqual([1, 2]);
      log.acceptApplying(2);
      expect(indexes(log.nextCommittedEntries(20))).toEqual([3, 4]);
    });

    it('is null while the committed entries are unavailable', () => {
      const { log, storage } = committedLog();
      log.commitTo(3);
      storage.unavailableBelow = 2;
      expect(log.nextCommittedEntries(1000)).toBeNull();
      storage.unavailableBelow = 0;
      expect(indexes(log.nextCommittedEntries(1000))).toEqual([1, 2, 3]);
    });

    it('appliedTo moves applied, and applying with it when behind', () => {
      const { log } = committedLog();
      log.commitTo(5);
      log.acceptApplying(2);
      log.appliedTo(2);
      expect(log.applied).toBe(2);
      expect(log.applying).toBe(2);
      log.appliedTo(4);
      expect(log.applied).toBe(4);
      expect(log.applying).toBe(4);
      expect(indexes(log.nextCommittedEntries(1000))).toEqual([5]);
    });

    it('appliedTo leaves applying ahead of applied alone', () => {
      const { log } = committedLog();
      log.commitTo(5);
      log.acceptApplying(5);
      log.appliedTo(3);
      expect(log.applied).toBe(3);
      expect(log.applying).toBe(5);
    });

    it('refuses to apply beyond the commit index or backwards', () => {
      const { log } = committedLog();
      log.commitTo(3);
      expect(() => log.acceptApplying(4)).toThrow(RaftInvariantError);
      expect(() => log.appliedTo(4)).toThrow(RaftInvariantError);
      log.acceptApplying(3);
      expect(() => log.acceptApplying(2)).toThrow(RaftInvariantError);
      log.appliedTo(3);
      expect(() => log.appliedTo(2)).toThrow(RaftInvariantError);
    });

    it('ignores appliedTo(0)', () => {
      const { log } = committedLog();
      log.commitTo(2);
      log.appliedTo(2);
      log.appliedTo(0);
      expect(log.applied).toBe(2);
    });
  });

  describe('commitTo and maybeCommit', () => {
    it('refuses to commit beyond the last index', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1]) });
      expect(() => log.commitTo(3)).toThrow(RaftInvariantError);
    });

    it('never moves the commit index backwards', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1]) });
      log.commitTo(2);
      log.commitTo(1);
      expect(log.committed).toBe(2);
    });

    it('commits only an entry of the given (current) term', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 2]) });
      expect(log.maybeCommit(2, 2)).toBe(false);
      expect(log.committed).toBe(0);
      expect(log.maybeCommit(3, 2)).toBe(true);
      expect(log.committed).toBe(3);
      expect(log.maybeCommit(3, 2)).toBe(false);
    });
  });

  describe('stableTo', () => {
    it('drops persisted entries from the unstable part', () => {
      const { log, storage } = makeLog({ stable: entries(1, [1]), unstable: entries(2, [1, 1]) });
      storage.append(log.unstableEntries());
      log.stableTo(3, 1);
      expect(log.unstableEntries()).toEqual([]);
      expect(log.lastIndex()).toBe(3);
      expect(log.term(3)).toBe(1);
    });

    it('leaves entries unstable when the persisted term no longer matches', () => {
      const { log, storage } = makeLog({ stable: entries(1, [1]), unstable: entries(2, [1, 1]) });
      // The runtime persists 2..3 of term 1 while a new leader replaces 3 by an entry of term 2.
      storage.append(log.unstableEntries());
      log.maybeAppend(2, 1, 0, [entry(3, 2)]);
      log.stableTo(3, 1);
      expect(indexTerms(log.unstableEntries())).toEqual([
        [2, 1],
        [3, 2],
      ]);
      expect(log.term(3)).toBe(2);
    });

    it('ignores an index beyond the unstable entries', () => {
      const { log } = makeLog({ stable: entries(1, [1]), unstable: entries(2, [1]) });
      log.stableTo(5, 1);
      expect(indexTerms(log.unstableEntries())).toEqual([[2, 1]]);
    });
  });

  describe('restore', () => {
    const snapshot: SnapshotMeta = { index: 8, term: 3, membership: [] };

    it('replaces the whole log with the snapshot', () => {
      const { log } = makeLog({
        stable: entries(1, [1, 1, 1]),
        unstable: entries(4, [2, 2]),
        hardState: { term: 2, vote: 0, commit: 2 },
      });
      log.restore(snapshot);
      expect(log.firstIndex()).toBe(9);
      expect(log.lastIndex()).toBe(8);
      expect(log.term(8)).toBe(3);
      expect(log.lastTerm()).toBe(3);
      expect(log.term(5)).toBeUndefined();
      expect(log.committed).toBe(8);
      expect(log.unstableEntries()).toEqual([]);
      expect(log.unstable.snapshot).toEqual(snapshot);
    });

    it('hands out no committed entries while the snapshot is pending', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 1]) });
      log.restore(snapshot);
      expect(log.hasNextCommittedEntries()).toBe(false);
      expect(log.nextCommittedEntries(1000)).toEqual([]);
    });

    it('accepts entries that follow the snapshot', () => {
      const { log } = makeLog({ stable: entries(1, [1, 1, 1]) });
      log.restore(snapshot);
      expect(ok(log.maybeAppend(8, 3, 9, [entry(9, 3)])).lastNewIndex).toBe(9);
      expect(log.lastIndex()).toBe(9);
      expect(log.committed).toBe(9);
      expect(indexTerms(log.slice(9, 10, 1000))).toEqual([[9, 3]]);
    });

    it('continues from storage once the snapshot is persisted and applied', () => {
      const { log, storage } = makeLog({ stable: entries(1, [1, 1, 1]) });
      log.restore(snapshot);
      storage.applySnapshot(snapshot);
      log.stableSnapshotTo(8);
      log.appliedTo(8);
      expect(log.unstable.snapshot).toBeNull();
      expect(log.firstIndex()).toBe(9);
      expect(log.lastIndex()).toBe(8);
      expect(log.term(8)).toBe(3);
      expect(log.applied).toBe(8);
      expect(log.hasNextCommittedEntries()).toBe(false);
    });
  });
});
