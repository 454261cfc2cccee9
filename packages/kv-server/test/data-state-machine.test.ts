// The data state machine on real RocksDB in a temp dir: what apply decides, what reads return,
// dedup, configs, snapshots and restarts.
import { encodeCheck } from '../src/kv-commands';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { slotOfKey, type KvOpPair } from '@eraftkv/protocol';
import type { StorageEngine } from '@eraftkv/raft-server';
import { EntryType, type Entry } from '@eraftkv/raft';
import { AuthTable, type AuthCommand } from '@eraftkv/server-kit';
import { encodeAuth } from '../src/kv-commands';
import {
  DataStateMachine,
  defaultKvLimits,
  kvLimits,
  SnapshotFormatError,
  type KvApplyResult,
  type KvReadResult,
} from '../src';
import { slotIndexSize } from '../src/slot-index';
import {
  layoutKey,
  layoutVersion,
  slotIndexEnd,
  slotIndexKey,
  slotIndexStart,
  u64,
} from '../src/state-layout';
import {
  b,
  config,
  configEntry,
  del,
  get,
  keyInSlot,
  noopEntry,
  put,
  request,
  scan,
  tempDir,
  writeEntry,
} from './common';

const slotCount = 8;
const allSlots = [0, 1, 2, 3, 4, 5, 6, 7];

/** The methods of `engine`, bound, to override some of them in a wrapper. */
function engineMethods(engine: StorageEngine): StorageEngine {
  return {
    path: engine.path,
    get: (key) => engine.get(key),
    getMany: (keys) => engine.getMany(keys),
    write: (ops, options) => engine.write(ops, options),
    iterate: (range) => engine.iterate(range),
    verifyChecksums: () => engine.verifyChecksums(),
    deleteRange: (range) => engine.deleteRange(range),
    approximateSizeBytes: (range) => engine.approximateSizeBytes(range),
    close: () => engine.close(),
  };
}

describe('DataStateMachine', () => {
  let root: string;
  const open: DataStateMachine[] = [];
  let next = 0;

  beforeAll(async () => {
    root = await tempDir('sm');
  });
  afterAll(async () => {
    for (const sm of open) await sm.close();
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh state machine in its own directory. */
  async function fresh(
    dedupWindowEntries = 1000,
    name = `sm-${++next}`,
  ): Promise<DataStateMachine> {
    const sm = await DataStateMachine.open({ path: join(root, name), dedupWindowEntries });
    open.push(sm);
    return sm;
  }

  /** Applies one entry after the last applied one and returns its result. */
  async function applyOne(
    sm: DataStateMachine,
    make: (index: number) => Parameters<DataStateMachine['apply']>[0][number],
  ): Promise<KvApplyResult | undefined> {
    const index = (await sm.appliedIndex()) + 1;
    const [result] = await sm.apply([make(index)]);
    return result;
  }

  const write = (
    sm: DataStateMachine,
    ops: KvOpPair[],
    ids: { clientId?: string; commandId?: number } = {},
  ) => applyOne(sm, (i) => writeEntry(i, request(ops, ids)));

  const setConfig = (sm: DataStateMachine, c: ReturnType<typeof config>) =>
    applyOne(sm, (i) => configEntry(i, c));

  async function readOk(sm: DataStateMachine, ops: KvOpPair[]): Promise<KvOpPair[]> {
    const result = await sm.read(ops, defaultKvLimits);
    if (result.kind !== 'read') throw new Error(`expected a read, got ${JSON.stringify(result)}`);
    return result.ops;
  }

  function applied(result: KvApplyResult | undefined): KvOpPair[] {
    if (result?.kind !== 'applied')
      throw new Error(`expected applied, got ${JSON.stringify(result)}`);
    return result.ops;
  }

  /** A ready state machine whose RocksDB writes go through `write` (to delay or fail them). */
  async function readyWithWrites(
    write: (
      engine: StorageEngine,
      ops: Parameters<StorageEngine['write']>[0],
      options: Parameters<StorageEngine['write']>[1],
    ) => Promise<void>,
  ): Promise<DataStateMachine> {
    const sm = await DataStateMachine.open({
      path: join(root, `sm-${++next}`),
      dedupWindowEntries: 1000,
      wrapEngine: (engine) => ({
        ...engineMethods(engine),
        write: (ops, options) => write(engine, ops, options),
      }),
    });
    open.push(sm);
    await sm.apply([noopEntry(2)]);
    await setConfig(sm, config(1, slotCount, allSlots));
    return sm;
  }

  async function ready(dedupWindowEntries = 1000): Promise<DataStateMachine> {
    const sm = await fresh(dedupWindowEntries);
    await sm.apply([noopEntry(2)]);
    await setConfig(sm, config(1, slotCount, allSlots));
    return sm;
  }

  it('puts, gets and deletes keys; a Get sees the earlier writes of its own request', async () => {
    const sm = await ready();
    const ops = applied(await write(sm, [put('a', '1'), get('a'), put('e', ''), del('zz')]));
    expect(ops.map((op) => op.success)).toEqual([true, true, true, true]);
    expect(ops[1].found).toBe(true);
    expect(ops[1].value.toString()).toBe('1');
    expect(ops[3].deleted).toBe(0);

    const [a, e, missing] = await readOk(sm, [get('a'), get('e'), get('nope')]);
    expect([a.found, a.value.toString()]).toEqual([true, '1']);
    // An empty value is a value: the key is found.
    expect([e.found, e.value.length]).toEqual([true, 0]);
    expect(missing.found).toBe(false);

    const deleted = applied(await write(sm, [del('a'), del('a')]));
    expect(deleted.map((op) => op.deleted)).toEqual([1, 0]);
    expect((await readOk(sm, [get('a')]))[0].found).toBe(false);
  });

  it('scans in key-byte order over [key, end_key) with limit and more, binary keys included', async () => {
    const sm = await ready();
    const keys = [
      Buffer.from([0x00]),
      Buffer.from([0x00, 0x00]),
      Buffer.from([0x01, 0xff]),
      b('a'),
      b('ab'),
      b('b'),
      Buffer.from([0x7f]),
      Buffer.from([0x80]),
      Buffer.from([0xff, 0xfe]),
      Buffer.from([0xff, 0xff, 0xff]),
    ];
    // Written in reverse, so that order comes from the store, not from the writes.
    applied(
      await write(
        sm,
        [...keys].reverse().map((k) => put(k, Buffer.concat([b('v:'), k]))),
      ),
    );
    const sorted = [...keys].sort((x, y) => Buffer.compare(x, y));

    const [all] = await readOk(sm, [scan('')]);
    expect(all.kvs.map((kv) => kv.key.toString('hex'))).toEqual(
      sorted.map((k) => k.toString('hex')),
    );
    expect(all.kvs[3].value.toString('hex')).toBe(
      Buffer.concat([b('v:'), sorted[3]]).toString('hex'),
    );
    expect(all.more).toBe(false);

    const [range] = await readOk(sm, [scan('a', 'b')]);
    expect(range.kvs.map((kv) => kv.key.toString())).toEqual(['a', 'ab']);

    const [limited] = await readOk(sm, [scan(Buffer.from([0x01]), '', 3)]);
    expect(limited.kvs.map((kv) => kv.key.toString('hex'))).toEqual(['01ff', '61', '6162']);
    expect(limited.more).toBe(true);

    const [exact] = await readOk(sm, [scan(Buffer.from([0x80]), '', 3)]);
    expect(exact.kvs).toHaveLength(3);
    expect(exact.more).toBe(false);

    const [empty] = await readOk(sm, [scan('b', 'a')]);
    expect(empty.kvs).toEqual([]);

    // The server's cap wins over a larger limit.
    const small = kvLimits({ ...defaultKvLimits, scanLimitMax: 2 });
    const capped = await sm.read([scan('', '', 100)], small);
    if (capped.kind !== 'read') throw new Error(capped.kind);
    expect(capped.ops[0].kvs).toHaveLength(2);
    expect(capped.ops[0].more).toBe(true);
  });

  it('bounds the bytes of a read response: Gets whole, Scans stop with more, later Scans wait', async () => {
    const sm = await ready();
    // 20 pairs of 1 + 99 bytes: 116 bytes each in the response (16 of overhead).
    const keys = Array.from({ length: 20 }, (_, i) => String.fromCharCode(0x61 + i));
    applied(
      await write(
        sm,
        keys.map((k) => put(k, 'v'.repeat(99))),
      ),
    );
    const pair = 1 + 99 + 16;
    const budget = (bytes: number) => kvLimits({ ...defaultKvLimits, responseBytesMax: bytes });

    // Room for 5 pairs: the first Scan stops after 5 with more, the second returns nothing, with
    // more, so that the client sends it again.
    const split = await sm.read([scan('a', 'k'), scan('k')], budget(5 * pair + 10));
    if (split.kind !== 'read') throw new Error(split.kind);
    expect(split.ops[0].kvs.map((kv) => kv.key.toString())).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(split.ops[0].more).toBe(true);
    expect(split.ops[1].kvs).toEqual([]);
    expect(split.ops[1].more).toBe(true);

    // Gets are answered first and whole; the Scan before them in the request gets what remains.
    const mixed = await sm.read([scan('a'), get('s'), get('t')], budget(4 * pair));
    if (mixed.kind !== 'read') throw new Error(mixed.kind);
    expect(mixed.ops.map((op) => op.opType)).toEqual([4, 2, 2]);
    expect(mixed.ops[0].kvs).toHaveLength(2);
    expect(mixed.ops[0].more).toBe(true);
    expect(mixed.ops[1].found && mixed.ops[2].found).toBe(true);

    // Gets beyond the budget make the request too large, naming the op and the flag.
    const tooLarge = await sm.read([get('a'), get('b'), get('c')], budget(2 * pair));
    expect(tooLarge).toMatchObject({
      kind: 'too-large',
      message: expect.stringContaining('at kvs[2]') as unknown,
    });
    expect(tooLarge.kind === 'too-large' && tooLarge.message).toMatch(/--response-bytes-max/);

    // The first pair is always served, whatever the budget: a paging client makes progress.
    const tiny = await sm.read([scan('a')], budget(1));
    if (tiny.kind !== 'read') throw new Error(tiny.kind);
    expect(tiny.ops[0].kvs.map((kv) => kv.key.toString())).toEqual(['a']);
    expect(tiny.ops[0].more).toBe(true);
    const oneGet = await sm.read([get('a')], budget(1));
    expect(oneGet.kind).toBe('read');
  });

  it('answers WRONG_SHARD at version 0 before any config, for reads and writes', async () => {
    const sm = await fresh();
    expect(await write(sm, [put('a', '1')])).toEqual({
      kind: 'wrong-shard',
      configVersion: 0,
      message: 'this group has applied no config yet',
      migrating: false,
    });
    const read = await sm.read([get('a')], defaultKvLimits);
    expect(read.kind).toBe('wrong-shard');
    expect(read.configVersion).toBe(0);
  });

  it('applies a multi-op request entirely or not at all when one key is not served', async () => {
    const sm = await fresh();
    await setConfig(sm, config(1, slotCount, [0, 1, 2, 3]));
    const served = keyInSlot(1, slotCount);
    const notServed = keyInSlot(6, slotCount);
    const result = await write(sm, [put(served, 'x'), del(served), put(notServed, 'y')]);
    expect(result).toEqual({
      kind: 'wrong-shard',
      configVersion: 1,
      message: 'slot 6 is not owned by this group at config version 1',
      migrating: false,
    });
    expect((await readOk(sm, [get(served)]))[0].found).toBe(false);
    const read = await sm.read([get(served), get(notServed)], defaultKvLimits);
    expect(read.kind).toBe('wrong-shard');
  });

  it('scans only at the config version the client routed by, when it says one', async () => {
    const sm = await fresh();
    await setConfig(sm, config(3, slotCount, allSlots));
    applied(await write(sm, [put('a', '1')]));
    expect((await sm.read([scan('', '')], defaultKvLimits, 3)).kind).toBe('read');
    expect((await sm.read([scan('', '')], defaultKvLimits, 0)).kind).toBe('read');
    expect(await sm.read([scan('', '')], defaultKvLimits, 4)).toMatchObject({
      kind: 'stale-config',
      configVersion: 3,
    });
    expect(await sm.read([scan('', '')], defaultKvLimits, 2)).toMatchObject({
      kind: 'wrong-shard',
      configVersion: 3,
      migrating: false,
    });
    // Gets are checked key by key instead.
    expect((await sm.read([get('a')], defaultKvLimits, 2)).kind).toBe('read');
  });

  it('scans return only keys of slots the group serves', async () => {
    const sm = await fresh();
    await setConfig(sm, config(1, slotCount, allSlots));
    const keys = allSlots.map((s) => keyInSlot(s, slotCount, 'scan'));
    applied(
      await write(
        sm,
        keys.map((k) => put(k, 'v')),
      ),
    );
    await setConfig(sm, config(2, slotCount, [0, 1, 2, 3], [4]));
    const [result] = await readOk(sm, [scan('')]);
    expect(result.kvs.map((kv) => slotOfKey(kv.key, slotCount)).sort()).toEqual([0, 1, 2, 3]);
  });

  it('applies a retried (client_id, command_id) once and returns the stored response', async () => {
    const sm = await ready();
    const ids = { clientId: 'client-a', commandId: 1 };
    const first = applied(await write(sm, [put('k', 'first'), get('k')], ids));
    const firstIndex = await sm.appliedIndex();
    applied(await write(sm, [put('k', 'second')]));
    const retry = await write(sm, [put('k', 'first'), get('k')], ids);
    // The answer and the revision of the first apply.
    expect(retry).toEqual({
      kind: 'applied',
      ops: first,
      configVersion: 1,
      revision: firstIndex,
      duplicate: true,
    });
    expect((await readOk(sm, [get('k')]))[0].value.toString()).toBe('second');
    // Another command id of the same client is a new write.
    applied(await write(sm, [put('k', 'third')], { clientId: 'client-a', commandId: 2 }));
    expect((await readOk(sm, [get('k')]))[0].value.toString()).toBe('third');
  });

  it('answers a retried request of puts only from the request itself, also after a restart', async () => {
    const name = `sm-${++next}`;
    let sm = await fresh(1000, name);
    await sm.apply([noopEntry(2)]);
    await setConfig(sm, config(1, slotCount, allSlots));
    const ids = { clientId: 'client-p', commandId: 7 };
    const first = applied(await write(sm, [put('a', '1'), put('b', '2')], ids));
    const firstIndex = await sm.appliedIndex();
    applied(await write(sm, [put('a', 'later')]));
    const retry = await write(sm, [put('a', '1'), put('b', '2')], ids);
    const answer = {
      kind: 'applied',
      ops: first,
      configVersion: 1,
      revision: firstIndex,
      duplicate: true,
    };
    expect(retry).toEqual(answer);
    await sm.close();
    sm = await fresh(1000, name);
    const again = await write(sm, [put('a', '1'), put('b', '2')], ids);
    expect(again).toEqual(answer);
    expect((await readOk(sm, [get('a')]))[0].value.toString()).toBe('later');
  });

  it('numbers writes by the log index that applied them, and reads by the index they saw', async () => {
    const sm = await ready();
    const base = (await sm.appliedIndex()) + 1;
    const results = await sm.apply([
      writeEntry(base, request([put('r', '1')])),
      noopEntry(base + 1),
      writeEntry(base + 2, request([put('r', '2'), del('r')])),
    ]);
    expect(results.map((r) => (r?.kind === 'applied' ? r.revision : r?.kind))).toEqual([
      base,
      undefined,
      base + 2,
    ]);
    expect(await sm.read([get('r')], defaultKvLimits)).toMatchObject({
      kind: 'read',
      revision: base + 2,
    });
    // Every later write has a higher revision.
    const later = await write(sm, [put('r', '3')]);
    expect(later).toMatchObject({ kind: 'applied', revision: base + 3 });
  });

  it('applies a retry twice in one batch once', async () => {
    const sm = await ready();
    const base = (await sm.appliedIndex()) + 1;
    const req = request([put('n', '1')], { clientId: 'batch', commandId: 9 });
    const results = await sm.apply([writeEntry(base, req), writeEntry(base + 1, req)]);
    expect(results.map((r) => (r?.kind === 'applied' ? r.duplicate : r?.kind))).toEqual([
      false,
      true,
    ]);
  });

  it('keeps the dedup table within its window of log entries', async () => {
    const window = 3;
    const sm = await ready(window);
    const ids = { clientId: 'c', commandId: 1 };
    applied(await write(sm, [put('x', '1')], ids));
    // Within the window: a retry returns the stored answer.
    applied(await write(sm, [put('x', '2')]));
    expect(await write(sm, [put('x', '1')], ids)).toMatchObject({ duplicate: true });
    // Past the window: the record is gone and the request applies again.
    applied(await write(sm, [put('x', '3')]));
    applied(await write(sm, [put('x', '4')]));
    expect(await write(sm, [put('x', '1')], ids)).toMatchObject({
      kind: 'applied',
      duplicate: false,
    });
    expect((await readOk(sm, [get('x')]))[0].value.toString()).toBe('1');

    for (let i = 10; i < 40; i++) {
      applied(await write(sm, [put('y', String(i))], { clientId: 'c', commandId: i }));
      expect(await sm.dedupRecordCount()).toBeLessThanOrEqual(window);
    }
    // A batch larger than the window prunes its own records too.
    const base = (await sm.appliedIndex()) + 1;
    await sm.apply(
      Array.from({ length: 10 }, (_, i) =>
        writeEntry(base + i, request([put('z', String(i))], { clientId: 'd', commandId: i + 1 })),
      ),
    );
    expect(await sm.dedupRecordCount()).toBe(window);
  });

  it('ignores a config whose version is not above the applied one', async () => {
    const sm = await fresh();
    expect(await setConfig(sm, config(5, slotCount, [1]))).toEqual({
      kind: 'config',
      applied: true,
      configVersion: 5,
    });
    expect(await setConfig(sm, config(5, slotCount, allSlots))).toEqual({
      kind: 'config',
      applied: false,
      configVersion: 5,
    });
    expect(await setConfig(sm, config(3, slotCount, allSlots))).toMatchObject({ applied: false });
    expect(sm.appliedConfig()?.slots).toEqual([{ id: 1, status: 'Running' }]);
    expect(sm.configVersion()).toBe(5);
  });

  it('freezes Migrating slots: neither read nor written until Running again', async () => {
    const sm = await ready();
    const key = keyInSlot(2, slotCount, 'frozen');
    applied(await write(sm, [put(key, 'before')]));
    await setConfig(sm, config(2, slotCount, [0, 1, 3, 4, 5, 6, 7], [2]));
    expect(await write(sm, [put(key, 'during')])).toEqual({
      kind: 'wrong-shard',
      configVersion: 2,
      message: 'slot 2 is Migrating at config version 2 (a move is under way); retry shortly',
      migrating: true,
    });
    expect((await sm.read([get(key)], defaultKvLimits)).kind).toBe('wrong-shard');
    await setConfig(sm, config(3, slotCount, allSlots));
    expect((await readOk(sm, [get(key)]))[0].value.toString()).toBe('before');
  });

  it('tells which slots hold keys', async () => {
    const sm = await ready();
    applied(
      await write(sm, [put(keyInSlot(3, slotCount), 'v'), put(keyInSlot(5, slotCount), 'v')]),
    );
    expect(await sm.slotsHoldingKeys([1, 3, 5, 7], slotCount)).toEqual([3, 5]);
    expect(await sm.slotsHoldingKeys([0, 1], slotCount)).toEqual([]);
    expect(await sm.slotsHoldingKeys([], slotCount)).toEqual([]);
  });

  /** A ready state machine in `name` and the RocksDB engine under it. */
  async function readyWithEngine(
    name: string,
  ): Promise<{ sm: DataStateMachine; engine: StorageEngine }> {
    let engine: StorageEngine | null = null;
    const sm = await DataStateMachine.open({
      path: join(root, name),
      dedupWindowEntries: 1000,
      wrapEngine: (e) => (engine = e),
    });
    open.push(sm);
    if ((await sm.appliedIndex()) === 0) {
      await sm.apply([noopEntry(2)]);
      await setConfig(sm, config(1, slotCount, allSlots));
    }
    if (engine === null) throw new Error('wrapEngine was not called');
    return { sm, engine };
  }

  async function closeOne(sm: DataStateMachine): Promise<void> {
    await sm.close();
    open.splice(open.indexOf(sm), 1);
  }

  /**
   * Waits until every apply of `sm` has landed in RocksDB (an apply answers before its write
   * lands; reads through the state machine wait, a test reading the engine directly must too).
   */
  const landed = (sm: DataStateMachine): Promise<unknown> => sm.stateDigest();

  /** Makes `engine`'s state look like one written before the slot index existed. */
  async function dropSlotIndex(engine: StorageEngine): Promise<void> {
    await engine.deleteRange({ gte: slotIndexStart, lt: slotIndexEnd });
    await engine.write([{ type: 'del', key: layoutKey }], { sync: true });
  }

  it('keeps one slot index entry per key through puts, overwrites and deletes', async () => {
    const { sm, engine } = await readyWithEngine('slot-index');
    const keys = Array.from({ length: 20 }, (_, i) => `key-${i}`);
    applied(
      await write(
        sm,
        keys.map((k) => put(k, 'v1')),
      ),
    );
    applied(
      await write(
        sm,
        keys.slice(0, 5).map((k) => put(k, 'v2')),
      ),
    );
    expect(await slotIndexSize(engine)).toBe(20);
    applied(await write(sm, [...keys.slice(0, 8).map((k) => del(k)), del('never-written')]));
    await landed(sm);
    expect(await slotIndexSize(engine)).toBe(12);
    // Each remaining key is listed under its own slot, and only there.
    for (const k of keys.slice(8)) {
      const slot = slotOfKey(Buffer.from(k), slotCount);
      expect(await engine.get(slotIndexKey(slot, Buffer.from(k)))).toEqual(Buffer.alloc(0));
      expect(
        await engine.get(slotIndexKey((slot + 1) % slotCount, Buffer.from(k))),
      ).toBeUndefined();
    }
    const holding = [...new Set(keys.slice(8).map((k) => slotOfKey(Buffer.from(k), slotCount)))];
    expect(await sm.slotsHoldingKeys(allSlots, slotCount)).toEqual(holding.sort((a, c) => a - c));
    applied(
      await write(
        sm,
        keys.slice(8).map((k) => del(k)),
      ),
    );
    expect(await sm.slotsHoldingKeys(allSlots, slotCount)).toEqual([]);
    await landed(sm);
    expect(await slotIndexSize(engine)).toBe(0);
    await expect(sm.slotsHoldingKeys([1], 16)).rejects.toThrow(/16-slot cluster.*8 slots/);
  });

  it('builds the slot index of a state written before it existed, once', async () => {
    const name = 'slot-index-upgrade';
    const first = await readyWithEngine(name);
    const keys = Array.from({ length: 50 }, (_, i) => `old-${i}`);
    applied(
      await write(
        first.sm,
        keys.map((k) => put(k, 'v')),
      ),
    );
    const digest = (await first.sm.stateDigest()).digest; // also waits for the writes to land
    await dropSlotIndex(first.engine);
    expect(await slotIndexSize(first.engine)).toBe(0);
    await closeOne(first.sm);

    const second = await readyWithEngine(name);
    expect(await slotIndexSize(second.engine)).toBe(50);
    expect(await second.engine.get(layoutKey)).toBeDefined();
    // The rebuilt state is the one the index was kept in all along.
    expect((await second.sm.stateDigest()).digest).toBe(digest);
    const expected = [...new Set(keys.map((k) => slotOfKey(Buffer.from(k), slotCount)))];
    expect(await second.sm.slotsHoldingKeys(allSlots, slotCount)).toEqual(
      expected.sort((a, c) => a - c),
    );
  });

  it('refuses a state whose layout is newer than this code, naming the directory', async () => {
    const name = 'slot-index-future';
    const first = await readyWithEngine(name);
    await first.engine.write([{ type: 'put', key: layoutKey, value: u64(layoutVersion + 1) }], {
      sync: true,
    });
    await closeOne(first.sm);
    await expect(
      DataStateMachine.open({ path: join(root, name), dedupWindowEntries: 1000 }),
    ).rejects.toThrow(new RegExp(`${name} has layout ${layoutVersion + 1}, newer than`));
  });

  it('builds the slot index when it installs the snapshot of a replica without one', async () => {
    const source = await readyWithEngine('slot-index-old-source');
    applied(await write(source.sm, [put('a', '1'), put('b', '2'), put('c', '3')]));
    await landed(source.sm);
    await dropSlotIndex(source.engine);
    const file = join(root, 'old-layout.snap');
    const index = await source.sm.writeSnapshot(file);
    const target = await readyWithEngine('slot-index-new-target');
    await target.sm.restoreSnapshot(file, index);
    expect(await slotIndexSize(target.engine)).toBe(3);
    expect(await target.engine.get(layoutKey)).toBeDefined();
  });

  it('moves the applied index over entries of every type and refuses undecodable ones', async () => {
    const sm = await fresh();
    const results = await sm.apply([
      noopEntry(2),
      { index: 3, term: 1, type: 0, data: Buffer.from([9, 9]) },
      noopEntry(4),
    ]);
    expect(results[0]).toBeUndefined();
    expect(results[1]).toMatchObject({ kind: 'rejected' });
    expect(results[2]).toBeUndefined();
    expect(await sm.appliedIndex()).toBe(4);
    await expect(sm.apply([noopEntry(4)])).rejects.toThrow(
      'apply got entry 4 but the state has applied 4',
    );
  });

  it('restores identical state from a snapshot, replacing what was there', async () => {
    const source = await ready(5);
    for (let i = 0; i < 20; i++) {
      applied(
        await write(source, [put(`key-${i}`, `value-${i}`), put(Buffer.from([0xff, i]), '')], {
          clientId: 'snap',
          commandId: i + 1,
        }),
      );
    }
    await setConfig(source, config(2, slotCount, [0, 1, 2, 3, 4, 5], [6]));
    const file = join(root, 'snapshot-1.dat');
    const index = await source.writeSnapshot(file);
    expect(index).toBe(await source.appliedIndex());

    const target = await ready(5);
    const onlyInTarget = keyInSlot(0, slotCount, 'only-in-target');
    applied(await write(target, [put(onlyInTarget, 'x')]));
    await target.restoreSnapshot(file, index);
    expect(await target.appliedIndex()).toBe(index);
    expect(target.appliedConfig()).toEqual(source.appliedConfig());
    expect(await target.dedupRecordCount()).toBe(await source.dedupRecordCount());

    // Identical state writes an identical snapshot.
    const again = join(root, 'snapshot-2.dat');
    expect(await target.writeSnapshot(again)).toBe(index);
    expect((await readFile(again)).equals(await readFile(file))).toBe(true);
    expect((await readOk(target, [get(onlyInTarget)]))[0].found).toBe(false);

    // The restored dedup table still answers retries.
    expect(
      await write(target, [put('key-19', 'value-19'), put(Buffer.from([0xff, 19]), '')], {
        clientId: 'snap',
        commandId: 20,
      }),
    ).toMatchObject({ duplicate: true });
  });

  it('writes a snapshot of one point in time while applies continue', async () => {
    const sm = await ready();
    const base = await sm.appliedIndex();
    for (let i = 1; i <= 200; i++)
      applied(await write(sm, [put(`p-${String(i).padStart(4, '0')}`, `${i}`)]));
    const file = join(root, 'snapshot-concurrent.dat');
    const snapshotting = sm.writeSnapshot(file);
    // Issued at once with their indexes: they queue behind each other and race the snapshot.
    const more: Promise<unknown>[] = [];
    for (let i = 201; i <= 260; i++) {
      const req = request([put(`p-${String(i).padStart(4, '0')}`, `${i}`)]);
      more.push(sm.apply([writeEntry(base + i, req)]));
    }
    const index = await snapshotting;
    await Promise.all(more);

    const restored = await fresh();
    await restored.restoreSnapshot(file, index);
    const [all] = await readOk(restored, [scan('p-', '', 1000)]);
    // Exactly the puts applied up to the snapshot's index: entry base + i wrote p-i.
    expect(all.kvs).toHaveLength(index - base);
    expect(all.kvs[all.kvs.length - 1].value.toString()).toBe(String(index - base));
  });

  it('refuses a truncated snapshot file and keeps nothing half-loaded as applied', async () => {
    const source = await ready();
    applied(await write(source, [put('a', '1'), put('b', '2')]));
    const file = join(root, 'snapshot-truncated.dat');
    const index = await source.writeSnapshot(file);
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 5));
    const target = await fresh();
    await expect(target.restoreSnapshot(file, index)).rejects.toThrow(SnapshotFormatError);
    expect(await target.appliedIndex()).toBe(0);
  });

  it('keeps its state across a restart', async () => {
    const name = 'restart';
    const sm = await fresh(1000, name);
    await sm.apply([noopEntry(2)]);
    await setConfig(sm, config(1, slotCount, allSlots));
    applied(await write(sm, [put('durable', 'yes')], { clientId: 'r', commandId: 1 }));
    const index = await sm.appliedIndex();
    await sm.close();
    open.splice(open.indexOf(sm), 1);

    const reopened = await fresh(1000, name);
    expect(await reopened.appliedIndex()).toBe(index);
    expect(reopened.configVersion()).toBe(1);
    expect((await readOk(reopened, [get('durable')]))[0].value.toString()).toBe('yes');
    expect(
      await write(reopened, [put('durable', 'yes')], { clientId: 'r', commandId: 1 }),
    ).toMatchObject({
      duplicate: true,
    });
  });

  it('applies the auth table of a newer revision only, and keeps it across a restart and in snapshots', async () => {
    const name = 'auth';
    const sm = await fresh(1000, name);
    await sm.apply([noopEntry(2)]);
    const table = (changes: AuthCommand[]): AuthTable =>
      changes.reduce((t, c) => {
        const r = t.apply(c);
        if ('refused' in r) throw new Error(r.refused);
        return r.table;
      }, AuthTable.empty());
    const older = table([{ kind: 'user-add', user: 'root' }]);
    const newer = table([
      { kind: 'user-add', user: 'root' },
      { kind: 'user-grant-role', user: 'root', role: 'root' },
      { kind: 'auth-enable' },
    ]);
    const authEntry = (t: AuthTable) => (index: number) => ({
      index,
      term: 1,
      type: EntryType.Normal,
      data: encodeAuth(t),
    });
    expect(await applyOne(sm, authEntry(newer))).toMatchObject({
      kind: 'auth',
      applied: true,
      revision: 3,
    });
    // A stale leader's older table is ignored the same way on every replica.
    expect(await applyOne(sm, authEntry(older))).toMatchObject({
      kind: 'auth',
      applied: false,
      revision: 3,
    });
    expect(sm.auth().enabled).toBe(true);
    // A damaged table is refused as an entry that does not decode; the table stays.
    const damaged = Buffer.concat([Buffer.from([6]), Buffer.from('{"revision":9,"enabled":true}')]);
    expect(
      await applyOne(sm, (index) => ({ index, term: 1, type: EntryType.Normal, data: damaged })),
    ).toMatchObject({ kind: 'rejected' });
    expect(sm.auth().revision).toBe(3);
    const file = join(root, 'snapshot-auth.dat');
    const index = await sm.writeSnapshot(file);
    await sm.close();
    open.splice(open.indexOf(sm), 1);
    const reopened = await fresh(1000, name);
    expect(reopened.auth().toJson()).toEqual(newer.toJson());
    const target = await ready();
    expect(target.auth().enabled).toBe(false);
    await target.restoreSnapshot(file, index);
    expect(target.auth().toJson()).toEqual(newer.toJson());
  });

  it('answers an apply before its write lands; reads wait for the write', async () => {
    let release: (() => void) | null = null;
    let holding = false;
    const sm = await readyWithWrites(async (engine, ops, options) => {
      if (holding) await new Promise<void>((resolve) => (release = resolve));
      return engine.write(ops, options);
    });
    holding = true;
    const [result] = await sm.apply([writeEntry(4, request([put('k', 'v')]))]);
    // The result is decided while the write is still held.
    expect(applied(result)[0].success).toBe(true);
    expect(release).not.toBeNull();
    let readDone = false;
    const reading = readOk(sm, [get('k')]).then((ops) => {
      readDone = true;
      return ops;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(readDone).toBe(false);
    holding = false;
    (release as unknown as () => void)();
    const [got] = await reading;
    expect(got.found).toBe(true);
    expect(Buffer.from(got.value).toString()).toBe('v');
  });

  it('fails every later apply and read once a write of applied entries failed', async () => {
    let failing = false;
    const sm = await readyWithWrites((engine, ops, options) =>
      failing
        ? Promise.reject(new Error('EIO: write failed (injected)'))
        : engine.write(ops, options),
    );
    failing = true;
    // The result was decided before the write failed.
    await sm.apply([writeEntry(4, request([put('k', 'v')]))]);
    await expect(sm.read([get('k')], defaultKvLimits)).rejects.toThrow(/EIO: write failed/);
    await expect(sm.apply([noopEntry(5)])).rejects.toThrow(/EIO: write failed/);
    // Nor is the applied index, which counts the entry whose write failed, ever made durable.
    failing = false;
    await expect(sm.syncApplied()).rejects.toThrow(/EIO: write failed/);
    expect(sm.corruption()).toMatch(/a write of applied entries to the kv state failed: EIO/);
  });

  it('refuses reads once closed', async () => {
    const sm = await fresh();
    await sm.close();
    open.splice(open.indexOf(sm), 1);
    const attempt: Promise<KvReadResult> = sm.read([get('a')], defaultKvLimits);
    await expect(attempt).rejects.toThrow('closed');
  });

  describe('consistency checks', () => {
    const checkEntry = (index: number): Entry => ({
      index,
      term: 1,
      type: EntryType.Normal,
      data: encodeCheck(),
    });
    const digestAt = async (sm: DataStateMachine, index: number): Promise<string> => {
      for (;;) {
        const d = sm.checkDigest(index);
        if (d === null) throw new Error(`no check at ${index}`);
        if (d !== 'pending') return d.digest;
        await new Promise((r) => setTimeout(r, 5));
      }
    };

    it('digests the state as of the check entry, however the entries around it are batched', async () => {
      const a = await ready();
      const b = await ready();
      const start = (await a.appliedIndex()) + 1;
      const entries = [
        writeEntry(start, request([put('a', '1'), put('b', '2')])),
        checkEntry(start + 1),
        writeEntry(start + 2, request([put('a', 'changed'), del('b')])),
        checkEntry(start + 3),
      ];
      // One batch on a, one entry at a time on b.
      const results = await a.apply(entries);
      expect(results[1]).toEqual({ kind: 'check', configVersion: 1, index: start + 1 });
      for (const e of entries) await b.apply([e]);
      const first = await digestAt(a, start + 1);
      expect(await digestAt(b, start + 1)).toBe(first);
      expect(await digestAt(b, start + 3)).toBe(await digestAt(a, start + 3));
      // The write after the first check is not in it.
      expect(await digestAt(a, start + 3)).not.toBe(first);
      // It is the digest a full read of the state gives at that index.
      const c = await ready();
      await c.apply(entries.slice(0, 2));
      expect(await c.stateDigest()).toEqual({ index: start + 1, digest: first });
      expect(a.checkDigest(start + 2)).toBeNull();
    });

    it('tells replicas with different data apart', async () => {
      const a = await ready();
      const b = await ready();
      const start = (await a.appliedIndex()) + 1;
      await a.apply([writeEntry(start, request([put('k', 'v')])), checkEntry(start + 1)]);
      await b.apply([writeEntry(start, request([put('k', 'w')])), checkEntry(start + 1)]);
      expect(await digestAt(a, start + 1)).not.toBe(await digestAt(b, start + 1));
    });
  });
});
