// The writes of one apply batch of the kv state, gathered into one atomic RocksDB write. Reads
// within the batch see its own earlier writes first, so that entry n+1 observes entry n before
// anything reaches disk, and a replica decides the same whatever entries share its batch.
//
// The keys a batch will read can be fetched before its entries are applied (prefetch), in one
// trip to RocksDB's threads: a batch of 64 puts that each read the value they replace (for the
// watch history) otherwise waits for 64 trips in turn.
import type { StorageEngine, WriteOp } from '@eraftkv/raft-server';

/** A key's bytes as a Map key (latin1 strings compare like the bytes they hold). */
const idOf = (key: Buffer): string => key.toString('latin1');

export class ApplyBatch {
  readonly ops: WriteOp[] = [];
  /** What this batch wrote (null: deleted). */
  private readonly overlay = new Map<string, Buffer | null>();
  /** Values read before this batch wrote them (null: absent). */
  private readonly stored: Map<string, Buffer | null>;

  /**
   * `after`: a batch written to disk just before this one; what it read and wrote is what the
   * store now holds, so it is not read again.
   */
  constructor(
    private readonly engine: StorageEngine,
    after?: ApplyBatch,
  ) {
    this.stored = new Map<string, Buffer | null>(
      after === undefined ? [] : [...after.stored, ...after.overlay],
    );
  }

  async get(key: Buffer): Promise<Buffer | undefined> {
    const id = idOf(key);
    if (this.overlay.has(id)) return this.overlay.get(id) ?? undefined;
    const stored = this.stored.get(id);
    if (stored !== undefined) return stored ?? undefined;
    return this.engine.get(key);
  }

  /** Reads the stored values of `keys` (those not known yet) in one trip, for later gets. */
  async prefetch(keys: readonly Buffer[]): Promise<void> {
    const wanted = new Map<string, Buffer>();
    for (const key of keys) {
      const id = idOf(key);
      if (!this.overlay.has(id) && !this.stored.has(id)) wanted.set(id, key);
    }
    if (wanted.size === 0) return;
    const values = await this.engine.getMany([...wanted.values()]);
    let i = 0;
    for (const id of wanted.keys()) this.stored.set(id, values[i++] ?? null);
  }

  put(key: Buffer, value: Buffer): void {
    this.overlay.set(idOf(key), value);
    this.ops.push({ type: 'put', key, value });
  }

  del(key: Buffer): void {
    this.overlay.set(idOf(key), null);
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
