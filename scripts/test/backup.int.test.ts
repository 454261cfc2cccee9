// Backups end to end, with the built eraftkv-ctl: 50,000 keys in two kv groups are saved, the
// backup is checked (snapshot status), a damaged and a truncated copy are refused with the offset
// of the first bad byte (and a restore from them writes nothing), every data dir is wiped, a new
// cluster is started and the backup restored into it: every key and value is the same, and the
// restored cluster takes writes.
import { copyFile, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import { slotOfKey } from '@eraftkv/protocol';
import { initializeCluster, repositoryDir, type LocalCluster } from '../local-cluster';
import { runScript, startTestCluster } from './helpers';

jest.setTimeout(300_000);

const ctlBin = join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js');
const keyCount = 50_000;
const keyOf = (i: number): string => `user/${String(i).padStart(6, '0')}`;
const valueOf = (i: number): string => `value-${i}-${'x'.repeat(i % 97)}`;

async function startCluster(): Promise<{
  cluster: LocalCluster;
  client: EraftKvClient;
  cleanup: () => Promise<void>;
}> {
  const started = await startTestCluster({ kvGroups: 2 });
  const client = new EraftKvClient({
    endpoints: started.cluster.metaEndpoints(),
    deadlineMs: 30_000,
  });
  await initializeCluster(client, started.cluster);
  return {
    cluster: started.cluster,
    client,
    cleanup: async () => {
      client.close();
      await started.cleanup();
    },
  };
}

const ctl = (cluster: LocalCluster, ...args: string[]) =>
  runScript(ctlBin, ['--endpoints', cluster.metaEndpoints().join(','), ...args], 240_000);

describe('snapshot save, status and restore', () => {
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

    // Every data dir of the first cluster is gone (cleanup); a new cluster takes the backup.
    const second = await startCluster();
    try {
      const { client, cluster } = second;
      const bad = await ctl(cluster, 'snapshot', 'status', damaged);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(
        /damaged\.ekv: at offset \d+: a record does not match its checksum/,
      );
      const cut = await ctl(cluster, 'snapshot', 'restore', truncated);
      expect(cut.code).not.toBe(0);
      expect(cut.stderr).toMatch(
        /truncated\.ekv: at offset \d+: the file ends inside .* \(truncated\)/,
      );
      const refused = await ctl(cluster, 'snapshot', 'restore', damaged);
      expect(refused.code).not.toBe(0);
      // Nothing was written from the bad backups.
      expect((await client.scan('', undefined, { limit: 1 })).kvs).toHaveLength(0);

      const restored = await ctl(cluster, 'snapshot', 'restore', backup);
      console.log(`snapshot restore: ${restored.stdout.trim()}`);
      expect(restored.code).toBe(0);
      expect(restored.stdout).toContain(`Restored ${keyCount} keys`);
      // Every key and value is the one saved, and nothing else is there.
      const found = new Map<string, string>();
      let from = '';
      for (;;) {
        const page = await client.scan(from, undefined, { limit: 10_000 });
        for (const kv of page.kvs) found.set(kv.key.toString(), kv.value.toString());
        if (!page.more) break;
        from = `${page.kvs[page.kvs.length - 1].key.toString()}\u0000`;
      }
      expect(found.size).toBe(keyCount);
      let wrong = 0;
      for (let i = 0; i < keyCount; i++) if (found.get(keyOf(i)) !== valueOf(i)) wrong++;
      expect(wrong).toBe(0);
      // The backup's slot map, and a cluster that takes writes.
      const view = await client.cluster();
      expect(view.groups.find((g) => g.id === 2)?.slots).toHaveLength(512);
      await client.put('after-restore', 'yes');
      expect((await client.get('after-restore'))?.toString()).toBe('yes');
      // A second restore into the now non-empty cluster is refused.
      const again = await ctl(cluster, 'snapshot', 'restore', backup);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toContain('restore needs an empty cluster');
    } finally {
      await second.cleanup();
    }
  });
});
