// UnstableLog: the entries and the incoming snapshot that the core accepted but the runtime has
// not yet persisted.
import { EntryType, RaftInvariantError, type Entry, type SnapshotMeta } from '../src/types';
import { UnstableLog } from '../src/log-unstable';

function entry(index: number, term: number): Entry {
  return { index, term, type: EntryType.Normal, data: new Uint8Array(0) };
}

function entries(first: number, terms: readonly number[]): Entry[] {
  return terms.map((term, i) => entry(first + i, term));
}

function indexTerms(log: UnstableLog): [number, number][] {
  return log.entries.map((e) => [e.index, e.term]);
}

const snapshot: SnapshotMeta = { index: 10, term: 3, membership: [] };

describe('UnstableLog', () => {
  describe('maybeFirstIndex and maybeLastIndex', () => {
    it('knows neither while it holds nothing', () => {
      const log = new UnstableLog(5);
      expect(log.maybeFirstIndex()).toBeUndefined();
      expect(log.maybeLastIndex()).toBeUndefined();
    });

    it('knows the last index from its entries, but not the first index', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1, 2]));
      expect(log.maybeFirstIndex()).toBeUndefined();
      expect(log.maybeLastIndex()).toBe(7);
    });

    it('knows both from a pending snapshot', () => {
      const log = new UnstableLog(5);
      log.restore(snapshot);
      expect(log.maybeFirstIndex()).toBe(11);
      expect(log.maybeLastIndex()).toBe(10);
    });

    it('takes the last index from entries that follow a pending snapshot', () => {
      const log = new UnstableLog(5);
      log.restore(snapshot);
      log.truncateAndAppend(entries(11, [4, 4]));
      expect(log.maybeFirstIndex()).toBe(11);
      expect(log.maybeLastIndex()).toBe(12);
    });
  });

  describe('maybeTerm', () => {
    it('answers for its own entries only', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 2]));
      expect(log.maybeTerm(4)).toBeUndefined();
      expect(log.maybeTerm(5)).toBe(1);
      expect(log.maybeTerm(6)).toBe(2);
      expect(log.maybeTerm(7)).toBeUndefined();
    });

    it("answers for the pending snapshot's index with its term", () => {
      const log = new UnstableLog(5);
      log.restore(snapshot);
      expect(log.maybeTerm(10)).toBe(3);
      expect(log.maybeTerm(9)).toBeUndefined();
      expect(log.maybeTerm(11)).toBeUndefined();
    });
  });

  describe('truncateAndAppend', () => {
    it('appends entries that directly follow the last one', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1]));
      log.truncateAndAppend(entries(7, [2]));
      expect(log.offset).toBe(5);
      expect(indexTerms(log)).toEqual([
        [5, 1],
        [6, 1],
        [7, 2],
      ]);
    });

    it('replaces the conflicting suffix when the new entries start inside it', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1, 1, 1]));
      log.truncateAndAppend(entries(7, [2, 2]));
      expect(log.offset).toBe(5);
      expect(indexTerms(log)).toEqual([
        [5, 1],
        [6, 1],
        [7, 2],
        [8, 2],
      ]);
    });

    it('replaces everything and moves the offset back when the new entries start before it', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1]));
      log.truncateAndAppend(entries(3, [2]));
      expect(log.offset).toBe(3);
      expect(indexTerms(log)).toEqual([[3, 2]]);
      expect(log.maybeLastIndex()).toBe(3);
    });

    it('replaces everything when the new entries start at the offset', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1]));
      log.truncateAndAppend(entries(5, [2]));
      expect(log.offset).toBe(5);
      expect(indexTerms(log)).toEqual([[5, 2]]);
    });

    it('does not share the caller array', () => {
      const log = new UnstableLog(5);
      const input = entries(5, [1]);
      log.truncateAndAppend(input);
      log.truncateAndAppend(entries(6, [1]));
      expect(input).toHaveLength(1);
    });
  });

  describe('stableTo', () => {
    it('drops entries up to the persisted index and moves the offset', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1, 2]));
      log.stableTo(6, 1);
      expect(log.offset).toBe(7);
      expect(indexTerms(log)).toEqual([[7, 2]]);
    });

    it('keeps entries whose term differs from the persisted one (they were replaced)', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1]));
      // The runtime persisted 6@1, but meanwhile 6 was replaced by an entry of term 2.
      log.truncateAndAppend(entries(6, [2]));
      log.stableTo(6, 1);
      expect(log.offset).toBe(5);
      expect(indexTerms(log)).toEqual([
        [5, 1],
        [6, 2],
      ]);
    });

    it('ignores an index beyond its entries', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1]));
      log.stableTo(9, 1);
      expect(log.offset).toBe(5);
      expect(log.entries).toHaveLength(1);
    });

    it('ignores an index below the offset, even the pending snapshot index', () => {
      const log = new UnstableLog(5);
      log.restore(snapshot);
      log.truncateAndAppend(entries(11, [3]));
      log.stableTo(10, 3);
      expect(log.offset).toBe(11);
      expect(log.entries).toHaveLength(1);
      expect(log.snapshot).toBe(snapshot);
    });
  });

  describe('snapshots', () => {
    it('restore drops every entry and restarts after the snapshot', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 1]));
      log.restore(snapshot);
      expect(log.entries).toEqual([]);
      expect(log.offset).toBe(11);
      expect(log.snapshot).toEqual(snapshot);
    });

    it('stableSnapshotTo clears the pending snapshot with the same index only', () => {
      const log = new UnstableLog(5);
      log.restore(snapshot);
      log.stableSnapshotTo(9);
      expect(log.snapshot).toEqual(snapshot);
      log.stableSnapshotTo(10);
      expect(log.snapshot).toBeNull();
      expect(log.maybeFirstIndex()).toBeUndefined();
    });
  });

  describe('slice', () => {
    it('returns the entries in [lo, hi)', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 2, 3, 4]));
      expect(log.slice(6, 8).map((e) => e.index)).toEqual([6, 7]);
      expect(log.slice(5, 9).map((e) => e.term)).toEqual([1, 2, 3, 4]);
      expect(log.slice(7, 7)).toEqual([]);
    });

    it('refuses a range outside its entries', () => {
      const log = new UnstableLog(5);
      log.truncateAndAppend(entries(5, [1, 2]));
      expect(() => log.slice(4, 6)).toThrow(RaftInvariantError);
      expect(() => log.slice(5, 8)).toThrow('unstable slice [5, 8) out of bounds [5, 7)');
      expect(() => log.slice(6, 5)).toThrow(RaftInvariantError);
    });
  });
});
