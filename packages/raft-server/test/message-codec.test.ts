// Every number a peer sends is checked against what the core and the log store can hold before it
// reaches either; an append must continue the log it claims to follow.
import type { AppendEntriesReq, EntryType, RequestVoteReq, SnapshotReq } from '@eraftkv/protocol';
import {
  appendRequestFromWire,
  appendResponseFromWire,
  membershipFromWire,
  peerNumberMax,
  voteRequestFromWire,
} from '../src/transport';
import { InvalidArgumentError } from '../src/errors';
import { snapshotBlockFromWire } from '../src/snapshot/snapshot-coordinator';
import { checkStoredNumber, storedNumberMax } from '../src/log-store/entry-codec';

function vote(fields: Partial<RequestVoteReq>): RequestVoteReq {
  return {
    prevote: false,
    term: 5,
    candidateId: 1,
    lastLogIdx: 10,
    lastLogTerm: 4,
    groupId: 1,
    clusterId: 'c',
    toId: 2,
    leaderTransfer: false,
    fromIncarnation: 1,
    toIncarnation: 2,
    ...fields,
  };
}

function append(fields: Partial<AppendEntriesReq>): AppendEntriesReq {
  return {
    leaderId: 1,
    messageIndex: 0,
    term: 5,
    prevLogIndex: 10,
    prevLogTerm: 4,
    leaderCommit: 9,
    isHeartbeat: false,
    entries: [],
    groupId: 1,
    clusterId: 'c',
    toId: 2,
    fromIncarnation: 1,
    toIncarnation: 2,
    ...fields,
  };
}

function entry(id: number, term: number): AppendEntriesReq['entries'][number] {
  return { id, term, eType: 0, dataSize: 1, data: Buffer.from('x') };
}

describe('peer numbers', () => {
  it('are at most what storage holds', () => {
    expect(peerNumberMax).toBe(2 ** 48 - 1);
    expect(storedNumberMax).toBe(2 ** 48 - 1);
  });

  it.each([2 ** 48, 2 ** 50, Number.MAX_SAFE_INTEGER, 0, -1, 1.5])(
    'refuses a vote request with term %d, naming the field',
    (term) => {
      expect(() => voteRequestFromWire(vote({ term, lastLogTerm: 1 }))).toThrow(
        InvalidArgumentError,
      );
      expect(() => voteRequestFromWire(vote({ term, lastLogTerm: 1 }))).toThrow(/^term must be/);
    },
  );

  it('takes the largest term a peer may send', () => {
    expect(voteRequestFromWire(vote({ term: peerNumberMax })).term).toBe(peerNumberMax);
  });

  it('refuses a last log term above the campaign term, and huge last log indexes', () => {
    expect(() => voteRequestFromWire(vote({ lastLogTerm: 6 }))).toThrow(
      'last_log_term 6 is above the campaign',
    );
    expect(() => voteRequestFromWire(vote({ lastLogIdx: 2 ** 48 }))).toThrow(
      /^last_log_idx must be/,
    );
    expect(() => voteRequestFromWire(vote({ candidateId: 0 }))).toThrow(/^candidate_id must be/);
  });

  it('refuses huge commit indexes and read rounds in appends, and huge numbers in answers', () => {
    expect(() => appendRequestFromWire(append({ leaderCommit: 2 ** 50 }))).toThrow(
      /^leader_commit must be/,
    );
    expect(() => appendRequestFromWire(append({ messageIndex: -3 }))).toThrow(
      /^message_index must be/,
    );
    const answer = {
      messageToken: '',
      term: 5,
      success: true,
      currentIndex: 2 ** 48,
      conflictIndex: 0,
      conflictTerm: 0,
      messageIndex: 0,
      isHeartbeat: false,
      dropped: false,
    };
    expect(() => appendResponseFromWire(answer, 2, 1)).toThrow(/current_index must be/);
  });
});

describe('the shape of an append', () => {
  it('takes entries that continue the log at prev_log_index + 1', () => {
    const m = appendRequestFromWire(append({ entries: [entry(11, 4), entry(12, 5)] }));
    expect(m.entries.map((e) => [e.index, e.term])).toEqual([
      [11, 4],
      [12, 5],
    ]);
  });

  it('refuses entries with gaps, decreasing terms or terms above the leader’s', () => {
    expect(() => appendRequestFromWire(append({ entries: [entry(12, 4)] }))).toThrow(
      'entries[0].id is 12, expected 11',
    );
    expect(() => appendRequestFromWire(append({ entries: [entry(11, 5), entry(12, 4)] }))).toThrow(
      /entries\[1\]\.term 4 is outside \[5, 5\]/,
    );
    expect(() => appendRequestFromWire(append({ entries: [entry(11, 3)] }))).toThrow(
      /entries\[0\]\.term 3 is outside \[4, 5\]/,
    );
    expect(() => appendRequestFromWire(append({ entries: [entry(11, 6)] }))).toThrow(
      /entries\[0\]\.term 6 is outside \[4, 5\]/,
    );
  });

  it('refuses a heartbeat that carries entries, and an entry of an unknown type', () => {
    expect(() =>
      appendRequestFromWire(append({ isHeartbeat: true, entries: [entry(11, 4)] })),
    ).toThrow('a heartbeat carries 1 entries');
    expect(() =>
      appendRequestFromWire(append({ entries: [{ ...entry(11, 4), eType: 9 as EntryType }] })),
    ).toThrow('entries[0].e_type 9 is not an entry type');
  });
});

describe('membership from a peer or from storage', () => {
  it('refuses a member named twice, a bad id, and an overlong address', () => {
    const member = { id: 1, address: 'a:1', learner: false, incarnation: 3 };
    expect(() => membershipFromWire({ members: [member, member] }, 'membership')).toThrow(
      'membership names a member twice',
    );
    expect(() => membershipFromWire({ members: [{ ...member, id: 0 }] }, 'membership')).toThrow(
      /^membership\.members\[0\]\.id must be/,
    );
    expect(() =>
      membershipFromWire({ members: [{ ...member, address: 'x'.repeat(301) }] }, 'membership'),
    ).toThrow('membership.members[0].address is longer than 300 bytes');
  });

  it('sorts members by id and keeps their incarnations', () => {
    expect(
      membershipFromWire(
        {
          members: [
            { id: 2, address: 'b:2', learner: true, incarnation: 7 },
            { id: 1, address: 'a:1', learner: false, incarnation: 5 },
          ],
        },
        'm',
      ).map((m) => [m.id, m.incarnation]),
    ).toEqual([
      [1, 5],
      [2, 7],
    ]);
  });
});

describe('numbers the log store writes', () => {
  it('refuses, naming the field, a number that does not fit in six bytes', () => {
    expect(checkStoredNumber(storedNumberMax, 'term')).toBe(storedNumberMax);
    expect(() => checkStoredNumber(2 ** 48, 'hard state term')).toThrow(
      'hard state term 281474976710656 cannot be stored: the log store holds 0 to 2^48-1',
    );
    expect(() => checkStoredNumber(-1, 'entry index')).toThrow(InvalidArgumentError);
  });
});

describe('snapshot blocks from the wire', () => {
  const data = Buffer.from('0123456789');
  const request = (
    fields: Partial<SnapshotReq>,
    block: Partial<NonNullable<SnapshotReq['block']>> = {},
  ): SnapshotReq => ({
    term: 5,
    leaderId: 1,
    messageToken: 't',
    snapshotIndex: 100,
    snapshotTerm: 4,
    block: {
      offset: 0,
      data,
      blockSize: data.length,
      isLastChunk: false,
      blockCrc32: 0,
      fileSize: 20,
      fileCrc32: 0,
      ...block,
    },
    groupId: 1,
    clusterId: 'c',
    toId: 2,
    membership: { members: [{ id: 1, address: 'h:1', learner: false, incarnation: 7 }] },
    fromIncarnation: 7,
    toIncarnation: 8,
    ...fields,
  });

  it('takes a block that lies within its file', () => {
    const block = snapshotBlockFromWire(request({}, { offset: 10 }));
    expect(block).toMatchObject({
      term: 5,
      leaderId: 1,
      offset: 10,
      fileSizeBytes: 20,
      meta: { index: 100, term: 4, membership: [{ id: 1, incarnation: 7 }] },
    });
  });

  it.each<[string, SnapshotReq, RegExp]>([
    ['without a block', request({ block: undefined }), /^snapshot request without a block$/],
    [
      'a snapshot term above the leader term',
      request({ snapshotTerm: 6 }),
      /^snapshot_term 6 is above the leader's term 5$/,
    ],
    ['term 0', request({ term: 0 }), /^term must be an integer from 1/],
    [
      'an index beyond storage',
      request({ snapshotIndex: 2 ** 48 }),
      /^snapshot_index must be an integer from 1/,
    ],
    [
      'a block reaching past the declared file size',
      request({}, { offset: 15 }),
      /^block\.data \(10 bytes at block\.offset 15\) reaches past block\.file_size 20$/,
    ],
    [
      'a file size beyond storage',
      request({}, { fileSize: 2 ** 48 }),
      /^block\.file_size must be an integer/,
    ],
  ])('refuses %s, naming the field', (_name, req, message) => {
    expect(() => snapshotBlockFromWire(req)).toThrow(InvalidArgumentError);
    expect(() => snapshotBlockFromWire(req)).toThrow(message);
  });
});
