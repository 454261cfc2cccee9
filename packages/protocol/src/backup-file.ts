// The backup file of eraftkv-ctl snapshot save / status / load and eraftkv-utl snapshot restore.
// A file is an 8-byte magic and then records, each `[kind u8][length u32 BE][payload][checksum:
// the first 8 bytes of the SHA-256 of kind, length and payload]`:
//   1 header     JSON {format, createdAt, clusterId, slotCount, configVersion, groups: [{id, slots}]}
//   2 group      JSON {group, index, configVersion, slots}: a group's part begins
//   3 data       pairs [u32 key length][key][u32 value length][value]...
//   4 group end  JSON {group, keys, bytes}
//   5 trailer    JSON {groups, keys, bytes}
// Records come in that order (a group's data between its group and group end records), and the
// counts must add up: a reader that reaches the trailer has checked every byte. A file is written
// under FILE.part and renamed only once complete, so no half-written backup carries the name.
import { createHash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';

export const backupMagic = Buffer.from('EKVBAK\x00\x01', 'latin1');
export const backupFormat = 1;
/** The largest record payload a reader accepts (a data record holds one chunk of a group). */
export const backupRecordBytesMax = 16 * 1024 * 1024;

export enum BackupRecordKind {
  Header = 1,
  Group = 2,
  Data = 3,
  GroupEnd = 4,
  Trailer = 5,
}

export interface BackupHeader {
  readonly format: number;
  readonly createdAt: string;
  /** The id of the cluster backed up (its nodes' --cluster-id). */
  readonly clusterId: string;
  readonly slotCount: number;
  readonly configVersion: number;
  /** Every kv group and the slots it owned when the backup began. */
  readonly groups: readonly { readonly id: number; readonly slots: readonly number[] }[];
}

export interface BackupGroupBegin {
  readonly group: number;
  /** The applied index the group's part was read at. */
  readonly index: number;
  readonly configVersion: number;
  readonly slots: readonly number[];
}

export interface BackupGroupEnd {
  readonly group: number;
  readonly keys: number;
  readonly bytes: number;
}

export interface BackupTrailer {
  readonly groups: number;
  readonly keys: number;
  readonly bytes: number;
}

/** A backup that is truncated, damaged or not a backup: names the file and the offset. */
export class BackupFileError extends Error {
  override name = 'BackupFileError';
  constructor(
    readonly path: string,
    readonly offset: number,
    message: string,
  ) {
    super(`${path}: at offset ${offset}: ${message}`);
  }
}

function checksum(head: Buffer, payload: Buffer): Buffer {
  return createHash('sha256').update(head).update(payload).digest().subarray(0, 8);
}

/** Encodes key-value pairs as a data record's payload. */
export function encodeBackupPairs(
  pairs: readonly { key: Uint8Array; value: Uint8Array }[],
): Buffer {
  let size = 0;
  for (const p of pairs) size += 8 + p.key.length + p.value.length;
  const out = Buffer.alloc(size);
  let at = 0;
  for (const p of pairs) {
    at = out.writeUInt32BE(p.key.length, at);
    out.set(p.key, at);
    at += p.key.length;
    at = out.writeUInt32BE(p.value.length, at);
    out.set(p.value, at);
    at += p.value.length;
  }
  return out;
}

/** Decodes a data record's payload; throws an Error saying what is wrong. */
export function decodeBackupPairs(payload: Buffer): { key: Buffer; value: Buffer }[] {
  const pairs: { key: Buffer; value: Buffer }[] = [];
  let at = 0;
  const take = (): Buffer => {
    if (at + 4 > payload.length) throw new Error('a data record ends inside a length');
    const n = payload.readUInt32BE(at);
    at += 4;
    if (at + n > payload.length) throw new Error('a data record ends inside a key or value');
    const b = payload.subarray(at, at + n);
    at += n;
    return b;
  };
  while (at < payload.length) pairs.push({ key: take(), value: take() });
  return pairs;
}

/** Writes a backup: records go to PATH.part, which finish() syncs and renames to PATH. */
export class BackupWriter {
  private bytesWritten = 0;

  private constructor(
    private readonly path: string,
    private readonly file: FileHandle,
  ) {}

  static async create(path: string): Promise<BackupWriter> {
    const file = await open(`${path}.part`, 'w');
    const writer = new BackupWriter(path, file);
    await writer.raw(backupMagic);
    return writer;
  }

  get bytes(): number {
    return this.bytesWritten;
  }

  private async raw(b: Buffer): Promise<void> {
    await this.file.write(b);
    this.bytesWritten += b.length;
  }

  async record(kind: BackupRecordKind, payload: Buffer): Promise<void> {
    if (payload.length > backupRecordBytesMax)
      throw new Error(
        `a backup record of ${payload.length} bytes is above ${backupRecordBytesMax}`,
      );
    const head = Buffer.alloc(5);
    head.writeUInt8(kind, 0);
    head.writeUInt32BE(payload.length, 1);
    await this.raw(Buffer.concat([head, payload, checksum(head, payload)]));
  }

  json(kind: BackupRecordKind, value: object): Promise<void> {
    return this.record(kind, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  async finish(): Promise<void> {
    await this.file.sync();
    await this.file.close();
    await rename(`${this.path}.part`, this.path);
  }

  /** Gives up: the partial file is removed. */
  async abandon(): Promise<void> {
    await this.file.close().catch(() => undefined);
    await rm(`${this.path}.part`, { force: true });
  }
}

/** Whether a header's slot count and groups are what a cluster can hold (not only parseable). */
/** A non-negative safe integer. */
function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function headerIsSound(h: BackupHeader): boolean {
  const { slotCount, groups, clusterId, configVersion } = h as unknown as Record<string, unknown>;
  if (typeof clusterId !== 'string' || !isCount(configVersion)) return false;
  if (!isCount(slotCount) || slotCount < 1 || slotCount > 65536 || !Array.isArray(groups))
    return false;
  // Every slot within the count and owned by one group at most; every group id once.
  const owners = new Set<number>();
  const ids = new Set<number>();
  return (groups as unknown[]).every((g: unknown) => {
    if (typeof g !== 'object' || g === null) return false;
    const { id, slots } = g as { id?: unknown; slots?: unknown };
    if (!isCount(id) || id < 1 || ids.has(id) || !Array.isArray(slots)) return false;
    ids.add(id);
    return (slots as unknown[]).every((x) => {
      if (!isCount(x) || x >= slotCount || owners.has(x)) return false;
      owners.add(x);
      return true;
    });
  });
}

function groupBeginIsSound(g: BackupGroupBegin, slotCount: number): boolean {
  const { index, configVersion, slots } = g as unknown as Record<string, unknown>;
  return (
    isCount(index) &&
    isCount(configVersion) &&
    Array.isArray(slots) &&
    (slots as unknown[]).every((x) => isCount(x) && x < slotCount)
  );
}

/** What a reader hands over, in file order. */
export type BackupRecord =
  | { readonly kind: BackupRecordKind.Header; readonly header: BackupHeader }
  | { readonly kind: BackupRecordKind.Group; readonly group: BackupGroupBegin }
  | {
      readonly kind: BackupRecordKind.Data;
      readonly group: number;
      readonly pairs: { key: Buffer; value: Buffer }[];
    }
  | { readonly kind: BackupRecordKind.GroupEnd; readonly end: BackupGroupEnd }
  | { readonly kind: BackupRecordKind.Trailer; readonly trailer: BackupTrailer };

/**
 * Reads and checks a backup from start to end, handing over each record (with its offset) as it
 * is verified (the file is read in pieces, never whole); returns the trailer. Throws a
 * BackupFileError at the first bad byte: a wrong magic, a checksum that does not match, a record
 * out of order, counts that do not add up, or an end before the trailer. A consumer that stops
 * early closes the file.
 */
export async function* backupRecords(
  path: string,
): AsyncGenerator<readonly [BackupRecord, number], BackupTrailer> {
  const file = await open(path, 'r').catch((err: unknown) => {
    throw new BackupFileError(path, 0, `cannot be read: ${(err as Error).message}`);
  });
  try {
    let offset = 0;
    const read = async (n: number, what: string): Promise<Buffer> => {
      const b = Buffer.alloc(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await file.read(b, got, n - got, offset + got);
        if (bytesRead === 0)
          throw new BackupFileError(path, offset + got, `the file ends inside ${what} (truncated)`);
        got += bytesRead;
      }
      offset += n;
      return b;
    };
    const magic = await read(backupMagic.length, 'the magic');
    if (!magic.equals(backupMagic))
      throw new BackupFileError(path, 0, 'not an eraftkv backup (wrong magic)');
    let header: BackupHeader | null = null;
    let group: BackupGroupBegin | null = null;
    let groupKeys = 0;
    let groupBytes = 0;
    let totals = { groups: 0, keys: 0, bytes: 0 };
    for (;;) {
      const at = offset;
      const head = await read(5, 'a record header');
      const kind = head.readUInt8(0) as BackupRecordKind;
      const length = head.readUInt32BE(1);
      if (length > backupRecordBytesMax)
        throw new BackupFileError(path, at, `a record claims ${length} bytes (damaged)`);
      const payload = await read(length, 'a record');
      const sum = await read(8, 'a checksum');
      if (!sum.equals(checksum(head, payload)))
        throw new BackupFileError(path, at, 'a record does not match its checksum (damaged)');
      const bad = (message: string): BackupFileError => new BackupFileError(path, at, message);
      const json = (): Record<string, unknown> => {
        try {
          return JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
        } catch {
          throw bad('a record is not the JSON it should be');
        }
      };
      switch (kind) {
        case BackupRecordKind.Header: {
          if (header !== null) throw bad('a second header');
          const h = json() as unknown as BackupHeader;
          if (h.format !== backupFormat)
            throw bad(
              `format ${String(h.format)} is not ${backupFormat} (written by another version)`,
            );
          if (!headerIsSound(h))
            throw bad(
              'the header does not hold a cluster id, a config version, a slot count and groups of distinct slots within it',
            );
          header = h;
          yield [{ kind, header: h }, at];
          break;
        }
        case BackupRecordKind.Group: {
          if (header === null || group !== null) throw bad('a group record out of order');
          const begun = json() as unknown as BackupGroupBegin;
          if (!header.groups.some((g) => g.id === begun.group))
            throw bad('a group record names a group the header does not list');
          if (!groupBeginIsSound(begun, header.slotCount))
            throw bad(
              `group ${begun.group}'s record does not hold an index, a config version and slots within the count`,
            );
          group = begun;
          groupKeys = 0;
          groupBytes = 0;
          yield [{ kind, group }, at];
          break;
        }
        case BackupRecordKind.Data: {
          if (group === null) throw bad('data outside a group');
          let pairs: { key: Buffer; value: Buffer }[];
          try {
            pairs = decodeBackupPairs(payload);
          } catch (err) {
            throw bad((err as Error).message);
          }
          groupKeys += pairs.length;
          groupBytes += payload.length;
          yield [{ kind, group: group.group, pairs }, at];
          break;
        }
        case BackupRecordKind.GroupEnd: {
          if (group === null) throw bad('a group end without its group');
          const end = json() as unknown as BackupGroupEnd;
          if (end.group !== group.group || end.keys !== groupKeys || end.bytes !== groupBytes)
            throw bad(
              `group ${group.group} ends with ${end.keys} keys and ${end.bytes} bytes, but ${groupKeys} keys and ${groupBytes} bytes were read`,
            );
          totals = {
            groups: totals.groups + 1,
            keys: totals.keys + groupKeys,
            bytes: totals.bytes + groupBytes,
          };
          group = null;
          yield [{ kind, end }, at];
          break;
        }
        case BackupRecordKind.Trailer: {
          if (header === null || group !== null) throw bad('the trailer out of order');
          const t = json() as unknown as BackupTrailer;
          if (t.groups !== totals.groups || t.keys !== totals.keys || t.bytes !== totals.bytes)
            throw bad(
              `the trailer counts ${t.groups} groups, ${t.keys} keys and ${t.bytes} bytes, but ${totals.groups}, ${totals.keys} and ${totals.bytes} were read`,
            );
          const { bytesRead } = await file.read(Buffer.alloc(1), 0, 1, offset);
          if (bytesRead !== 0) throw new BackupFileError(path, offset, 'bytes after the trailer');
          yield [{ kind, trailer: t }, at];
          return t;
        }
        default:
          throw bad(`unknown record kind ${String(kind)} (damaged)`);
      }
    }
  } finally {
    await file.close();
  }
}

/** Reads and checks a whole backup (backupRecords), calling `onRecord` for each record. */
export async function readBackup(
  path: string,
  onRecord: (record: BackupRecord, offset: number) => void | Promise<void>,
): Promise<BackupTrailer> {
  const records = backupRecords(path);
  for (;;) {
    const next = await records.next();
    if (next.done === true) return next.value;
    await onRecord(next.value[0], next.value[1]);
  }
}
