// Pre-vote and leader stickiness (Raft thesis 9.6 and 4.2.3), check-quorum (thesis 6.2) and
// leadership transfer (thesis 3.10).
import { MessageType } from '../src/message';
import { RaftRefusal } from '../src/raft';
import { Role, type NodeId } from '../src/types';
import { type RaftStatus } from '../src/raw-node';
import { type Rng } from '../src/rng';
import { bytes, members, Network, storageWithLog, type TestConfig } from './helpers/network';

const electionTicks = 10;

/** An Rng that always draws the largest jitter: election timeouts are 2 * electionTicks - 1. */
const slowestRng: Rng = { nextInt: (bound) => bound - 1 };

function status(net: Network, id: NodeId): RaftStatus {
  return net.node(id).status();
}

/** Ticks every node `count` times, delivering everything after each tick. */
function run(net: Network, count: number): void {
  for (let t = 0; t < count; t++) {
    net.tickAll();
    net.stabilize();
  }
}

function leaderCluster(config: TestConfig): Network {
  const net = new Network({ membership: members([1, 2, 3]), config });
  net.elect(1);
  return net;
}

describe('Raft thesis 9.6 pre-vote', () => {
  it('a pre-vote round changes neither the pre-candidate’s term nor any voter’s term or vote', () => {
    const net = new Network({ membership: members([1, 2, 3]), config: { preVote: true } });
    net.node(1).campaign();
    net.flush();
    expect(status(net, 1)).toMatchObject({ role: Role.PreCandidate, term: 1, vote: 0 });
    const requests = net.queue.filter((m) => m.type === MessageType.PreVote);
    expect(requests.map((m) => [m.to, m.term])).toEqual([
      [2, 2],
      [3, 2],
    ]);
    net.deliver((m) => m.type === MessageType.PreVote);
    for (const id of [2, 3]) {
      expect(status(net, id)).toMatchObject({ term: 1, vote: 0 });
      expect(net.peer(id).storage.hardState).toMatchObject({ term: 1, vote: 0 });
      // The voters wrote nothing: no Ready of theirs carried a hard state.
      expect(net.peer(id).readies.every((r) => r.ready.hardState === null)).toBe(true);
    }
    // The grants carry the term asked about.
    const grants = net.queue.filter((m) => m.type === MessageType.PreVoteResponse);
    expect(grants.map((m) => [m.from, m.term, m.reject])).toEqual([
      [2, 2, false],
      [3, 2, false],
    ]);
  });

  it('a pre-candidate that a majority refuses goes back to follower in its old term', () => {
    // Nodes 2 and 3 have a longer log than node 1: they refuse its pre-vote.
    const membership = members([1, 2, 3]);
    const net = new Network({
      membership,
      config: { preVote: true },
      storages: new Map([
        [2, storageWithLog({ membership, terms: [1], term: 1 })],
        [3, storageWithLog({ membership, terms: [1], term: 1 })],
      ]),
    });
    net.node(1).campaign();
    net.stabilize();
    expect(status(net, 1)).toMatchObject({ role: Role.Follower, term: 1, vote: 0 });
    for (const id of [1, 2, 3]) expect(net.peer(id).storage.hardState.term).toBe(1);
    expect(net.sent.filter((s) => s.message.type === MessageType.Vote)).toEqual([]);
  });

  it('a node rejoining after a partition does not disrupt a stable leader (the term stays)', () => {
    const net = leaderCluster({ preVote: true, checkQuorum: true });
    net.isolate(3);
    run(net, 8 * electionTicks);
    // Cut off, node 3 kept asking for pre-votes, and never moved its term.
    const preVotes = net.sent.filter((s) => s.message.type === MessageType.PreVote);
    expect(preVotes.length).toBeGreaterThan(2);
    expect(status(net, 3).term).toBe(2);
    net.heal();
    run(net, 4 * electionTicks);
    for (const id of [1, 2, 3]) expect(status(net, id)).toMatchObject({ term: 2, leader: 1 });
    expect(status(net, 1).role).toBe(Role.Leader);
  });

  it('without pre-vote, the same rejoining node does disrupt the leader (the term moves on)', () => {
    const net = leaderCluster({ preVote: false, checkQuorum: true });
    net.isolate(3);
    run(net, 8 * electionTicks);
    expect(status(net, 3).term).toBeGreaterThan(2);
    net.heal();
    run(net, 4 * electionTicks);
    expect(status(net, 1).term).toBeGreaterThan(2);
  });
});

describe('Raft thesis 4.2.3 leader stickiness', () => {
  function follower(config: TestConfig = {}): Network {
    const net = new Network({
      membership: members([1, 2, 3]),
      peers: [2],
      config: { checkQuorum: true, ...config },
      rngs: new Map([[2, slowestRng]]),
    });
    net.inject({ type: MessageType.Heartbeat, from: 1, to: 2, term: 2, commit: 1 });
    net.drop();
    return net;
  }

  it.each([MessageType.Vote, MessageType.PreVote])(
    'a follower that heard from its leader within the election timeout ignores a higher-term %s request',
    (type) => {
      const net = follower({ preVote: type === MessageType.PreVote });
      net.tick(2, electionTicks - 1);
      const readies = net.inject({ type, from: 3, to: 2, term: 3, index: 1, logTerm: 1 });
      expect(readies).toEqual([]);
      expect(status(net, 2)).toMatchObject({ term: 2, vote: 0, leader: 1 });
    },
  );

  it('a vote request from a leadership transfer is not ignored', () => {
    const net = follower();
    const readies = net.inject({
      type: MessageType.Vote,
      from: 3,
      to: 2,
      term: 3,
      index: 1,
      logTerm: 1,
      leaderTransfer: true,
    });
    expect(readies.flatMap((rd) => rd.messages)).toEqual([
      expect.objectContaining({ type: MessageType.VoteResponse, to: 3, term: 3, reject: false }),
    ]);
    expect(status(net, 2)).toMatchObject({ term: 3, vote: 3 });
  });

  it('once an election timeout passed without word from the leader, vote requests count again', () => {
    const net = follower();
    net.tick(2, electionTicks);
    // The slowest Rng keeps node 2 from campaigning itself before 2 * electionTicks - 1.
    expect(status(net, 2).role).toBe(Role.Follower);
    const readies = net.inject({
      type: MessageType.Vote,
      from: 3,
      to: 2,
      term: 3,
      index: 1,
      logTerm: 1,
    });
    expect(readies.flatMap((rd) => rd.messages)).toEqual([
      expect.objectContaining({ type: MessageType.VoteResponse, to: 3, term: 3, reject: false }),
    ]);
  });
});

describe('Raft thesis 6.2 check-quorum', () => {
  it('a leader that hears from no quorum for an election timeout steps down', () => {
    const net = leaderCluster({ checkQuorum: true });
    net.isolate(2);
    net.isolate(3);
    let steppedDownAt = 0;
    for (let t = 1; t <= 3 * electionTicks && steppedDownAt === 0; t++) {
      net.tick(1);
      if (status(net, 1).role !== Role.Leader) steppedDownAt = t;
    }
    // The followers answered during the first timeout (before the cut); the second one without
    // an answer ends the leadership.
    expect(steppedDownAt).toBeGreaterThanOrEqual(electionTicks);
    expect(steppedDownAt).toBeLessThanOrEqual(2 * electionTicks);
    expect(status(net, 1)).toMatchObject({ role: Role.Follower, term: 2, leader: 0 });
  });

  it('a leader that hears from a quorum (itself and one follower of three) keeps leading', () => {
    const net = leaderCluster({ checkQuorum: true });
    net.isolate(3);
    for (let t = 0; t < 5 * electionTicks; t++) {
      net.tick(1);
      net.tick(2);
      net.stabilize();
    }
    expect(status(net, 1)).toMatchObject({ role: Role.Leader, term: 2 });
  });

  it('without check-quorum, a leader cut off from everyone keeps leading', () => {
    const net = leaderCluster({ checkQuorum: false });
    net.isolate(2);
    net.isolate(3);
    net.tick(1, 5 * electionTicks);
    expect(status(net, 1)).toMatchObject({ role: Role.Leader, term: 2 });
  });
});

describe('Raft thesis 3.10 leadership transfer', () => {
  it('a transfer to a caught-up voter sends TimeoutNow and the target wins the next term at once', () => {
    // Pre-vote and check-quorum on: the transfer must skip both.
    const net = leaderCluster({ preVote: true, checkQuorum: true });
    expect(net.node(1).transferLeader(2)).toEqual({ ok: true });
    net.flush(1);
    expect(net.queue).toEqual([
      expect.objectContaining({ type: MessageType.TimeoutNow, from: 1, to: 2, term: 2 }),
    ]);
    const sentBefore = net.sent.length;
    net.stabilize();
    expect(status(net, 2)).toMatchObject({ role: Role.Leader, term: 3 });
    expect(status(net, 1)).toMatchObject({ role: Role.Follower, term: 3, leader: 2 });
    const campaign = net.sent.slice(sentBefore).filter((s) => s.message.from === 2);
    expect(campaign.filter((s) => s.message.type === MessageType.PreVote)).toEqual([]);
    const votes = campaign.filter((s) => s.message.type === MessageType.Vote);
    expect(votes.map((s) => [s.message.to, s.message.leaderTransfer])).toEqual([
      [1, true],
      [3, true],
    ]);
  });

  it('a transfer to a lagging voter first catches it up, then sends TimeoutNow', () => {
    const net = leaderCluster({});
    net.isolate(3);
    for (let i = 0; i < 5; i++) net.propose(1, `v${i}`);
    net.stabilize();
    const lastIndex = status(net, 1).lastIndex;
    expect(status(net, 3).lastIndex).toBeLessThan(lastIndex);
    net.heal();
    const sentBefore = net.sent.length;
    expect(net.node(1).transferLeader(3)).toEqual({ ok: true });
    net.flush(1);
    expect(net.queue.filter((m) => m.type === MessageType.TimeoutNow)).toEqual([]);
    for (let t = 0; t < electionTicks - 1 && status(net, 3).role !== Role.Leader; t++) {
      net.stabilize();
      net.tick(1);
    }
    net.stabilize();
    expect(status(net, 3)).toMatchObject({ role: Role.Leader, term: 3 });
    const toAndFrom3 = net.sent
      .slice(sentBefore)
      .map((s) => s.message)
      .filter((m) => (m.from === 1 && m.to === 3) || (m.from === 3 && m.to === 1));
    const timeoutNow = toAndFrom3.findIndex((m) => m.type === MessageType.TimeoutNow);
    expect(timeoutNow).toBeGreaterThan(0);
    // The TimeoutNow answers the acknowledgement that showed node 3 holding the whole log.
    const before = toAndFrom3.slice(0, timeoutNow);
    expect(before.filter((m) => m.from === 3).at(-1)).toMatchObject({
      type: MessageType.AppendResponse,
      from: 3,
      index: lastIndex,
      reject: false,
    });
    expect(before.some((m) => m.type === MessageType.Append && m.entries.length > 0)).toBe(true);
  });

  it('proposals are refused with TransferInProgress during a transfer, which is abandoned after an election timeout', () => {
    const net = leaderCluster({});
    net.isolate(3); // the TimeoutNow never arrives
    expect(net.node(1).transferLeader(3)).toEqual({ ok: true });
    expect(status(net, 1).leadTransferee).toBe(3);
    expect(net.node(1).propose([bytes('x')])).toEqual({
      ok: false,
      refusal: RaftRefusal.TransferInProgress,
    });
    net.tick(1, electionTicks - 1);
    expect(status(net, 1).leadTransferee).toBe(3);
    expect(net.node(1).propose([bytes('x')]).ok).toBe(false);
    net.tick(1);
    expect(status(net, 1)).toMatchObject({ role: Role.Leader, term: 2, leadTransferee: 0 });
    expect(net.node(1).propose([bytes('x')]).ok).toBe(true);
  });

  it('a transfer to a learner or to an unknown node is refused with NodeNotFound', () => {
    const net = new Network({
      membership: members([1, 2, 3], [4]),
      config: { autoPromoteLearners: false },
    });
    net.elect(1);
    expect(net.node(1).transferLeader(4)).toEqual({ ok: false, refusal: RaftRefusal.NodeNotFound });
    expect(net.node(1).transferLeader(9)).toEqual({ ok: false, refusal: RaftRefusal.NodeNotFound });
    expect(status(net, 1).leadTransferee).toBe(0);
    expect(net.node(2).transferLeader(3)).toEqual({ ok: false, refusal: RaftRefusal.NotLeader });
  });
});
