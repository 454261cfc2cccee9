// Unit tests named after the rules of the Raft paper (Ongaro & Ousterhout, "In Search of an
// Understandable Consensus Algorithm", sections 5.1 to 5.4), in the spirit of etcd-io/raft's
// raft_paper_test.go. Each test drives real RawNodes through the in-memory network of
// helpers/network.ts, which handles every Ready exactly as the Ready contract prescribes.
import { EntryType, Role, type NodeId } from '../src/types';
import { MessageType, type Message } from '../src/message';
import { quorumSize } from '../src/quorum';
import { type Ready } from '../src/raw-node';
import {
  bytes,
  members,
  Network,
  RecordingRng,
  storageWithLog,
  type TestConfig,
} from './helpers/network';

const electionTicks = 10;

function ids(count: number): NodeId[] {
  return Array.from({ length: count }, (_, i) => i + 1);
}

function messagesOf(readies: readonly Ready[]): Message[] {
  return readies.flatMap((rd) => [...rd.messages]);
}

function role(net: Network, id: NodeId): Role {
  return net.node(id).basicStatus().role;
}

/** A network that runs only node 1 of a group of `size`; the test plays the other nodes. */
function lone(size: number, config: TestConfig = {}): Network {
  return new Network({ membership: members(ids(size)), peers: [1], config });
}

/** Brings node 1 of a lone network into `target`, playing the other nodes' part by hand. */
function bringTo(net: Network, target: Role): void {
  switch (target) {
    case Role.Follower:
      return;
    case Role.PreCandidate:
    case Role.Candidate:
      net.node(1).campaign();
      net.flush(1);
      break;
    case Role.Leader:
      net.node(1).campaign();
      net.flush(1);
      net.inject({ type: MessageType.VoteResponse, from: 2, to: 1, term: 2 });
      break;
  }
  net.drop();
  expect(role(net, 1)).toBe(target);
}

describe('Raft 5.1 terms', () => {
  it.each([
    [Role.Follower, false],
    [Role.PreCandidate, true],
    [Role.Candidate, false],
    [Role.Leader, false],
  ])(
    'a %s that sees a higher term in an Append adopts the term and follows the sender',
    (start, preVote) => {
      const net = lone(3, { preVote });
      bringTo(net, start);
      const readies = net.inject({
        type: MessageType.Append,
        from: 3,
        to: 1,
        term: 5,
        index: 1,
        logTerm: 1,
        commit: 1,
      });
      const status = net.node(1).status();
      expect(status).toMatchObject({ role: Role.Follower, term: 5, leader: 3, vote: 0 });
      expect(readies[0].hardState).toMatchObject({ term: 5, vote: 0 });
      expect(readies[0].mustSync).toBe(true);
    },
  );

  it('a leader that sees a higher term in a vote request steps down without a leader', () => {
    const net = lone(3);
    bringTo(net, Role.Leader);
    // The requester's log (1/1) is behind the leader's (2/2, its NO_OP): the vote is refused,
    // but the term is adopted all the same.
    const readies = net.inject({
      type: MessageType.Vote,
      from: 3,
      to: 1,
      term: 5,
      index: 1,
      logTerm: 1,
    });
    expect(net.node(1).status()).toMatchObject({
      role: Role.Follower,
      term: 5,
      leader: 0,
      vote: 0,
    });
    const [response] = messagesOf(readies);
    expect(response).toMatchObject({ type: MessageType.VoteResponse, term: 5, reject: true });
  });

  it('a leader that sees a higher term in a response steps down', () => {
    const net = lone(3);
    bringTo(net, Role.Leader);
    net.inject({ type: MessageType.AppendResponse, from: 2, to: 1, term: 7, index: 1 });
    expect(net.node(1).status()).toMatchObject({ role: Role.Follower, term: 7, leader: 0 });
  });

  it('a stale-term Append is ignored: no answer, no change of term, leader or log', () => {
    const net = lone(3);
    net.inject({ type: MessageType.Heartbeat, from: 2, to: 1, term: 5, commit: 1 });
    net.drop();
    const readies = net.inject({
      type: MessageType.Append,
      from: 3,
      to: 1,
      term: 3,
      index: 1,
      logTerm: 1,
      entries: [{ index: 2, term: 3, type: EntryType.Normal, data: bytes('stale') }],
      commit: 2,
    });
    expect(readies).toEqual([]);
    expect(net.node(1).status()).toMatchObject({ term: 5, leader: 2, lastIndex: 1, commit: 1 });
  });

  it('a stale-term vote request is ignored and grants nothing', () => {
    const net = lone(3);
    net.inject({ type: MessageType.Heartbeat, from: 2, to: 1, term: 5, commit: 1 });
    net.drop();
    const readies = net.inject({
      type: MessageType.Vote,
      from: 3,
      to: 1,
      term: 4,
      index: 1,
      logTerm: 1,
    });
    expect(readies).toEqual([]);
    expect(net.node(1).status()).toMatchObject({ term: 5, vote: 0 });
  });

  it('a stale-term vote response does not count toward an election', () => {
    const net = lone(3);
    net.inject({ type: MessageType.Heartbeat, from: 2, to: 1, term: 5, commit: 1 });
    net.node(1).campaign();
    net.flush(1);
    expect(net.node(1).status()).toMatchObject({ role: Role.Candidate, term: 6 });
    net.inject({ type: MessageType.VoteResponse, from: 2, to: 1, term: 5 });
    expect(role(net, 1)).toBe(Role.Candidate);
  });

  it.each([
    ['check-quorum', { checkQuorum: true, preVote: false }],
    ['pre-vote', { checkQuorum: false, preVote: true }],
  ])(
    'with %s, a stale leader’s Append gets an AppendResponse carrying the higher term',
    (_name, config) => {
      const net = lone(3, config);
      net.inject({ type: MessageType.Heartbeat, from: 2, to: 1, term: 5, commit: 1 });
      net.drop();
      const readies = net.inject({
        type: MessageType.Append,
        from: 3,
        to: 1,
        term: 3,
        index: 1,
        logTerm: 1,
        commit: 1,
      });
      expect(messagesOf(readies)).toEqual([
        expect.objectContaining({ type: MessageType.AppendResponse, from: 1, to: 3, term: 5 }),
      ]);
      expect(net.node(1).status()).toMatchObject({ term: 5, leader: 2 });
    },
  );

  it('a stale leader that receives the higher term in an answer steps down', () => {
    // Pre-vote without check-quorum: no leader stickiness, so node 3 votes for node 2 at once.
    const config = { preVote: true, checkQuorum: false };
    const net = new Network({ membership: members([1, 2, 3]), config });
    net.elect(1);
    net.isolate(1);
    // Node 2 is elected in term 3 while node 1 is cut off and still believes it leads term 2.
    net.node(2).campaign();
    net.stabilize();
    expect(net.node(2).basicStatus()).toMatchObject({ role: Role.Leader, term: 3 });
    expect(net.node(1).basicStatus()).toMatchObject({ role: Role.Leader, term: 2 });
    net.heal();
    net.tick(1);
    net.stabilize();
    expect(net.node(1).basicStatus()).toMatchObject({ role: Role.Follower, term: 3 });
    expect(net.node(2).basicStatus()).toMatchObject({ role: Role.Leader, term: 3 });
  });
});

describe('Raft 5.2 leader election', () => {
  it.each([false, true])(
    'a follower that hears nothing for an election timeout starts an election (preVote %s)',
    (preVote) => {
      const rng = new RecordingRng(7);
      const net = new Network({
        membership: members([1, 2, 3]),
        peers: [1],
        config: { preVote },
        rngs: new Map([[1, rng]]),
      });
      const timeout = electionTicks + rng.draws[0].value;
      net.tick(1, timeout - 1);
      expect(role(net, 1)).toBe(Role.Follower);
      expect(net.queue).toEqual([]);
      net.tick(1);
      const status = net.node(1).status();
      const sent = net.take();
      if (preVote) {
        // A pre-candidate asks about the next term without moving to it.
        expect(status).toMatchObject({ role: Role.PreCandidate, term: 1, vote: 0 });
        expect(sent.map((m) => [m.type, m.to, m.term])).toEqual([
          [MessageType.PreVote, 2, 2],
          [MessageType.PreVote, 3, 2],
        ]);
      } else {
        expect(status).toMatchObject({ role: Role.Candidate, term: 2, vote: 1 });
        expect(sent.map((m) => [m.type, m.to, m.term])).toEqual([
          [MessageType.Vote, 2, 2],
          [MessageType.Vote, 3, 2],
        ]);
      }
      // The request describes the candidate's last entry (the bootstrap snapshot 1/1).
      for (const m of sent) expect(m).toMatchObject({ index: 1, logTerm: 1 });
    },
  );

  it('a pre-candidate that wins the pre-vote becomes a candidate of the next term', () => {
    const net = lone(3, { preVote: true });
    net.node(1).campaign();
    net.flush(1);
    net.drop();
    const readies = net.inject({ type: MessageType.PreVoteResponse, from: 2, to: 1, term: 2 });
    expect(net.node(1).status()).toMatchObject({ role: Role.Candidate, term: 2, vote: 1 });
    expect(messagesOf(readies).map((m) => [m.type, m.to, m.term])).toEqual([
      [MessageType.Vote, 2, 2],
      [MessageType.Vote, 3, 2],
    ]);
  });

  it.each([false, true])(
    'a candidate votes for itself and its term and vote are persisted (mustSync) before its vote requests leave (preVote %s)',
    (preVote) => {
      const net = lone(3, { preVote });
      net.node(1).campaign();
      net.flush(1);
      if (preVote) {
        net.drop();
        net.inject({ type: MessageType.PreVoteResponse, from: 3, to: 1, term: 2 });
      }
      const readies = net.peer(1).readies;
      const votesReady = readies.find((r) =>
        r.ready.messages.some((m) => m.type === MessageType.Vote),
      );
      expect(votesReady).toBeDefined();
      expect(votesReady?.ready.hardState).toEqual({ term: 2, vote: 1, commit: 1 });
      expect(votesReady?.ready.mustSync).toBe(true);
      const votes = net.sent.filter((s) => s.message.type === MessageType.Vote);
      expect(votes).toHaveLength(2);
      for (const s of votes) expect(s.durableHardState).toEqual({ term: 2, vote: 1, commit: 1 });
      // No Ready before it carried a Vote request.
      const first = readies.indexOf(votesReady!);
      for (const r of readies.slice(0, first)) {
        expect(r.ready.messages.filter((m) => m.type === MessageType.Vote)).toEqual([]);
      }
    },
  );

  it.each([3, 4, 5])(
    'a candidate in a group of %i voters wins exactly when n/2+1 voters (itself included) granted',
    (size) => {
      const net = lone(size);
      net.node(1).campaign();
      net.flush(1);
      net.drop();
      const quorum = Math.floor(size / 2) + 1;
      expect(quorumSize(size)).toBe(quorum);
      let wonWith = 0;
      for (let from = 2; from <= size && wonWith === 0; from++) {
        const readies = net.inject({ type: MessageType.VoteResponse, from, to: 1, term: 2 });
        const votes = from; // itself and voters 2..from
        if (role(net, 1) === Role.Leader) {
          wonWith = votes;
          // The new leader starts its term with a NO_OP and announces itself to every peer.
          expect(readies[0].entries).toEqual([
            { index: 2, term: 2, type: EntryType.NoOp, data: new Uint8Array(0) },
          ]);
          expect(
            messagesOf(readies)
              .filter((m) => m.type === MessageType.Append)
              .map((m) => m.to),
          ).toEqual(ids(size).slice(1));
        } else {
          expect(role(net, 1)).toBe(Role.Candidate);
        }
      }
      expect(wonWith).toBe(quorum);
    },
  );

  it.each([3, 4, 5])(
    'a candidate in a group of %i voters returns to follower in the same term once a majority rejects it',
    (size) => {
      const net = lone(size);
      net.node(1).campaign();
      net.flush(1);
      net.drop();
      // It has lost once the rejections leave fewer possible grants than a quorum.
      const rejectionsToLose = size - quorumSize(size) + 1;
      for (let k = 1; k <= rejectionsToLose; k++) {
        net.inject({ type: MessageType.VoteResponse, from: k + 1, to: 1, term: 2, reject: true });
        const expected = k < rejectionsToLose ? Role.Candidate : Role.Follower;
        expect(role(net, 1)).toBe(expected);
      }
      expect(net.node(1).status()).toMatchObject({ term: 2, leader: 0 });
    },
  );

  it('a node grants at most one vote per term: a second candidate in the same term is rejected', () => {
    const net = lone(3);
    const vote = (from: NodeId, term: number): Message[] =>
      messagesOf(
        net.inject({ type: MessageType.Vote, from, to: 1, term, index: 1, logTerm: 1 }),
      ).filter((m) => m.type === MessageType.VoteResponse);

    expect(vote(2, 2)).toEqual([expect.objectContaining({ to: 2, term: 2, reject: false })]);
    expect(net.peer(1).storage.hardState).toMatchObject({ term: 2, vote: 2 });
    expect(vote(3, 2)).toEqual([expect.objectContaining({ to: 3, term: 2, reject: true })]);
    // The same candidate asking again (a retransmission) gets the same answer.
    expect(vote(2, 2)).toEqual([expect.objectContaining({ to: 2, term: 2, reject: false })]);
    expect(net.peer(1).storage.hardState).toMatchObject({ term: 2, vote: 2 });
    // A new term frees the vote.
    expect(vote(3, 3)).toEqual([expect.objectContaining({ to: 3, term: 3, reject: false })]);
    expect(net.peer(1).storage.hardState).toMatchObject({ term: 3, vote: 3 });
  });

  it('a node that already follows a leader in this term refuses a vote in that term', () => {
    const net = lone(3);
    net.inject({ type: MessageType.Heartbeat, from: 2, to: 1, term: 2, commit: 1 });
    net.drop();
    const readies = net.inject({
      type: MessageType.Vote,
      from: 3,
      to: 1,
      term: 2,
      index: 1,
      logTerm: 1,
    });
    expect(messagesOf(readies)).toEqual([
      expect.objectContaining({ type: MessageType.VoteResponse, to: 3, reject: true }),
    ]);
  });

  it('the election timeout is drawn from the injected Rng within [electionTicks, 2 * electionTicks)', () => {
    const timeouts = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const rng = new RecordingRng(seed);
      const net = new Network({
        membership: members([1, 2, 3]),
        peers: [1],
        rngs: new Map([[1, rng]]),
      });
      let ticks = 0;
      while (role(net, 1) === Role.Follower) {
        net.tick(1);
        ticks++;
        expect(ticks).toBeLessThan(2 * electionTicks);
      }
      expect(rng.draws[0].bound).toBe(electionTicks);
      expect(ticks).toBe(electionTicks + rng.draws[0].value);
      expect(ticks).toBeGreaterThanOrEqual(electionTicks);
      timeouts.add(ticks);

      // A candidate that does not win draws a fresh timeout for its next attempt.
      const drawn = rng.draws.length;
      let again = 0;
      while (net.node(1).basicStatus().term === 2) {
        net.tick(1);
        again++;
      }
      expect(rng.draws.length).toBeGreaterThan(drawn);
      expect(again).toBe(electionTicks + rng.draws[drawn - 1].value);
    }
    // The timeouts really are spread out (split votes are unlikely).
    expect(timeouts.size).toBeGreaterThanOrEqual(5);
  });

  it('the same Rng seed gives the same election timeout', () => {
    const timeoutFor = (seed: number): number => {
      const net = new Network({
        membership: members([1, 2, 3]),
        peers: [1],
        rngs: new Map([[1, new RecordingRng(seed)]]),
      });
      let ticks = 0;
      while (role(net, 1) === Role.Follower) {
        net.tick(1);
        ticks++;
      }
      return ticks;
    };
    for (let seed = 1; seed <= 10; seed++) expect(timeoutFor(seed)).toBe(timeoutFor(seed));
  });

  it.each([
    [Role.Candidate, false],
    [Role.PreCandidate, true],
  ])(
    'a %s that receives an Append from a leader of its term becomes that leader’s follower',
    (start, preVote) => {
      const net = lone(3, { preVote });
      bringTo(net, start);
      const term = net.node(1).basicStatus().term;
      const readies = net.inject({
        type: MessageType.Append,
        from: 2,
        to: 1,
        term,
        index: 1,
        logTerm: 1,
        entries: [{ index: 2, term, type: EntryType.NoOp, data: new Uint8Array(0) }],
        commit: 1,
      });
      expect(net.node(1).status()).toMatchObject({ role: Role.Follower, term, leader: 2 });
      expect(messagesOf(readies)).toEqual([
        expect.objectContaining({ type: MessageType.AppendResponse, index: 2, reject: false }),
      ]);
    },
  );

  it.each([false, true])(
    'in a cluster left to its clocks, exactly one leader is elected per term and everyone follows it (preVote %s)',
    (preVote) => {
      for (let seed = 1; seed <= 10; seed++) {
        const net = new Network({
          membership: members([1, 2, 3, 4, 5]),
          config: { preVote, checkQuorum: preVote },
          seed,
        });
        const leaders = new Map<number, NodeId>();
        for (let t = 0; t < 60; t++) {
          net.tickAll();
          net.stabilize();
          for (const [id, peer] of net.peers) {
            const st = peer.node.basicStatus();
            if (st.role !== Role.Leader) continue;
            expect(leaders.get(st.term) ?? id).toBe(id);
            leaders.set(st.term, id);
          }
        }
        expect(leaders.size).toBeGreaterThanOrEqual(1);
        const [term, leader] = [...leaders].at(-1)!;
        for (const peer of net.peers.values()) {
          expect(peer.node.basicStatus()).toMatchObject({ term, leader });
        }
      }
    },
  );
});

describe('Raft 5.3 log replication', () => {
  it('the leader appends a proposal to its own log and sends it to every follower', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.elect(1);
    const result = net.node(1).propose([bytes('x')]);
    expect(result).toEqual({ ok: true, index: 3, term: 2 });
    const [rd] = net.flush(1);
    expect(rd.entries).toEqual([{ index: 3, term: 2, type: EntryType.Normal, data: bytes('x') }]);
    expect(rd.mustSync).toBe(true);
    const appends = rd.messages.filter((m) => m.type === MessageType.Append);
    expect(appends.map((m) => [m.to, m.index, m.logTerm, m.entries.map((e) => e.index)])).toEqual([
      [2, 2, 2, [3]],
      [3, 2, 2, [3]],
    ]);
  });

  it.each([3, 4, 5])(
    'in a group of %i voters an entry commits once a majority stores it, and not before',
    (size) => {
      const net = new Network({ membership: members(ids(size)) });
      net.elect(1);
      const index = net.propose(1, 'x');
      // Every follower stores the entry; the acknowledgements reach the leader one by one.
      net.deliver((m) => m.type === MessageType.Append);
      const acks = net.take((m) => m.type === MessageType.AppendResponse);
      expect(acks).toHaveLength(size - 1);
      const quorum = quorumSize(size);
      acks.forEach((ack, i) => {
        net.step(1, ack);
        const stored = 2 + i; // the leader and followers acked so far
        const expected = stored >= quorum ? index : index - 1;
        expect(net.node(1).basicStatus().commit).toBe(expected);
      });
    },
  );

  it('a follower learns the commit index from the leader’s next Append', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.elect(1);
    const index = net.propose(1, 'x');
    net.deliver((m) => m.type === MessageType.Append);
    net.deliver((m) => m.type === MessageType.AppendResponse);
    expect(net.node(1).basicStatus().commit).toBe(index);
    expect(net.node(2).basicStatus().commit).toBe(index - 1);
    const announce = net.queue.filter((m) => m.type === MessageType.Append && m.to === 2);
    expect(announce).toEqual([expect.objectContaining({ commit: index, entries: [] })]);
    net.stabilize();
    expect(net.node(2).basicStatus().commit).toBe(index);
    expect(net.peer(2).applied.at(-1)).toMatchObject({ index, data: bytes('x') });
  });

  it('a follower learns the commit index from a Heartbeat, never past what it stores', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.elect(1);
    const index = net.propose(1, 'x');
    net.deliver((m) => m.type === MessageType.Append && m.to === 2);
    net.deliver((m) => m.type === MessageType.AppendResponse);
    net.drop(); // the Append to node 3 and the Append that announces the commit are lost
    expect(net.node(1).basicStatus().commit).toBe(index);
    net.tick(1);
    const heartbeats = net.take((m) => m.type === MessageType.Heartbeat);
    // Node 3 does not store the entry yet: its heartbeat says only what it can commit.
    expect(heartbeats.map((m) => [m.to, m.commit])).toEqual([
      [2, index],
      [3, index - 1],
    ]);
    for (const m of heartbeats) net.step(m.to, m);
    expect(net.node(2).basicStatus().commit).toBe(index);
    expect(net.node(3).basicStatus().commit).toBe(index - 1);
  });

  describe('a follower rejects an Append whose previous entry does not match', () => {
    // The follower's log: index 1 (snapshot, term 1), 2..4 of term 1, 5..9 of term 3.
    const followerTerms = [1, 1, 1, 3, 3, 3, 3, 3];
    it.each([
      [
        'its prev term differs: the hint names the last entry of a term not above the probe',
        9,
        4,
        9,
        3,
      ],
      ['its prev term differs: the hint skips the whole term of conflicting entries', 6, 2, 4, 1],
      ['its prev index is beyond the log: the hint names the follower’s last entry', 20, 5, 9, 3],
    ])('when %s', (_case, prevIndex, prevTerm, hintIndex, hintTerm) => {
      const storage = storageWithLog({
        membership: members([1, 2, 3]),
        terms: followerTerms,
        term: 3,
      });
      const net = new Network({
        membership: members([1, 2, 3]),
        peers: [2],
        storages: new Map([[2, storage]]),
      });
      const readies = net.inject({
        type: MessageType.Append,
        from: 1,
        to: 2,
        term: 5,
        index: prevIndex,
        logTerm: prevTerm,
        entries: [{ index: prevIndex + 1, term: 5, type: EntryType.Normal, data: bytes('y') }],
        commit: prevIndex + 1,
      });
      expect(messagesOf(readies)).toEqual([
        expect.objectContaining({
          type: MessageType.AppendResponse,
          to: 1,
          term: 5,
          reject: true,
          index: prevIndex,
          rejectHint: hintIndex,
          logTerm: hintTerm,
        }),
      ]);
      // Nothing was appended and nothing committed.
      expect(readies.flatMap((rd) => [...rd.entries])).toEqual([]);
      expect(net.node(2).basicStatus()).toMatchObject({ lastIndex: 9, commit: 1 });
      expect(net.storedTerms(2)).toEqual(followerTerms);
    });
  });

  describe('a leader repairs a follower whose log diverged', () => {
    // Leader 1 (and node 3): 2..4 term 1, 5..7 term 4, 8 term 6. Follower 2: 2..4 term 1, then ten
    // entries of term 3 that no leader ever committed.
    const leaderTerms = [1, 1, 1, 4, 4, 4, 6];
    const followerTerms = [1, 1, 1, ...new Array<number>(10).fill(3)];

    function diverged(): Network {
      const membership = members([1, 2, 3]);
      return new Network({
        membership,
        storages: new Map([
          [1, storageWithLog({ membership, terms: leaderTerms, term: 6 })],
          [2, storageWithLog({ membership, terms: followerTerms, term: 3 })],
          [3, storageWithLog({ membership, terms: leaderTerms, term: 6 })],
        ]),
      });
    }

    it('with the conflict hint, the leader skips the whole conflicting term in one round trip', () => {
      const net = diverged();
      net.elect(1);
      const rejections = net.sent.filter(
        (s) => s.message.type === MessageType.AppendResponse && s.message.reject,
      );
      // One rejection (prev 8) is enough: the hint (8, term 3) sends the leader straight to 4.
      expect(rejections.map((s) => [s.message.from, s.message.index])).toEqual([[2, 8]]);
      const probes = net.sent
        .filter((s) => s.message.type === MessageType.Append && s.message.to === 2)
        .map((s) => s.message.index);
      expect(probes.slice(0, 2)).toEqual([8, 4]);
    });

    it('the follower’s conflicting suffix is truncated and replaced by the leader’s entries', () => {
      const net = diverged();
      net.elect(1);
      const expected = [...leaderTerms, 7];
      expect(net.storedTerms(1)).toEqual(expected);
      expect(net.storedTerms(2)).toEqual(expected);
      // The replacement arrived in one Ready that starts inside the stored log (a truncation).
      const rewrite = net
        .peer(2)
        .readies.find((r) => r.ready.entries.length > 0 && r.ready.entries[0].index === 5);
      expect(rewrite?.lastIndexBefore).toBe(14);
      expect(net.node(2).basicStatus()).toMatchObject({ lastIndex: 9, commit: 9 });
    });

    it('a leader never overwrites or deletes entries in its own log', () => {
      const net = diverged();
      net.elect(1);
      for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
      net.stabilize();
      // A late rejection (with a hint of a term the leader never had) changes nothing.
      net.inject({
        type: MessageType.AppendResponse,
        from: 2,
        to: 1,
        term: 7,
        index: 3,
        reject: true,
        rejectHint: 3,
        logTerm: 1,
      });
      net.stabilize();
      const leaderTerm = 7;
      expect(net.storedTerms(1)).toEqual([
        ...leaderTerms,
        ...new Array<number>(6).fill(leaderTerm),
      ]);
      for (const r of net.peer(1).readies) {
        if (r.role !== Role.Leader || r.ready.entries.length === 0) continue;
        // Every append of a leader starts right after its stored log: nothing is replaced.
        expect(r.ready.entries[0].index).toBe(r.lastIndexBefore + 1);
      }
    });
  });
});

describe('Raft 5.4.1 election restriction', () => {
  // The voter's log ends at index 4 of term 2.
  it.each([
    ['a lower last term (even with a longer log)', 1, 10, false],
    ['the same last term and a shorter log', 2, 3, false],
    ['the same last term and the same last index', 2, 4, true],
    ['the same last term and a longer log', 2, 5, true],
    ['a higher last term (even with a shorter log)', 3, 2, true],
  ])(
    'a vote request from a candidate with %s is granted only if its log is at least as up to date',
    (_case, lastTerm, lastIndex, granted) => {
      const storage = storageWithLog({ membership: members([1, 2, 3]), terms: [1, 2, 2], term: 2 });
      const net = new Network({
        membership: members([1, 2, 3]),
        peers: [1],
        storages: new Map([[1, storage]]),
      });
      const readies = net.inject({
        type: MessageType.Vote,
        from: 2,
        to: 1,
        term: 5,
        index: lastIndex,
        logTerm: lastTerm,
      });
      expect(messagesOf(readies)).toEqual([
        expect.objectContaining({
          type: MessageType.VoteResponse,
          to: 2,
          term: 5,
          reject: !granted,
        }),
      ]);
      // The term is adopted either way; the vote is recorded only when granted.
      expect(storage.hardState).toEqual({ term: 5, vote: granted ? 2 : 0, commit: 1 });
    },
  );

  it('a node that misses a committed entry cannot be elected', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.elect(1);
    net.isolate(3);
    const index = net.propose(1, 'committed');
    net.stabilize();
    expect(net.node(1).basicStatus().commit).toBe(index);
    net.heal();
    net.node(3).campaign();
    net.stabilize((m) => m.type === MessageType.Vote || m.type === MessageType.VoteResponse);
    expect(net.node(3).basicStatus()).toMatchObject({ role: Role.Follower, term: 3 });
    const answers = net.sent.filter(
      (s) => s.message.type === MessageType.VoteResponse && s.message.term === 3,
    );
    expect(answers.map((s) => [s.message.from, s.message.reject])).toEqual([
      [1, true],
      [2, true],
    ]);
  });
});

describe('Raft 5.4.2 committing entries from previous terms', () => {
  // Figure 8 of the paper, with three nodes: node 1 led term 2 and stored entry 2 (term 2) on
  // itself only; node 3 led term 3 and stored a different entry 2 (term 3) on itself only.
  function figure8(): Network {
    const membership = members([1, 2, 3]);
    return new Network({
      membership,
      // One entry per Append (entry 2 carries 10 bytes): the test sees each step on its own.
      config: { appendBytesMax: 1 },
      storages: new Map([
        [1, storageWithLog({ membership, terms: [2], term: 3, dataBytes: 10 })],
        [2, storageWithLog({ membership, terms: [], term: 3 })],
        [3, storageWithLog({ membership, terms: [3], term: 3, dataBytes: 10 })],
      ]),
    });
  }

  it('every new leader appends a NO_OP of its own term at the start of its term', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.node(1).campaign();
    net.stabilize((m) => m.type === MessageType.Vote || m.type === MessageType.VoteResponse);
    const leaderReadies = net
      .peer(1)
      .readies.filter((r) => r.ready.softState?.role === Role.Leader);
    expect(leaderReadies).toHaveLength(1);
    expect(leaderReadies[0].ready.entries).toEqual([
      { index: 2, term: 2, type: EntryType.NoOp, data: new Uint8Array(0) },
    ]);
  });

  it('a leader does not commit an entry of an earlier term by counting replicas', () => {
    const net = figure8();
    net.isolate(3);
    net.node(1).campaign();
    // Deliver one message at a time until node 2 holds entry 2 (a majority: nodes 1 and 2).
    for (let step = 0; step < 20; step++) {
      net.flush();
      const [next] = net.queue;
      net.deliver((m) => m === next);
      const st = net.node(1).status();
      if (st.progress.find((p) => p.id === 2)?.match === 2) break;
    }
    const leader = net.node(1).status();
    expect(leader).toMatchObject({ role: Role.Leader, term: 4 });
    expect(net.storedTerms(1)).toEqual([2, 4]);
    expect(net.storedTerms(2)).toEqual([2]);
    expect(leader.progress.find((p) => p.id === 2)?.match).toBe(2);
    // Entry 2 (term 2) is on a majority, yet it is not committed: node 3 could still be elected
    // with its entry 2 of term 3 and overwrite it.
    expect(leader.commit).toBe(1);
    expect(net.peer(1).applied).toEqual([]);
  });

  it('a leader commits an earlier-term entry once an entry of its own term (the NO_OP) commits', () => {
    const net = figure8();
    net.isolate(3);
    net.node(1).campaign();
    net.stabilize();
    expect(net.node(1).basicStatus()).toMatchObject({ role: Role.Leader, commit: 3 });
    expect(net.peer(1).applied.map((e) => [e.index, e.term, e.type])).toEqual([
      [2, 2, EntryType.Normal],
      [3, 4, EntryType.NoOp],
    ]);
    // Node 3's conflicting, never-committed entry is replaced once it hears from the leader.
    net.heal();
    net.tick(1);
    net.stabilize();
    expect(net.storedTerms(3)).toEqual([2, 4]);
    expect(net.node(3).basicStatus().commit).toBe(3);
  });
});
