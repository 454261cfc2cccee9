// A follower whose RocksDB was damaged while it was stopped (one byte flipped in a table file)
// refuses to start, naming its store and the remedy; the documented recovery (remove the member,
// move its data dir away, start it with an empty --peers, add it back as a learner) brings it
// back with the group's data, and every replica agrees again (HashKv). A damaged snapshot file
// is refused the same way, naming the file; a follower whose data dir is deleted while it runs
// stops, naming it, and comes back by the same recovery.
import { readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import { initializeCluster, waitUntil, type LocalCluster, type NodeSpec } from '../local-cluster';
import { startTestCluster } from './helpers';

jest.setTimeout(180_000);

interface RawRocks {
  open(cb: (err: Error | null) => void): void;
  compactRange(start: Buffer, end: Buffer, cb: (err: Error | null) => void): void;
  close(cb: (err: Error | null) => void): void;
}
// The RocksDB binding itself: only it can compact (flush every write into table files).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const rocksdb = require('rocksdb') as (path: string) => RawRocks;

const call = (f: (cb: (err: Error | null) => void) => void): Promise<void> =>
  new Promise((resolve, reject) => f((err) => (err ? reject(err) : resolve())));

describe('a follower whose data was damaged on disk', () => {
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  let client: EraftKvClient;

  beforeAll(async () => {
    const started = await startTestCluster({});
    cluster = started.cluster;
    cleanup = started.cleanup;
    client = new EraftKvClient({ endpoints: cluster.metaEndpoints(), deadlineMs: 20_000 });
    await initializeCluster(client, cluster);
    for (let i = 0; i < 2000; i += 100)
      await client.batch(
        Array.from({ length: 100 }, (_, j) => ({
          type: 'put' as const,
          key: `k${String(i + j).padStart(5, '0')}`,
          value: `v${i + j}-${'y'.repeat(200)}`,
        })),
      );
  });
  afterAll(async () => {
    client?.close();
    await cleanup?.();
  });

  it('refuses to start naming the damaged store, and comes back by remove, wipe and add', async () => {
    const nodes = cluster.layout.kv.get(1)!;
    const leaderId = (await client.status(nodes[0].grpcAddress)).leaderId;
    const victim = nodes.find((n) => n.id !== leaderId)!;
    await cluster.signal(victim.name, 'SIGTERM');
    const statePath = join(victim.dataDir, 'state');
    const db = rocksdb(statePath);
    await call((cb) => db.open(cb));
    await call((cb) => db.compactRange(Buffer.from([0]), Buffer.from([0xff, 0xff]), cb));
    await call((cb) => db.close(cb));
    const tables = await Promise.all(
      (await readdir(statePath))
        .filter((f) => f.endsWith('.sst'))
        .map(async (f) => ({ f, size: (await stat(join(statePath, f))).size })),
    );
    const largest = tables.sort((a, b) => b.size - a.size)[0];
    expect(largest.size).toBeGreaterThan(20_000);
    const bytes = await readFile(join(statePath, largest.f));
    // Data blocks come first in a table file (its index and filter at the end): flip a byte in
    // a few of them.
    for (const at of [0.05, 0.15, 0.25]) bytes[Math.floor(largest.size * at)] ^= 0xff;
    await writeFile(join(statePath, largest.f), bytes);

    await expectRefusal(victim.name, [
      // The store at fault (RocksDB adds the table file when it reports a checksum mismatch).
      `${statePath} is damaged`,
      'Corruption',
      'this replica cannot start',
      'eraftkv-ctl member remove',
    ]);

    await recover(victim);
    expect((await client.get('k01234'))?.toString()).toMatch(/^v1234-/);

    // It was caught up by a snapshot: a byte flipped in that file while it is stopped is found
    // at start. The node does not need the file (its state is complete): moved aside, it starts.
    await cluster.signal(victim.name, 'SIGTERM');
    const snapshots = join(victim.dataDir, 'snapshots');
    const dat = (await readdir(snapshots)).find((f) => f.endsWith('.dat'));
    expect(dat).toBeDefined();
    const datPath = join(snapshots, dat!);
    const snapshot = await readFile(datPath);
    snapshot[Math.floor(snapshot.length / 2)] ^= 0x01;
    await writeFile(datPath, snapshot);
    await expectRefusal(victim.name, [
      `snapshot file ${datPath} is damaged`,
      'This node does not need it',
    ]);
    await rename(datPath, `${datPath}.damaged`);
    await rename(datPath.replace(/\.dat$/, '.json'), `${datPath}.json.damaged`);
    await cluster.start(victim.name);
    await waitForAgreement(3);
  });

  it('stops a follower whose data dir is deleted while it runs, and brings it back by remove, wipe and add', async () => {
    const nodes = cluster.layout.kv.get(1)!;
    const leaderId = (await client.status(nodes[0].grpcAddress)).leaderId;
    const victim = nodes.find((n) => n.id !== leaderId)!;
    const running = cluster.runningNodes().find((n) => n.spec.name === victim.name)!;
    await rm(victim.dataDir, { recursive: true, force: true });
    expect(await exitWithin(running.exited, 30_000)).toBe(1);
    const log = await readFile(cluster.logPath(victim.name), 'utf8');
    expect(log).toContain(`data dir ${victim.dataDir} was deleted while the node ran`);
    // The group goes on with the two others.
    await client.put('while-one-is-gone', 'yes');

    await recover(victim);
    expect((await client.get('while-one-is-gone'))?.toString()).toBe('yes');
  });

  /**
   * The recovery of the README: remove the member, move its data dir away, start it empty, add
   * it back as a learner; it catches up (by snapshot) and holds what the others hold.
   */
  async function recover(victim: NodeSpec): Promise<void> {
    await client.removeMember(1, victim.id);
    await rm(victim.dataDir, { recursive: true, force: true });
    cluster.startAsJoiner(victim.name);
    await cluster.start(victim.name);
    await client.addMember(1, victim.id, victim.grpcAddress, true);
    await waitForAgreement(3);
  }

  /** The exit code, or 'still running' after `ms`. */
  async function exitWithin(
    exited: Promise<number | null>,
    ms: number,
  ): Promise<number | null | 'still running'> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'still running'>((resolve) => {
      timer = setTimeout(() => resolve('still running'), ms);
    });
    try {
      return await Promise.race([exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts node `name`, which must exit non-zero with a 'cannot start' log holding `parts`. */
  async function expectRefusal(name: string, parts: string[]): Promise<void> {
    const restarted = await cluster.start(name);
    const exit = await exitWithin(restarted.exited, 60_000);
    const log = (await readFile(cluster.logPath(name), 'utf8')).split('\n');
    const refusal = log.filter((l) => l.includes('cannot start')).pop();
    // On a failure, the node's last words say why.
    const tail = log.slice(-15).join('\n');
    expect({ exit, tail }).not.toEqual({ exit: 0, tail });
    expect({ exit, tail }).not.toEqual({ exit: 'still running', tail });
    expect({ refusal, tail }).not.toEqual({ refusal: undefined, tail });
    const error = (JSON.parse(refusal!) as { error: string }).error;
    for (const part of parts) expect(error).toContain(part);
  }

  /** Waits until `replicas` replicas of group 1 give the same digest. */
  async function waitForAgreement(replicas: number): Promise<void> {
    await waitUntil(
      async () => {
        const c = await client.hashKv(1);
        return c.replicas.length === replicas &&
          c.replicas.every((r) => r.digest !== '' && r.digest === c.replicas[0].digest)
          ? true
          : undefined;
      },
      90_000,
      'every replica to hold the same data',
      1000,
    );
  }
});
