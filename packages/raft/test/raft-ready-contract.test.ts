// The durability half of the Ready contract (src/index.ts): a message that promises durable
// state (a vote grant promises the vote, an append acknowledgement promises the entries) leaves
// in the same Ready as the write that makes that state durable, or in a later one, never earlier.
import { EntryType, Role, type Entry } from '../src/types';
import { mayBeSentBeforePersist, message, MessageType, type Message } from '../src/message';
import { type Ready } from '../src/raw-node';
import { MemoryStorage } from '../src/simulation';
import { bytes, members, Network, type SentRecord } from './helpers/network';

function entry(index: number, term: number, data = 'x'): Entry {
  return { index, term, type: EntryType.Normal, data: bytes(data) };
}

/** Step 1 of the contract, done by hand for tests that hold a Ready in flight. */
function persist(storage: MemoryStorage, rd: Ready): void {
  if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot);
  storage.append(rd.entries);
  if (rd.hardState !== null) storage.setHardState(rd.hardState);
}

/** Every promise a sent message makes is backed by what its sender had stored when it left. */
function durabilityViolations(sent: readonly SentRecord[]): string[] {
  const violations: string[] = [];
  for (const s of sent) {
    const m = s.message;
    const where = `${m.from}->${m.to} ${m.type} term=${m.term} index=${m.index}`;
    if (m.type === MessageType.VoteResponse && !m.reject) {
      if (s.durableHardState.term !== m.term || s.durableHardState.vote !== m.to) {
        violations.push(`${where}: grant sent with durable vote ${s.durableHardState.vote}`);
      }
    }
    if (m.type === MessageType.Vote) {
      if (s.durableHardState.term !== m.term || s.durableHardState.vote !== m.from) {
        violations.push(`${where}: request sent before the own vote was durable`);
      }
    }
    if (m.type === MessageType.AppendResponse && !m.reject) {
      if (s.durableLastIndex < m.index || s.durableTermAtIndex === undefined) {
        violations.push(`${where}: ack sent with durable last index ${s.durableLastIndex}`);
      }
      if (s.durableHardState.term < m.term) {
        violations.push(`${where}: ack sent before its term was durable`);
      }
    }
  }
  return violations;
}

describe('Ready contract: durable state before the messages that promise it', () => {
  it('a vote grant leaves in the same Ready as the hard state that records the vote, with mustSync', () => {
    const net = new Network({ membership: members([1, 2, 3]), peers: [2] });
    const readies = net.inject({
      type: MessageType.Vote,
      from: 1,
      to: 2,
      term: 2,
      index: 1,
      logTerm: 1,
    });
    expect(readies).toHaveLength(1);
    const [rd] = readies;
    expect(rd.hardState).toEqual({ term: 2, vote: 1, commit: 1 });
    expect(rd.mustSync).toBe(true);
    expect(rd.messages).toEqual([
      expect.objectContaining({ type: MessageType.VoteResponse, to: 1, term: 2, reject: false }),
    ]);
    expect(rd.messages.some(mayBeSentBeforePersist)).toBe(false);
  });

  it('a follower acknowledges entries in the Ready that persists them, with mustSync', () => {
    const net = new Network({ membership: members([1, 2, 3]), peers: [2] });
    const readies = net.inject({
      type: MessageType.Append,
      from: 1,
      to: 2,
      term: 2,
      index: 1,
      logTerm: 1,
      entries: [entry(2, 2, 'a'), entry(3, 2, 'b')],
      commit: 1,
    });
    expect(readies).toHaveLength(1);
    const [rd] = readies;
    expect(rd.entries.map((e) => e.index)).toEqual([2, 3]);
    expect(rd.mustSync).toBe(true);
    expect(rd.messages).toEqual([
      expect.objectContaining({ type: MessageType.AppendResponse, index: 3, reject: false }),
    ]);
    expect(rd.messages.some(mayBeSentBeforePersist)).toBe(false);
  });

  it('a grant for a vote requested while a Ready is in flight leaves only in the next Ready, with its hard state', () => {
    const storage = MemoryStorage.bootstrap(members([1, 2, 3]));
    const net = new Network({
      membership: members([1, 2, 3]),
      peers: [2],
      storages: new Map([[2, storage]]),
    });
    const node = net.node(2);
    node.step(heartbeat());
    const first = node.ready();
    // The vote request arrives while the first Ready is being persisted.
    node.step(voteRequest(3, 3));
    expect(node.hasReady()).toBe(false);
    expect(first.messages.filter((m) => m.type === MessageType.VoteResponse)).toEqual([]);
    persist(storage, first);
    node.advance();
    const second = node.ready();
    expect(second.hardState).toEqual({ term: 3, vote: 3, commit: 1 });
    expect(second.mustSync).toBe(true);
    expect(second.messages).toEqual([
      expect.objectContaining({ type: MessageType.VoteResponse, to: 3, term: 3, reject: false }),
    ]);
    persist(storage, second);
    node.advance();
    expect(storage.hardState).toMatchObject({ term: 3, vote: 3 });
  });

  it('an ack for entries that arrive while a Ready is in flight leaves in the next Ready, together with those entries', () => {
    const storage = MemoryStorage.bootstrap(members([1, 2, 3]));
    const net = new Network({
      membership: members([1, 2, 3]),
      peers: [2],
      storages: new Map([[2, storage]]),
    });
    const node = net.node(2);
    node.step(append(1, [entry(2, 2, 'a')]));
    const first = node.ready();
    node.step(append(2, [entry(3, 2, 'b')]));
    expect(node.hasReady()).toBe(false);
    expect(first.entries.map((e) => e.index)).toEqual([2]);
    expect(acks(first)).toEqual([2]);
    persist(storage, first);
    node.advance();
    const second = node.ready();
    expect(second.entries.map((e) => e.index)).toEqual([3]);
    expect(acks(second)).toEqual([3]);
    expect(second.mustSync).toBe(true);
    persist(storage, second);
    node.advance();
    expect(storage.lastIndex()).toBe(3);
  });

  it('a leader counts its own new entries toward commit only after it persisted them', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.elect(1);
    const leader = net.node(1);
    const result = leader.propose([bytes('x')]);
    expect(result.ok).toBe(true);
    const rd = leader.ready();
    // Appends may leave before the leader's own write (Raft thesis 10.2.1).
    const early = rd.messages.filter(mayBeSentBeforePersist);
    expect(early.map((m) => m.to)).toEqual([2, 3]);
    net.step(2, early[0]);
    const [ack] = net.take((m) => m.type === MessageType.AppendResponse);
    leader.step(ack);
    // One follower and an unpersisted leader make no majority.
    expect(leader.basicStatus().commit).toBe(2);
    persist(net.peer(1).storage, rd);
    leader.advance();
    expect(leader.basicStatus().commit).toBe(3);
  });

  it.each([false, true])(
    'over many elections, partitions and proposals no grant or ack ever leaves ahead of its durable state (preVote %s)',
    (preVote) => {
      let grants = 0;
      let acked = 0;
      for (let seed = 1; seed <= 8; seed++) {
        const net = new Network({
          membership: members([1, 2, 3, 4, 5]),
          config: { preVote, checkQuorum: preVote },
          seed,
        });
        for (let t = 0; t < 150; t++) {
          // A rolling partition: every 30 ticks a different node is cut off.
          net.heal();
          net.isolate(1 + (Math.floor(t / 30) % 5));
          net.tickAll();
          for (const [id, peer] of net.peers) {
            if (peer.node.basicStatus().role === Role.Leader && t % 3 === 0)
              net.propose(id, `${t}`);
          }
          // Deliver in two halves so that Readies and messages interleave.
          net.deliver((m) => m.to % 2 === 0);
          net.stabilize();
        }
        expect(durabilityViolations(net.sent)).toEqual([]);
        grants += net.sent.filter(
          (s) => s.message.type === MessageType.VoteResponse && !s.message.reject,
        ).length;
        acked += net.sent.filter(
          (s) => s.message.type === MessageType.AppendResponse && !s.message.reject,
        ).length;
      }
      // The scenario exercised the rule.
      expect(grants).toBeGreaterThan(20);
      expect(acked).toBeGreaterThan(500);
    },
  );
});

function heartbeat(): Message {
  return message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 2, commit: 1 });
}

function voteRequest(from: number, term: number): Message {
  return message({ type: MessageType.Vote, from, to: 2, term, index: 1, logTerm: 1 });
}

function append(prevIndex: number, entries: Entry[]): Message {
  const logTerm = prevIndex === 1 ? 1 : 2;
  return message({
    type: MessageType.Append,
    from: 1,
    to: 2,
    term: 2,
    index: prevIndex,
    logTerm,
    entries,
    commit: 1,
  });
}

function acks(rd: Ready): number[] {
  return rd.messages
    .filter((m) => m.type === MessageType.AppendResponse && !m.reject)
    .map((m) => m.index);
}
