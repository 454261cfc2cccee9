// Which committed entries the Ready loop may apply while the Ready's own write is in flight.
import { EntryType, type Entry } from '@eraftkv/raft';
import { splitCommitted } from '../src/ready-loop';

const entry = (index: number, term = 1): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: Buffer.alloc(0),
});
const range = (from: number, to: number, term = 1): Entry[] =>
  Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term));
const indexes = (entries: readonly Entry[]): number[] => entries.map((e) => e.index);

describe('splitCommitted', () => {
  it('applies at once what is stored and untouched by the Ready (a leader committing)', () => {
    const [now, after] = splitCommitted(range(5, 8), 10, range(11, 12));
    expect(indexes(now)).toEqual([5, 6, 7, 8]);
    expect(after).toEqual([]);
  });

  it('waits for the write for entries the same Ready stores (a follower appending and committing)', () => {
    const [now, after] = splitCommitted(range(5, 8), 6, range(7, 9));
    expect(indexes(now)).toEqual([5, 6]);
    expect(indexes(after)).toEqual([7, 8]);
  });

  it('does not count stored entries the Ready overwrites (an old leader’s suffix)', () => {
    // Stored up to 10, but the Ready replaces 7.. with a new leader's entries and commits to 8:
    // the stored 7 and 8 are not the committed ones.
    const [now, after] = splitCommitted(range(5, 8, 2), 10, range(7, 12, 2));
    expect(indexes(now)).toEqual([5, 6]);
    expect(indexes(after)).toEqual([7, 8]);
  });

  it('applies everything at once when the Ready stores nothing', () => {
    const [now, after] = splitCommitted(range(3, 4), 4, []);
    expect(indexes(now)).toEqual([3, 4]);
    expect(after).toEqual([]);
    expect(splitCommitted([], 4, [])).toEqual([[], []]);
  });
});
