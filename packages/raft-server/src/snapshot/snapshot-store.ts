// Snapshot files on disk. A snapshot is a data file written by the state machine plus a small
// JSON file with its index, term, membership, size and CRC-32; the JSON is written last (and
// renamed into place), so a snapshot without one never existed.
//
// Receiving: blocks from the leader are appended to a partial file; the follower answers each
// block with the next offset it expects, so a broken transfer resumes where it stopped. Only
// after the last block, when size and checksum of the whole file verify, does the partial become
// a snapshot. Older snapshots are removed once nothing reads them.
import { createReadStream } from 'node:fs';
import {
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
  type FileHandle,
} from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Membership, SnapshotMeta } from '@eraftkv/raft';
import { DataDirError } from '../node-identity';

export interface SnapshotFile {
  readonly meta: SnapshotMeta;
  readonly path: string;
  readonly sizeBytes: number;
  readonly crc32: number;
}

interface StoredMeta {
  index: number;
  term: number;
  membership: Membership;
  sizeBytes: number;
  crc32: number;
}

/** What is wrong with a stored snapshot's metadata (file `name`), or null. */
function storedMetaProblem(value: unknown, name: string): string | null {
  if (typeof value !== 'object' || value === null) return 'not a JSON object';
  const m = value as Record<string, unknown>;
  const count = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  for (const field of ['index', 'term', 'sizeBytes', 'crc32'] as const) {
    if (!count(m[field])) return `"${field}" is not a non-negative integer`;
  }
  if (name !== `${baseName(m.index as number, m.term as number)}.json`)
    return `it names index ${String(m.index)} and term ${String(m.term)}, not those of its file name`;
  const members = m.membership;
  const memberOk = (x: unknown): boolean => {
    if (typeof x !== 'object' || x === null) return false;
    const e = x as Record<string, unknown>;
    return (
      count(e.id) &&
      typeof e.address === 'string' &&
      typeof e.learner === 'boolean' &&
      count(e.incarnation)
    );
  };
  if (!Array.isArray(members) || !members.every(memberOk))
    return '"membership" is not a list of members (id, address, learner, incarnation)';
  return null;
}

/** One block of a snapshot being received. */
export interface IncomingBlock {
  /** Identifies the transfer (leader, term and the snapshot's identity). */
  readonly token: string;
  readonly meta: SnapshotMeta;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly blockCrc32: number;
  readonly isLast: boolean;
  /** On the last block: the whole file's size and checksum. */
  readonly fileSizeBytes: number;
  readonly fileCrc32: number;
}

export type ReceiveResult =
  | { readonly kind: 'next'; readonly offset: number }
  | { readonly kind: 'complete'; readonly file: SnapshotFile }
  | { readonly kind: 'rejected'; readonly reason: string };

interface Incoming {
  readonly token: string;
  readonly meta: SnapshotMeta;
  readonly path: string;
  readonly handle: FileHandle;
  size: number;
  crc: number;
}

function baseName(index: number, term: number): string {
  return `snap-${String(index).padStart(16, '0')}-${term}`;
}

/** The CRC-32 and size of a whole file, read in a stream. */
export async function checksumFile(path: string): Promise<{ crc32: number; sizeBytes: number }> {
  let crc = 0;
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer;
    // zlib.crc32 restarts from 0 for an empty buffer that has no memory behind it: skip those.
    if (buf.length > 0) crc = crc32(buf, crc);
    size += buf.length;
  }
  return { crc32: crc, sizeBytes: size };
}

export class SnapshotStore {
  /** The snapshot the log store refers to: the one offered to followers. */
  private latestFile: SnapshotFile | null = null;
  /** Every complete snapshot on disk (created here or received), by path. */
  private readonly files = new Map<string, SnapshotFile>();
  private incoming: Incoming | null = null;
  /** Readers per snapshot path; a file in use is removed only once released. */
  private readonly readers = new Map<string, number>();
  private readonly retired = new Set<string>();
  private tmpSeq = 0;

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<SnapshotStore> {
    await mkdir(dir, { recursive: true });
    const store = new SnapshotStore(dir);
    const names = await readdir(dir);
    // Leftovers of writes or transfers that never finished.
    for (const name of names) {
      if (name.startsWith('tmp-') || name.startsWith('recv-'))
        await rm(join(dir, name), { force: true });
    }
    const metas: StoredMeta[] = [];
    for (const name of names) {
      if (!name.startsWith('snap-') || !name.endsWith('.json')) continue;
      const path = join(dir, name);
      try {
        const value: unknown = JSON.parse(await readFile(path, 'utf8'));
        const problem = storedMetaProblem(value, name);
        if (problem !== null) throw new Error(problem);
        metas.push(value as StoredMeta);
      } catch (err) {
        throw new DataDirError(
          `snapshot metadata ${path} cannot be read (${(err as Error).message}): the file is damaged. ` +
            `Move it and its .dat file aside and start again: a node whose state machine is up to date ` +
            `writes a new snapshot when it needs one (one that needs it refuses to start, saying so)`,
        );
      }
    }
    for (const m of metas) {
      const file: SnapshotFile = {
        meta: { index: m.index, term: m.term, membership: m.membership },
        path: join(dir, `${baseName(m.index, m.term)}.dat`),
        sizeBytes: m.sizeBytes,
        crc32: m.crc32,
      };
      store.files.set(file.path, file);
    }
    return store;
  }

  /**
   * Reads `file` whole and compares it with the size and CRC-32 recorded when it was written or
   * received: null when it matches, else what is wrong (missing, another size, another CRC).
   */
  async damage(file: SnapshotFile): Promise<string | null> {
    let actual: { crc32: number; sizeBytes: number };
    try {
      actual = await checksumFile(file.path);
    } catch (err) {
      return `it cannot be read (${(err as Error).message})`;
    }
    if (actual.sizeBytes !== file.sizeBytes)
      return `it holds ${actual.sizeBytes} bytes, ${file.sizeBytes} were written`;
    if (actual.crc32 !== file.crc32)
      return `its CRC-32 is ${actual.crc32.toString(16)}, ${file.crc32.toString(16)} was written`;
    return null;
  }

  /** The snapshot in use (the one the log store refers to), if any. */
  latest(): SnapshotFile | null {
    return this.latestFile;
  }

  /** The complete snapshot file for (index, term), if one is on disk. */
  find(index: number, term: number): SnapshotFile | undefined {
    return this.files.get(join(this.dir, `${baseName(index, term)}.dat`));
  }

  /**
   * Makes `file` the snapshot in use; every other snapshot is removed (once no one reads it).
   * Pass null to keep none (a new node). A snapshot older than the one in use is refused: the
   * log store may already refer to the newer one, whose file must stay.
   */
  async adopt(file: SnapshotFile | null): Promise<void> {
    const current = this.latestFile;
    if (file !== null && current !== null && file.meta.index < current.meta.index) {
      throw new Error(
        `snapshot ${file.meta.index} is older than the snapshot in use (${current.meta.index})`,
      );
    }
    this.latestFile = file;
    for (const other of this.files.values()) {
      if (other.path !== file?.path) this.retired.add(other.path);
    }
    await this.removeRetired();
  }

  /** Removes a complete snapshot that will not be used (once no one reads it). */
  async discard(file: SnapshotFile): Promise<void> {
    if (file.path === this.latestFile?.path) throw new Error(`${file.path} is in use`);
    this.retired.add(file.path);
    await this.removeRetired();
  }

  /**
   * Writes a new snapshot: `write` fills a temporary file (the state machine's payload) and
   * returns the index it covers; `metaFor` gives the term and membership at that index. The file
   * is synced and checksummed; it is used once adopted.
   */
  async create(
    write: (path: string) => Promise<number>,
    metaFor: (index: number) => { term: number; membership: Membership },
  ): Promise<SnapshotFile> {
    const tmp = join(this.dir, `tmp-${process.pid}-${++this.tmpSeq}.dat`);
    try {
      const index = await write(tmp);
      const { term, membership } = metaFor(index);
      const handle = await open(tmp, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      const { crc32: crc, sizeBytes } = await checksumFile(tmp);
      return await this.commit({ index, term, membership }, tmp, sizeBytes, crc);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Moves a verified data file into place as a complete snapshot (not yet in use). */
  private async commit(
    meta: SnapshotMeta,
    dataPath: string,
    sizeBytes: number,
    crc: number,
  ): Promise<SnapshotFile> {
    const base = baseName(meta.index, meta.term);
    const path = join(this.dir, `${base}.dat`);
    await rename(dataPath, path);
    const stored: StoredMeta = { ...meta, membership: [...meta.membership], sizeBytes, crc32: crc };
    const metaTmp = join(this.dir, `tmp-${base}.json`);
    await writeFile(metaTmp, JSON.stringify(stored));
    const handle = await open(metaTmp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(metaTmp, join(this.dir, `${base}.json`));
    await this.syncDir();
    const file: SnapshotFile = { meta, path, sizeBytes, crc32: crc };
    this.files.set(path, file);
    this.retired.delete(path);
    return file;
  }

  private async syncDir(): Promise<void> {
    const handle = await open(this.dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Marks `file` as being read (sent to a follower): it is not removed until released. */
  acquire(file: SnapshotFile): void {
    this.readers.set(file.path, (this.readers.get(file.path) ?? 0) + 1);
  }

  async release(file: SnapshotFile): Promise<void> {
    const n = (this.readers.get(file.path) ?? 1) - 1;
    if (n <= 0) this.readers.delete(file.path);
    else this.readers.set(file.path, n);
    await this.removeRetired();
  }

  private async removeRetired(): Promise<void> {
    for (const path of [...this.retired]) {
      if (this.readers.has(path)) continue;
      this.retired.delete(path);
      this.files.delete(path);
      await this.remove(path.slice(this.dir.length + 1, -'.dat'.length));
    }
  }

  private async remove(base: string): Promise<void> {
    await rm(join(this.dir, `${base}.json`), { force: true });
    await rm(join(this.dir, `${base}.dat`), { force: true });
  }

  /** Reads `length` bytes of a snapshot file at `offset`. */
  async readBlock(file: SnapshotFile, offset: number, length: number): Promise<Buffer> {
    const handle = await open(file.path, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(length, Math.max(0, file.sizeBytes - offset)));
      const { bytesRead } = await handle.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  /**
   * Takes one block of a snapshot sent by the leader. Answers the next offset to send, or the
   * complete, verified snapshot after the last block (on disk, but not in use until adopted).
   */
  async receive(block: IncomingBlock): Promise<ReceiveResult> {
    let incoming = this.incoming;
    if (incoming !== null && incoming.token !== block.token) {
      // Another transfer (a newer snapshot or another leader) replaces the one in progress.
      await this.dropIncoming();
      incoming = null;
    }
    if (incoming === null) {
      if (block.offset !== 0) return { kind: 'next', offset: 0 };
      const path = join(this.dir, `recv-${process.pid}-${++this.tmpSeq}.part`);
      const handle = await open(path, 'w');
      incoming = { token: block.token, meta: block.meta, path, handle, size: 0, crc: 0 };
      this.incoming = incoming;
    }
    if (block.offset !== incoming.size) {
      // A duplicate or a gap: tell the leader where we really are.
      return { kind: 'next', offset: incoming.size };
    }
    if (crc32(block.data) !== block.blockCrc32) {
      return { kind: 'next', offset: incoming.size };
    }
    await incoming.handle.write(block.data, 0, block.data.length, incoming.size);
    incoming.size += block.data.length;
    if (block.data.length > 0) incoming.crc = crc32(block.data, incoming.crc);
    if (!block.isLast) return { kind: 'next', offset: incoming.size };
    if (incoming.size !== block.fileSizeBytes || incoming.crc !== block.fileCrc32) {
      const reason =
        `snapshot ${block.meta.term}/${block.meta.index} failed verification: ` +
        `${incoming.size} bytes with CRC-32 ${incoming.crc.toString(16)}, ` +
        `expected ${block.fileSizeBytes} bytes with ${block.fileCrc32.toString(16)}`;
      await this.dropIncoming();
      return { kind: 'rejected', reason };
    }
    await incoming.handle.sync();
    await incoming.handle.close();
    this.incoming = null;
    const file = await this.commit(incoming.meta, incoming.path, incoming.size, incoming.crc);
    return { kind: 'complete', file };
  }

  /** The bytes received so far of the transfer in progress (0 when none). */
  incomingBytes(): number {
    return this.incoming?.size ?? 0;
  }

  private async dropIncoming(): Promise<void> {
    const incoming = this.incoming;
    if (incoming === null) return;
    this.incoming = null;
    await incoming.handle.close().catch(() => undefined);
    await rm(incoming.path, { force: true });
  }

  async close(): Promise<void> {
    await this.dropIncoming();
  }

  /** The size of a file on disk (for tests and status). */
  static async sizeOf(path: string): Promise<number> {
    return (await stat(path)).size;
  }
}
