// Moving slots with their data, at the state machine level (docs/slot-migration.md): a source
// freezes slots and exports them in chunks, a target begins an import, applies the chunks through
// its log and answers retries of writes the source applied; each side drops what it no longer
// holds. Real RocksDB in temp dirs; the log is a sequence of entries applied by hand.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Entry } from '@eraftkv/raft';
import type { StorageEngine } from '@eraftkv/raft-server';
import {
  DataStateMachine,
  defaultKvLimits,
  encodeDrop,
  encodeImportBegin,
  encodeImportChunk,
  type KvApplyResult,
} from '../src';
import { slotOfKey, type SlotMoveChunk } from '@eraftkv/protocol';
import { importEnd, importStart, slotIndexRange } from '../src/state-layout';
import {
  config,
  configEntry,
  get,
  keyInSlot,
  noopEntry,
  put,
  request,
  tempDir,
  writeEntry,
} from './common';

// About a hundred applies and exports on RocksDB per test: slow on a loaded 2-core machine.
jest.setTimeout(60_000);

const slotCount = 8;
const moving = [2, 5];
const staying = [0, 1, 3, 4, 6, 7];

const entry = (index: number, data: Buffer): Entry => ({ index, term: 1, type: 0, data });

describe('moving slots with their data', () => {
  let root: string;
  const open: DataStateMachine[] = [];
  let next = 0;

  beforeAll(async () => {
    root = await tempDir('move');
  });
  afterAll(async () => {
    for (const sm of open) await sm.close();
    await rm(root, { recursive: true, force: true });
  });

  async function node(): Promise<{ sm: DataStateMachine; engine: StorageEngine }> {
    let engine: StorageEngine | null = null;
    const sm = await DataStateMachine.open({
      path: join(root, `node-${++next}`),
      dedupWindowEntries: 1000,
      wrapEngine: (e) => (engine = e),
    });
    open.push(sm);
    await sm.apply([noopEntry(1)]);
    if (engine === null) throw new Error('wrapEngine was not called');
    return { sm, engine };
  }

  async function applyData(sm: DataStateMachine, data: Buffer): Promise<KvApplyResult | undefined> {
    const [result] = await sm.apply([entry((await sm.appliedIndex()) + 1, data)]);
    return result;
  }

  async function applyEntry(
    sm: DataStateMachine,
    make: (index: number) => Entry,
  ): Promise<KvApplyResult | undefined> {
    const [result] = await sm.apply([make((await sm.appliedIndex()) + 1)]);
    return result;
  }

  function expectRejected(result: KvApplyResult | undefined, fragment: string): void {
    if (result?.kind !== 'rejected')
      throw new Error(`expected rejected, got ${JSON.stringify(result)}`);
    expect(result.message).toContain(fragment);
  }

  /** Entries of `range` in `sm`'s RocksDB once every apply has landed (they answer before). */
  async function count(
    sm: DataStateMachine,
    engine: StorageEngine,
    range: { gte: Buffer; lt: Buffer },
  ): Promise<number> {
    await sm.stateDigest();
    let n = 0;
    for await (const [key] of engine.iterate(range)) if (key.length > 0) n++;
    return n;
  }

  /** Every chunk of the export of `moving` from `source`, 300 bytes at a time. */
  function exportAllFrom(source: DataStateMachine): Promise<SlotMoveChunk[]> {
    return exportAll(source, 300);
  }

  /** Every chunk of the export of `moving` from `source`, `budgetBytes` at a time. */
  async function exportAll(
    source: DataStateMachine,
    budgetBytes: number,
  ): Promise<SlotMoveChunk[]> {
    const chunks: SlotMoveChunk[] = [];
    let cursor = { nextSlot: moving[0], afterKey: Buffer.alloc(0) as Uint8Array, dedupAfter: 0 };
    for (;;) {
      const chunk = await source.exportSlots({
        source: 1,
        version: 2,
        slots: moving,
        ...cursor,
        budgetBytes,
      });
      chunks.push(chunk);
      if (chunk.done) return chunks;
      cursor = { nextSlot: chunk.nextSlot, afterKey: chunk.afterKey, dedupAfter: chunk.dedupAfter };
      if (chunks.length > 10_000) throw new Error('the export does not end');
    }
  }

  /** A source with keys in every slot, some written with request ids, then `moving` frozen. */
  async function frozenSource(): Promise<{
    sm: DataStateMachine;
    engine: StorageEngine;
    keys: Buffer[];
  }> {
    const source = await node();
    await applyEntry(source.sm, (i) =>
      configEntry(i, config(1, slotCount, [...moving, ...staying])),
    );
    const keys: Buffer[] = [];
    for (let slot = 0; slot < slotCount; slot++) {
      for (let k = 0; k < 12; k++) keys.push(keyInSlot(slot, slotCount, `s${slot}k${k}`));
    }
    for (const [n, key] of keys.entries()) {
      await applyEntry(source.sm, (i) =>
        writeEntry(i, request([put(key, `value-${n}`)], { clientId: 'c', commandId: n + 1 })),
      );
    }
    // A request whose answer depends on the state: its stored answer must travel too.
    await applyEntry(source.sm, (i) =>
      writeEntry(
        i,
        request([get(keys[24]), put(keys[24], 'second')], { clientId: 'c', commandId: 1000 }),
      ),
    );
    await applyEntry(source.sm, (i) => configEntry(i, config(2, slotCount, staying, moving)));
    return { ...source, keys };
  }

  it('copies frozen slots in chunks into a target, which answers retries from the source records', async () => {
    const source = await frozenSource();
    // Frozen: neither written nor read in the source.
    const refused = await applyEntry(source.sm, (i) =>
      writeEntry(i, request([put(keyInSlot(2, slotCount), 'late')])),
    );
    expect(refused).toMatchObject({ kind: 'wrong-shard', migrating: true });

    const target = await node();
    await applyEntry(target.sm, (i) => configEntry(i, config(2, slotCount, [], [], moving)));
    expect(
      await applyData(target.sm, encodeImportBegin({ source: 1, version: 2, slots: moving })),
    ).toMatchObject({
      kind: 'moved',
      keys: 0,
      done: false,
    });
    const chunks = await exportAll(source.sm, 60);
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) {
      const result = await applyData(target.sm, encodeImportChunk(chunk));
      expect(result).toMatchObject({ kind: 'moved' });
    }
    const last = await applyData(target.sm, encodeImportChunk(chunks[chunks.length - 1]));
    expect(last).toMatchObject({ kind: 'moved', keys: 24, done: true });
    // An older chunk proposed again changes nothing.
    expect(await applyData(target.sm, encodeImportChunk(chunks[1]))).toMatchObject({
      done: true,
      keys: 24,
    });

    // Not served until the target owns the slots.
    const early = await target.sm.read([get(source.keys[24])], defaultKvLimits);
    expect(early).toMatchObject({ kind: 'wrong-shard', migrating: true });
    await applyEntry(target.sm, (i) => configEntry(i, config(3, slotCount, moving)));
    expect(await count(target.sm, target.engine, { gte: importStart, lt: importEnd })).toBe(0);
    for (const [n, key] of source.keys.entries()) {
      const slot = Math.floor(n / 12);
      const result = await target.sm.read([get(key)], defaultKvLimits);
      if (!moving.includes(slot)) {
        expect(result).toMatchObject({ kind: 'wrong-shard', migrating: false });
        continue;
      }
      if (result.kind !== 'read') throw new Error(`expected a read of ${key.toString()}`);
      expect(result.ops[0].found).toBe(true);
      expect(result.ops[0].value.toString()).toBe(n === 24 ? 'second' : `value-${n}`);
    }

    // Exactly once: a retry of a write the source applied is answered from the moved record.
    const retry = await applyEntry(target.sm, (i) =>
      writeEntry(i, request([put(source.keys[24], 'value-24')], { clientId: 'c', commandId: 25 })),
    );
    expect(retry).toMatchObject({ kind: 'applied', duplicate: true });
    const retriedRead = await applyEntry(target.sm, (i) =>
      writeEntry(
        i,
        request([get(source.keys[24]), put(source.keys[24], 'second')], {
          clientId: 'c',
          commandId: 1000,
        }),
      ),
    );
    expect(retriedRead).toMatchObject({ kind: 'applied', duplicate: true });
    if (retriedRead?.kind !== 'applied') throw new Error('expected applied');
    // The stored answer of the Get: the value before the request's own put, as the source saw it.
    expect(retriedRead.ops[0].value.toString()).toBe('value-24');
    const value = await target.sm.read([get(source.keys[24])], defaultKvLimits);
    if (value.kind !== 'read') throw new Error('expected a read');
    expect(value.ops[0].value.toString()).toBe('second');

    // The source drops what it no longer holds, a bounded number of keys at a time.
    await applyEntry(source.sm, (i) => configEntry(i, config(3, slotCount, staying)));
    let rounds = 0;
    for (;;) {
      const result = await applyData(source.sm, encodeDrop({ slots: moving, limit: 5 }));
      expect(result).toMatchObject({ kind: 'moved' });
      rounds++;
      if (result?.kind === 'moved' && result.done) break;
    }
    expect(rounds).toBe(5); // 24 keys, 5 at a time: 5, 5, 5, 5, 4
    for (const slot of moving)
      expect(await count(source.sm, source.engine, slotIndexRange(slot))).toBe(0);
    expect(await source.sm.slotsHoldingKeys(staying, slotCount)).toEqual(staying);
  });

  it("copies the dedup records of the moving slots' requests, and every record after a restart", async () => {
    const source = await frozenSource();
    const path = join(root, `node-${next}`);
    const exported = async (sm: DataStateMachine): Promise<Set<string>> => {
      const ids = new Set<string>();
      for (const chunk of await exportAllFrom(sm)) {
        for (const record of chunk.dedup) ids.add(Buffer.from(record.id).toString('latin1'));
      }
      return ids;
    };
    // 12 puts per moving slot, and the get-and-put of keys[24] (slot 2): 25 of the 97 records.
    const live = await exported(source.sm);
    expect(live.size).toBe(2 * 12 + 1);
    // Reopened, the records no longer know their slots: all of them go, none is missed.
    await source.sm.close();
    open.splice(open.indexOf(source.sm), 1);
    const reopened = await DataStateMachine.open({ path, dedupWindowEntries: 1000 });
    open.push(reopened);
    const all = await exported(reopened);
    expect(all.size).toBe(8 * 12 + 1);
    for (const id of live) expect(all.has(id)).toBe(true);
  });

  it('reaches the same state whatever entries share an apply batch', async () => {
    const source = await frozenSource();
    const chunks = await exportAll(source.sm, 500);
    const entries = (start: number): Entry[] => [
      configEntry(start, config(2, slotCount, [], [], moving)),
      entry(start + 1, encodeImportBegin({ source: 1, version: 2, slots: moving })),
      ...chunks.map((c, i) => entry(start + 2 + i, encodeImportChunk(c))),
      configEntry(start + 2 + chunks.length, config(3, slotCount, [], [], [])),
      entry(start + 3 + chunks.length, encodeDrop({ slots: moving, limit: 7 })),
      entry(start + 4 + chunks.length, encodeDrop({ slots: moving, limit: 7 })),
    ];
    const all = entries(2);
    // All in one batch; the drops together after the rest; one entry per batch.
    const one = await node();
    await one.sm.apply(all);
    const two = await node();
    await two.sm.apply(all.slice(0, -2));
    await two.sm.apply(all.slice(-2));
    const three = await node();
    for (const e of all) await three.sm.apply([e]);
    const digest = (await three.sm.stateDigest()).digest;
    expect((await one.sm.stateDigest()).digest).toBe(digest);
    expect((await two.sm.stateDigest()).digest).toBe(digest);
    // The rolled back import left 24 keys; two drops of 7 took 14.
    expect(
      await count(one.sm, one.engine, { ...slotIndexRange(2), lt: slotIndexRange(5).lt }),
    ).toBe(10);
  });

  it('keeps every chunk within its budget, but for a single pair larger than it', async () => {
    const source = await node();
    await applyEntry(source.sm, (i) =>
      configEntry(i, config(1, slotCount, [...moving, ...staying])),
    );
    const big = 'x'.repeat(10_000);
    for (let k = 0; k < 30; k++) {
      await applyEntry(source.sm, (i) =>
        writeEntry(i, request([put(keyInSlot(moving[k % 2], slotCount, `big${k}`), big)])),
      );
    }
    await applyEntry(source.sm, (i) => configEntry(i, config(2, slotCount, staying, moving)));
    for (const budget of [1, 25_000, 100_000]) {
      const chunks = await exportAll(source.sm, budget);
      const sizes = chunks.map((c) =>
        c.pairs.reduce((n, p) => n + p.key.length + p.value.length, 0),
      );
      for (const [i, size] of sizes.entries()) {
        if (chunks[i].pairs.length > 1) expect(size).toBeLessThanOrEqual(budget);
      }
      // Every key exactly once, in order of slot and key.
      const keys = chunks.flatMap((c) =>
        c.pairs.map((p) => `${p.slot}/${Buffer.from(p.key).toString()}`),
      );
      expect(new Set(keys).size).toBe(30);
      expect(keys).toHaveLength(30);
    }
  });

  it('moves a key whose value is empty (RocksDB hands it back without memory)', async () => {
    const source = await node();
    await applyEntry(source.sm, (i) =>
      configEntry(i, config(1, slotCount, [...moving, ...staying])),
    );
    const key = keyInSlot(2, slotCount, 'empty');
    await applyEntry(source.sm, (i) => writeEntry(i, request([put(key, '')])));
    await applyEntry(source.sm, (i) => configEntry(i, config(2, slotCount, staying, moving)));
    const target = await node();
    await applyEntry(target.sm, (i) => configEntry(i, config(2, slotCount, [], [], moving)));
    await applyData(target.sm, encodeImportBegin({ source: 1, version: 2, slots: moving }));
    for (const chunk of await exportAll(source.sm, 1 << 20)) {
      expect(await applyData(target.sm, encodeImportChunk(chunk))).toMatchObject({ kind: 'moved' });
    }
    await applyEntry(target.sm, (i) => configEntry(i, config(3, slotCount, moving)));
    const read = await target.sm.read([get(key)], defaultKvLimits);
    if (read.kind !== 'read') throw new Error('expected a read');
    expect(read.ops[0]).toMatchObject({ found: true });
    expect(read.ops[0].value).toHaveLength(0);
  });

  it('clears what an earlier move left before the next import of the slots begins, when the config in between was never applied', async () => {
    const source = await frozenSource();
    const slotKeys = { gte: slotIndexRange(moving[0]).gte, lt: slotIndexRange(moving[1]).lt };
    // An import begins at version 2 and copies part of the slots...
    const target = await node();
    await applyEntry(target.sm, (i) => configEntry(i, config(2, slotCount, [0], [], moving)));
    await applyData(target.sm, encodeImportBegin({ source: 1, version: 2, slots: moving }));
    const chunks = await exportAll(source.sm, 60);
    for (const chunk of chunks.slice(0, 3))
      expect(await applyData(target.sm, encodeImportChunk(chunk))).toMatchObject({ kind: 'moved' });
    const copied = await count(target.sm, target.engine, slotKeys);
    expect(copied).toBeGreaterThan(0);
    // ...then that move rolls back (version 3) and the slots move here again (version 4), and
    // this group applies version 4 without ever applying 3: the slots are Importing throughout.
    await applyEntry(target.sm, (i) => configEntry(i, config(4, slotCount, [0], [], moving)));
    // The earlier import still holds the slots: a drop of them is refused.
    expectRejected(
      await applyData(target.sm, encodeDrop({ slots: moving, limit: 10 })),
      'being imported',
    );
    // The import of version 4 forgets the one of version 2 and drops what it had copied.
    expect(
      await applyData(target.sm, encodeImportBegin({ source: 1, version: 4, slots: moving })),
    ).toMatchObject({ kind: 'moved', keys: 0, done: false });
    expect(await count(target.sm, target.engine, slotKeys)).toBe(0);
    expect(target.sm.importProgress(2, 1)).toBeUndefined();
    expect(target.sm.importProgress(4, 1)).toMatchObject({ keys: 0, done: false });
    // A begin of the earlier move, late, changes nothing.
    expectRejected(
      await applyData(target.sm, encodeImportBegin({ source: 1, version: 2, slots: moving })),
      'is being imported here',
    );
    expect(target.sm.importProgress(2, 1)).toBeUndefined();

    // A group that served the slots, gave them away and is asked to import them again, without
    // having applied the config in between, still holds its old keys: with no import in
    // progress, they are dropped like keys of slots it no longer lists.
    const former = await node();
    await applyEntry(former.sm, (i) => configEntry(i, config(1, slotCount, [...moving, 0])));
    for (const slot of moving)
      await applyEntry(former.sm, (i) =>
        writeEntry(i, request([put(keyInSlot(slot, slotCount, 'old'), 'stale')])),
      );
    expect(await count(former.sm, former.engine, slotKeys)).toBe(2);
    await applyEntry(former.sm, (i) => configEntry(i, config(5, slotCount, [0], [], moving)));
    expect(await applyData(former.sm, encodeDrop({ slots: moving, limit: 10 }))).toMatchObject({
      kind: 'moved',
      keys: 2,
      done: true,
    });
    expect(await count(former.sm, former.engine, slotKeys)).toBe(0);

    // More than one begin drops (4,096 keys): the begin says so and drops the rest when asked
    // again, then begins.
    const many = await node();
    await applyEntry(many.sm, (i) => configEntry(i, config(1, slotCount, [...moving, 0])));
    const slot = moving[0];
    const keysOfSlot = Array.from({ length: 40_000 }, (_, n) => Buffer.from(`many-${n}`))
      .filter((k) => slotOfKey(k, slotCount) === slot)
      .slice(0, 4100);
    expect(keysOfSlot).toHaveLength(4100);
    await applyEntry(many.sm, (i) => writeEntry(i, request(keysOfSlot.map((k) => put(k, 'old')))));
    await applyEntry(many.sm, (i) => configEntry(i, config(7, slotCount, [0], [], moving)));
    expectRejected(
      await applyData(many.sm, encodeImportBegin({ source: 1, version: 7, slots: moving })),
      'still held 4096+ keys from an earlier move; 4096 were dropped, retry',
    );
    expect(await count(many.sm, many.engine, slotKeys)).toBe(4);
    expect(many.sm.importProgress(7, 1)).toBeUndefined();
    expect(
      await applyData(many.sm, encodeImportBegin({ source: 1, version: 7, slots: moving })),
    ).toMatchObject({ kind: 'moved', keys: 0, done: false });
    expect(await count(many.sm, many.engine, slotKeys)).toBe(0);
  });

  it('refuses what would corrupt a move', async () => {
    const source = await frozenSource();
    const target = await node();
    await applyEntry(target.sm, (i) => configEntry(i, config(2, slotCount, [0], [], moving)));
    const [chunk] = await exportAll(source.sm, 1 << 20);
    // A chunk of an import that has not begun.
    expectRejected(
      await applyData(target.sm, encodeImportChunk(chunk)),
      'no import from group 1 at config version 2',
    );
    // An import of slots the config does not list as Importing.
    expectRejected(
      await applyData(target.sm, encodeImportBegin({ source: 1, version: 2, slots: [0, 2] })),
      'slot 0 is Running',
    );
    await applyData(target.sm, encodeImportBegin({ source: 1, version: 2, slots: moving }));
    // A chunk whose bytes changed on the way.
    const tampered = {
      ...chunk,
      pairs: chunk.pairs.map((p, i) => (i === 3 ? { ...p, value: Buffer.from('forged') } : p)),
    };
    expectRejected(await applyData(target.sm, encodeImportChunk(tampered)), 'checksum mismatch');
    // Dropping keys of a slot the group serves, freezes or imports.
    for (const slot of [0, 2]) {
      expect(await applyData(target.sm, encodeDrop({ slots: [slot], limit: 10 }))).toMatchObject({
        kind: 'rejected',
      });
    }
    expectRejected(
      await applyData(source.sm, encodeDrop({ slots: [2], limit: 10 })),
      'slot 2 is Migrating',
    );
    // Exporting a slot that is not frozen.
    await expect(
      source.sm.exportSlots({
        source: 1,
        version: 2,
        slots: [0],
        nextSlot: 0,
        afterKey: Buffer.alloc(0),
        dedupAfter: 0,
        budgetBytes: 100,
      }),
    ).rejects.toThrow('slot 0 is Running here at config version 2, not frozen for a move');
  });
});
