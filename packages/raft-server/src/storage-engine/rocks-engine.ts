// StorageEngine on RocksDB through level-rocksdb.
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import level from 'level-rocksdb';
import {
  StorageCorruptionError,
  StorageEngineError,
  type KeyRange,
  type StorageEngine,
  type WriteOp,
} from './storage-engine';

function messageOf(err: unknown): string {
  // Not `instanceof Error`: errors of the native binding may come from another realm (jest).
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(err);
}

/**
 * An error of RocksDB at `path` as our own: corruption (RocksDB names the file only for some
 * kinds, such as a checksum mismatch; not for a block that does not decompress) or another
 * failure, both naming the directory.
 */
export function storageFailure(path: string, action: string, err: unknown): StorageEngineError {
  const message = messageOf(err);
  if (/\bCorruption:/.test(message)) {
    return new StorageCorruptionError(
      path,
      `the RocksDB data in ${path} is corrupt (${action}: ${message})`,
      { cause: err },
    );
  }
  return new StorageEngineError(`${action} ${path} failed: ${message}`, { cause: err });
}

/**
 * What a failed open of RocksDB at `path` means, for operators: a directory the process may not
 * write (RocksDB reports it while taking its lock, which reads like a lock held elsewhere), a
 * store already open in this process or in another one, or anything else.
 */
export function describeOpenFailure(path: string, message: string): string {
  if (/Permission denied|Read-only file system|EACCES|EROFS|EPERM/i.test(message)) {
    return (
      `${path} is not writable by this process (${message}); ` +
      'check the owner and permissions of the data dir (--data-dir), or use another one'
    );
  }
  if (/lock hold by current process/i.test(message)) {
    return `${path} is already open in this process (${message})`;
  }
  if (/lock/i.test(message)) {
    return (
      `${path} is in use by another process (its RocksDB lock is held: ${message}); ` +
      'stop that process or use another --data-dir'
    );
  }
  return `cannot open RocksDB at ${path}: ${message}`;
}

const getOptions = { asBuffer: true, fillCache: true } as const;
/** A get that does not leave the block in the cache (verifyChecksums reads blocks from disk). */
const uncachedGetOptions = { asBuffer: true, fillCache: false } as const;

/**
 * The binding's iterators read with RocksDB's block checksums unchecked (only its gets check
 * them), and the block size is its default, 4096 bytes; a block is cut once it holds at least 90%
 * of that. verifyChecksums gets one key at least every this many bytes of the records walked,
 * each counted with more than the few bytes of lengths a block adds to a record. Where the live
 * records are one sorted run (a compacted store), every block is then read by a get; where
 * several levels interleave, a block holding mostly overwritten records and few live ones may be
 * passed over (its live records are still decoded by the walk).
 */
const verifyStrideBytes = 1024;
const verifyRecordOverheadBytes = 16;
/** Gets of one verification in flight at once. */
const verifyGetsInFlight = 64;

class RocksEngine implements StorageEngine {
  /**
   * The binding under levelup. Gets and writes, the hot paths, go to it directly: levelup,
   * encoding-down and abstract-leveldown would copy and check every op of a batch in turn (our
   * keys and values are Buffers already, and our ops have the shape the binding reads).
   */
  private readonly binding: level.RocksBinding;
  /** The binding must not be called once closed (levelup refuses it; the binding would crash). */
  private closed = false;

  constructor(
    readonly path: string,
    private readonly db: level.LevelDb,
  ) {
    this.binding = db.db.db;
  }

  get(key: Buffer): Promise<Buffer | undefined> {
    if (this.closed) return Promise.reject(this.closedError('reading'));
    return new Promise((resolve, reject) => {
      this.binding._get(key, getOptions, (err, value) => {
        if (err === null || err === undefined) resolve(value);
        else if (/^NotFound\b/.test(messageOf(err))) resolve(undefined);
        else reject(storageFailure(this.path, 'reading', err));
      });
    });
  }

  getMany(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
    if (keys.length === 0) return Promise.resolve([]);
    if (this.closed) return Promise.reject(this.closedError(`reading ${keys.length} keys of`));
    return new Promise((resolve, reject) => {
      this.binding._getMany(keys, getOptions, (err, values) => {
        if (err === null || err === undefined) resolve(values);
        else reject(storageFailure(this.path, `reading ${keys.length} keys of`, err));
      });
    });
  }

  write(ops: readonly WriteOp[], options: { readonly sync: boolean }): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    if (this.closed) return Promise.reject(this.closedError(`writing ${ops.length} ops to`));
    return new Promise((resolve, reject) => {
      this.binding._batch(ops, { sync: options.sync }, (err) => {
        if (err === null || err === undefined) resolve();
        else reject(storageFailure(this.path, `writing ${ops.length} ops to`, err));
      });
    });
  }

  async verifyChecksums(): Promise<void> {
    let sinceSample = verifyStrideBytes;
    let pending: Buffer[] = [];
    const check = async (): Promise<void> => {
      const keys = pending;
      pending = [];
      await Promise.all(
        keys.map(
          (key) =>
            new Promise<void>((resolve, reject) =>
              this.binding._get(key, uncachedGetOptions, (err) => {
                // A key deleted meanwhile is NotFound; only corruption matters here.
                if (err === null || err === undefined || /NotFound/.test(messageOf(err))) resolve();
                else reject(storageFailure(this.path, 'verifying the checksums of', err));
              }),
            ),
        ),
      );
    };
    let last: Buffer | null = null;
    for await (const [key, value] of this.iterate({})) {
      sinceSample += key.length + value.length + verifyRecordOverheadBytes;
      last = key;
      if (sinceSample < verifyStrideBytes) continue;
      sinceSample = 0;
      pending.push(key);
      if (pending.length >= verifyGetsInFlight) await check();
    }
    if (last !== null && sinceSample > 0) pending.push(last);
    await check();
  }

  iterate(range: KeyRange): AsyncIterable<[Buffer, Buffer]> {
    const pairs = this.db.iterator({ ...range });
    const path = this.path;
    // Only a failed step costs anything here: one catch handler per step, no generator.
    const fail = (err: unknown): never => {
      throw storageFailure(path, 'iterating over', err);
    };
    return {
      [Symbol.asyncIterator]: () => {
        const it = pairs[Symbol.asyncIterator]();
        return {
          next: () => it.next().catch(fail),
          return: (value?: unknown) =>
            it.return !== undefined
              ? it.return(value)
              : Promise.resolve({ done: true as const, value: undefined }),
        };
      },
    };
  }

  async deleteRange(range: KeyRange): Promise<void> {
    await this.db.clear({ ...range }).catch((err: unknown) => {
      throw storageFailure(this.path, 'deleting a range of', err);
    });
  }

  approximateSizeBytes(range: { gte: Buffer; lt: Buffer }): Promise<number> {
    return new Promise((resolve, reject) =>
      this.binding.approximateSize(range.gte, range.lt, (err, size) =>
        err ? reject(err) : resolve(size),
      ),
    );
  }

  close(): Promise<void> {
    this.closed = true;
    return this.db.close();
  }

  private closedError(action: string): StorageEngineError {
    return new StorageEngineError(`${action} ${this.path} failed: the store is closed`);
  }
}

/**
 * Opens (creating if needed) a RocksDB store in `path`. A directory this process may not write,
 * or a store already open elsewhere (RocksDB holds a lock file), is refused with an error that
 * says which.
 */
export async function openRocksEngine(path: string): Promise<StorageEngine> {
  await mkdir(path, { recursive: true }).catch((err: unknown) => {
    throw new StorageEngineError(describeOpenFailure(path, messageOf(err)), { cause: err });
  });
  const db = await new Promise<level.LevelDb>((resolve, reject) => {
    level(path, { keyEncoding: 'binary', valueEncoding: 'binary' }, (err, opened) =>
      err ? reject(err) : resolve(opened),
    );
  }).catch((err: unknown) => {
    const message = messageOf(err);
    if (/\bCorruption:/.test(message)) throw storageFailure(path, 'opening', err);
    throw new StorageEngineError(describeOpenFailure(path, message), { cause: err });
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
