// Disk faults and observability of RaftServer: a failed sync stops a node without ever
// acknowledging, and /metrics and /health tell the truth.
import { startHttpEndpoint, StoppedError, type HttpEndpoint, type StorageEngine } from '../src';
import { waitFor } from '@eraftkv/test-support';
import { TestCluster } from './cluster';

jest.setTimeout(60_000);

/** Wraps a log engine so that a test can make its writes fail, as a dying disk would. */
function faultyEngines(): {
  wrap: (id: number) => (engine: StorageEngine) => StorageEngine;
  failing: Set<number>;
} {
  const failing = new Set<number>();
  return {
    failing,
    wrap: (id) => (engine) => ({
      path: engine.path,
      get: (key) => engine.get(key),
      getMany: (keys) => engine.getMany(keys),
      write: (ops, options) =>
        failing.has(id)
          ? Promise.reject(new Error(`EIO: fsync failed (injected on node ${id})`))
          : engine.write(ops, options),
      iterate: (range) => engine.iterate(range),
      verifyChecksums: () => engine.verifyChecksums(),
      deleteRange: (range) => engine.deleteRange(range),
      approximateSizeBytes: (range) => engine.approximateSizeBytes(range),
      close: () => engine.close(),
    }),
  };
}

describe('RaftServer disk faults', () => {
  const faults = faultyEngines();
  const cluster = new TestCluster({ tickMs: 20 });

  beforeAll(async () => {
    await cluster.init();
    const nodes = [1, 2, 3];
    for (const id of nodes) await cluster.bind(id);
    const members = nodes.map((id) => ({
      id,
      address: cluster.nodes.get(id)!.address,
      learner: false,
      incarnation: 0,
    }));
    // Together: each new member waits for the others to answer before it bootstraps.
    await Promise.all(
      nodes.map((id) => cluster.start(id, members, { wrapLogEngine: faults.wrap(id) })),
    );
  });
  afterAll(() => cluster.close());

  it('stops a follower whose sync fails, and it never acknowledges the entries', async () => {
    const leader = await cluster.waitForLeader();
    await leader.server.propose(Buffer.from('before'));
    const follower = cluster.running().find((n) => n !== leader)!;
    const matchOf = (): number =>
      leader.server.status().progress.find((p) => p.id === follower.id)!.match;
    // The commit needed only one follower: wait until this one has acknowledged everything too,
    // so that no acknowledgement of an entry synced before the fault arrives afterwards.
    await waitFor(() => matchOf() === leader.server.status().lastIndex, {
      timeoutMs: 5000,
      what: 'the follower to acknowledge every entry',
    });
    const matchBefore = matchOf();
    faults.failing.add(follower.id);
    // The other follower still makes a majority: proposals keep committing.
    for (let i = 0; i < 20; i++) await leader.server.propose(Buffer.from(`while-broken-${i}`));
    await waitFor(() => follower.server.fatalError() !== null, {
      timeoutMs: 5000,
      what: 'the follower to stop',
    });
    expect(follower.server.fatalError()?.message).toMatch(/EIO/);
    expect(follower.server.health().healthy).toBe(false);
    expect(matchOf()).toBe(matchBefore);
    expect(leader.server.status().commit).toBeGreaterThan(matchBefore + 19);
    faults.failing.delete(follower.id);
    await follower.server.abort();
    follower.running = false;
  });

  it('stops a leader whose sync fails: its proposals fail, none is acknowledged', async () => {
    const leader = await cluster.waitForLeader();
    faults.failing.add(leader.id);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => leader.server.propose(Buffer.from(`doomed-${i}`))),
    );
    expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
    for (const o of outcomes) {
      if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(StoppedError);
    }
    expect(leader.server.fatalError()?.message).toMatch(/EIO/);
    await expect(leader.server.propose(Buffer.from('late'))).rejects.toThrow(StoppedError);
    faults.failing.delete(leader.id);
  });
});

describe('RaftServer metrics and health', () => {
  const cluster = new TestCluster({ tickMs: 20 });
  const endpoints: HttpEndpoint[] = [];

  beforeAll(async () => {
    await cluster.init();
    const nodes = await cluster.startGroup(3);
    for (const node of nodes) {
      endpoints.push(
        await startHttpEndpoint({
          host: '127.0.0.1',
          port: 0,
          registry: node.server.registry,
          health: () => node.server.health(),
        }),
      );
    }
  });
  afterAll(async () => {
    for (const e of endpoints) await e.close();
    await cluster.close();
  });

  /** Parses Prometheus text into name{labels} -> value. */
  function parse(text: string): Map<string, number> {
    const samples = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const space = line.lastIndexOf(' ');
      samples.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
    return samples;
  }

  function sample(samples: Map<string, number>, name: string): number {
    for (const [key, value] of samples) if (key.startsWith(`${name}{`)) return value;
    throw new Error(`no sample of ${name}`);
  }

  it('serves the etcd-style metrics with true values and a truthful /health', async () => {
    const leader = await cluster.waitForLeader();
    for (let i = 0; i < 50; i++) await leader.server.propose(Buffer.from(`m-${i}`));
    await waitFor(
      () =>
        cluster
          .running()
          .every((n) => n.server.status().applied === leader.server.status().applied),
      { timeoutMs: 5000, what: 'every node to apply' },
    );
    const scraped = await Promise.all(
      endpoints.map(async (e) => parse(await (await fetch(`http://${e.address}/metrics`)).text())),
    );
    const names = [
      'eraftkv_server_has_leader',
      'eraftkv_server_is_leader',
      'eraftkv_server_leader_changes_seen_total',
      'eraftkv_server_term',
      'eraftkv_server_commit_index',
      'eraftkv_server_applied_index',
      'eraftkv_server_proposals_committed_total',
      'eraftkv_server_proposals_applied_total',
      'eraftkv_server_proposals_pending',
      'eraftkv_disk_log_fsync_duration_seconds_count',
      'eraftkv_server_apply_duration_seconds_count',
    ];
    for (const s of scraped) {
      for (const name of names) expect(() => sample(s, name)).not.toThrow();
      expect(sample(s, 'eraftkv_server_has_leader')).toBe(1);
      expect(sample(s, 'eraftkv_server_applied_index')).toBe(leader.server.status().applied);
      expect(sample(s, 'eraftkv_server_proposals_applied_total')).toBeGreaterThanOrEqual(50);
    }
    expect(scraped.map((s) => sample(s, 'eraftkv_server_is_leader')).reduce((a, b) => a + b)).toBe(
      1,
    );
    const leaderSamples = scraped[leader.id - 1];
    expect(sample(leaderSamples, 'eraftkv_server_is_leader')).toBe(1);
    expect(sample(leaderSamples, 'eraftkv_server_term')).toBe(leader.server.status().term);
    for (const e of endpoints) {
      const res = await fetch(`http://${e.address}/health`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ health: 'true' });
    }
    // A stopped node reports itself unhealthy.
    const follower = cluster.running().find((n) => n !== leader)!;
    await cluster.stop(follower.id);
    const res = await fetch(`http://${endpoints[follower.id - 1].address}/health`);
    expect(res.status).toBe(503);
  });
});
