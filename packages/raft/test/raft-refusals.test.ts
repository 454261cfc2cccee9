// Messages that no correct peer sends (forged, corrupted, or from a node that lost what it
// acknowledged) must change nothing and must not stop the node: the core refuses them, reports
// them in Ready.refused, and carries on.
import { MessageType, RefusalKind, type RefusedMessage } from '../src/message';
import { Role } from '../src/types';
import { type Ready } from '../src/raw-node';
import { members, Network } from './helpers/network';

function refusedIn(readies: readonly Ready[]): RefusedMessage[] {
  return readies.flatMap((rd) => [...rd.refused]);
}

/** A group of three led by node 1 in term 2, with a few entries committed everywhere. */
function ledGroup(): Network {
  const net = new Network({ membership: members([1, 2, 3]) });
  net.elect(1);
  for (const data of ['a', 'b', 'c']) net.propose(1, data);
  net.stabilize();
  return net;
}

describe('the core refuses messages no correct peer sends', () => {
  it('a follower refuses a heartbeat that asks it to commit beyond its log, and tells the leader', () => {
    const net = ledGroup();
    const follower = net.node(2).status();
    const readies = net.inject({
      type: MessageType.Heartbeat,
      from: 1,
      to: 2,
      term: follower.term,
      commit: follower.lastIndex + 5,
      context: 9,
    });
    expect(refusedIn(readies)).toEqual([
      expect.objectContaining({ kind: RefusalKind.LostEntries }),
    ]);
    expect(refusedIn(readies)[0].reason).toMatch(
      `it asks to commit ${follower.lastIndex + 5}, beyond this node's last index ${follower.lastIndex}`,
    );
    // Nothing was committed, and the answer is a rejection that confirms no read round.
    expect(net.node(2).status().commit).toBe(follower.commit);
    const answer = net.queue.find((m) => m.type === MessageType.HeartbeatResponse && m.from === 2);
    expect(answer).toMatchObject({ reject: true, index: follower.lastIndex, context: 0 });

    // The leader treats it as an error, not as progress: its view of node 2 does not move.
    const matchBefore = net
      .node(1)
      .status()
      .progress.find((p) => p.id === 2)?.match;
    const leaderReadies = net.step(1, answer!);
    expect(refusedIn(leaderReadies)).toEqual([
      expect.objectContaining({ kind: RefusalKind.PeerLostEntries }),
    ]);
    expect(refusedIn(leaderReadies)[0].reason).toMatch(/node 2 lost entries it acknowledged/);
    expect(
      net
        .node(1)
        .status()
        .progress.find((p) => p.id === 2)?.match,
    ).toBe(matchBefore);
    expect(net.node(1).status().role).toBe(Role.Leader);
  });

  it('a leader refuses an append from another node claiming its own term, and stays leader', () => {
    const net = ledGroup();
    const leader = net.node(1).status();
    const readies = net.inject({
      type: MessageType.Append,
      from: 3,
      to: 1,
      term: leader.term,
      index: leader.lastIndex,
      logTerm: leader.term,
      commit: leader.commit,
      entries: [
        { index: leader.lastIndex + 1, term: leader.term, type: 0, data: new Uint8Array(1) },
      ],
    });
    expect(refusedIn(readies)).toEqual([
      expect.objectContaining({ kind: RefusalKind.Contradiction }),
    ]);
    expect(refusedIn(readies)[0].reason).toMatch(`node 3 claims to lead term ${leader.term}`);
    expect(net.node(1).status()).toMatchObject({
      role: Role.Leader,
      term: leader.term,
      lastIndex: leader.lastIndex,
    });
  });

  it('a follower keeps its committed entries when an append tries to replace them', () => {
    const net = ledGroup();
    const follower = net.node(2).status();
    const committed = follower.commit;
    net.inject({
      type: MessageType.Append,
      from: 1,
      to: 2,
      term: follower.term,
      index: committed - 1,
      logTerm: net.peer(2).storage.term(committed - 1)!,
      commit: committed,
      entries: [{ index: committed, term: follower.term + 1, type: 0, data: new Uint8Array(1) }],
    });
    expect(net.node(2).status()).toMatchObject({
      commit: committed,
      lastIndex: follower.lastIndex,
    });
    expect(net.peer(2).storage.term(committed)).toBe(follower.term);
    // The answer only says where the follower's known-good log ends.
    const answer = net.queue.find((m) => m.from === 2 && m.type === MessageType.AppendResponse);
    expect(answer).toMatchObject({ reject: false, index: committed });
  });

  it('a leader refuses an acknowledgement of entries it never had', () => {
    const net = ledGroup();
    const leader = net.node(1).status();
    const readies = net.inject({
      type: MessageType.AppendResponse,
      from: 2,
      to: 1,
      term: leader.term,
      index: leader.lastIndex + 100,
    });
    expect(refusedIn(readies)).toEqual([
      expect.objectContaining({ kind: RefusalKind.Contradiction }),
    ]);
    expect(
      net
        .node(1)
        .status()
        .progress.find((p) => p.id === 2)?.match,
    ).toBe(leader.lastIndex);
    expect(net.node(1).status().commit).toBe(leader.commit);
    // The group carries on.
    net.propose(1, 'after');
    net.stabilize();
    expect(net.node(2).status().commit).toBe(leader.lastIndex + 1);
  });
});

describe('terms far ahead', () => {
  const jump = 1000;

  it('a node that follows a live leader refuses a term more than termJumpMax above its own', () => {
    const net = new Network({ membership: members([1, 2, 3]), config: { termJumpMax: jump } });
    net.elect(1);
    const term = net.node(2).status().term;
    const readies = net.inject({
      type: MessageType.Vote,
      from: 3,
      to: 2,
      term: term + jump + 1,
      index: 100,
      logTerm: term + jump + 1,
      leaderTransfer: true,
    });
    expect(refusedIn(readies)).toEqual([expect.objectContaining({ kind: RefusalKind.TermJump })]);
    expect(net.node(2).status()).toMatchObject({ term, leader: 1 });
    // A jump of exactly termJumpMax is taken.
    net.inject({ type: MessageType.Vote, from: 3, to: 2, term: term + jump, leaderTransfer: true });
    expect(net.node(2).status().term).toBe(term + jump);
  });

  it('a node without a leader takes any term, so that it can catch up with its group', () => {
    const net = new Network({ membership: members([1, 2, 3]), config: { termJumpMax: jump } });
    const readies = net.inject({
      type: MessageType.Heartbeat,
      from: 1,
      to: 2,
      term: 5 * jump,
      commit: 0,
    });
    expect(refusedIn(readies)).toEqual([]);
    expect(net.node(2).status()).toMatchObject({ term: 5 * jump, leader: 1 });
  });

  it('a node at termMax does not campaign: storage could not record the next term', () => {
    const net = new Network({ membership: members([1, 2, 3]), config: { termMax: 3 } });
    net.inject({ type: MessageType.Heartbeat, from: 1, to: 2, term: 3, commit: 0 });
    net.node(2).campaign();
    net.flush(2);
    expect(net.node(2).status()).toMatchObject({ term: 3, role: Role.Follower });
  });
});
