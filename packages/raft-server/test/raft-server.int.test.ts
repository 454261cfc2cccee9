// Three (and more) RaftServers over real gRPC on 127.0.0.1 with real RocksDB: elections,
// replication, crashes, snapshots in blocks, membership changes and leadership transfer.
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGrpcPeerRpc } from '../src/transport';
import {
  openNodeIdentity,
  RaftServer,
  RaftServerBoot,
  StoppedError,
  type PeerRpc,
  type PeerTransportOptions,
} from '../src';
import { waitFor } from '@eraftkv/test-support';
import { TestCluster, type TestNode } from './cluster';
import { RecordingStateMachine } from './test-state-machine';

jest.setTimeout(120_000);

async function commandsOf(node: TestNode): Promise<string[]> {
  return node.sm.commands();
}

/** Waits until every running node has applied exactly `expected` (in order). */
async function waitForIdentical(cluster: TestCluster, expected: string[]): Promise<void> {
  await waitFor(
    async () => {
      for (const node of cluster.running()) {
        const got = await commandsOf(node);
        if (got.length !== expected.length) return false;
      }
      return true;
    },
    { timeoutMs: 30_000, what: `every node to apply ${expected.length} commands` },
  );
  for (const node of cluster.running()) {
    expect(await commandsOf(node)).toEqual(expected);
  }
}

describe('RaftServer: three nodes over gRPC', () => {
  const cluster = new TestCluster({
    tickMs: 20,
    snapshotEntries: 2000,
    compactionMarginEntries: 100,
  });
  let acked: string[] = [];

  beforeAll(async () => {
    await cluster.init();
    await cluster.startGroup(3);
  });
  afterAll(() => cluster.close());

  it('elects one leader', async () => {
    const leader = await cluster.waitForLeader();
    for (const node of cluster.running()) {
      await waitFor(() => node.server.leaderId() === leader.id, {
        timeoutMs: 5000,
        what: `node ${node.id} to learn the leader`,
      });
    }
  });

  it('commits and applies 10,000 proposals identically everywhere', async () => {
    const leader = await cluster.waitForLeader();
    const commands = Array.from({ length: 10_000 }, (_, i) => `cmd-${i}`);
    // 64 concurrent proposers, like a loaded server.
    let next = 0;
    const indexes: number[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < commands.length) {
          const command = commands[next++];
          const index = await leader.server.propose(Buffer.from(command));
          expect(typeof index).toBe('number');
          indexes.push(index ?? 0);
        }
      }),
    );
    expect(new Set(indexes).size).toBe(10_000);
    // Every node applied the same commands in the same order (the proposal order is the order
    // in which they were appended, which is the order of the indexes returned).
    const applied = await commandsOf(leader);
    expect(applied.length).toBe(10_000);
    expect(new Set(applied)).toEqual(new Set(commands));
    await waitForIdentical(cluster, applied);
    acked = applied;
    // Snapshot points were taken and the log compacted (every 2,000 entries), and no node wrote
    // a snapshot file for them: the state machine's store is the snapshot; a file is written
    // only for a follower that needs one.
    expect(leader.server.status().snapshotIndex).toBeGreaterThan(8000);
    expect(leader.server.status().firstIndex).toBeGreaterThan(2);
    for (const node of cluster.running()) {
      await waitFor(() => node.server.status().snapshotIndex > 8000, {
        timeoutMs: 10_000,
        what: `node ${node.id} to take a snapshot point`,
      });
      expect(await readdir(join(node.dataDir, 'snapshots'))).toEqual([]);
    }
  });

  it('loses no acknowledged proposal when the leader and a follower crash and restart', async () => {
    const leader = await cluster.waitForLeader();
    const follower = cluster.running().find((n) => n !== leader)!;
    // Proposals are in flight when both crash: the acknowledged ones must survive.
    const inFlight = Array.from({ length: 500 }, (_, i) =>
      leader.server.propose(Buffer.from(`crash-${i}`)).then(
        () => `crash-${i}`,
        () => null,
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 5));
    await Promise.all([leader.server.abort(), follower.server.abort()]);
    leader.running = false;
    follower.running = false;
    const ackedNow = (await Promise.all(inFlight)).filter((c): c is string => c !== null);
    await cluster.start(leader.id, null);
    await cluster.start(follower.id, null);
    const newLeader = await cluster.waitForLeader();
    // A new write through the new leader proves the group works again.
    await newLeader.server.propose(Buffer.from('after-crash'));
    const applied = await commandsOf(newLeader);
    for (const command of [...acked, ...ackedNow]) expect(applied).toContain(command);
    await waitForIdentical(cluster, applied);
    acked = applied;
  });

  it('transfers leadership to a caught-up voter', async () => {
    const leader = await cluster.waitForLeader();
    const target = cluster.running().find((n) => n !== leader)!;
    await leader.server.transferLeader(target.id);
    const newLeader = await cluster.waitForLeader();
    expect(newLeader.id).toBe(target.id);
    await newLeader.server.propose(Buffer.from('after-transfer'));
  });

  it('adds a learner, promotes it once caught up, and removes it', async () => {
    const leader = await cluster.waitForLeader();
    const learner = await cluster.bind(4);
    await cluster.start(4, null);
    const membership = await leader.server.addLearner(4, learner.address);
    // The leader asked node 4 who it is: the membership records its data dir's incarnation.
    const incarnation = learner.server.status().incarnation;
    expect(incarnation).toBeGreaterThan(0);
    expect(membership.find((m) => m.id === 4)).toEqual({
      id: 4,
      address: learner.address,
      learner: true,
      incarnation,
    });
    // The leader promotes it automatically once it has caught up.
    await waitFor(() => leader.server.status().membership.find((m) => m.id === 4 && !m.learner), {
      timeoutMs: 30_000,
      what: 'node 4 to be promoted to voter',
    });
    const expected = await commandsOf(leader);
    await waitFor(async () => (await commandsOf(learner)).length === expected.length, {
      timeoutMs: 30_000,
      what: 'node 4 to catch up',
    });
    expect(await commandsOf(learner)).toEqual(expected);
    const after = await leader.server.removeMember(4);
    expect(after.map((m) => m.id)).not.toContain(4);
    await cluster.stop(4);
    await leader.server.propose(Buffer.from('after-remove'));
  });
});

describe('RaftServer: snapshots in blocks', () => {
  it('catches up a follower far behind with a snapshot of many blocks, resuming a cut transfer', async () => {
    let blocksSent = 0;
    let cutAfterBlocks = 3;
    const offsetsSent: number[] = [];
    // The leader's peer RPCs fail once after 3 blocks, as a broken connection would.
    const createPeerRpc = (address: string, options: PeerTransportOptions): PeerRpc => {
      const rpc = createGrpcPeerRpc(address, options);
      return {
        ...rpc,
        snapshot: async (req, deadlineMs) => {
          offsetsSent.push(req.block?.offset ?? -1);
          if (blocksSent++ === cutAfterBlocks) {
            cutAfterBlocks = -1;
            const err = new Error('connection reset (injected)') as grpc.ServiceError;
            err.code = grpc.status.UNAVAILABLE;
            throw err;
          }
          return rpc.snapshot(req, deadlineMs);
        },
      };
    };
    const cluster = new TestCluster({
      tickMs: 20,
      snapshotEntries: 500,
      compactionMarginEntries: 0,
      snapshotBlockBytesMax: 16 * 1024,
      createPeerRpc,
    });
    await cluster.init();
    try {
      await cluster.startGroup(3);
      const leader = await cluster.waitForLeader();
      const lagging = cluster.running().find((n) => n !== leader)!;
      await cluster.stop(lagging.id);
      const payload = 'x'.repeat(200);
      for (let batch = 0; batch < 10; batch++) {
        await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            leader.server.propose(Buffer.from(`${batch}-${i}-${payload}`)),
          ),
        );
      }
      // The leader compacted past everything the stopped follower has.
      await waitFor(() => leader.server.status().firstIndex > 1000, {
        timeoutMs: 10_000,
        what: 'the leader to compact its log',
      });
      await cluster.start(lagging.id, null);
      const expected = await commandsOf(leader);
      await waitFor(async () => (await commandsOf(lagging)).length === expected.length, {
        timeoutMs: 60_000,
        what: 'the follower to catch up',
      });
      expect(await commandsOf(lagging)).toEqual(expected);
      // Many blocks, one injected failure, and the transfer resumed where it stopped.
      expect(blocksSent).toBeGreaterThan(10);
      const cut = offsetsSent[3];
      expect(cut).toBeGreaterThan(0);
      expect(offsetsSent[4]).toBe(cut);
      expect(lagging.server.status().snapshotIndex).toBeGreaterThan(1000);
    } finally {
      await cluster.close();
    }
  });
});

describe('RaftServer.open', () => {
  it('gives up when stopped while it opens, closing what it opened (the data dir opens again)', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'eraftkv-open-'));
    const claim = { clusterId: 'test', kind: 'kv', groupId: 1, nodeId: 1 } as const;
    const open = async (boot: RaftServerBoot): Promise<RaftServer<number>> => {
      const { identity } = await openNodeIdentity(dataDir, claim);
      const sm = await RecordingStateMachine.open(join(dataDir, 'state'));
      try {
        return await RaftServer.open<number>({
          clusterId: 'test',
          groupId: 1,
          id: 1,
          dataDir,
          incarnation: identity.incarnation,
          bootstrap: [{ id: 1, address: '127.0.0.1:1', learner: false, incarnation: 0 }],
          stateMachine: sm,
          tickMs: 20,
          boot,
        });
      } catch (err) {
        await sm.close().catch(() => undefined);
        throw err;
      }
    };
    try {
      const stopped = new RaftServerBoot();
      // The operator's Ctrl-C arrives before open() has finished.
      await stopped.stop();
      await expect(open(stopped)).rejects.toThrow(StoppedError);
      // Nothing was left open: the log's RocksDB lock is free and the node runs.
      const server = await open(new RaftServerBoot());
      await waitFor(() => server.isLeader(), { timeoutMs: 10_000, what: 'the node to lead' });
      await server.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
