// Membership changes (Raft paper section 6, refined by the thesis, chapter 4: one server at a
// time, each change in effect as soon as its entry is appended, learners that catch up before
// they vote).
import { EntryType, Role, type Membership, type NodeId } from '../src/types';
import { MembershipChangeKind, RaftRefusal } from '../src/raft';
import { MessageType } from '../src/message';
import { MemoryStorage } from '../src/simulation';
import { bytes, members, Network, type TestConfig } from './helpers/network';

const initial = members([1, 2, 3]);

function cluster(config: TestConfig = {}, membership: Membership = initial): Network {
  const net = new Network({ membership, config });
  net.elect(1);
  return net;
}

function membershipOf(net: Network, id: NodeId): string {
  return net
    .node(id)
    .status()
    .membership.map((m) => (m.learner ? `${m.id}L` : `${m.id}`))
    .join(',');
}

/** Starts node `id` as a new, empty member (it knows only the initial membership). */
function join(net: Network, id: NodeId, config: TestConfig = {}): void {
  net.addPeer(id, MemoryStorage.bootstrap(initial), config);
}

function change(net: Network, kind: MembershipChangeKind, nodeId: NodeId): number {
  const result = net
    .node(1)
    .proposeMembershipChange(kind, { nodeId, address: `n${nodeId}`, incarnation: 0 });
  if (!result.ok) throw new Error(`membership change refused: ${result.refusal}`);
  net.flush(1);
  return result.index;
}

describe('Raft 6 membership changes', () => {
  it('a change takes effect on the leader as soon as it is appended, before it commits', () => {
    const net = cluster();
    net.isolate(3);
    const index = change(net, MembershipChangeKind.AddVoter, 4);
    expect(membershipOf(net, 1)).toBe('1,2,3,4');
    net.stabilize();
    // Node 2 applies the change on append too, long before it commits.
    expect(membershipOf(net, 2)).toBe('1,2,3,4');
    // The entry itself is counted under the new membership: nodes 1 and 2 are two of four
    // voters, no majority, although they would be two of the three old voters.
    expect(net.node(1).basicStatus().commit).toBe(index - 1);
    net.heal();
    net.tick(1);
    net.stabilize();
    expect(net.node(1).basicStatus().commit).toBe(index);
  });

  it('only one change at a time: a second is refused with MembershipChangePending until the first commits', () => {
    const net = cluster({ autoPromoteLearners: false });
    change(net, MembershipChangeKind.AddLearner, 4);
    const second = net.node(1).proposeMembershipChange(MembershipChangeKind.AddLearner, {
      nodeId: 5,
      address: 'n5',
      incarnation: 0,
    });
    expect(second).toEqual({ ok: false, refusal: RaftRefusal.MembershipChangePending });
    // Ordinary proposals are not held up.
    expect(net.node(1).propose([bytes('x')]).ok).toBe(true);
    net.stabilize();
    const third = net.node(1).proposeMembershipChange(MembershipChangeKind.AddLearner, {
      nodeId: 5,
      address: 'n5',
      incarnation: 0,
    });
    expect(third.ok).toBe(true);
    expect(membershipOf(net, 1)).toBe('1,2,3,4L,5L');
  });

  it('a learner never campaigns, however long it hears nothing', () => {
    const net = new Network({ membership: members([1, 2], [3]), peers: [3] });
    net.tick(3, 100);
    expect(net.node(3).basicStatus()).toMatchObject({ role: Role.Follower, term: 1 });
    expect(net.sent).toEqual([]);
  });

  it('a candidate asks only voters for their votes, and a learner’s grant does not count', () => {
    const net = new Network({ membership: members([1, 2, 3], [4]), peers: [1] });
    net.node(1).campaign();
    net.flush(1);
    const requests = net.take();
    expect(requests.map((m) => [m.type, m.to])).toEqual([
      [MessageType.Vote, 2],
      [MessageType.Vote, 3],
    ]);
    net.inject({ type: MessageType.VoteResponse, from: 4, to: 1, term: 2 });
    expect(net.node(1).basicStatus().role).toBe(Role.Candidate);
    net.inject({ type: MessageType.VoteResponse, from: 2, to: 1, term: 2 });
    expect(net.node(1).basicStatus().role).toBe(Role.Leader);
  });

  it('a learner’s acknowledgement does not count toward commit', () => {
    const net = cluster({ autoPromoteLearners: false }, members([1, 2, 3], [4]));
    net.isolate(2);
    net.isolate(3);
    const index = net.propose(1, 'x');
    net.stabilize();
    expect(net.node(4).basicStatus().lastIndex).toBe(index);
    expect(net.node(1).basicStatus().commit).toBe(index - 1);
    net.heal();
    net.tick(1);
    net.stabilize();
    expect(net.node(1).basicStatus().commit).toBe(index);
  });

  it('a learner is promoted automatically once it is within learnerCatchUpEntriesMax entries of the leader', () => {
    const catchUp = 5;
    // One entry per Append, so that the learner catches up in many small steps.
    const net = cluster({ appendBytesMax: 1, learnerCatchUpEntriesMax: catchUp });
    for (let i = 0; i < 20; i++) net.propose(1, 'v');
    net.stabilize();
    join(net, 4);
    const joinIndex = change(net, MembershipChangeKind.AddLearner, 4);
    expect(membershipOf(net, 1)).toBe('1,2,3,4L');
    const behindAcks: number[] = [];
    let promotedAt: { index: number; learnerMatch: number } | null = null;
    for (let step = 0; step < 500 && promotedAt === null; step++) {
      const [next] = net.queue;
      if (next === undefined) break;
      net.deliver((m) => m === next);
      const leader = net.node(1).status();
      if (next.type === MessageType.AppendResponse && next.from === 4 && !next.reject) {
        if (joinIndex - next.index > catchUp) behindAcks.push(next.index);
      }
      if (leader.membership.some((m) => m.id === 4 && !m.learner)) {
        promotedAt = {
          index: leader.lastIndex,
          learnerMatch: leader.progress.find((p) => p.id === 4)!.match,
        };
      }
    }
    // While it was far behind it acknowledged entries and stayed a learner.
    expect(behindAcks.length).toBeGreaterThan(3);
    expect(promotedAt).not.toBeNull();
    const promotion = promotedAt!;
    expect(promotion.index - 1 - promotion.learnerMatch).toBeLessThanOrEqual(catchUp);
    const promotionEntry = net.node(1).status();
    expect(promotionEntry.lastIndex).toBe(promotion.index);
    net.stabilize();
    for (const id of [1, 2, 3, 4]) expect(membershipOf(net, id)).toBe('1,2,3,4');
    expect(
      net
        .peer(4)
        .applied.filter((e) => e.type === EntryType.JoinNode)
        .map((e) => e.index),
    ).toEqual([promotion.index]);
  });

  it('a learner that caught up before its join committed is still promoted in an idle cluster', () => {
    const net = cluster();
    join(net, 4);
    const joinIndex = change(net, MembershipChangeKind.AddLearner, 4);
    // The learner is fast and the voters slow: it has the whole log before the join commits.
    net.stabilize((m) => m.to === 4 || m.from === 4);
    expect(net.node(4).basicStatus().lastIndex).toBe(joinIndex);
    expect(net.node(1).basicStatus().commit).toBe(joinIndex - 1);
    net.stabilize();
    expect(net.node(1).basicStatus().commit).toBeGreaterThanOrEqual(joinIndex);
    // Nothing else is proposed; heartbeats go on.
    for (let t = 0; t < 5; t++) {
      net.tick(1);
      net.stabilize();
    }
    for (const id of [1, 2, 3, 4]) expect(membershipOf(net, id)).toBe('1,2,3,4');
  });

  it('a leader that removes itself keeps leading until the removal commits, then steps down', () => {
    const net = cluster();
    const sentBefore = net.sent.length;
    const index = change(net, MembershipChangeKind.Remove, 1);
    expect(membershipOf(net, 1)).toBe('2,3');
    expect(net.node(1).basicStatus().role).toBe(Role.Leader);
    expect(net.node(1).propose([bytes('x')])).toEqual({ ok: false, refusal: RaftRefusal.Removed });
    net.stabilize();
    expect(net.node(1).basicStatus()).toMatchObject({ role: Role.Follower, leader: 0 });
    expect(net.node(1).basicStatus().commit).toBeGreaterThanOrEqual(index);
    // The remaining voters committed the removal and elect a leader among themselves; the
    // removed node never campaigns.
    for (let t = 0; t < 40; t++) {
      net.tickAll();
      net.stabilize();
    }
    const leaders = [2, 3].filter((id) => net.node(id).basicStatus().role === Role.Leader);
    expect(leaders).toHaveLength(1);
    expect(net.node(1).basicStatus().role).toBe(Role.Follower);
    const campaigning = net.sent
      .slice(sentBefore)
      .filter((s) => s.message.from === 1 && s.message.type === MessageType.Vote);
    expect(campaigning).toEqual([]);
    expect(
      net
        .node(leaders[0])
        .status()
        .membership.map((m) => m.id),
    ).toEqual([2, 3]);
  });

  it('a leader that removed itself and lost leadership before the removal committed still lets the group elect a leader', () => {
    // Two voters: the removed leader holds the only copy of its removal. It must be able to
    // campaign (counting the new configuration's votes) or node 2 could never win: node 1's log
    // is more up to date, and a node outside its own configuration would never campaign.
    const net = cluster({ checkQuorum: true, preVote: true }, members([1, 2]));
    net.isolate(1);
    const index = change(net, MembershipChangeKind.Remove, 1);
    expect(membershipOf(net, 1)).toBe('2');
    // Check-quorum makes the isolated leader step down; its messages are lost, so the removal
    // is stored on node 1 alone and committed nowhere.
    for (let t = 0; t < 30 && net.node(1).basicStatus().role === Role.Leader; t++) {
      net.tickAll();
      net.stabilize();
    }
    expect(net.node(1).basicStatus().role).toBe(Role.Follower);
    expect(net.node(1).basicStatus().commit).toBeLessThan(index);
    net.heal();
    for (let t = 0; t < 200; t++) {
      net.tickAll();
      net.stabilize();
      if (net.node(2).basicStatus().role === Role.Leader) break;
    }
    expect(net.node(2).basicStatus().role).toBe(Role.Leader);
    expect(net.node(2).basicStatus().commit).toBeGreaterThanOrEqual(index);
    expect(membershipOf(net, 2)).toBe('2');
    expect(net.node(1).basicStatus().role).toBe(Role.Follower);
  });

  it('a new leader changes membership only once an entry of its own term has committed', () => {
    // Otherwise leaders of two terms could each append a change to the same base configuration,
    // and the two new configurations would not need to share a majority.
    const net = cluster();
    net.node(2).campaign();
    // Node 2 wins, but its NO_OP has not reached anyone yet.
    net.stabilize((m) => m.type !== MessageType.Append && m.type !== MessageType.AppendResponse);
    expect(net.node(2).basicStatus().role).toBe(Role.Leader);
    const early = net.node(2).proposeMembershipChange(MembershipChangeKind.AddLearner, {
      nodeId: 4,
      address: 'n4',
      incarnation: 0,
    });
    expect(early).toEqual({ ok: false, refusal: RaftRefusal.MembershipChangePending });
    net.stabilize();
    const later = net.node(2).proposeMembershipChange(MembershipChangeKind.AddLearner, {
      nodeId: 4,
      address: 'n4',
      incarnation: 0,
    });
    expect(later.ok).toBe(true);
  });

  it('a membership entry that is truncated takes its change back', () => {
    const net = cluster({ autoPromoteLearners: false });
    net.isolate(1);
    const index = change(net, MembershipChangeKind.AddLearner, 4);
    expect(membershipOf(net, 1)).toBe('1,2,3,4L');
    // Node 2 is elected without the entry and writes its own NO_OP at that index.
    net.node(2).campaign();
    net.stabilize();
    expect(net.node(2).basicStatus()).toMatchObject({ role: Role.Leader, term: 3 });
    net.heal();
    net.tick(2);
    net.stabilize();
    expect(net.node(1).basicStatus()).toMatchObject({ role: Role.Follower, leader: 2 });
    expect(
      net
        .peer(1)
        .storage.allEntries()
        .find((e) => e.index === index),
    ).toMatchObject({
      term: 3,
      type: EntryType.NoOp,
    });
    expect(membershipOf(net, 1)).toBe('1,2,3');
  });

  it('membership requests are checked: existing members, unknown nodes and the last voter', () => {
    const solo = cluster({ autoPromoteLearners: false }, members([1], [2]));
    const node = solo.node(1);
    expect(
      node.proposeMembershipChange(MembershipChangeKind.Remove, {
        nodeId: 1,
        address: '',
        incarnation: 0,
      }),
    ).toEqual({ ok: false, refusal: RaftRefusal.LastVoter });
    expect(
      node.proposeMembershipChange(MembershipChangeKind.AddLearner, {
        nodeId: 2,
        address: '',
        incarnation: 0,
      }),
    ).toEqual({ ok: false, refusal: RaftRefusal.NodeExists });
    expect(
      node.proposeMembershipChange(MembershipChangeKind.Promote, {
        nodeId: 9,
        address: '',
        incarnation: 0,
      }),
    ).toEqual({ ok: false, refusal: RaftRefusal.NodeNotFound });
    const net = cluster();
    expect(
      net.node(2).proposeMembershipChange(MembershipChangeKind.AddLearner, {
        nodeId: 4,
        address: '',
        incarnation: 0,
      }),
    ).toEqual({ ok: false, refusal: RaftRefusal.NotLeader });
  });
});
