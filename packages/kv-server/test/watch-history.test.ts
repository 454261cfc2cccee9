// The watch history of the data state machine on real RocksDB: which changes a write records and
// with which revision, what a replay reads (ranges, budgets, compaction), that the window is
// trimmed the same whatever the batching, how a watcher joins the live changes, and what a
// snapshot and a state that predates history do to it.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KvOpPair } from '@eraftkv/protocol';
import { openRocksEngine } from '@eraftkv/raft-server';
import type { Entry } from '@eraftkv/raft';
import { DataStateMachine, type HistoryRead } from '../src';
import { appliedKey, historyFloorKey, u64 } from '../src/state-layout';
import {
  decodeItem,
  encodeItem,
  HistoryRecordError,
  isSlotMark,
  type Change,
  type HistoryItem,
} from '../src/watch-history';
import type { HubWatcher, WatchRange } from '../src/watch-hub';
import { b, config, configEntry, del, get, put, request, tempDir, writeEntry } from './common';

const allSlots = [0, 1, 2, 3, 4, 5, 6, 7];
const everything: WatchRange = { start: Buffer.alloc(0), end: null };
const key = (k: string): WatchRange => ({ start: b(k), end: undefined });

/** The changes as comparable lines. */
const brief = (items: readonly HistoryItem[]): string[] =>
  items.map((c) =>
    isSlotMark(c)
      ? `${c.revision} ${c.type} ${c.slot} v${c.configVersion} since v${c.since}`
      : `${c.revision} ${c.type} ${c.key.toString()}=${c.value.toString()}` +
        (c.prev === undefined ? '' : ` (was ${c.prev.toString()})`),
  );

function changesOf(read: HistoryRead): { items: HistoryItem[]; through: number; joined: boolean } {
  if (read.kind !== 'changes') throw new Error(`expected changes, got ${JSON.stringify(read)}`);
  return read;
}

describe('watch history records', () => {
  it('round-trips puts with and without a previous value, and deletes', () => {
    const cases: Omit<Change, 'revision'>[] = [
      { type: 'put', key: b('k'), value: b('v'), prev: undefined },
      { type: 'put', key: b('k'), value: b(''), prev: b('old') },
      { type: 'put', key: b('k'), value: b('v'), prev: b('') },
      { type: 'delete', key: b('key'), value: b(''), prev: b('gone') },
    ];
    for (const change of cases) {
      const decoded = decodeItem(7, encodeItem(change));
      expect(decoded).toEqual({ ...change, revision: 7 });
    }
    const mark = { type: 'slot-left' as const, slot: 65535, configVersion: 9, since: 3 };
    expect(decodeItem(8, encodeItem(mark))).toEqual({ ...mark, revision: 8 });
    expect(() => decodeItem(8, encodeItem(mark).subarray(0, 18))).toThrow(/slot mark of 18 bytes/);
  });

  it('refuses records that do not decode, naming the revision', () => {
    const good = encodeItem({ type: 'put', key: b('k'), value: b('v'), prev: undefined });
    const badType = Buffer.from(good);
    badType[0] = 9;
    expect(() => decodeItem(3, badType)).toThrow(/revision 3 has type 9/);
    expect(() => decodeItem(3, good.subarray(0, 8))).toThrow(HistoryRecordError);
    expect(() => decodeItem(3, Buffer.concat([good, b('x')]))).toThrow(/bytes after its value/);
    const longKey = Buffer.from(good);
    longKey.writeUInt32BE(1000, 2);
    expect(() => decodeItem(3, longKey)).toThrow(/key longer than the record/);
  });
});

describe('DataStateMachine watch history', () => {
  let root: string;
  const open: DataStateMachine[] = [];
  let next = 0;

  beforeAll(async () => {
    root = await tempDir('history');
  });
  afterAll(async () => {
    for (const sm of open) await sm.close();
    await rm(root, { recursive: true, force: true });
  });

  async function fresh(watchHistoryRevisions?: number): Promise<DataStateMachine> {
    const sm = await DataStateMachine.open({
      path: join(root, `sm-${++next}`),
      dedupWindowEntries: 1000,
      watchHistoryRevisions,
    });
    open.push(sm);
    await sm.apply([configEntry(1, config(1, 8, allSlots))]);
    return sm;
  }

  async function write(
    sm: DataStateMachine,
    ops: KvOpPair[],
    ids: { clientId?: string; commandId?: number } = {},
  ): Promise<number> {
    const index = (await sm.appliedIndex()) + 1;
    const [result] = await sm.apply([writeEntry(index, request(ops, ids))]);
    if (result?.kind !== 'applied') throw new Error(`not applied: ${JSON.stringify(result)}`);
    return result.revision;
  }

  const read = (
    sm: DataStateMachine,
    range: WatchRange,
    from: number,
    budget = 1 << 20,
  ): Promise<HistoryRead> => sm.watchHistory(range, from, budget, () => undefined);

  it('records each change with the revision of its write and the previous value', async () => {
    const sm = await fresh();
    const r1 = await write(sm, [put('a', '1'), put('b', '1')]);
    const r2 = await write(sm, [put('a', '2'), get('b')]);
    const r3 = await write(sm, [del('b'), del('never-there')]);
    const r4 = await write(sm, [put('a', '3')], { clientId: 'c', commandId: 1 });
    // A retry answers from its dedup record and changes nothing.
    expect(await write(sm, [put('a', '3')], { clientId: 'c', commandId: 1 })).toBe(r4);
    expect([r1, r2, r3, r4]).toEqual([2, 3, 4, 5]);
    const all = changesOf(await read(sm, everything, 1));
    expect(brief(all.items)).toEqual([
      '2 put a=1',
      '2 put b=1',
      '3 put a=2 (was 1)',
      '4 delete b= (was 1)',
      '5 put a=3 (was 2)',
    ]);
    expect(all.through).toBe(6);
    expect(all.joined).toBe(true);
    expect(brief(changesOf(await read(sm, key('b'), 1)).items)).toEqual([
      '2 put b=1',
      '4 delete b= (was 1)',
    ]);
    expect(brief(changesOf(await read(sm, key('a'), 4)).items)).toEqual(['5 put a=3 (was 2)']);
    const range = { start: b('a'), end: b('b') };
    expect(
      changesOf(await read(sm, range, 1)).items.map((c) => (isSlotMark(c) ? '' : c.key.toString())),
    ).toEqual(['a', 'a', 'a']);
    // From now: nothing read, the watch starts after the applied index.
    expect(await read(sm, everything, 0)).toMatchObject({
      kind: 'changes',
      from: 7,
      items: [],
      through: 6,
      joined: true,
    });
  });

  it('reads a long history in bounded parts that never split a revision', async () => {
    const sm = await fresh();
    for (let i = 0; i < 20; i++)
      await write(sm, [put(`k${i}`, 'x'.repeat(100)), put(`j${i}`, 'y')]);
    const seen: HistoryItem[] = [];
    let from = 1;
    let parts = 0;
    for (;;) {
      const part = changesOf(await read(sm, everything, from, 250));
      parts++;
      seen.push(...part.items);
      for (const c of part.items) expect(c.revision).toBeLessThanOrEqual(part.through);
      if (part.joined) break;
      // Whole revisions: both changes of the last revision read are in this part.
      expect(part.items.filter((c) => c.revision === part.through)).toHaveLength(2);
      from = part.through + 1;
    }
    expect(parts).toBeGreaterThan(5);
    expect(seen.map((c) => c.revision)).toEqual(
      Array.from({ length: 20 }, (_, i) => [i + 2, i + 2]).flat(),
    );
  });

  it('keeps the last window of revisions and answers older starts as compacted', async () => {
    const sm = await fresh(5);
    for (let i = 0; i < 10; i++) await write(sm, [put('k', String(i))]);
    // Applied 11: revisions 7..11 are kept.
    expect(await read(sm, everything, 6)).toEqual({ kind: 'compacted', oldest: 7 });
    const kept = changesOf(await read(sm, everything, 7));
    expect(kept.items.map((c) => c.revision)).toEqual([7, 8, 9, 10, 11]);
    // With no history at all, only a watch from now (or later) starts.
    const none = await fresh(0);
    await write(none, [put('k', 'v')]);
    expect(await read(none, everything, 2)).toEqual({ kind: 'compacted', oldest: 3 });
    expect(changesOf(await read(none, everything, 0)).through).toBe(2);
  });

  it('holds the same history whatever the batching (the digest agrees)', async () => {
    const entries: Entry[] = [configEntry(1, config(1, 8, allSlots))];
    for (let i = 2; i <= 30; i++)
      entries.push(writeEntry(i, request(i % 3 === 0 ? [del(`k${i - 1}`)] : [put(`k${i}`, 'v')])));
    const openWith = async (window: number): Promise<DataStateMachine> => {
      const sm = await DataStateMachine.open({
        path: join(root, `batch-${++next}`),
        dedupWindowEntries: 1000,
        watchHistoryRevisions: window,
      });
      open.push(sm);
      return sm;
    };
    const one = await openWith(7);
    const many = await openWith(7);
    await one.apply(entries);
    for (let i = 0; i < entries.length; i += 4) await many.apply(entries.slice(i, i + 4));
    const d1 = await one.stateDigest();
    expect(await many.stateDigest()).toEqual(d1);
    expect(changesOf(await read(one, everything, 24))).toEqual(
      changesOf(await read(many, everything, 24)),
    );
    // A state with another window differs: the history is in the digest.
    const other = await openWith(8);
    await other.apply(entries);
    expect((await other.stateDigest()).digest).not.toBe(d1.digest);
  });

  it('joins a watcher so that it gets every later change once, in order', async () => {
    const sm = await fresh();
    await write(sm, [put('a', '1')]);
    const got: string[] = [];
    const watcher: HubWatcher = {
      range: key('a'),
      deliver: (changes, revision) => got.push(`${brief(changes).join(',')} @${revision}`),
      cut: (reason) => got.push(`cut: ${reason}`),
    };
    const replay = changesOf(
      await sm.watchHistory(watcher.range, 1, 1 << 20, () => sm.watchers.add(watcher)),
    );
    expect(brief(replay.items)).toEqual(['2 put a=1']);
    await write(sm, [put('b', '1')]);
    await write(sm, [put('a', '2'), put('a', '3')]);
    // A write is answered once decided; its watchers get it once it is on disk.
    await sm.stateDigest();
    expect(got).toEqual(['4 put a=2 (was 1),4 put a=3 (was 2) @4']);
    expect(sm.watchers.revision).toBe(4);
  });

  it('cuts the watchers of a replica that installs a snapshot, and keeps the history it brings', async () => {
    const source = await fresh(100);
    await write(source, [put('a', '1')]);
    await write(source, [put('a', '2')]);
    const file = join(root, `snap-${++next}`);
    const index = await source.writeSnapshot(file);
    const target = await fresh(100);
    const reasons: string[] = [];
    target.watchers.add({
      range: everything,
      deliver: () => undefined,
      cut: (reason) => reasons.push(reason),
    });
    await target.restoreSnapshot(file, index);
    expect(reasons).toEqual([expect.stringMatching(/installed a snapshot at revision 3/)]);
    expect(target.watchers.size()).toBe(0);
    expect(brief(changesOf(await read(target, key('a'), 1)).items)).toEqual([
      '2 put a=1',
      '3 put a=2 (was 1)',
    ]);
  });

  it('marks the slots a config takes away and brings, with the periods of ownership', async () => {
    const sm = await fresh(); // config 1: every slot Running
    await write(sm, [put('a', '1')]);
    const setConfig = async (c: ReturnType<typeof config>): Promise<number> => {
      const index = (await sm.appliedIndex()) + 1;
      await sm.apply([configEntry(index, c)]);
      return index;
    };
    // Version 2 freezes slots 1 and 2 (a move away), version 3 gives them away, version 4 brings
    // back slot 2 (a move in), version 5 freezes 3 and version 6 rolls it back.
    const r2 = await setConfig(config(2, 8, [0, 3, 4, 5, 6, 7], [1, 2]));
    const r3 = await setConfig(config(3, 8, [0, 3, 4, 5, 6, 7]));
    const r4 = await setConfig(config(4, 8, [0, 2, 3, 4, 5, 6, 7]));
    const r5 = await setConfig(config(5, 8, [0, 2, 4, 5, 6, 7], [3]));
    const r6 = await setConfig(config(6, 8, [0, 2, 3, 4, 5, 6, 7]));
    const all = changesOf(await read(sm, everything, 2));
    expect(brief(all.items)).toEqual([
      '2 put a=1',
      `${r2} slot-left 1 v2 since v1`,
      `${r2} slot-left 2 v2 since v1`,
      `${r4} slot-arrived 2 v4 since v4`,
      `${r5} slot-left 3 v5 since v1`,
      `${r6} slot-arrived 3 v6 since v6`,
    ]);
    expect(r3).toBe(r2 + 1);
    // The slots served at each start, with their periods: now, and at past revisions.
    const at = async (from: number): Promise<string> => {
      const r = await read(sm, everything, from);
      if (r.kind !== 'changes') throw new Error('compacted');
      return r.slots.map((x) => `${x.slot}@${x.since}`).join(' ');
    };
    expect(await at(0)).toBe('0@1 2@4 3@6 4@1 5@1 6@1 7@1');
    expect(await at(r6)).toBe('0@1 2@4 4@1 5@1 6@1 7@1');
    expect(await at(r5)).toBe('0@1 2@4 3@1 4@1 5@1 6@1 7@1');
    expect(await at(r4)).toBe('0@1 3@1 4@1 5@1 6@1 7@1');
    expect(await at(r2)).toBe('0@1 1@1 2@1 3@1 4@1 5@1 6@1 7@1');
    // A replica that installs a snapshot has the same periods and marks.
    const file = join(root, `snap-${++next}`);
    const index = await sm.writeSnapshot(file);
    const copy = await fresh();
    await copy.restoreSnapshot(file, index);
    const again = await read(copy, everything, r4);
    if (again.kind !== 'changes') throw new Error('compacted');
    expect(again.slots.map((x) => `${x.slot}@${x.since}`).join(' ')).toBe(
      '0@1 3@1 4@1 5@1 6@1 7@1',
    );
    expect(brief(again.items)).toEqual(brief(all.items).slice(3));
  });

  it('starts the history of a state that predates it at its next revision', async () => {
    const seed = async (records: [Buffer, Buffer][]): Promise<DataStateMachine> => {
      const path = join(root, `old-${++next}`);
      const engine = await openRocksEngine(path);
      await engine.write(
        records.map(([k, value]) => ({ type: 'put', key: k, value })),
        { sync: true },
      );
      await engine.close();
      const sm = await DataStateMachine.open({ path, dedupWindowEntries: 1000 });
      open.push(sm);
      return sm;
    };
    const upgraded = await seed([[appliedKey, u64(50)]]);
    expect(await read(upgraded, everything, 10)).toEqual({ kind: 'compacted', oldest: 51 });
    expect(changesOf(await read(upgraded, everything, 51)).through).toBe(50);
    // The floor is where each replica began keeping history: replicas that differ only in it
    // agree.
    const earlier = await seed([
      [appliedKey, u64(50)],
      [historyFloorKey, u64(7)],
    ]);
    expect(changesOf(await read(earlier, everything, 10)).through).toBe(50);
    expect((await earlier.stateDigest()).digest).toBe((await upgraded.stateDigest()).digest);
  });
});
