// Backups end to end, with the built eraftkv-ctl and eraftkv-utl: 50,000 keys in two kv groups are
// saved, the backup is checked (snapshot status), a damaged and a truncated copy are refused with
// the offset of the first bad byte (and a restore from them creates no data dir), every data dir
// is wiped, eraftkv-utl snapshot restore builds the data dirs of a new cluster (new cluster id,
// new addresses) and the nodes start on them: every key and value is the same, the slot map is
// the backup's, the replicas agree (hashkv) and the cluster takes writes. The same backup is also
// loaded into a running, empty cluster (eraftkv-ctl snapshot load).
import {
  access,
  copyFile,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import { slotOfKey } from '@eraftkv/protocol';
import {
  initializeCluster,
  repositoryDir,
  restoreLayoutOf,
  waitUntil,
  type LocalCluster,
} from '../local-cluster';
import { fastTiming, runScript, startTestCluster } from './helpers';

jest.setTimeout(300_000);

const ctlBin = join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js');
const utlBin = join(repositoryDir, 'packages/utl/bin/eraftkv-utl.js');
const restoredId = 'restored-cluster';
const keyCount = 50_000;
const keyOf = (i: number): string => `user/${String(i).padStart(6, '0')}`;
const valueOf = (i: number): string => `value-${i}-${'x'.repeat(i % 97)}`;

async function startCluster(options: Parameters<typeof startTestCluster>[0] = {}): Promise<{
  cluster: LocalCluster;
  client: EraftKvClient;
  dir: string;
  cleanup: () => Promise<void>;
}> {
  const started = await startTestCluster({ kvGroups: 2, ...options });
  const client = new EraftKvClient({
    endpoints: started.cluster.metaEndpoints(),
    deadlineMs: 30_000,
  });
  return {
    cluster: started.cluster,
    client,
    dir: started.dir,
    cleanup: async () => {
      client.close();
      await started.cleanup();
    },
  };
}

/** Every key and value of the cluster. */
async function allKeys(client: EraftKvClient): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let from = '';
  for (;;) {
    const page = await client.scan(from, undefined, { limit: 10_000 });
    for (const kv of page.kvs) found.set(kv.key.toString(), kv.value.toString());
    if (!page.more) return found;
    from = `${page.kvs[page.kvs.length - 1].key.toString()}\u0000`;
  }
}

function expectEveryKey(found: Map<string, string>): void {
  expect(found.size).toBe(keyCount);
  let wrong = 0;
  for (let i = 0; i < keyCount; i++) if (found.get(keyOf(i)) !== valueOf(i)) wrong++;
  expect(wrong).toBe(0);
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

const ctl = (cluster: LocalCluster, ...args: string[]) =>
  runScript(ctlBin, ['--endpoints', cluster.metaEndpoints().join(','), ...args], 240_000);

describe('snapshot save, status, restore (eraftkv-utl) and load', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-backup-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('restores 50,000 keys of two groups into a new cluster, and refuses a damaged backup', async () => {
    const backup = join(dir, 'cluster.ekv');
    const first = await startCluster();
    try {
      const { client, cluster } = first;
      await initializeCluster(client, cluster);
      await client.moveSlots(
        2,
        Array.from({ length: 512 }, (_, i) => 512 + i),
      );
      const view = await client.cluster();
      const owner = new Map<number, number>();
      for (const g of view.groups) for (const s of g.slots) owner.set(s, g.id);
      // Batches of keys of one group, 16 in flight.
      const byGroup = new Map<number, number[]>();
      for (let i = 0; i < keyCount; i++) {
        const g = owner.get(slotOfKey(Buffer.from(keyOf(i)), view.slotCount))!;
        byGroup.set(g, [...(byGroup.get(g) ?? []), i]);
      }
      expect([...byGroup.keys()].sort()).toEqual([1, 2]);
      const batches: number[][] = [];
      for (const ids of byGroup.values())
        for (let i = 0; i < ids.length; i += 100) batches.push(ids.slice(i, i + 100));
      for (let i = 0; i < batches.length; i += 16)
        await Promise.all(
          batches
            .slice(i, i + 16)
            .map((b) =>
              client.batch(b.map((k) => ({ type: 'put', key: keyOf(k), value: valueOf(k) }))),
            ),
        );

      const saved = await ctl(cluster, 'snapshot', 'save', backup);
      console.log(`snapshot save: ${saved.stdout.trim()}`);
      expect({ code: saved.code, stderr: saved.stderr.includes('Error') }).toEqual({
        code: 0,
        stderr: false,
      });
      expect(saved.stdout).toMatch(new RegExp(`2 groups, ${keyCount} keys`));
      const st = await ctl(cluster, 'snapshot', 'status', backup);
      expect(st.code).toBe(0);
      expect(st.stdout).toContain('checksums ok');
      expect(st.stdout).toContain(`total: ${keyCount} keys`);
      expect(st.stdout).toMatch(/group 1: \d+ keys/);
      expect(st.stdout).toMatch(/group 2: \d+ keys/);
    } finally {
      await first.cleanup();
    }

    // A damaged copy (one byte flipped in the middle) and a truncated one are refused.
    const size = (await stat(backup)).size;
    const damaged = join(dir, 'damaged.ekv');
    const bytes = await readFile(backup);
    bytes[Math.floor(size / 2)] ^= 0xff;
    await writeFile(damaged, bytes);
    const truncated = join(dir, 'truncated.ekv');
    await copyFile(backup, truncated);
    await truncate(truncated, size - 100);

    // Every data dir of the first cluster is gone (cleanup). The new cluster's data dirs are
    // built by eraftkv-utl before its nodes start, under a new cluster id.
    let refusals: { damaged: string; truncated: string; leftovers: string[] } | null = null;
    let summary = '';
    const second = await startCluster({
      extraArgs: [...fastTiming, '--cluster-id', restoredId],
      beforeStart: async (cluster) => {
        const layout = join(dir, 'layout.json');
        await writeFile(layout, JSON.stringify(restoreLayoutOf(cluster, restoredId)));
        const restore = (file: string) =>
          runScript(utlBin, ['snapshot', 'restore', file, '--layout', layout], 240_000);
        const bad = await restore(damaged);
        const cut = await restore(truncated);
        expect([bad.code, cut.code]).toEqual([1, 1]);
        const root = dirname(cluster.layout.meta[0].dataDir);
        refusals = {
          damaged: bad.stderr,
          truncated: cut.stderr,
          leftovers: (await readdir(root)).filter((e) => /^(meta|kv)-/.test(e)),
        };
        const good = await restore(backup);
        expect(good.code).toBe(0);
        summary = good.stdout;
        // A second restore over the same data dirs is refused: they hold a cluster now.
        const again = await restore(backup);
        expect(again.code).toBe(1);
        expect(again.stderr).toContain('these data dirs exist and are not empty');
      },
    });
    try {
      const { client, cluster } = second;
      console.log(`eraftkv-utl snapshot restore: ${summary.split('\n')[0]}`);
      expect(refusals).not.toBeNull();
      const r = refusals!;
      expect(r.damaged).toMatch(
        /damaged\.ekv: at offset \d+: a record does not match its checksum/,
      );
      expect(r.damaged).toContain('Nothing was restored.');
      expect(r.truncated).toMatch(
        /truncated\.ekv: at offset \d+: the file ends inside .* \(truncated\)/,
      );
      // Nothing of the refused restores: no data dir, no work dir.
      expect(r.leftovers).toEqual([]);
      expect(summary).toContain(`Restored cluster "${restoredId}"`);
      expect(summary).toContain(`${keyCount} keys`);
      const st = await ctl(cluster, 'snapshot', 'status', damaged);
      expect(st.code).not.toBe(0);

      // The nodes started on the restored data dirs need no initialisation (none is done once
      // they listen): the backup's slot map, every key and value, and nothing else.
      const said: string[] = [];
      await initializeCluster(client, cluster, (line) => said.push(line), 1024, false);
      expect(said).toEqual([]);
      const view = await client.cluster();
      expect(view.groups.find((g) => g.id === 1)?.slots).toHaveLength(512);
      expect(view.groups.find((g) => g.id === 2)?.slots).toHaveLength(512);
      expectEveryKey(await allKeys(client));
      const status = await client.status(cluster.metaEndpoints()[0]);
      expect(status.clusterId).toBe(restoredId);
      // Every replica holds the same state.
      const hash = await ctl(cluster, 'endpoint', 'hashkv');
      expect(hash.code).toBe(0);
      expect(hash.stdout).toContain('group 1: 3 replicas agree');
      expect(hash.stdout).toContain('group 2: 3 replicas agree');
      // It takes writes, and a node restarted on its restored data dir keeps everything.
      await client.put('after-restore', 'yes');
      expect((await client.get('after-restore'))?.toString()).toBe('yes');
      await cluster.signal('kv-1-2', 'SIGKILL');
      await cluster.start('kv-1-2');
      const leaderCommit = (await client.status(cluster.spec('kv-1-1').grpcAddress)).commitIndex;
      await waitUntil(
        async () => {
          const s = await client.status(cluster.spec('kv-1-2').grpcAddress).catch(() => null);
          return s !== null && s.appliedIndex >= leaderCommit;
        },
        30_000,
        'kv-1-2 to catch up after its restart',
      );
      const again = await ctl(cluster, 'endpoint', 'hashkv', '--group', '1');
      expect(again.code).toBe(0);
    } finally {
      await second.cleanup();
    }
    expect(await exists(second.dir)).toBe(false);

    // The online path: the same backup loaded into a running, empty cluster.
    const third = await startCluster();
    try {
      const { client, cluster } = third;
      await initializeCluster(client, cluster);
      const moved = await ctl(cluster, 'snapshot', 'restore', backup);
      expect(moved.code).toBe(128);
      expect(moved.stderr).toContain('eraftkv-utl snapshot restore');
      const loaded = await ctl(cluster, 'snapshot', 'load', backup);
      console.log(`snapshot load: ${loaded.stdout.trim()}\n${loaded.stderr.trim()}`);
      expect(loaded.code).toBe(0);
      expect(loaded.stdout).toContain(`Loaded ${keyCount} keys`);
      expectEveryKey(await allKeys(client));
      expect((await client.cluster()).groups.find((g) => g.id === 2)?.slots).toHaveLength(512);
      // A second load into the now non-empty cluster is refused.
      const again = await ctl(cluster, 'snapshot', 'load', backup);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toContain('load needs an empty cluster');
    } finally {
      await third.cleanup();
    }
  });
});
