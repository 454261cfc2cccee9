// Membership as a function of the log: single changes, and the history that follows appends,
// truncations and snapshots.
import {
  applyMembershipChange,
  isVoter,
  memberOf,
  MembershipHistory,
  votersOf,
} from '../src/membership';
import { EntryType, RaftInvariantError, type Entry, type Membership } from '../src/types';
import { jsonMembershipCodec } from '../src/simulation';

const base: Membership = [
  { id: 1, address: 'n1:7000', learner: false, incarnation: 0 },
  { id: 2, address: 'n2:7000', learner: false, incarnation: 0 },
  { id: 3, address: 'n3:7000', learner: false, incarnation: 0 },
];

function changeEntry(index: number, type: EntryType, nodeId: number, address = ''): Entry {
  return {
    index,
    term: 1,
    type,
    data: jsonMembershipCodec.encode({ nodeId, address, incarnation: 0 }),
  };
}

function normalEntry(index: number): Entry {
  return { index, term: 1, type: EntryType.Normal, data: new Uint8Array([1, 2, 3]) };
}

/** `1,2,3,4L`: ids in order, learners marked. */
function summary(membership: Membership): string {
  return membership.map((m) => `${m.id}${m.learner ? 'L' : ''}`).join(',');
}

describe('applyMembershipChange', () => {
  it('adds a learner with its address', () => {
    const next = applyMembershipChange(base, EntryType.JoinNoVoteNode, {
      nodeId: 4,
      address: 'n4:7000',
      incarnation: 0,
    });
    expect(next).toEqual([...base, { id: 4, address: 'n4:7000', learner: true, incarnation: 0 }]);
  });

  it('adds a voter directly', () => {
    const next = applyMembershipChange(base, EntryType.JoinNode, {
      nodeId: 4,
      address: 'n4:7000',
      incarnation: 0,
    });
    expect(memberOf(next, 4)).toEqual({
      id: 4,
      address: 'n4:7000',
      learner: false,
      incarnation: 0,
    });
  });

  it('promotes a learner and keeps its address when the change names none', () => {
    const withLearner = applyMembershipChange(base, EntryType.JoinNoVoteNode, {
      nodeId: 4,
      address: 'n4:7000',
      incarnation: 0,
    });
    const promoted = applyMembershipChange(withLearner, EntryType.JoinNode, {
      nodeId: 4,
      address: '',
      incarnation: 0,
    });
    expect(memberOf(promoted, 4)).toEqual({
      id: 4,
      address: 'n4:7000',
      learner: false,
      incarnation: 0,
    });
    expect(promoted).toHaveLength(4);
  });

  it('takes a new address when the promotion names one', () => {
    const withLearner = applyMembershipChange(base, EntryType.JoinNoVoteNode, {
      nodeId: 4,
      address: 'n4:7000',
      incarnation: 0,
    });
    const promoted = applyMembershipChange(withLearner, EntryType.JoinNode, {
      nodeId: 4,
      address: 'n4:8000',
      incarnation: 0,
    });
    expect(memberOf(promoted, 4)?.address).toBe('n4:8000');
  });

  it('removes a member', () => {
    const next = applyMembershipChange(base, EntryType.LeaveNode, {
      nodeId: 2,
      address: '',
      incarnation: 0,
    });
    expect(next.map((m) => m.id)).toEqual([1, 3]);
  });

  it('leaves the membership as is when removing an unknown node', () => {
    const next = applyMembershipChange(base, EntryType.LeaveNode, {
      nodeId: 9,
      address: '',
      incarnation: 0,
    });
    expect(next).toEqual(base);
  });

  it('ignores normal and no-op entries', () => {
    const change = { nodeId: 4, address: 'n4:7000', incarnation: 0 };
    expect(applyMembershipChange(base, EntryType.Normal, change)).toBe(base);
    expect(applyMembershipChange(base, EntryType.NoOp, change)).toBe(base);
  });

  it('keeps members in ascending id order', () => {
    const small: Membership = [{ id: 5, address: 'n5', learner: false, incarnation: 0 }];
    const next = applyMembershipChange(small, EntryType.JoinNoVoteNode, {
      nodeId: 2,
      address: 'n2',
      incarnation: 0,
    });
    expect(next.map((m) => m.id)).toEqual([2, 5]);
  });

  it('does not modify the membership it is given', () => {
    const copy = base.map((m) => ({ ...m }));
    applyMembershipChange(base, EntryType.LeaveNode, {
      nodeId: 1,
      address: '',
      incarnation: 0,
    });
    applyMembershipChange(base, EntryType.JoinNoVoteNode, {
      nodeId: 4,
      address: 'x',
      incarnation: 0,
    });
    expect(base).toEqual(copy);
  });
});

describe('votersOf, memberOf and isVoter', () => {
  const mixed: Membership = [
    { id: 1, address: 'a', learner: false, incarnation: 0 },
    { id: 2, address: 'b', learner: true, incarnation: 0 },
    { id: 3, address: 'c', learner: false, incarnation: 0 },
  ];

  it('lists the voters only', () => {
    expect(votersOf(mixed)).toEqual([1, 3]);
    expect(votersOf([])).toEqual([]);
  });

  it('tells voters from learners and strangers', () => {
    expect(isVoter(mixed, 1)).toBe(true);
    expect(isVoter(mixed, 2)).toBe(false);
    expect(isVoter(mixed, 9)).toBe(false);
  });

  it('finds a member by id', () => {
    expect(memberOf(mixed, 2)).toEqual({ id: 2, address: 'b', learner: true, incarnation: 0 });
    expect(memberOf(mixed, 9)).toBeUndefined();
  });
});

describe('MembershipHistory', () => {
  function history(baseIndex = 5): MembershipHistory {
    return new MembershipHistory(jsonMembershipCodec, { index: baseIndex, membership: base });
  }

  it('starts from the base membership', () => {
    const h = history();
    expect(h.current()).toBe(base);
    expect(h.lastChangeIndex()).toBe(5);
  });

  it('applies appended membership entries in order', () => {
    const h = history();
    h.appended([
      normalEntry(6),
      changeEntry(7, EntryType.JoinNoVoteNode, 4, 'n4'),
      normalEntry(8),
      changeEntry(9, EntryType.JoinNode, 4),
      changeEntry(10, EntryType.LeaveNode, 1),
    ]);
    expect(summary(h.current())).toBe('2,3,4');
    expect(memberOf(h.current(), 4)?.address).toBe('n4');
    expect(h.lastChangeIndex()).toBe(10);
  });

  it('ignores appends without membership entries', () => {
    const h = history();
    h.appended([normalEntry(6), normalEntry(7)]);
    h.appended([]);
    expect(h.current()).toBe(base);
    expect(h.lastChangeIndex()).toBe(5);
  });

  it('knows the membership in effect at each index', () => {
    const h = history();
    h.appended([
      changeEntry(7, EntryType.JoinNoVoteNode, 4, 'n4'),
      normalEntry(8),
      changeEntry(9, EntryType.LeaveNode, 2),
    ]);
    expect(summary(h.at(5))).toBe('1,2,3');
    expect(summary(h.at(6))).toBe('1,2,3');
    expect(summary(h.at(7))).toBe('1,2,3,4L');
    expect(summary(h.at(8))).toBe('1,2,3,4L');
    expect(summary(h.at(9))).toBe('1,3,4L');
    expect(summary(h.at(100))).toBe('1,3,4L');
  });

  it('refuses an index before the base', () => {
    const h = history();
    expect(() => h.at(4)).toThrow(RaftInvariantError);
  });

  it('undoes the changes of entries replaced by a conflicting append', () => {
    const h = history();
    h.appended([
      changeEntry(6, EntryType.JoinNoVoteNode, 4, 'n4'),
      changeEntry(7, EntryType.LeaveNode, 3),
    ]);
    expect(summary(h.current())).toBe('1,2,4L');
    // A new leader replaces the log from 7 on with a normal entry: removing 3 never happened.
    h.appended([normalEntry(7)]);
    expect(summary(h.current())).toBe('1,2,3,4L');
    expect(h.lastChangeIndex()).toBe(6);
  });

  it('undoes every change at or after the first replaced entry, and applies the new ones', () => {
    const h = history();
    h.appended([
      changeEntry(6, EntryType.JoinNoVoteNode, 4, 'n4'),
      changeEntry(7, EntryType.JoinNode, 4),
    ]);
    h.appended([changeEntry(6, EntryType.LeaveNode, 2)]);
    expect(summary(h.current())).toBe('1,3');
    expect(h.lastChangeIndex()).toBe(6);
  });

  it('keeps changes before the first replaced entry', () => {
    const h = history();
    h.appended([changeEntry(6, EntryType.JoinNoVoteNode, 4, 'n4')]);
    h.appended([normalEntry(7), normalEntry(8)]);
    expect(summary(h.current())).toBe('1,2,3,4L');
  });

  it('refuses an append that would replace the base', () => {
    const h = history();
    expect(() => h.appended([normalEntry(5)])).toThrow(RaftInvariantError);
  });

  it('restarts from a snapshot on restore', () => {
    const h = history();
    h.appended([changeEntry(6, EntryType.JoinNoVoteNode, 4, 'n4')]);
    const snapshotMembership: Membership = [
      { id: 7, address: 'n7', learner: false, incarnation: 0 },
    ];
    h.restore(20, snapshotMembership);
    expect(h.current()).toBe(snapshotMembership);
    expect(h.lastChangeIndex()).toBe(20);
    expect(() => h.at(19)).toThrow(RaftInvariantError);
    h.appended([changeEntry(21, EntryType.JoinNoVoteNode, 8, 'n8')]);
    expect(summary(h.current())).toBe('7,8L');
    expect(summary(h.at(20))).toBe('7');
  });
});
