// eraftkv-utl snapshot restore on real files and RocksDB (no node runs here; scripts/test/
// backup.int.test.ts starts nodes on restored data dirs).
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSnapshotFile } from '@eraftkv/kv-server';
import {
  BackupFileError,
  backupFormat,
  BackupRecordKind,
  BackupWriter,
  encodeBackupPairs,
  slotOfKey,
} from '@eraftkv/protocol';
import { openNodeIdentity, restoreMarkerFileName } from '@eraftkv/raft-server';
import { parseRestoreLayout, type RestoreLayout } from '../src/restore-layout';
import { restoreCluster, RestoreError } from '../src/restore';
import { runUtl } from '../src/utl';

const slotCount = 16;
const groupSlots = new Map([
  [1, [0, 1, 2, 3, 4, 5, 6, 7]],
  [2, [8, 9, 10, 11, 12, 13, 14, 15]],
]);
const ownerOf = (key: string): number => (slotOfKey(Buffer.from(key), slotCount) < 8 ? 1 : 2);
const keys = Array.from({ length: 200 }, (_, i) => `key-${i}`);

/** A backup of `keys` in two groups; `stray` adds a key to group 1 that group 2 owns. */
async function writeBackup(path: string, stray = false): Promise<void> {
  const w = await BackupWriter.create(path);
  await w.json(BackupRecordKind.Header, {
    format: backupFormat,
    createdAt: 'now',
    clusterId: 'old',
    slotCount,
    configVersion: 9,
    groups: [...groupSlots].map(([id, slots]) => ({ id, slots })),
  });
  let total = { keys: 0, bytes: 0 };
  for (const [group, slots] of groupSlots) {
    await w.json(BackupRecordKind.Group, { group, index: 50, configVersion: 9, slots });
    const mine = keys.filter((k) => ownerOf(k) === group);
    if (stray && group === 1) mine.push(keys.find((k) => ownerOf(k) === 2)!);
    const payload = encodeBackupPairs(
      mine.map((k) => ({ key: Buffer.from(k), value: Buffer.from(`value of ${k}`) })),
    );
    await w.record(BackupRecordKind.Data, payload);
    await w.json(BackupRecordKind.GroupEnd, { group, keys: mine.length, bytes: payload.length });
    total = { keys: total.keys + mine.length, bytes: total.bytes + payload.length };
  }
  await w.json(BackupRecordKind.Trailer, { groups: 2, ...total });
  await w.finish();
}

function layoutIn(dir: string, groups = [1, 2]): RestoreLayout {
  const nodes = (prefix: string, port: number) =>
    [1, 2, 3].map(
      (id) => `  - { id: ${id}, address: "127.0.0.1:${port + id}", data-dir: ${prefix}-${id} }`,
    );
  const text = [
    'cluster-id: new',
    'meta:',
    ...nodes('meta', 8000),
    'kv:',
    ...groups.flatMap((g) =>
      nodes(`kv-${g}`, 7000 + 10 * g).map((line) => line.replace('{ id', `{ group: ${g}, id`)),
    ),
  ].join('\n');
  return parseRestoreLayout(text, join(dir, 'layout.yaml'));
}

describe('eraftkv-utl snapshot restore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-utl-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const restore = (backup: string, layout = layoutIn(dir)) =>
    restoreCluster({ backup, layout, layoutPath: 'layout.yaml', clusterId: 'new' });

  it('builds every data dir: identities, memberships with their incarnations, and the state', async () => {
    const backup = join(dir, 'b.ekv');
    await writeBackup(backup);
    const summary = await restore(backup);
    expect(summary.keys).toBe(keys.length);
    expect(summary.backupClusterId).toBe('old');
    expect(summary.groups.map((g) => [g.group, g.keys, g.nodes])).toEqual([
      [1, keys.filter((k) => ownerOf(k) === 1).length, 3],
      [2, keys.filter((k) => ownerOf(k) === 2).length, 3],
    ]);
    expect((await readdir(dir)).sort()).toEqual([
      'b.ekv',
      'kv-1-1',
      'kv-1-2',
      'kv-1-3',
      'kv-2-1',
      'kv-2-2',
      'kv-2-3',
      'meta-1',
      'meta-2',
      'meta-3',
    ]);
    const identity = async (name: string) =>
      JSON.parse(await readFile(join(dir, name, 'identity.json'), 'utf8')) as {
        clusterId: string;
        kind: string;
        groupId: number;
        nodeId: number;
        incarnation: number;
      };
    const snapshotOf = async (name: string) => {
      const files = await readdir(join(dir, name, 'snapshots'));
      const meta = files.find((f) => f.endsWith('.json'))!;
      const data = files.find((f) => f.endsWith('.dat'))!;
      return {
        meta: JSON.parse(await readFile(join(dir, name, 'snapshots', meta), 'utf8')) as {
          index: number;
          term: number;
          membership: { id: number; address: string; incarnation: number; learner: boolean }[];
        },
        data: join(dir, name, 'snapshots', data),
      };
    };
    for (const [prefix, kind, group] of [
      ['meta', 'meta', 0],
      ['kv-1', 'kv', 1],
      ['kv-2', 'kv', 2],
    ] as const) {
      const ids = await Promise.all([1, 2, 3].map((id) => identity(`${prefix}-${id}`)));
      expect(ids.map((i) => [i.clusterId, i.kind, i.groupId, i.nodeId])).toEqual(
        [1, 2, 3].map((id) => ['new', kind, group, id]),
      );
      // Every member's snapshot records the group with each member's own incarnation.
      for (const id of [1, 2, 3]) {
        const { meta } = await snapshotOf(`${prefix}-${id}`);
        expect([meta.index, meta.term]).toEqual([1, 1]);
        expect(meta.membership.map((m) => [m.id, m.incarnation, m.learner])).toEqual(
          ids.map((i) => [i.nodeId, i.incarnation, false]),
        );
      }
    }
    // Incarnations are drawn per node.
    expect(
      new Set(
        (await Promise.all(['meta-1', 'kv-1-1', 'kv-2-1'].map(identity))).map((i) => i.incarnation),
      ).size,
    ).toBe(3);
    // A kv replica's state: its group's keys, their slot index, the config, applied index 1.
    const records = new Map<string, Buffer>();
    for await (const [key, value] of readSnapshotFile((await snapshotOf('kv-2-3')).data))
      records.set(key.toString('latin1'), value);
    const group2 = keys.filter((k) => ownerOf(k) === 2);
    expect([...records.keys()].filter((k) => k.startsWith('k')).sort()).toEqual(
      group2.map((k) => `k${k}`).sort(),
    );
    expect(records.get('kkey-1')?.toString() ?? records.get(`k${group2[0]}`)?.toString()).toMatch(
      /^value of key-/,
    );
    expect([...records.keys()].filter((k) => k.startsWith('s'))).toHaveLength(group2.length);
    const config = JSON.parse(records.get('c')!.toString()) as {
      slotCount: number;
      slots: { id: number; status: string }[];
      servers: { id: number; address: string }[];
    };
    expect(config.slotCount).toBe(slotCount);
    expect(config.slots.map((s) => `${s.id}:${s.status}`)).toEqual(
      groupSlots.get(2)!.map((s) => `${s}:Running`),
    );
    expect(config.servers.map((s) => s.address)).toEqual([
      '127.0.0.1:7021',
      '127.0.0.1:7022',
      '127.0.0.1:7023',
    ]);
    expect(records.get('a')?.readUInt32BE(4)).toBe(1);
    // The meta group's topology: both groups, the slot map.
    const topology = JSON.parse(await readFile((await snapshotOf('meta-2')).data, 'utf8')) as {
      appliedIndex: number;
      records: {
        config: { slotCount: number };
        groups: { id: number }[];
        slots: { slot: number; owner: number }[];
      };
    };
    expect(topology.appliedIndex).toBe(1);
    expect(topology.records.groups.map((g) => g.id)).toEqual([1, 2]);
    expect(topology.records.slots.map((s) => [s.slot, s.owner])).toEqual(
      Array.from({ length: slotCount }, (_, s) => [s, s < 8 ? 1 : 2]),
    );
  });

  it('refuses a damaged backup with its offset and leaves nothing behind', async () => {
    const backup = join(dir, 'b.ekv');
    await writeBackup(backup);
    const bytes = await readFile(backup);
    bytes[bytes.length - 60] ^= 0x01;
    await writeFile(backup, bytes);
    await expect(restore(backup)).rejects.toThrow(BackupFileError);
    await expect(restore(backup)).rejects.toThrow(
      /b\.ekv: at offset \d+: a record does not match its checksum/,
    );
    expect(await readdir(dir)).toEqual(['b.ekv']);
  });

  it('refuses a key its group does not own, naming it, and leaves nothing behind', async () => {
    const backup = join(dir, 'b.ekv');
    await writeBackup(backup, true);
    await expect(restore(backup)).rejects.toThrow(
      /group 1: key "key-\d+" is in slot \d+, which the group does not own/,
    );
    expect(await readdir(dir)).toEqual(['b.ekv']);
  });

  it('refuses a layout without every group of the backup', async () => {
    const backup = join(dir, 'b.ekv');
    await writeBackup(backup);
    await expect(restore(backup, layoutIn(dir, [1, 3]))).rejects.toThrow(
      "the backup has kv groups 1, 2; the layout has no node for group 2; the layout's group 3 is not in the backup",
    );
    expect(await readdir(dir)).toEqual(['b.ekv']);
  });

  it('refuses data dirs that hold something, and touches none of them', async () => {
    const backup = join(dir, 'b.ekv');
    await writeBackup(backup);
    await mkdir(join(dir, 'kv-2-2'));
    await writeFile(join(dir, 'kv-2-2', 'precious'), 'data');
    await mkdir(join(dir, 'meta-1')); // empty: used
    await expect(restore(backup)).rejects.toThrow(RestoreError);
    await expect(restore(backup)).rejects.toThrow(
      `these data dirs exist and are not empty: ${join(dir, 'kv-2-2')}`,
    );
    expect(await readdir(join(dir, 'kv-2-2'))).toEqual(['precious']);
    expect((await readdir(dir)).sort()).toEqual(['b.ekv', 'kv-2-2', 'meta-1']);
  });

  it('replaces the dirs of a restore that did not finish, which no node starts on meanwhile', async () => {
    const backup = join(dir, 'b.ekv');
    await writeBackup(backup);
    await restore(backup);
    // As if it had crashed among the renames: the dirs in place still carry the marker, the
    // others are not there yet.
    const names = ['meta-1', 'meta-2', 'meta-3', 'kv-1-1', 'kv-1-2', 'kv-1-3'];
    for (const name of names) await writeFile(join(dir, name, restoreMarkerFileName), 'x');
    for (const name of ['kv-2-1', 'kv-2-2', 'kv-2-3'])
      await rm(join(dir, name), { recursive: true });
    const claim = { clusterId: 'new', kind: 'kv', groupId: 1, nodeId: 1 } as const;
    await expect(openNodeIdentity(join(dir, 'kv-1-1'), claim)).rejects.toThrow(
      `data dir ${join(dir, 'kv-1-1')} was being built by eraftkv-utl snapshot restore, which did not finish`,
    );
    const before = JSON.parse(await readFile(join(dir, 'kv-1-1', 'identity.json'), 'utf8')) as {
      incarnation: number;
    };
    const again = await restore(backup);
    expect(again.keys).toBe(keys.length);
    for (const name of [...names, 'kv-2-1', 'kv-2-2', 'kv-2-3'])
      expect(await readdir(join(dir, name))).not.toContain(restoreMarkerFileName);
    const { identity } = await openNodeIdentity(join(dir, 'kv-1-1'), claim);
    expect(identity.incarnation).not.toBe(before.incarnation);
  });

  it('runs as eraftkv-utl: exit 0 with a summary, exit 1 naming the file, exit 128 without an id', async () => {
    const backup = join(dir, 'b.ekv');
    await writeBackup(backup);
    const layoutPath = join(dir, 'layout.json');
    await writeFile(
      layoutPath,
      JSON.stringify({
        meta: [{ id: 1, address: '127.0.0.1:8001', 'data-dir': 'm1' }],
        kv: [
          { group: 1, id: 1, address: '127.0.0.1:7001', 'data-dir': 'k1' },
          { group: 2, id: 1, address: '127.0.0.1:7002', 'data-dir': 'k2' },
        ],
      }),
    );
    const run = async (...argv: string[]) => {
      const io = { out: '', err: '' };
      const code = await runUtl(argv, {
        out: (t) => (io.out += t),
        err: (t) => (io.err += t),
      });
      return { code, ...io };
    };
    const noId = await run('snapshot', 'restore', backup, '--layout', layoutPath);
    expect(noId.code).toBe(128);
    expect(noId.err).toContain(
      'the new cluster needs an id: give --cluster-id or cluster-id in --layout',
    );
    const missing = await run(
      'snapshot',
      'restore',
      join(dir, 'nope.ekv'),
      '--layout',
      layoutPath,
      '--cluster-id',
      'c2',
    );
    expect(missing.code).toBe(1);
    expect(missing.err).toContain(`${join(dir, 'nope.ekv')}: at offset 0: cannot be read`);
    const ok = await run(
      'snapshot',
      'restore',
      backup,
      '--layout',
      layoutPath,
      '--cluster-id',
      'c2',
      '-w',
      'json',
    );
    expect(ok.code).toBe(0);
    const summary = JSON.parse(ok.out) as { clusterId: string; keys: number; dataDirs: unknown[] };
    expect([summary.clusterId, summary.keys, summary.dataDirs.length]).toEqual([
      'c2',
      keys.length,
      3,
    ]);
    expect((await readdir(dir)).sort()).toEqual(['b.ekv', 'k1', 'k2', 'layout.json', 'm1']);
    expect(ok.err).not.toContain('warning');
    // Keeping the backed-up cluster's id works, with a warning.
    for (const d of ['k1', 'k2', 'm1']) await rm(join(dir, d), { recursive: true });
    const kept = await run(
      'snapshot',
      'restore',
      backup,
      '--layout',
      layoutPath,
      '--cluster-id',
      'old',
    );
    expect(kept.code).toBe(0);
    expect(kept.err).toContain(
      `warning: the restored cluster keeps the backed-up cluster's id "old"`,
    );
  });
});
