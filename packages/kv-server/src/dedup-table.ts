// The dedup table in memory: the stored response of every write request applied with a
// (client_id, command_id) within the last `window` log entries. It mirrors the 'd' records in
// RocksDB (written in the same apply batch as the data) so that applying a request never has to
// read the disk to find out whether it is a retry; it is rebuilt from RocksDB at start and after
// a snapshot is installed. Records leave in log-index order, so pruning is a walk from the front.
//
// A record keeps its request id and response as one-byte strings, not Buffers: the table holds up
// to a whole window of records (100,000 by default), and a small Buffer is a slice of an 8 KiB
// pool slab that it keeps alive whole, so Buffers here cost kilobytes per record instead of bytes.
//
// In memory only, a record also knows the one slot its request wrote to, when the request was
// applied by this process (after a restart or a snapshot, and for requests over several slots,
// it is unknown): a slot move then copies the records of its own slots and the unknown ones,
// not the whole table.
import type { StorageEngine, WriteOp } from '@eraftkv/raft-server';
import { dedupEnd, dedupStart, readU64, u64 } from './state-layout';

interface DedupRecord {
  readonly index: number;
  /** The encoded response, latin1. */
  readonly response: string;
  /** The slot of every key of the request, or -1 when unknown or several. */
  readonly slot: number;
}

/** The slot of a record whose request's slots are not known (or are several). */
export const unknownSlot = -1;

export class DedupTable {
  private readonly records = new Map<string, DedupRecord>();
  /** Every record ever written that may still be live, oldest first (a queue with a head). */
  private order: { index: number; id: string }[] = [];
  private head = 0;

  /** Reads every dedup record of the state. */
  static async load(engine: StorageEngine): Promise<DedupTable> {
    const table = new DedupTable();
    for await (const [key, value] of engine.iterate({ gte: dedupStart, lt: dedupEnd })) {
      const index = readU64(value);
      const id = key.toString('latin1');
      table.records.set(id, { index, response: value.toString('latin1', 8), slot: unknownSlot });
      table.order.push({ index, id });
    }
    table.order.sort((a, b) => a.index - b.index);
    return table;
  }

  /**
   * The stored response of the request `dbKey` and the log index it was applied at, if that was
   * within the window before `index`, else null (never applied, or so long ago that it counts as
   * new).
   */
  lookup(
    dbKey: Buffer,
    index: number,
    window: number,
  ): { readonly response: Buffer; readonly index: number } | null {
    const record = this.records.get(dbKey.toString('latin1'));
    if (record === undefined || record.index <= index - window) return null;
    return { response: Buffer.from(record.response, 'latin1'), index: record.index };
  }

  /**
   * Records the response of the request applied at `index` (in memory and in `ops`); `slot` is
   * the one slot its keys belong to (unknownSlot when several or not known).
   */
  record(ops: WriteOp[], dbKey: Buffer, index: number, response: Buffer, slot: number): void {
    const id = dbKey.toString('latin1');
    this.records.set(id, { index, response: response.toString('latin1'), slot });
    this.order.push({ index, id });
    ops.push({ type: 'put', key: dbKey, value: Buffer.concat([u64(index), response]) });
  }

  /**
   * Live records with an index above `after`, oldest first, until `budgetBytes` of ids and
   * answers (at least one record when there is any): what a slot move copies to the target.
   * With `slots`, only the records of those slots and those whose slot is unknown.
   */
  recordsAfter(
    after: number,
    budgetBytes: number,
    slots?: ReadonlySet<number>,
  ): { id: Buffer; response: Buffer; index: number }[] {
    // The queue is in index order: find the first entry above `after` by bisection.
    let lo = this.head;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.order[mid].index <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: { id: Buffer; response: Buffer; index: number }[] = [];
    let bytes = 0;
    for (let i = lo; i < this.order.length; i++) {
      const { index, id } = this.order[i];
      const record = this.records.get(id);
      if (record === undefined || record.index !== index) continue; // replaced or pruned
      if (slots !== undefined && record.slot !== unknownSlot && !slots.has(record.slot)) continue;
      const size = id.length + record.response.length;
      if (out.length > 0 && bytes + size > budgetBytes) break;
      bytes += size;
      out.push({
        id: Buffer.from(id, 'latin1'),
        response: Buffer.from(record.response, 'latin1'),
        index,
      });
    }
    return out;
  }

  /** Drops every record at or below `floor` (in memory and from RocksDB through `ops`). */
  prune(ops: WriteOp[], floor: number): void {
    while (this.head < this.order.length && this.order[this.head].index <= floor) {
      const { index, id } = this.order[this.head++];
      const record = this.records.get(id);
      // A request retried after it left the window was recorded again: that newer record stays.
      if (record !== undefined && record.index === index) {
        this.records.delete(id);
        ops.push({ type: 'del', key: Buffer.from(id, 'latin1') });
      }
    }
    if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }

  /** The number of live records. */
  size(): number {
    return this.records.size;
  }
}
