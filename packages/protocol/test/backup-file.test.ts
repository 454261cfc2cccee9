// The backup file format: what a writer produces reads back record for record, and every kind of
// damage is refused at the offset of the first bad record.
import { mkdtemp, readFile, rm, stat, truncate, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BackupWriter,
  backupFormat,
  encodeBackupPairs,
  readBackup,
  BackupRecordKind,
  type BackupRecord,
} from '../src/backup-file';

describe('backup file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-backup-file-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const pairs = (n: number, tag: string) =>
    Array.from({ length: n }, (_, i) => ({
      key: Buffer.from(`${tag}-${i}`),
      value: Buffer.from(`value-${tag}-${i}`),
    }));

  async function writeSample(path: string, trailerKeys?: number): Promise<{ dataAt: number }> {
    const w = await BackupWriter.create(path);
    await w.json(BackupRecordKind.Header, {
      format: backupFormat,
      createdAt: 'now',
      clusterId: 'test',
      slotCount: 16,
      configVersion: 3,
      groups: [{ id: 1, slots: [0, 1] }],
    });
    await w.json(BackupRecordKind.Group, { group: 1, index: 42, configVersion: 3, slots: [0, 1] });
    const dataAt = w.bytes;
    const a = encodeBackupPairs(pairs(3, 'a'));
    const b = encodeBackupPairs(pairs(2, 'b'));
    await w.record(BackupRecordKind.Data, a);
    await w.record(BackupRecordKind.Data, b);
    await w.json(BackupRecordKind.GroupEnd, { group: 1, keys: 5, bytes: a.length + b.length });
    await w.json(BackupRecordKind.Trailer, {
      groups: 1,
      keys: trailerKeys ?? 5,
      bytes: a.length + b.length,
    });
    await w.finish();
    return { dataAt };
  }

  it('reads back what was written, record by record', async () => {
    const path = join(dir, 'ok.ekv');
    await writeSample(path);
    const seen: BackupRecord[] = [];
    const trailer = await readBackup(path, (r) => {
      seen.push(r);
    });
    expect(seen.map((r) => r.kind)).toEqual([1, 2, 3, 3, 4, 5]);
    expect(trailer.keys).toBe(5);
    const data = seen.filter((r) => r.kind === BackupRecordKind.Data);
    expect(
      data
        .flatMap((r) => (r.kind === BackupRecordKind.Data ? r.pairs : []))
        .map((p) => p.key.toString()),
    ).toEqual(['a-0', 'a-1', 'a-2', 'b-0', 'b-1']);
    // Nothing is left under the temporary name.
    await expect(access(`${path}.part`)).rejects.toThrow();
  });

  it('refuses a flipped byte at the offset of its record', async () => {
    const path = join(dir, 'flip.ekv');
    const { dataAt } = await writeSample(path);
    const bytes = await readFile(path);
    bytes[dataAt + 9] ^= 0x01;
    await writeFile(path, bytes);
    await expect(readBackup(path, () => undefined)).rejects.toThrow(
      `${path}: at offset ${dataAt}: a record does not match its checksum (damaged)`,
    );
  });

  it('refuses a truncated file, a wrong magic, bytes after the trailer and counts that do not add up', async () => {
    const cut = join(dir, 'cut.ekv');
    await writeSample(cut);
    await truncate(cut, (await stat(cut)).size - 3);
    await expect(readBackup(cut, () => undefined)).rejects.toThrow(
      /the file ends inside a checksum \(truncated\)/,
    );
    const magic = join(dir, 'magic.ekv');
    await writeFile(magic, 'not a backup at all');
    await expect(readBackup(magic, () => undefined)).rejects.toThrow(
      `${magic}: at offset 0: not an eraftkv backup`,
    );
    const extra = join(dir, 'extra.ekv');
    await writeSample(extra);
    await writeFile(extra, Buffer.concat([await readFile(extra), Buffer.from('x')]));
    await expect(readBackup(extra, () => undefined)).rejects.toThrow(/bytes after the trailer/);
    const counts = join(dir, 'counts.ekv');
    await writeSample(counts, 6);
    await expect(readBackup(counts, () => undefined)).rejects.toThrow(
      /the trailer counts 1 groups, 6 keys .* but 1, 5 and/,
    );
    await expect(readBackup(join(dir, 'missing.ekv'), () => undefined)).rejects.toThrow(
      /cannot be read/,
    );
  });

  const soundHeader = {
    format: backupFormat,
    createdAt: 'now',
    clusterId: 'test',
    slotCount: 16,
    configVersion: 1,
    groups: [
      { id: 1, slots: [0, 1] },
      { id: 2, slots: [2] },
    ],
  };
  it.each([
    ['a slot beyond the count', { groups: [{ id: 1, slots: [0, 99] }] }],
    [
      'a slot owned by two groups',
      {
        groups: [
          { id: 1, slots: [0, 1] },
          { id: 2, slots: [1] },
        ],
      },
    ],
    [
      'a group listed twice',
      {
        groups: [
          { id: 1, slots: [0] },
          { id: 1, slots: [1] },
        ],
      },
    ],
    ['group id 0', { groups: [{ id: 0, slots: [0] }] }],
    ['no cluster id', { clusterId: undefined }],
    ['a negative config version', { configVersion: -1 }],
    ['no slot', { slotCount: 0 }],
  ])('refuses a header with %s, checksum or not', async (_what, change) => {
    const path = join(dir, 'header.ekv');
    const w = await BackupWriter.create(path);
    await w.json(BackupRecordKind.Header, { ...soundHeader, ...change });
    await w.finish();
    await expect(readBackup(path, () => undefined)).rejects.toThrow(
      `${path}: at offset 8: the header does not hold a cluster id, a config version, a slot count and groups of distinct slots within it`,
    );
  });

  it.each([
    ['a slot beyond the count', { index: 4, configVersion: 1, slots: [99] }],
    ['no slots', { index: 4, configVersion: 1 }],
    ['a negative index', { index: -4, configVersion: 1, slots: [0] }],
    ['no config version', { index: 4, slots: [0] }],
  ])('refuses a group record with %s', async (_what, fields) => {
    const path = join(dir, 'group.ekv');
    const w = await BackupWriter.create(path);
    await w.json(BackupRecordKind.Header, soundHeader);
    const at = w.bytes;
    await w.json(BackupRecordKind.Group, { group: 1, ...fields });
    await w.finish();
    await expect(readBackup(path, () => undefined)).rejects.toThrow(
      `${path}: at offset ${at}: group 1's record does not hold an index, a config version and slots within the count`,
    );
  });

  it('reads a sound header', async () => {
    const path = join(dir, 'sound.ekv');
    const w = await BackupWriter.create(path);
    await w.json(BackupRecordKind.Header, soundHeader);
    await w.json(BackupRecordKind.Trailer, { groups: 0, keys: 0, bytes: 0 });
    await w.finish();
    const headers: unknown[] = [];
    await readBackup(path, (r) => {
      if (r.kind === BackupRecordKind.Header) headers.push(r.header);
    });
    expect(headers).toEqual([soundHeader]);
  });
});
