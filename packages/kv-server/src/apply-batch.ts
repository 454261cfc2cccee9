// The writes of one apply batch of the kv state, gathered into one atomic RocksDB write. Reads
// within the batch see its own earlier writes first, so that entry n+1 observes entry n before
// anything reaches disk, and a replica decides the same whatever entries share its batch.
import type { StorageEngine, WriteOp } from '@eraftkv/raft-server';

export class ApplyBatch {
  readonly ops: WriteOp[] = [];
  private readonly overlay = new Map<string, Buffer | null>();
  constructor(private readonly engine: StorageEngine) {}

  async get(key: Buffer): Promise<Buffer | undefined> {
    const id = key.toString('latin1');
    if (this.overlay.has(id)) return this.overlay.get(id) ?? undefined;
    return this.engine.get(key);
  }

  put(key: Buffer, value: Buffer): void {
    this.overlay.set(key.toString('latin1'), value);
    this.ops.push({ type: 'put', key, value });
  }

  del(key: Buffer): void {
    this.overlay.set(key.toString('latin1'), null);
    this.ops.push({ type: 'del', key });
  }

  /**
   * The first `limit` keys in [gte, lt) as the state will be after this batch: the stored ones
   * this batch has not deleted, and the ones it put, in byte order.
   */
  async keysIn(range: { gte: Buffer; lt: Buffer }, limit: number): Promise<Buffer[]> {
    const lo = range.gte.toString('latin1');
    const hi = range.lt.toString('latin1');
    // latin1 strings compare like the bytes they hold.
    let deletedHere = 0;
    const putHere: Buffer[] = [];
    for (const [id, value] of this.overlay) {
      if (id < lo || id >= hi) continue;
      if (value === null) deletedHere++;
      else putHere.push(Buffer.from(id, 'latin1'));
    }
    const keys = new Map<string, Buffer>();
    for (const key of putHere) keys.set(key.toString('latin1'), key);
    // Enough stored keys to fill `limit` even if every key this batch deleted is among them.
    for await (const [key] of this.engine.iterate({ ...range, limit: limit + deletedHere })) {
      const id = key.toString('latin1');
      if (this.overlay.get(id) === null) continue;
      keys.set(id, key);
    }
    return [...keys.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, limit)
      .map(([, key]) => key);
  }
}
