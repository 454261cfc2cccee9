// Consistency checks of a kv group against real processes: every replica's digest at one log
// index agrees (HashKv, eraftkv-ctl endpoint hashkv); a replica whose data is altered behind its
// back (a value rewritten in its RocksDB while it is stopped) is named by the check, by the
// leader's background check (metric and error log) and by eraftkv-ctl, and no other replica is.
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { EraftKvClient } from '@eraftkv/client';
import { openRocksEngine } from '@eraftkv/raft-server';
import { httpGet, initializeCluster, repositoryDir, waitUntil } from '../local-cluster';
import type { LocalCluster } from '../local-cluster';
import { fastTiming, runScript, startTestCluster } from './helpers';

jest.setTimeout(180_000);

const ctlBin = join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js');

describe('consistency checks of a kv group', () => {
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  let client: EraftKvClient;

  beforeAll(async () => {
    const started = await startTestCluster({
      extraArgs: fastTiming,
      // The kv leader checks its replicas every second.
      nodeArgs: (_name, group) => (group > 0 ? ['--consistency-check-interval-ms', '1000'] : []),
    });
    cluster = started.cluster;
    cleanup = started.cleanup;
    client = new EraftKvClient({ endpoints: cluster.metaEndpoints(), deadlineMs: 20_000 });
    await initializeCluster(client, cluster);
    for (let i = 0; i < 200; i++)
      await client.put(`key-${String(i).padStart(4, '0')}`, `value-${String(i).padStart(4, '0')}`);
  });
  afterAll(async () => {
    client?.close();
    await cleanup?.();
  });

  const kvNodes = () => cluster.layout.kv.get(1) ?? [];

  it('finds every replica equal, and names the one whose data was altered behind its back', async () => {
    const first = await client.hashKv(1);
    expect(first.replicas).toHaveLength(3);
    expect(new Set(first.replicas.map((r) => r.digest)).size).toBe(1);
    expect(first.replicas.every((r) => /^[0-9a-f]{64}$/.test(r.digest))).toBe(true);
    const ok = await runScript(
      ctlBin,
      ['--endpoints', cluster.metaEndpoints().join(','), 'endpoint', 'hashkv'],
      60_000,
    );
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    expect(ok.stdout).toContain(`group 1: 3 replicas agree at index`);

    // A follower's value rewritten in its RocksDB while it is stopped.
    const status = await client.status(kvNodes()[0].grpcAddress);
    const leaderId = status.leaderId;
    const victim = kvNodes().find((n) => n.id !== leaderId)!;
    await cluster.signal(victim.name, 'SIGTERM');
    const engine = await openRocksEngine(join(victim.dataDir, 'state'));
    let altered = 0;
    try {
      for await (const [key, value] of engine.iterate({})) {
        // The data record only ('k' + key): the watch history keeps a copy of the value too.
        const at = value.indexOf('value-0042');
        if (at < 0 || key[0] !== 0x6b) continue;
        const changed = Buffer.from(value);
        changed.write('VALUE-0042', at);
        await engine.write([{ type: 'put', key, value: changed }], { sync: true });
        altered++;
      }
    } finally {
      await engine.close();
    }
    expect(altered).toBe(1);
    await cluster.start(victim.name);

    // HashKv names exactly that replica (once it has caught up and applied the check).
    const check = await waitUntil(
      async () => {
        const c = await client.hashKv(1);
        return c.replicas.every((r) => r.digest !== '') ? c : undefined;
      },
      60_000,
      'every replica to give a digest',
      500,
    );
    const differing = check.replicas.filter(
      (r) => check.replicas.filter((o) => o.digest === r.digest).length === 1,
    );
    expect(differing.map((r) => r.nodeId)).toEqual([victim.id]);

    // eraftkv-ctl says so and exits 1.
    const bad = await runScript(
      ctlBin,
      ['--endpoints', cluster.metaEndpoints().join(','), 'endpoint', 'hashkv'],
      60_000,
    );
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(
      new RegExp(`group 1: REPLICAS DIFFER at index \\d+: node ${victim.id}\\n`),
    );

    // The leader's background check flags that replica, and only it.
    const leader = kvNodes().find((n) => n.id === leaderId)!;
    const flagged = (text: string, id: number): string | undefined =>
      text
        .split('\n')
        .find(
          (l) =>
            l.startsWith('eraftkv_server_replica_digest_mismatch{') &&
            l.includes(`replica_id="${id}"`),
        );
    await waitUntil(
      async () => {
        const text = (await httpGet(leader.metricsAddress, '/metrics'))?.body ?? '';
        return flagged(text, victim.id)?.endsWith(' 1') === true || undefined;
      },
      30_000,
      'the background check to flag the altered replica',
      250,
    );
    const text = (await httpGet(leader.metricsAddress, '/metrics'))?.body ?? '';
    for (const n of kvNodes().filter((x) => x.id !== victim.id))
      expect(flagged(text, n.id)).toMatch(/ 0$/);
    expect(text).toMatch(
      /eraftkv_server_consistency_checks_total\{[^}]*outcome="mismatch"\} [1-9]/,
    );
    const log = await readFile(cluster.logPath(leader.name), 'utf8');
    const line = log
      .split('\n')
      .find((l) => l.includes('a replica holds other data than the majority'));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ replica: victim.id, address: victim.grpcAddress });
  });
});
