// Log compaction and InstallSnapshot (Raft paper section 7): a follower that needs entries the
// leader has compacted away gets the leader's snapshot instead, installs it through Ready and
// continues from it.
import { MessageType } from '../src/message';
import { ProgressState } from '../src/progress';
import { type NodeId } from '../src/types';
import { type PeerStatus } from '../src/raw-node';
import { bytes, members, Network } from './helpers/network';

function progressOf(net: Network, leader: NodeId, id: NodeId): PeerStatus {
  const pr = net
    .node(leader)
    .status()
    .progress.find((p) => p.id === id);
  if (pr === undefined) throw new Error(`no progress for ${id}`);
  return pr;
}

/**
 * Leader 1 commits ten entries while node 3 is cut off, then compacts its log through them.
 * Returns the snapshot index.
 */
function laggingFollower(): { net: Network; snapshotIndex: number } {
  const net = new Network({ membership: members([1, 2, 3]) });
  net.elect(1);
  net.isolate(3);
  for (let i = 0; i < 10; i++) net.propose(1, `v${i}`);
  net.stabilize();
  const snapshotIndex = net.node(1).basicStatus().commit;
  expect(snapshotIndex).toBe(12);
  net.peer(1).storage.compact(snapshotIndex, net.node(1).membershipAt(snapshotIndex));
  expect(net.node(1).status().firstIndex).toBe(snapshotIndex + 1);
  net.heal();
  return { net, snapshotIndex };
}

describe('Raft 7 log compaction and snapshots', () => {
  it('a follower whose entries were compacted on the leader receives a Snapshot message', () => {
    const { net, snapshotIndex } = laggingFollower();
    net.tick(1);
    net.stabilize((m) => m.type !== MessageType.Snapshot);
    const snapshots = net.queue.filter((m) => m.type === MessageType.Snapshot);
    expect(snapshots).toEqual([
      expect.objectContaining({
        from: 1,
        to: 3,
        term: 2,
        snapshot: { index: snapshotIndex, term: 2, membership: members([1, 2, 3]) },
      }),
    ]);
    expect(progressOf(net, 1, 3)).toMatchObject({ state: ProgressState.Snapshot });
  });

  it('the follower installs it from Ready.snapshot, applies nothing below it, and continues from it after advance', () => {
    const { net, snapshotIndex } = laggingFollower();
    net.tick(1);
    net.stabilize();
    const installs = net.peer(3).readies.filter((r) => r.ready.snapshot !== null);
    expect(installs).toHaveLength(1);
    const [install] = installs;
    expect(install.ready.snapshot).toMatchObject({ index: snapshotIndex, term: 2 });
    expect(install.ready.mustSync).toBe(true);
    expect(install.ready.committedEntries).toEqual([]);
    expect(install.ready.hardState).toMatchObject({ commit: snapshotIndex });
    // The acknowledgement of the snapshot leaves with it.
    expect(install.ready.messages).toEqual([
      expect.objectContaining({
        type: MessageType.AppendResponse,
        index: snapshotIndex,
        reject: false,
      }),
    ]);
    expect(net.node(3).status()).toMatchObject({
      firstIndex: snapshotIndex + 1,
      applied: snapshotIndex,
      commit: snapshotIndex,
    });
    expect(net.peer(3).storage.currentSnapshot().index).toBe(snapshotIndex);
    // Node 3 applied the NO_OP before it was cut off, and nothing from below the snapshot since.
    expect(net.peer(3).applied.map((e) => e.index)).toEqual([2]);
    expect(progressOf(net, 1, 3)).toMatchObject({
      state: ProgressState.Replicate,
      match: snapshotIndex,
    });
    // Replication continues from the snapshot.
    const index = net.propose(1, 'after');
    net.stabilize();
    expect(net.peer(3).applied.map((e) => e.index)).toEqual([2, index]);
    expect(net.peer(3).applied.at(-1)?.data).toEqual(bytes('after'));
    expect(
      net
        .peer(3)
        .storage.allEntries()
        .map((e) => e.index),
    ).toEqual([index]);
  });

  it('while a snapshot is out, the leader sends the follower no appends', () => {
    const { net } = laggingFollower();
    net.tick(1);
    net.stabilize((m) => m.type !== MessageType.Snapshot);
    expect(net.queue.filter((m) => m.type === MessageType.Snapshot)).toHaveLength(1);
    const sentBefore = net.sent.length;
    net.propose(1, 'x');
    net.tick(1);
    net.stabilize((m) => m.type !== MessageType.Snapshot);
    const toFollower = net.sent.slice(sentBefore).filter((s) => s.message.to === 3);
    // Heartbeats go on; appends wait for the snapshot.
    expect(toFollower.map((s) => s.message.type)).toEqual([MessageType.Heartbeat]);
    expect(net.sent.slice(sentBefore).some((s) => s.message.type === MessageType.Append)).toBe(
      true,
    );
    expect(progressOf(net, 1, 3).state).toBe(ProgressState.Snapshot);
  });

  it('after reportSnapshot(id, false) the leader probes the follower again and sends a new snapshot', () => {
    const { net, snapshotIndex } = laggingFollower();
    net.tick(1);
    net.stabilize((m) => m.type !== MessageType.Snapshot);
    const lost = net.take((m) => m.type === MessageType.Snapshot);
    expect(lost).toHaveLength(1);
    net.node(1).reportSnapshot(3, false);
    expect(progressOf(net, 1, 3)).toMatchObject({ state: ProgressState.Probe });
    // The next heartbeat answer restarts the probe, which finds the entries compacted again.
    net.tick(1);
    net.stabilize((m) => m.type !== MessageType.Snapshot);
    const again = net.queue.filter((m) => m.type === MessageType.Snapshot);
    expect(again.map((m) => [m.to, m.snapshot?.index])).toEqual([[3, snapshotIndex]]);
    net.stabilize();
    expect(net.node(3).status()).toMatchObject({
      commit: snapshotIndex,
      firstIndex: snapshotIndex + 1,
    });
    expect(progressOf(net, 1, 3).state).toBe(ProgressState.Replicate);
  });

  it('a follower does not install a snapshot that its log already covers', () => {
    const net = new Network({ membership: members([1, 2, 3]) });
    net.elect(1);
    for (let i = 0; i < 3; i++) net.propose(1, `v${i}`);
    net.stabilize();
    const commit = net.node(2).basicStatus().commit;
    const readies = net.inject({
      type: MessageType.Snapshot,
      from: 1,
      to: 2,
      term: 2,
      snapshot: { index: commit, term: 2, membership: members([1, 2, 3]) },
    });
    expect(readies.some((rd) => rd.snapshot !== null)).toBe(false);
    expect(readies.flatMap((rd) => rd.messages)).toEqual([
      expect.objectContaining({ type: MessageType.AppendResponse, index: commit, reject: false }),
    ]);
    expect(net.node(2).status().firstIndex).toBe(2);
  });
});
