// Majority arithmetic: quorum sizes, the commit index a leader may advance to, election outcomes
// and quorum checks, with particular attention to even cluster sizes.
import { committedIndex, hasQuorum, quorumSize, voteResult, VoteResult } from '../src/quorum';
import { type NodeId } from '../src/types';

function matchesOf(matches: Record<number, number>): (id: NodeId) => number {
  return (id) => matches[id] ?? 0;
}

function votesOf(votes: Record<number, boolean>): Map<NodeId, boolean> {
  return new Map(Object.entries(votes).map(([id, granted]) => [Number(id), granted]));
}

describe('quorumSize', () => {
  it.each([
    [1, 1],
    [2, 2],
    [3, 2],
    [4, 3],
    [5, 3],
    [6, 4],
    [7, 4],
  ])('requires a strict majority of %i voters: %i', (voters, quorum) => {
    expect(quorumSize(voters)).toBe(quorum);
  });

  it('requires n/2 + 1 votes for every even size, never n/2', () => {
    for (const n of [2, 4, 6, 8, 10]) {
      expect(quorumSize(n)).toBe(n / 2 + 1);
    }
  });
});

describe('committedIndex', () => {
  it('is the match index of the only voter of a single-node group', () => {
    expect(committedIndex([1], matchesOf({ 1: 7 }))).toBe(7);
  });

  it('is 0 when there are no voters', () => {
    expect(committedIndex([], matchesOf({}))).toBe(0);
  });

  it('takes the index held by a majority regardless of the order of the input', () => {
    expect(committedIndex([1, 2, 3], matchesOf({ 1: 9, 2: 3, 3: 5 }))).toBe(5);
    expect(committedIndex([3, 1, 2], matchesOf({ 1: 5, 2: 9, 3: 3 }))).toBe(5);
    expect(committedIndex([2, 3, 1], matchesOf({ 1: 3, 2: 5, 3: 9 }))).toBe(5);
  });

  it('sorts match indexes numerically, not as strings', () => {
    // A lexicographic sort would order 10 < 9 and report 9.
    expect(committedIndex([1, 2, 3], matchesOf({ 1: 10, 2: 9, 3: 100 }))).toBe(10);
  });

  it('counts voters missing from the match table as 0', () => {
    expect(committedIndex([1, 2, 3], matchesOf({ 1: 8 }))).toBe(0);
    expect(committedIndex([1, 2, 3], matchesOf({ 1: 8, 2: 6 }))).toBe(6);
    expect(committedIndex([1, 2, 3, 4, 5], matchesOf({ 1: 8, 2: 6, 3: 4 }))).toBe(4);
  });

  it('needs three of four voters in a group of four', () => {
    // Two of four (a tie) is not a majority: index 9 is held by only two voters.
    expect(committedIndex([1, 2, 3, 4], matchesOf({ 1: 9, 2: 9, 3: 4, 4: 2 }))).toBe(4);
    expect(committedIndex([1, 2, 3, 4], matchesOf({ 1: 9, 2: 9, 3: 9, 4: 2 }))).toBe(9);
  });

  it('needs both voters of a group of two', () => {
    expect(committedIndex([1, 2], matchesOf({ 1: 9, 2: 4 }))).toBe(4);
  });

  it('needs four of six voters in a group of six', () => {
    const matches = matchesOf({ 1: 10, 2: 10, 3: 10, 4: 7, 5: 5, 6: 1 });
    expect(committedIndex([1, 2, 3, 4, 5, 6], matches)).toBe(7);
  });

  it('ignores the match indexes of non-voters', () => {
    // Learner 4 is far ahead but is not in the voter list.
    expect(committedIndex([1, 2, 3], matchesOf({ 1: 6, 2: 2, 3: 1, 4: 100 }))).toBe(2);
  });
});

describe('voteResult', () => {
  it('is won by a single voter that votes for itself', () => {
    expect(voteResult([1], votesOf({ 1: true }))).toBe(VoteResult.Won);
  });

  it('is pending while a single voter has not voted', () => {
    expect(voteResult([1], votesOf({}))).toBe(VoteResult.Pending);
  });

  it('is won trivially with no voters', () => {
    expect(voteResult([], votesOf({}))).toBe(VoteResult.Won);
  });

  it('is won with two grants of three', () => {
    expect(voteResult([1, 2, 3], votesOf({ 1: true, 2: true }))).toBe(VoteResult.Won);
  });

  it('is pending with one grant and one rejection of three', () => {
    expect(voteResult([1, 2, 3], votesOf({ 1: true, 2: false }))).toBe(VoteResult.Pending);
  });

  it('is lost with two rejections of three', () => {
    expect(voteResult([1, 2, 3], votesOf({ 1: true, 2: false, 3: false }))).toBe(VoteResult.Lost);
  });

  it('is pending with two grants of four (a tie is not a majority)', () => {
    expect(voteResult([1, 2, 3, 4], votesOf({ 1: true, 2: true }))).toBe(VoteResult.Pending);
    expect(voteResult([1, 2, 3, 4], votesOf({ 1: true, 2: true, 3: false }))).toBe(
      VoteResult.Pending,
    );
  });

  it('is won with three grants of four', () => {
    expect(voteResult([1, 2, 3, 4], votesOf({ 1: true, 2: true, 3: true, 4: false }))).toBe(
      VoteResult.Won,
    );
  });

  it('is lost with two rejections of four (three grants are no longer possible)', () => {
    expect(voteResult([1, 2, 3, 4], votesOf({ 1: true, 2: false, 3: false }))).toBe(
      VoteResult.Lost,
    );
  });

  it('is pending with one rejection of four', () => {
    expect(voteResult([1, 2, 3, 4], votesOf({ 1: true, 2: false }))).toBe(VoteResult.Pending);
  });

  it('needs both votes in a group of two', () => {
    expect(voteResult([1, 2], votesOf({ 1: true }))).toBe(VoteResult.Pending);
    expect(voteResult([1, 2], votesOf({ 1: true, 2: true }))).toBe(VoteResult.Won);
    expect(voteResult([1, 2], votesOf({ 1: true, 2: false }))).toBe(VoteResult.Lost);
  });

  it('is decided in a group of six by four grants or three rejections', () => {
    const voters = [1, 2, 3, 4, 5, 6];
    expect(voteResult(voters, votesOf({ 1: true, 2: true, 3: true }))).toBe(VoteResult.Pending);
    expect(voteResult(voters, votesOf({ 1: true, 2: true, 3: true, 4: true }))).toBe(
      VoteResult.Won,
    );
    expect(voteResult(voters, votesOf({ 1: true, 2: false, 3: false }))).toBe(VoteResult.Pending);
    expect(voteResult(voters, votesOf({ 1: true, 2: false, 3: false, 4: false }))).toBe(
      VoteResult.Lost,
    );
  });

  it('ignores votes from nodes that are not voters', () => {
    // Learners 4 and 5 grant, but only voter 1 did.
    expect(voteResult([1, 2, 3], votesOf({ 1: true, 4: true, 5: true }))).toBe(VoteResult.Pending);
    expect(voteResult([1, 2, 3], votesOf({ 1: true, 4: false, 5: false }))).toBe(
      VoteResult.Pending,
    );
  });
});

describe('hasQuorum', () => {
  it('is true when a strict majority of voters is active', () => {
    expect(hasQuorum([1, 2, 3], (id) => id !== 3)).toBe(true);
    expect(hasQuorum([1, 2, 3, 4, 5], (id) => id <= 3)).toBe(true);
  });

  it('is false when only a minority is active', () => {
    expect(hasQuorum([1, 2, 3], (id) => id === 1)).toBe(false);
    expect(hasQuorum([1, 2, 3, 4, 5], (id) => id <= 2)).toBe(false);
  });

  it('is false for half of an even group', () => {
    expect(hasQuorum([1, 2, 3, 4], (id) => id <= 2)).toBe(false);
    expect(hasQuorum([1, 2, 3, 4], (id) => id <= 3)).toBe(true);
    expect(hasQuorum([1, 2], (id) => id === 1)).toBe(false);
  });

  it('holds for a single voter that is active', () => {
    expect(hasQuorum([1], (id) => id === 1)).toBe(true);
    expect(hasQuorum([1], () => false)).toBe(false);
  });

  it('does not count active non-voters', () => {
    // Learners 4 and 5 are active, but of the voters only 1 is.
    const active = new Set<NodeId>([1, 4, 5]);
    expect(hasQuorum([1, 2, 3], (id) => active.has(id))).toBe(false);
  });
});
