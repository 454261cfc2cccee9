// The two-tier log store on real RocksDB: reads across the memory/RocksDB boundary, truncation,
// compaction, restart recovery and corruption detection.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EntryType, type Entry } from '@eraftkv/raft';
import {
  LogStore,
  LogStoreCorruptError,
  openRocksEngine,
  protobufMembershipCodec,
  type StorageEngine,
} from '../src';
import { encodeEntry, entryKey } from '../src/log-store';
import { waitFor } from '@eraftkv/test-support';

const members = [
  { id: 1, address: 'a:1', learner: false, incarnation: 0 },
  { id: 2, address: 'a:2', learner: false, incarnation: 0 },
];

function entries(from: number, to: number, term: number, size = 10): Entry[] {
  const out: Entry[] = [];
  for (let index = from; index <= to; index++) {
    out.push({ index, term, type: EntryType.Normal, data: Buffer.alloc(size, index % 251) });
  }
  return out;
}

describe('LogStore', () => {
  let dir: string;
  let engine: StorageEngine;
  const open = async (memoryBytesMax = 1 << 20): Promise<LogStore> => {
    engine = await openRocksEngine(dir);
    return LogStore.open(engine, { memoryBytesMax, description: `test dir ${dir}` }, members);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-logstore-'));
  });
  afterEach(async () => {
    await engine.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('starts a bootstrapped group at snapshot 1/1 with its membership', async () => {
    const store = await open();
    expect(store.firstIndex()).toBe(2);
    expect(store.lastIndex()).toBe(1);
    expect(store.term(1)).toBe(1);
    expect(store.initialState()).toEqual({
      hardState: { term: 1, vote: 0, commit: 1 },
      snapshot: { index: 1, term: 1, membership: members },
      membershipEntries: [],
    });
    await store.close();
  });

  it('serves entries evicted from memory by loading them from RocksDB without blocking', async () => {
    // 100 bytes of memory hold 10 entries of 10 bytes; the rest live only in RocksDB.
    const store = await open(100);
    await store.persist(entries(2, 51, 1), { term: 1, vote: 1, commit: 40 }, true);
    expect(store.memoryBytes()).toBeLessThanOrEqual(100);
    expect(store.memoryFirstIndex()).toBeGreaterThan(2);
    // A hit in memory answers at once.
    expect(store.entries(50, 52, 1 << 20)?.map((e) => e.index)).toEqual([50, 51]);
    // A miss answers "unavailable" and loads in the background.
    let loaded = 0;
    store.onEntriesLoaded = () => loaded++;
    expect(store.entries(2, 10, 1 << 20)).toBeNull();
    await waitFor(() => loaded > 0, { timeoutMs: 5000, what: 'the load to finish' });
    const read = store.entries(2, 10, 1 << 20);
    expect(read?.map((e) => e.index)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(read?.[3].data).toEqual(Buffer.alloc(10, 5));
    // Terms never need the disk.
    expect(store.term(2)).toBe(1);
    // The byte limit still returns at least one entry.
    expect(store.entries(50, 52, 1)?.length).toBe(1);
    await store.close();
  });

  it('copies entry data into its own slabs, not views that pin a larger buffer', async () => {
    const store = await open();
    // Two entries whose data are views into one 64 KiB buffer (as entries decoded from one
    // AppendEntries message are, or small Buffers cut from the 8 KiB pool).
    const message = Buffer.alloc(64 * 1024, 7);
    const appended: Entry[] = [2, 3].map((index) => ({
      index,
      term: 1,
      type: EntryType.Normal,
      data: message.subarray(index * 100, index * 100 + 50),
    }));
    await store.persist(appended, { term: 1, vote: 1, commit: 1 }, true);
    const read = store.entries(2, 4, 1 << 20)!;
    expect(read.map((e) => e.index)).toEqual([2, 3]);
    for (const e of read) {
      expect(e.data).toEqual(Buffer.alloc(50, 7));
      expect(e.data.buffer).not.toBe(message.buffer);
    }
    // Both copies share one slab of the store's own.
    expect(read[0].data.buffer).toBe(read[1].data.buffer);
    await store.close();
  });

  it('truncates a conflicting suffix across the memory/RocksDB boundary', async () => {
    const store = await open(100);
    await store.persist(entries(2, 41, 1), null, true);
    // A new leader's entries from 20 on replace 20..41, part of them evicted from memory.
    await store.persist(entries(20, 25, 2), { term: 2, vote: 0, commit: 19 }, true);
    expect(store.lastIndex()).toBe(25);
    expect(store.term(19)).toBe(1);
    expect(store.term(20)).toBe(2);
    expect(store.term(26)).toBeUndefined();
    await store.close();
    const reopened = await open(1 << 20);
    expect(reopened.lastIndex()).toBe(25);
    expect(reopened.entries(18, 26, 1 << 20)?.map((e) => `${e.term}/${e.index}`)).toEqual([
      '1/18',
      '1/19',
      '2/20',
      '2/21',
      '2/22',
      '2/23',
      '2/24',
      '2/25',
    ]);
    await reopened.close();
  });

  it('compacts below a snapshot and keeps the term of the compaction point', async () => {
    const store = await open(100);
    await store.persist(entries(2, 60, 3), { term: 3, vote: 1, commit: 60 }, true);
    await store.setSnapshot({ index: 50, term: 3, membership: members }, true);
    await store.compact(45);
    expect(store.firstIndex()).toBe(46);
    expect(store.term(45)).toBe(3);
    expect(store.term(44)).toBeUndefined();
    expect(store.snapshot()).toEqual({ index: 50, term: 3, membership: members });
    await store.close();
    // The compacted entries left RocksDB too (removed in the background, before close returned).
    const raw = await openRocksEngine(dir);
    const below: Buffer[] = [];
    for await (const [key] of raw.iterate({ gte: entryKey(0), lt: entryKey(46) })) below.push(key);
    expect(below).toEqual([]);
    await raw.close();
    const reopened = await open(1 << 20);
    expect(reopened.firstIndex()).toBe(46);
    expect(reopened.lastIndex()).toBe(60);
    expect(reopened.entries(46, 61, 1 << 20)?.length).toBe(15);
    await reopened.close();
  });

  it('raises the commit index at open to what the state machine applied, within the log', async () => {
    const store = await open();
    await store.persist(entries(2, 10, 2), { term: 2, vote: 1, commit: 5 }, true);
    store.commitAtLeast(3);
    expect(store.initialState().hardState.commit).toBe(5);
    store.commitAtLeast(12);
    expect(store.initialState().hardState.commit).toBe(5);
    store.commitAtLeast(8);
    expect(store.initialState().hardState).toEqual({ term: 2, vote: 1, commit: 8 });
    await store.close();
  });

  it('offers no snapshot for a point without a file, and asks for one', async () => {
    const store = await open(100);
    await store.persist(entries(2, 60, 3), { term: 3, vote: 1, commit: 60 }, true);
    let asked = 0;
    store.onSnapshotNeeded = () => asked++;
    await store.setSnapshot({ index: 50, term: 3, membership: members }, false);
    await store.compact(45);
    expect(store.snapshot()).toBeNull();
    expect(asked).toBe(1);
    expect(store.latestSnapshot().index).toBe(50);
    // A file at a later point is offered.
    await store.setSnapshot({ index: 55, term: 3, membership: members }, true);
    expect(store.snapshot()).toEqual({ index: 55, term: 3, membership: members });
    await store.close();
  });

  it('reports a failed removal of compacted entries and stays usable', async () => {
    engine = await openRocksEngine(dir);
    const failing: StorageEngine = {
      path: engine.path,
      get: (key) => engine.get(key),
      getMany: (keys) => engine.getMany(keys),
      write: (ops, options) => engine.write(ops, options),
      iterate: (range) => engine.iterate(range),
      verifyChecksums: () => engine.verifyChecksums(),
      deleteRange: () => Promise.reject(new Error('EIO: delete failed (injected)')),
      approximateSizeBytes: (range) => engine.approximateSizeBytes(range),
      close: () => engine.close(),
    };
    const store = await LogStore.open(
      failing,
      { memoryBytesMax: 1 << 20, description: 'test' },
      members,
    );
    const failures: string[] = [];
    store.onRemovalFailed = (err) => failures.push(err.message);
    await store.persist(entries(2, 30, 2), { term: 2, vote: 1, commit: 30 }, true);
    await store.setSnapshot({ index: 20, term: 2, membership: members }, false);
    await store.compact(15);
    await waitFor(() => failures.length > 0, { timeoutMs: 5000, what: 'the removal to fail' });
    expect(failures[0]).toMatch(/EIO: delete failed/);
    expect(store.firstIndex()).toBe(16);
    await store.persist(entries(31, 31, 2), { term: 2, vote: 1, commit: 31 }, true);
    expect(store.lastIndex()).toBe(31);
    await store.close();
  });

  it('removes entries below the start that a compaction left behind', async () => {
    const store = await open();
    await store.persist(entries(2, 30, 2), { term: 2, vote: 1, commit: 30 }, true);
    await store.close();
    // As a crash right after the new start was written would leave the store: start at 20,
    // entries 2..20 still there.
    const raw = await openRocksEngine(dir);
    const start = Buffer.alloc(12);
    start.writeUIntBE(20, 0, 6);
    start.writeUIntBE(2, 6, 6);
    await raw.write([{ type: 'put', key: Buffer.from('m:start'), value: start }], { sync: true });
    await raw.close();
    const reopened = await open();
    expect(reopened.firstIndex()).toBe(21);
    expect(reopened.entries(21, 31, 1 << 20)?.map((e) => e.index)).toEqual([
      21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
    ]);
    await reopened.close();
    const check = await openRocksEngine(dir);
    const below: Buffer[] = [];
    for await (const [key] of check.iterate({ gte: entryKey(0), lt: entryKey(21) }))
      below.push(key);
    expect(below).toEqual([]);
    await check.close();
  });

  it('recovers hard state, entries and membership entries after a restart', async () => {
    const store = await open();
    const join3: Entry = {
      index: 4,
      term: 2,
      type: EntryType.JoinNoVoteNode,
      data: protobufMembershipCodec.encode({
        nodeId: 3,
        address: 'a:3',
        incarnation: 0,
      }),
    };
    await store.persist(
      [...entries(2, 3, 2), join3, ...entries(5, 9, 2)],
      { term: 2, vote: 1, commit: 7 },
      true,
    );
    await store.close();
    const reopened = await open();
    const state = reopened.initialState();
    expect(state.hardState).toEqual({ term: 2, vote: 1, commit: 7 });
    const asBuffers = (list: readonly Entry[]): object[] =>
      list.map((e) => ({ ...e, data: Buffer.from(e.data) }));
    expect(asBuffers(state.membershipEntries)).toEqual(asBuffers([join3]));
    expect(reopened.lastIndex()).toBe(9);
    expect(reopened.entries(2, 10, 1 << 20)?.map((e) => e.index)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    await reopened.close();
  });

  it('refuses to open when an entry fails its checksum, naming the data dir and index', async () => {
    const store = await open();
    await store.persist(entries(2, 9, 1), null, true);
    await store.close();
    const raw = await openRocksEngine(dir);
    const bad = encodeEntry(entries(5, 5, 1)[0]);
    bad[bad.length - 1] ^= 0xff; // one flipped bit in the data
    await raw.write([{ type: 'put', key: entryKey(5), value: bad }], { sync: true });
    await raw.close();
    await expect(open()).rejects.toThrow(LogStoreCorruptError);
    await engine.close();
    await expect(open()).rejects.toThrow(new RegExp(`${dir}.*entry 5 fails its checksum`));
  });

  it('holds the largest index and term it can store, and refuses larger ones before writing', async () => {
    const max = 2 ** 48 - 1;
    const store = await open();
    // A snapshot from a leader moves the log to just below the largest storable index.
    await store.installSnapshot(
      { index: max - 3, term: max - 10, membership: members },
      { term: max - 1, vote: 2, commit: max - 3 },
    );
    await store.persist(entries(max - 2, max, max - 1), { term: max, vote: 1, commit: max }, true);
    await expect(store.persist([], { term: max + 1, vote: 1, commit: max }, true)).rejects.toThrow(
      'hard state term 281474976710656 cannot be stored',
    );
    // Nothing of the refused write reached the disk, and the store still works.
    await store.close();
    const reopened = await open();
    expect(reopened.lastIndex()).toBe(max);
    expect(reopened.term(max)).toBe(max - 1);
    expect(reopened.storedHardState()).toEqual({ term: max, vote: 1, commit: max });
    expect(reopened.entries(max - 2, max + 1, 1 << 20)?.map((e) => e.index)).toEqual([
      max - 2,
      max - 1,
      max,
    ]);
    await reopened.close();
  });

  it('names the record when the stored log metadata is damaged', async () => {
    const store = await open();
    await store.close();
    const raw = await openRocksEngine(dir);
    await raw.write([{ type: 'put', key: Buffer.from('m:hard'), value: Buffer.alloc(5) }], {
      sync: true,
    });
    await raw.close();
    await expect(open()).rejects.toThrow(
      `test dir ${dir}: the hard state record (key m:hard) has 5 bytes, not 18`,
    );
  });

  it('refuses to open when the log has a gap', async () => {
    const store = await open();
    await store.persist(entries(2, 9, 1), null, true);
    await store.close();
    const raw = await openRocksEngine(dir);
    await raw.write([{ type: 'del', key: entryKey(6) }], { sync: true });
    await raw.close();
    await expect(open()).rejects.toThrow(/entry 6 is missing/);
  });

  it('refuses a second opener of the same data dir with a clear error', async () => {
    const store = await open();
    // Another process holding it is covered in rocks-engine.int.test.ts.
    await expect(openRocksEngine(dir)).rejects.toThrow(/is already open in this process/);
    await store.close();
  });
});
