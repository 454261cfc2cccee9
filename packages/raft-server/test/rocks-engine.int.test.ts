// RocksEngine's errors on real RocksDB: each says what is wrong and where. A data dir this process
// may not write is "not writable" (RocksDB reports it while taking its lock, which the old message
// took for a lock held by another process); a store held by another process is "in use"; a
// corrupt block names the directory (and the file when RocksDB names one).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  openRocksEngine,
  StorageCorruptionError,
  StorageEngineError,
  type StorageEngine,
  verifyStoreChecksums,
} from '../src';
import { describeOpenFailure } from '../src/storage-engine';
import { waitFor } from '@eraftkv/test-support';

/**
 * Runs `work` as an unprivileged user: root may write any directory, so a permission test must
 * drop its effective uid (nobody) for the length of `work`.
 */
async function asUnprivileged<T>(work: () => Promise<T>): Promise<T> {
  const uid = process.geteuid?.() ?? -1;
  if (uid !== 0 || process.seteuid === undefined) return work();
  process.seteuid(65534);
  try {
    return await work();
  } finally {
    process.seteuid(0);
  }
}

/** Writes `count` keys with compressible values, then reopens once so that they sit in an .sst. */
async function writeToSst(dir: string, count: number): Promise<void> {
  let engine = await openRocksEngine(dir);
  const ops = Array.from({ length: count }, (_, i) => ({
    type: 'put' as const,
    key: Buffer.from(`k${String(i).padStart(5, '0')}`),
    value: Buffer.from(`value-${i}-`.repeat(20)),
  }));
  await engine.write(ops, { sync: true });
  await engine.close();
  // Reopening replays the write-ahead log into a table file.
  engine = await openRocksEngine(dir);
  await engine.close();
}

/** Flips 64 bytes in the middle of the largest .sst file of `dir`; returns its name. */
async function corruptSst(dir: string): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sst'));
  const sizes = await Promise.all(files.map(async (f) => (await readFile(join(dir, f))).length));
  const name = files[sizes.indexOf(Math.max(...sizes))];
  const bytes = await readFile(join(dir, name));
  const middle = Math.floor(bytes.length / 2);
  for (let i = 0; i < 64; i++) bytes[middle + i] ^= 0xff;
  await writeFile(join(dir, name), bytes);
  return name;
}

describe('openRocksEngine and RocksEngine errors', () => {
  let root = '';
  const open: StorageEngine[] = [];
  let holder: ChildProcess | null = null;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'eraftkv-rocks-'));
    // Reachable by the unprivileged user of the permission tests.
    await chmod(root, 0o755);
  });
  afterAll(async () => {
    holder?.kill('SIGKILL');
    for (const e of open) await e.close().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  it('reads, writes and deletes; a missing key is undefined; a closed store refuses', async () => {
    const engine = await openRocksEngine(join(root, 'basic'));
    await engine.write(
      [
        { type: 'put', key: Buffer.from('a'), value: Buffer.from('1') },
        { type: 'put', key: Buffer.from('b'), value: Buffer.from('2') },
      ],
      { sync: true },
    );
    await engine.write([{ type: 'del', key: Buffer.from('a') }], { sync: false });
    expect(await engine.get(Buffer.from('a'))).toBeUndefined();
    expect(await engine.get(Buffer.from('b'))).toEqual(Buffer.from('2'));
    // getMany answers in the order asked, undefined where absent, a key asked twice twice.
    const many = await engine.getMany(['b', 'a', 'c', 'b'].map((k) => Buffer.from(k)));
    expect(many.map((v) => v?.toString())).toEqual(['2', undefined, undefined, '2']);
    expect(await engine.getMany([])).toEqual([]);
    await engine.close();
    await expect(engine.get(Buffer.from('b'))).rejects.toThrow(/basic failed: the store is closed/);
    await expect(engine.getMany([Buffer.from('b')])).rejects.toThrow(
      /reading 1 keys of .*basic failed: the store is closed/,
    );
    await expect(
      engine.write([{ type: 'del', key: Buffer.from('b') }], { sync: true }),
    ).rejects.toThrow(/writing 1 ops to .*basic failed: the store is closed/);
  });

  it('says that a read-only data dir is not writable, not that it is in use', async () => {
    const existing = join(root, 'read-only');
    await writeToSst(existing, 10);
    await chmod(existing, 0o555);
    const err = await asUnprivileged(() =>
      openRocksEngine(existing).then(
        () => null,
        (e: Error) => e,
      ),
    );
    expect(err).toBeInstanceOf(StorageEngineError);
    expect(err?.message).toMatch(
      new RegExp(`^${existing} is not writable by this process \\(.*Permission denied\\)`),
    );
    expect(err?.message).not.toMatch(/in use/);
    // A new store under a read-only directory: the mkdir is refused, and said so.
    const parent = join(root, 'read-only-parent');
    await mkdir(parent, { mode: 0o555 });
    const nested = join(parent, 'state');
    const mkdirErr = await asUnprivileged(() =>
      openRocksEngine(nested).then(
        () => null,
        (e: Error) => e,
      ),
    );
    expect(mkdirErr?.message).toMatch(new RegExp(`^${nested} is not writable by this process`));
  });

  it('says that a store held by another process is in use', async () => {
    const dir = join(root, 'held');
    await mkdir(dir);
    // Another process opens the store and holds its lock until it is killed.
    holder = spawn(
      process.execPath,
      [
        '-e',
        `require('level-rocksdb')(${JSON.stringify(dir)}, (err) => { if (err) throw err; console.log('open'); }); setInterval(() => {}, 1000);`,
      ],
      { cwd: __dirname, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let opened = false;
    holder.stdout?.on('data', () => (opened = true));
    await waitFor(() => opened, { timeoutMs: 10_000, what: 'the other process to open the store' });
    await expect(openRocksEngine(dir)).rejects.toThrow(
      new RegExp(`^${dir} is in use by another process \\(its RocksDB lock is held`),
    );
    holder.kill('SIGKILL');
  });

  it('names the directory and the file of a corrupt block', async () => {
    const dir = join(root, 'corrupt');
    await writeToSst(dir, 2000);
    const file = await corruptSst(dir);
    const engine = await openRocksEngine(dir);
    open.push(engine);
    // A scan decompresses the block: RocksDB names no file, the error names the directory.
    const scan = async (): Promise<number> => {
      let n = 0;
      for await (const pair of engine.iterate({})) if (pair.length === 2) n++;
      return n;
    };
    const scanErr = await scan().then(
      () => null,
      (e: Error) => e,
    );
    expect(scanErr).toBeInstanceOf(StorageCorruptionError);
    expect(scanErr?.message).toMatch(
      new RegExp(`^the RocksDB data in ${dir} is corrupt \\(iterating over: Corruption: `),
    );
    // A point read checks the block's checksum: RocksDB's message names the file.
    let getErr: Error | null = null;
    for (let i = 0; i < 2000 && getErr === null; i++) {
      getErr = await engine.get(Buffer.from(`k${String(i).padStart(5, '0')}`)).then(
        () => null,
        (e: Error) => e,
      );
    }
    expect(getErr).toBeInstanceOf(StorageCorruptionError);
    expect(getErr?.message).toMatch(
      new RegExp(`^the RocksDB data in ${dir} is corrupt \\(reading: Corruption: .*${file}`),
    );
    // getMany of every key meets the same block, and says so the same way.
    const keys = Array.from({ length: 2000 }, (_, i) =>
      Buffer.from(`k${String(i).padStart(5, '0')}`),
    );
    const manyErr = await engine.getMany(keys).then(
      () => null,
      (e: Error) => e,
    );
    expect(manyErr).toBeInstanceOf(StorageCorruptionError);
    expect(manyErr?.message).toMatch(
      new RegExp(
        `^the RocksDB data in ${dir} is corrupt \\(reading 2000 keys of: Corruption: .*${file}`,
      ),
    );
  });

  it('finds a damaged block that a scan reads without complaint (verifyChecksums)', async () => {
    // Values that do not compress: Snappy stores them as they are, so a flipped byte in one
    // still decompresses, and only the block's checksum tells. The binding's scans do not check
    // it (only its gets do).
    const dir = join(root, 'literal');
    let engine = await openRocksEngine(dir);
    await engine.write(
      Array.from({ length: 500 }, (_, i) => ({
        type: 'put' as const,
        key: Buffer.from(`k${String(i).padStart(5, '0')}`),
        value: randomBytes(300),
      })),
      { sync: true },
    );
    await engine.close();
    engine = await openRocksEngine(dir);
    await engine.close();
    const files = (await readdir(dir)).filter((f) => f.endsWith('.sst'));
    expect(files).toHaveLength(1);
    const path = join(dir, files[0]);
    const bytes = await readFile(path);
    // Past the first block's header, inside a value: a byte the scan hands back changed.
    bytes[Math.floor(bytes.length / 3)] ^= 0x01;
    await writeFile(path, bytes);
    engine = await openRocksEngine(dir);
    open.push(engine);
    let scanned = 0;
    for await (const pair of engine.iterate({})) if (pair.length === 2) scanned++;
    expect(scanned).toBe(500);
    const err = await engine.verifyChecksums().then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(StorageCorruptionError);
    expect(err?.message).toMatch(
      new RegExp(
        `^the RocksDB data in ${dir} is corrupt \\(verifying the checksums of: Corruption: block checksum mismatch.*${files[0]}`,
      ),
    );
    // The same check in a child process, on the closed store (what a kv server does at start).
    await engine.close();
    const fromChild = await verifyStoreChecksums(dir).then(
      () => null,
      (e: Error) => e,
    );
    expect(fromChild).toBeInstanceOf(StorageCorruptionError);
    expect(fromChild?.message).toContain('block checksum mismatch');
    // An undamaged store verifies, in this process and in a child.
    const sound = join(root, 'sound');
    await writeToSst(sound, 2000);
    await expect(verifyStoreChecksums(sound)).resolves.toBeUndefined();
    // A store that cannot be opened is a failure of another kind, named as such.
    const notDir = join(root, 'not-a-dir');
    await writeFile(notDir, 'x');
    const other = await verifyStoreChecksums(notDir).then(
      () => null,
      (e: Error) => e,
    );
    expect(other).toBeInstanceOf(StorageEngineError);
    expect(other).not.toBeInstanceOf(StorageCorruptionError);
    expect(other?.message).toContain(notDir);
    const healthy = await openRocksEngine(sound);
    open.push(healthy);
    await expect(healthy.verifyChecksums()).resolves.toBeUndefined();
  });

  it('describes open failures from their RocksDB messages', () => {
    expect(
      describeOpenFailure('/d', 'IO error: while open a file for lock: /d/LOCK: Permission denied'),
    ).toMatch(/^\/d is not writable by this process/);
    expect(
      describeOpenFailure('/d', 'IO error: While lock file: /d/LOCK: Read-only file system'),
    ).toMatch(/^\/d is not writable/);
    expect(
      describeOpenFailure(
        '/d',
        'IO error: While lock file: /d/LOCK: Resource temporarily unavailable',
      ),
    ).toMatch(/^\/d is in use by another process/);
    expect(describeOpenFailure('/d', 'Invalid argument: /d/CURRENT: does not exist')).toBe(
      'cannot open RocksDB at /d: Invalid argument: /d/CURRENT: does not exist',
    );
  });
});
