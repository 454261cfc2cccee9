// A follower whose RocksDB was damaged while it was stopped (one byte flipped in a table file)
// refuses to start, naming its store and the remedy; the documented recovery (remove the member,
// move its data dir away, start it with an empty --peers, add it back as a learner) brings it
// back with the group's data, and every replica agrees again (HashKv).
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import { initializeCluster, waitUntil, type LocalCluster } from '../local-cluster';
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

    const restarted = await cluster.start(victim.name);
    const exit = await Promise.race([
      restarted.exited,
      new Promise<string>((resolve) =>
        setTimeout(() => resolve('still running after 60 s'), 60_000),
      ),
    ]);
    expect(exit).not.toBe(0);
    expect(exit).not.toBe('still running after 60 s');
    const log = (await readFile(cluster.logPath(victim.name), 'utf8')).split('\n');
    const refusal = log.find((l) => l.includes('cannot start'));
    expect(refusal).toBeDefined();
    const error = (JSON.parse(refusal!) as { error: string }).error;
    // The store at fault (RocksDB adds the table file when it reports a checksum mismatch).
    expect(error).toContain(`${statePath} is damaged`);
    expect(error).toMatch(/Corruption/);
    expect(error).toContain('this replica cannot start');
    expect(error).toContain('eraftkv-ctl member remove');

    // The recovery of the README: remove, move the data dir away, start empty, add as a learner.
    await client.removeMember(1, victim.id);
    await rm(victim.dataDir, { recursive: true, force: true });
    cluster.startAsJoiner(victim.name);
    await cluster.start(victim.name);
    await client.addMember(1, victim.id, victim.grpcAddress, true);
    await waitUntil(
      async () => {
        const c = await client.hashKv(1);
        return c.replicas.length === 3 &&
          c.replicas.every((r) => r.digest !== '' && r.digest === c.replicas[0].digest)
          ? true
          : undefined;
      },
      90_000,
      'the re-added replica to hold what the others hold',
      1000,
    );
    expect((await client.get('k01234'))?.toString()).toMatch(/^v1234-/);
  });
});
