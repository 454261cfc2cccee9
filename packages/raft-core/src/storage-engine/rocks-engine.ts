// StorageEngine on RocksDB through level-rocksdb.
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import level from 'level-rocksdb';
import {
  StorageEngineError,
  type KeyRange,
  type StorageEngine,
  type WriteOp,
} from './storage-engine';

class RocksEngine implements StorageEngine {
  constructor(
    readonly path: string,
    private readonly db: level.LevelDb,
  ) {}

  async get(key: Buffer): Promise<Buffer | undefined> {
    try {
      return await this.db.get(key);
    } catch (err) {
      if ((err as { notFound?: boolean }).notFound === true) return undefined;
      throw err;
    }
  }

  async write(ops: readonly WriteOp[], options: { readonly sync: boolean }): Promise<void> {
    if (ops.length === 0) return;
    try {
      await this.db.batch(
        ops.map((op) => ({ type: op.type, key: op.key, value: op.value })),
        { sync: options.sync },
      );
    } catch (err) {
      throw new StorageEngineError(
        `write of ${ops.length} ops to ${this.path} failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  iterate(range: KeyRange): AsyncIterable<[Buffer, Buffer]> {
    return this.db.iterator({ ...range });
  }

  async deleteRange(range: KeyRange): Promise<void> {
    await this.db.clear({ ...range });
  }

  approximateSizeBytes(range: { gte: Buffer; lt: Buffer }): Promise<number> {
    return new Promise((resolve, reject) =>
      this.db.db.db.approximateSize(range.gte, range.lt, (err, size) =>
        err ? reject(err) : resolve(size),
      ),
    );
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/**
 * Opens (creating if needed) a RocksDB store in `path`. A store already open in another
 * process (RocksDB holds a lock file) is refused with an error that says so.
 */
export async function openRocksEngine(path: string): Promise<StorageEngine> {
  await mkdir(path, { recursive: true });
  const db = await new Promise<level.LevelDb>((resolve, reject) => {
    level(path, { keyEncoding: 'binary', valueEncoding: 'binary' }, (err, opened) =>
      err ? reject(err) : resolve(opened),
    );
  }).catch((err: unknown) => {
    const message = (err as Error).message ?? String(err);
    if (/lock/i.test(message)) {
      throw new StorageEngineError(
        `${path} is in use by another process (its RocksDB lock is held); ` +
          'stop that process or use another --data-dir',
        { cause: err },
      );
    }
    throw new StorageEngineError(`cannot open RocksDB at ${path}: ${message}`, { cause: err });
  });
  return new RocksEngine(path, db);
}

/** The bytes of every file under `dir` (a data dir's size on disk, as `du` would count it). */
export async function directorySizeBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await directorySizeBytes(path);
    else if (entry.isFile())
      total += await stat(path).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
}
