// The one-line descriptions used in logs and simulation traces: traces are compared byte for
// byte, so the formats are pinned here exactly.
import {
  describeEntries,
  describeEntry,
  describeHardState,
  describeMembership,
  describeMessage,
  describeReady,
  describeSnapshot,
} from '../src/describe';
import { EntryType, Role, type Entry, type SnapshotMeta } from '../src/types';
import { message, MessageType, RefusalKind } from '../src/message';
import { type Ready } from '../src/raw-node';

function entry(index: number, term: number, type = EntryType.Normal, sizeBytes = 0): Entry {
  return { index, term, type, data: new Uint8Array(sizeBytes) };
}

const snapshot: SnapshotMeta = {
  index: 40,
  term: 6,
  membership: [
    { id: 1, address: 'a', learner: false, incarnation: 0 },
    { id: 2, address: 'b', learner: false, incarnation: 0 },
    { id: 4, address: 'd', learner: true, incarnation: 0 },
  ],
};

const emptyReady: Ready = {
  softState: null,
  hardState: null,
  entries: [],
  snapshot: null,
  committedEntries: [],
  messages: [],
  readStates: [],
  refused: [],
  mustSync: false,
};

describe('describeEntry', () => {
  it('shows term/index, type and data size', () => {
    expect(describeEntry(entry(12, 3, EntryType.Normal, 5))).toBe('3/12 normal 5B');
  });

  it('names every entry type', () => {
    expect(describeEntry(entry(1, 1, EntryType.NoOp))).toBe('1/1 noop 0B');
    expect(describeEntry(entry(2, 1, EntryType.JoinNoVoteNode, 7))).toBe('1/2 join-learner 7B');
    expect(describeEntry(entry(3, 1, EntryType.JoinNode, 7))).toBe('1/3 join 7B');
    expect(describeEntry(entry(4, 2, EntryType.LeaveNode, 7))).toBe('2/4 leave 7B');
  });
});

describe('describeEntries', () => {
  it('lists up to four entries', () => {
    expect(describeEntries([])).toBe('[]');
    expect(describeEntries([entry(1, 1), entry(2, 1, EntryType.Normal, 3)])).toBe(
      '[1/1 normal 0B, 1/2 normal 3B]',
    );
    const four = [1, 2, 3, 4].map((i) => entry(i, 2));
    expect(describeEntries(four)).toBe(
      '[2/1 normal 0B, 2/2 normal 0B, 2/3 normal 0B, 2/4 normal 0B]',
    );
  });

  it('abbreviates more than four entries to the first, the last and the count', () => {
    const five = [1, 2, 3, 4, 5].map((i) => entry(i + 10, 2, EntryType.Normal, i));
    expect(describeEntries(five)).toBe('[2/11 normal 1B ... 2/15 normal 5B (5)]');
  });
});

describe('describeMembership, describeSnapshot and describeHardState', () => {
  it('marks learners with L', () => {
    expect(describeMembership(snapshot.membership)).toBe('{1,2,4L}');
    expect(describeMembership([])).toBe('{}');
  });

  it('shows the snapshot term/index and membership', () => {
    expect(describeSnapshot(snapshot)).toBe('snap 6/40 {1,2,4L}');
  });

  it('shows term, vote and commit', () => {
    expect(describeHardState({ term: 5, vote: 2, commit: 17 })).toBe('term=5 vote=2 commit=17');
  });
});

describe('describeMessage', () => {
  it('describes an append with its prev entry, commit and entries', () => {
    const m = message({
      type: MessageType.Append,
      from: 1,
      to: 2,
      term: 3,
      logTerm: 3,
      index: 10,
      commit: 9,
      entries: [entry(11, 3, EntryType.Normal, 5)],
    });
    expect(describeMessage(m)).toBe(
      '1->2 Append term=3 prev=3/10 commit=9 entries=[3/11 normal 5B]',
    );
  });

  it('describes accepted and rejected append responses', () => {
    const base = { type: MessageType.AppendResponse, from: 2, to: 1, term: 3 } as const;
    expect(describeMessage(message({ ...base, index: 11 }))).toBe(
      '2->1 AppendResponse term=3 index=11',
    );
    expect(
      describeMessage(message({ ...base, index: 10, reject: true, logTerm: 2, rejectHint: 7 })),
    ).toBe('2->1 AppendResponse term=3 rejected 10 hint=2/7');
  });

  it('describes votes, with a transfer mark, and their answers', () => {
    expect(
      describeMessage(
        message({ type: MessageType.Vote, from: 3, to: 1, term: 4, logTerm: 3, index: 12 }),
      ),
    ).toBe('3->1 Vote term=4 last=3/12');
    expect(
      describeMessage(
        message({
          type: MessageType.Vote,
          from: 3,
          to: 1,
          term: 4,
          logTerm: 3,
          index: 12,
          leaderTransfer: true,
        }),
      ),
    ).toBe('3->1 Vote term=4 last=3/12 transfer');
    expect(
      describeMessage(
        message({ type: MessageType.PreVote, from: 3, to: 2, term: 5, logTerm: 3, index: 12 }),
      ),
    ).toBe('3->2 PreVote term=5 last=3/12');
    expect(
      describeMessage(message({ type: MessageType.VoteResponse, from: 1, to: 3, term: 4 })),
    ).toBe('1->3 VoteResponse term=4 granted');
    expect(
      describeMessage(
        message({ type: MessageType.PreVoteResponse, from: 2, to: 3, term: 5, reject: true }),
      ),
    ).toBe('2->3 PreVoteResponse term=5 rejected');
  });

  it('describes heartbeats and their answers with the read round', () => {
    expect(
      describeMessage(
        message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 3, commit: 8, context: 4 }),
      ),
    ).toBe('1->2 Heartbeat term=3 commit=8 round=4');
    expect(
      describeMessage(
        message({ type: MessageType.HeartbeatResponse, from: 2, to: 1, term: 3, context: 4 }),
      ),
    ).toBe('2->1 HeartbeatResponse term=3 round=4');
  });

  it('describes snapshots and timeouts', () => {
    expect(
      describeMessage(message({ type: MessageType.Snapshot, from: 1, to: 4, term: 6, snapshot })),
    ).toBe('1->4 Snapshot term=6 snap 6/40 {1,2,4L}');
    expect(describeMessage(message({ type: MessageType.Snapshot, from: 1, to: 4, term: 6 }))).toBe(
      '1->4 Snapshot term=6 none',
    );
    expect(
      describeMessage(message({ type: MessageType.TimeoutNow, from: 1, to: 2, term: 6 })),
    ).toBe('1->2 TimeoutNow term=6');
  });
});

describe('describeReady', () => {
  it('is empty for an empty Ready', () => {
    expect(describeReady(emptyReady)).toBe('');
  });

  it('lists the present parts, one per line, in handling order', () => {
    const rd: Ready = {
      softState: { leader: 1, role: Role.Leader },
      hardState: { term: 2, vote: 1, commit: 3 },
      entries: [entry(4, 2, EntryType.NoOp)],
      snapshot: null,
      committedEntries: [entry(3, 1, EntryType.Normal, 2)],
      messages: [
        message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 2, commit: 3, context: 0 }),
      ],
      readStates: [{ requestId: 7, index: 3 }],
      refused: [
        {
          message: message({ type: MessageType.Heartbeat, from: 3, to: 1, term: 2, commit: 9 }),
          kind: RefusalKind.Contradiction,
          reason: 'node 3 claims to lead term 2',
        },
      ],
      mustSync: true,
    };
    expect(describeReady(rd).split('\n')).toEqual([
      'soft: leader leader=1',
      'hard: term=2 vote=1 commit=3',
      'persist: [2/4 noop 0B]',
      'apply: [1/3 normal 2B]',
      'send: 1->2 Heartbeat term=2 commit=3 round=0',
      'read: #7 at 3',
      'refused: 3->1 Heartbeat term=2 commit=9 round=0: node 3 claims to lead term 2',
      'sync',
    ]);
  });

  it('shows a snapshot to install', () => {
    expect(describeReady({ ...emptyReady, snapshot, mustSync: true })).toBe(
      'install: snap 6/40 {1,2,4L}\nsync',
    );
  });

  it('shows one line per message and per read', () => {
    const rd: Ready = {
      ...emptyReady,
      softState: { leader: 0, role: Role.PreCandidate },
      messages: [
        message({ type: MessageType.PreVote, from: 2, to: 1, term: 3, logTerm: 2, index: 5 }),
        message({ type: MessageType.PreVote, from: 2, to: 3, term: 3, logTerm: 2, index: 5 }),
      ],
    };
    expect(describeReady(rd)).toBe(
      [
        'soft: pre-candidate leader=0',
        'send: 2->1 PreVote term=3 last=2/5',
        'send: 2->3 PreVote term=3 last=2/5',
      ].join('\n'),
    );
  });
});
