// ReadIndex (Raft thesis 6.4): a leader serves a linearizable read at its commit index once a
// heartbeat round acknowledged by a quorum proves it still leads, never earlier.
import { MessageType, type Message } from '../src/message';
import { RaftRefusal } from '../src/raft';
import { Role } from '../src/types';
import { type Rng } from '../src/rng';
import { members, Network, type SentRecord } from './helpers/network';

function leaderCluster(): Network {
  const net = new Network({ membership: members([1, 2, 3]) });
  net.elect(1);
  return net;
}

function isReadRound(m: Message): boolean {
  return m.type === MessageType.Heartbeat && m.context !== 0;
}

function roundHeartbeats(sent: readonly SentRecord[]): Message[] {
  return sent.map((s) => s.message).filter(isReadRound);
}

describe('Raft thesis 6.4 ReadIndex', () => {
  it('a read is released only once a quorum acknowledged a heartbeat round, at the commit index when the round started', () => {
    const net = leaderCluster();
    const commitAtStart = net.node(1).basicStatus().commit;
    expect(net.node(1).readIndex(7)).toEqual({ ok: true });
    net.flush(1);
    const round = net.take(isReadRound);
    expect(round.map((m) => m.to)).toEqual([2, 3]);
    expect(new Set(round.map((m) => m.context)).size).toBe(1);
    // The commit index moves on while the round is out: the read keeps the index it started at.
    const index = net.propose(1, 'later');
    net.stabilize();
    expect(net.node(1).basicStatus().commit).toBe(index);
    expect(net.peer(1).readStates).toEqual([]);
    // One follower's answer makes a quorum with the leader.
    net.step(2, round[0]);
    expect(net.peer(1).readStates).toEqual([]);
    net.deliver((m) => m.type === MessageType.HeartbeatResponse);
    expect(net.peer(1).readStates).toEqual([{ requestId: 7, index: commitAtStart }]);
    // The second answer releases nothing more.
    net.step(3, round[1]);
    net.stabilize();
    expect(net.peer(1).readStates).toHaveLength(1);
  });

  it('a read requested before the leader committed an entry of its term waits for that commit', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.node(1).campaign();
    net.stabilize((m) => m.type === MessageType.Vote || m.type === MessageType.VoteResponse);
    expect(net.node(1).basicStatus()).toMatchObject({ role: Role.Leader, commit: 1 });
    expect(net.node(1).readIndex(1)).toEqual({ ok: true });
    net.flush(1);
    // No round starts while the commit index might still be behind an earlier leader's.
    expect(net.queue.filter(isReadRound)).toEqual([]);
    net.stabilize((m) => m.type === MessageType.Append || m.type === MessageType.AppendResponse);
    expect(net.node(1).basicStatus().commit).toBe(2);
    expect(net.queue.filter(isReadRound).map((m) => m.to)).toEqual([2, 3]);
    net.stabilize();
    // Released at the NO_OP's index, not at the commit index the leader started with.
    expect(net.peer(1).readStates).toEqual([{ requestId: 1, index: 2 }]);
  });

  it('reads waiting for the first commit of the term all share one heartbeat round', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.node(1).campaign();
    net.stabilize((m) => m.type === MessageType.Vote || m.type === MessageType.VoteResponse);
    for (let id = 1; id <= 5; id++) expect(net.node(1).readIndex(id).ok).toBe(true);
    net.stabilize();
    expect(roundHeartbeats(net.sent)).toHaveLength(2); // one round, two followers
    expect(net.peer(1).readStates).toEqual(
      [1, 2, 3, 4, 5].map((requestId) => ({ requestId, index: 2 })),
    );
  });

  it('reads that arrive while a round is in flight share the next round: a burst of N reads costs two rounds', () => {
    const net = leaderCluster();
    const sentBefore = net.sent.length;
    for (let id = 1; id <= 10; id++) expect(net.node(1).readIndex(id).ok).toBe(true);
    net.stabilize();
    const heartbeats = roundHeartbeats(net.sent.slice(sentBefore));
    expect(heartbeats).toHaveLength(4); // two rounds, two followers each
    expect(new Set(heartbeats.map((m) => m.context)).size).toBe(2);
    expect(net.peer(1).readStates.map((r) => r.requestId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('a follower refuses a read with NotLeader', () => {
    const net = leaderCluster();
    expect(net.node(2).readIndex(1)).toEqual({ ok: false, refusal: RaftRefusal.NotLeader });
  });

  it('a single-node leader releases a read at once, without any message', () => {
    const net = new Network({ membership: members([1]) });
    net.node(1).campaign();
    // Before its NO_OP is persisted and committed, the read waits.
    expect(net.node(1).readIndex(1)).toEqual({ ok: true });
    net.flush();
    expect(net.peer(1).readStates).toEqual([{ requestId: 1, index: 2 }]);
    expect(net.node(1).readIndex(2)).toEqual({ ok: true });
    const [rd] = net.flush();
    expect(rd.readStates).toEqual([{ requestId: 2, index: 2 }]);
    expect(net.sent).toEqual([]);
  });

  it('a round acknowledged only by learners does not release the read', () => {
    const net = new Network({
      membership: members([1, 2, 3], [4]),
      config: { autoPromoteLearners: false },
    });
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    net.node(1).readIndex(1);
    net.stabilize();
    const answers = net.sent.filter(
      (s) => s.message.type === MessageType.HeartbeatResponse && s.message.context !== 0,
    );
    expect(answers.map((s) => s.message.from)).toEqual([4]);
    expect(net.peer(1).readStates).toEqual([]);
  });

  it.each(['a higher term', 'check-quorum'])(
    'pending reads are dropped when leadership is lost (through %s), even if the round is acknowledged later',
    (how) => {
      // Nodes 2 and 3 draw the longest election timeout, so that they never campaign here.
      const slowest: Rng = { nextInt: (bound) => bound - 1 };
      const net = new Network({
        membership: members([1, 2, 3]),
        config: { checkQuorum: true },
        rngs: new Map([
          [2, slowest],
          [3, slowest],
        ]),
      });
      net.elect(1);
      net.node(1).readIndex(1);
      net.flush(1);
      net.deliver(isReadRound);
      const answers = net.take((m) => m.type === MessageType.HeartbeatResponse);
      expect(answers).toHaveLength(2);
      if (how === 'a higher term') {
        net.inject({ type: MessageType.Heartbeat, from: 3, to: 1, term: 3, commit: 2 });
      } else {
        net.isolate(2);
        net.isolate(3);
        net.tick(1, 20);
        net.heal();
      }
      expect(net.node(1).basicStatus().role).toBe(Role.Follower);
      for (const m of answers) net.step(1, m);
      expect(net.peer(1).readStates).toEqual([]);
      // Node 1 leads again later (once the others' leases ran out): only reads asked in that
      // term are ever released.
      net.drop();
      net.tick(2, 10);
      net.tick(3, 10);
      net.drop();
      net.node(1).campaign();
      net.stabilize();
      expect(net.node(1).basicStatus().role).toBe(Role.Leader);
      net.node(1).readIndex(2);
      net.stabilize();
      expect(net.peer(1).readStates.map((r) => r.requestId)).toEqual([2]);
    },
  );
});
