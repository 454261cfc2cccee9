// The backup file format: what a writer produces reads back record for record, and every kind of
// damage is refused at the offset of the first bad record.
import { mkdtemp, readFile, rm, stat, truncate, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BackupWriter,
  backupFormat,
  encodePairs,
  readBackup,
  RecordKind,
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
    await w.json(RecordKind.Header, {
      format: backupFormat,
      createdAt: 'now',
      slotCount: 16,
      configVersion: 3,
      groups: [{ id: 1, slots: [0, 1] }],
    });
    await w.json(RecordKind.Group, { group: 1, index: 42, configVersion: 3, slots: [0, 1] });
    const dataAt = w.bytes;
    const a = encodePairs(pairs(3, 'a'));
    const b = encodePairs(pairs(2, 'b'));
    await w.record(RecordKind.Data, a);
    await w.record(RecordKind.Data, b);
    await w.json(RecordKind.GroupEnd, { group: 1, keys: 5, bytes: a.length + b.length });
    await w.json(RecordKind.Trailer, {
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
    const data = seen.filter((r) => r.kind === RecordKind.Data);
    expect(
      data.flatMap((r) => (r.kind === RecordKind.Data ? r.pairs : [])).map((p) => p.key.toString()),
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

  it('refuses a header whose slots a cluster cannot hold, checksum or not', async () => {
    const path = join(dir, 'header.ekv');
    const w = await BackupWriter.create(path);
    await w.json(RecordKind.Header, {
      format: backupFormat,
      createdAt: 'now',
      slotCount: 16,
      configVersion: 1,
      groups: [{ id: 1, slots: [0, 99] }],
    });
    await w.finish();
    await expect(readBackup(path, () => undefined)).rejects.toThrow(
      `${path}: at offset 8: the header does not hold a slot count and groups of slots within it`,
    );
  });
});
