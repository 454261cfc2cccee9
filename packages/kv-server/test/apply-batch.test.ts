// ApplyBatch on real RocksDB: reads see the batch's own writes first, then what was prefetched,
// then the store; a prefetch is one getMany of the keys not known yet; a batch that follows a
// written one knows what that one read and wrote.
import { rm } from 'node:fs/promises';
import { openRocksEngine, type StorageEngine } from '@eraftkv/raft-server';
import { ApplyBatch } from '../src/apply-batch';
import { b, tempDir } from './common';

describe('ApplyBatch', () => {
  let dir: string;
  let engine: StorageEngine;
  let gets: number;
  let manyCalls: Buffer[][];

  beforeEach(async () => {
    dir = await tempDir('apply-batch');
    const real = await openRocksEngine(dir);
    await real.write(
      [
        { type: 'put', key: b('a'), value: b('stored-a') },
        { type: 'put', key: b('b'), value: b('stored-b') },
      ],
      { sync: false },
    );
    gets = 0;
    manyCalls = [];
    // The real engine, counting its reads.
    engine = Object.assign(Object.create(real) as StorageEngine, {
      get: (key: Buffer) => {
        gets++;
        return real.get(key);
      },
      getMany: (keys: readonly Buffer[]) => {
        manyCalls.push([...keys]);
        return real.getMany(keys);
      },
    });
  });

  afterEach(async () => {
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  });

  const text = (value: Buffer | undefined): string | undefined => value?.toString();

  it('reads prefetched keys without going back to the store, absent ones as absent', async () => {
    const batch = new ApplyBatch(engine);
    await batch.prefetch([b('a'), b('missing'), b('a')]);
    expect(manyCalls.map((keys) => keys.map(String))).toEqual([['a', 'missing']]);
    expect(text(await batch.get(b('a')))).toBe('stored-a');
    expect(await batch.get(b('missing'))).toBeUndefined();
    expect(gets).toBe(0);
    // A key not prefetched is read from the store.
    expect(text(await batch.get(b('b')))).toBe('stored-b');
    expect(gets).toBe(1);
  });

  it("puts the batch's own writes before what was prefetched", async () => {
    const batch = new ApplyBatch(engine);
    await batch.prefetch([b('a'), b('b')]);
    batch.put(b('a'), b('new-a'));
    batch.del(b('b'));
    expect(text(await batch.get(b('a')))).toBe('new-a');
    // Deleted here: absent, although the prefetch found a value.
    expect(await batch.get(b('b'))).toBeUndefined();
    // Keys the batch already knows are not fetched again.
    await batch.prefetch([b('a'), b('b'), b('c')]);
    expect(manyCalls.map((keys) => keys.map(String))).toEqual([['a', 'b'], ['c']]);
    expect(gets).toBe(0);
  });

  it('knows, after a written batch, what that batch read and wrote', async () => {
    const first = new ApplyBatch(engine);
    await first.prefetch([b('a'), b('b'), b('missing')]);
    first.del(b('a'));
    first.put(b('c'), b('new-c'));
    await engine.write(first.ops, { sync: false });
    const next = new ApplyBatch(engine, first);
    expect(await next.get(b('a'))).toBeUndefined();
    expect(text(await next.get(b('b')))).toBe('stored-b');
    expect(text(await next.get(b('c')))).toBe('new-c');
    expect(await next.get(b('missing'))).toBeUndefined();
    expect(gets).toBe(0);
    expect(manyCalls).toHaveLength(1);
  });
});
