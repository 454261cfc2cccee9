// The watch history of a kv group: every change a client write made (put, or delete of a key that
// held a value), kept for the last `window` revisions so that a watcher can start from a past
// revision or resume after a cut (docs/watch.md). A revision is the log index of the write; the
// changes of one request share it.
//
// The records ('h' u64 revision, u16 n; state-layout.ts) are written in the apply batch of the
// change itself, so the history is exactly as durable as the data and every replica holds the same
// records at the same applied index: what is kept depends only on the applied index and the window
// (every member of a group must use the same --watch-history-revisions, as with the dedup window),
// never on how entries were batched. A slot move's copy and the clean-up of moved slots make no
// changes here: they move keys, they do not write them.
//
// A change of which slots the group writes is in the history too, as a slot mark: the slot left
// (frozen for a move, or given away) or arrived (a move finished, or was rolled back), with the
// topology version that did it and the one its period of ownership began at. A client watching
// several groups orders the events of a moved slot by these periods (docs/watch.md).
//
// Which revisions hold records is mirrored in memory (revision, count), oldest first, so trimming
// deletes exactly the records that fell out of the window without reading the disk; so are the
// slot marks (a move makes two), to tell which slots the group wrote at a past revision.
import type { StorageEngine, WriteOp } from '@eraftkv/raft-server';
import {
  historyEnd,
  historyFloorKey,
  historyKey,
  historyStart,
  readU64,
  revisionOfHistoryKey,
  u64,
} from './state-layout';

export type ChangeType = 'put' | 'delete';

/** One change of a key in the history. */
export interface Change {
  readonly type: ChangeType;
  readonly key: Buffer;
  /** The value written (empty for a delete). */
  readonly value: Buffer;
  readonly revision: number;
  /** The value the key held before, if any. */
  readonly prev: Buffer | undefined;
}

/** A slot the group stopped or began writing at `revision`. */
export interface SlotMark {
  readonly type: 'slot-left' | 'slot-arrived';
  readonly slot: number;
  readonly revision: number;
  /** The topology version that made the change. */
  readonly configVersion: number;
  /** The topology version the period of ownership began at (arrived: configVersion). */
  readonly since: number;
}

/** What the history holds: changes of keys and slot marks. */
export type HistoryItem = Change | SlotMark;

/** An item before it is recorded at its revision. */
export type Pending<T> = T extends unknown ? Omit<T, 'revision'> : never;
export type PendingChange = Pending<Change>;
export type PendingItem = Pending<HistoryItem>;

function isPendingChange(item: PendingItem): item is PendingChange {
  return item.type === 'put' || item.type === 'delete';
}

export function isSlotMark(item: HistoryItem): item is SlotMark {
  return item.type === 'slot-left' || item.type === 'slot-arrived';
}

/** The most changes one revision may hold (n is a u16). */
export const changesPerRevisionMax = 0x1_0000;

const typeCodes: Record<HistoryItem['type'], number> = {
  put: 1,
  delete: 2,
  'slot-left': 3,
  'slot-arrived': 4,
};
const hasPrevFlag = 1;
const markBytes = 19;

/**
 * A record. A change: u8 type, u8 flags, u32 key length, key, u32 value length, value, then prev
 * (if any). A slot mark: u8 type, u16 slot, u64 config version, u64 since.
 */
export function encodeItem(item: PendingItem): Buffer {
  if (!isPendingChange(item)) {
    const out = Buffer.allocUnsafe(markBytes);
    out[0] = typeCodes[item.type];
    out.writeUInt16BE(item.slot, 1);
    u64(item.configVersion).copy(out, 3);
    u64(item.since).copy(out, 11);
    return out;
  }
  return encodeChange(item);
}

function encodeChange(change: PendingChange): Buffer {
  const prev = change.prev;
  const out = Buffer.allocUnsafe(
    10 + change.key.length + change.value.length + (prev?.length ?? 0),
  );
  out[0] = typeCodes[change.type];
  out[1] = prev === undefined ? 0 : hasPrevFlag;
  out.writeUInt32BE(change.key.length, 2);
  change.key.copy(out, 6);
  let at = 6 + change.key.length;
  out.writeUInt32BE(change.value.length, at);
  change.value.copy(out, at + 4);
  at += 4 + change.value.length;
  prev?.copy(out, at);
  return out;
}

/** A history record that does not decode: the state is damaged. */
export class HistoryRecordError extends Error {
  override name = 'HistoryRecordError';
}

export function decodeItem(revision: number, record: Buffer): HistoryItem {
  const fail = (why: string): never => {
    throw new HistoryRecordError(`the history record of revision ${revision} ${why}`);
  };
  if (record[0] === 3 || record[0] === 4) {
    if (record.length !== markBytes) fail(`is a slot mark of ${record.length} bytes`);
    return {
      type: record[0] === 3 ? 'slot-left' : 'slot-arrived',
      slot: record.readUInt16BE(1),
      revision,
      configVersion: readU64(record, 3),
      since: readU64(record, 11),
    };
  }
  if (record.length < 10) fail(`is ${record.length} bytes, shorter than any record`);
  const type = record[0] === 1 ? 'put' : record[0] === 2 ? 'delete' : fail(`has type ${record[0]}`);
  const keyLength = record.readUInt32BE(2);
  if (6 + keyLength + 4 > record.length) fail('has a key longer than the record');
  const key = record.subarray(6, 6 + keyLength);
  const valueAt = 6 + keyLength;
  const valueLength = record.readUInt32BE(valueAt);
  const prevAt = valueAt + 4 + valueLength;
  if (prevAt > record.length) fail('has a value longer than the record');
  const value = record.subarray(valueAt + 4, prevAt);
  const hasPrev = (record[1] & hasPrevFlag) !== 0;
  if (!hasPrev && prevAt !== record.length) fail('has bytes after its value');
  return { type, key, value, revision, prev: hasPrev ? record.subarray(prevAt) : undefined };
}

/** Which revisions hold records, and how many each, oldest first (a queue with a head). */
export class HistoryIndex {
  private revisions: number[] = [];
  private counts: number[] = [];
  private head = 0;
  /** The slot marks kept, oldest first. */
  private marks: SlotMark[] = [];

  private constructor(
    /** The first revision the history is complete from (where this replica began keeping it). */
    readonly floor: number,
  ) {}

  /**
   * Reads the history's keys and its floor. A state without a floor predates the history: it is
   * complete from the next revision on, and the floor is written so (that one write is the only
   * one made here outside an apply batch).
   */
  static async load(engine: StorageEngine, applied: number): Promise<HistoryIndex> {
    const stored = await engine.get(historyFloorKey);
    let floor: number;
    if (stored === undefined) {
      floor = applied + 1;
      await engine.write([{ type: 'put', key: historyFloorKey, value: u64(floor) }], {
        sync: false,
      });
    } else {
      floor = readU64(stored);
    }
    const index = new HistoryIndex(floor);
    for await (const [key, record] of engine.iterate({ gte: historyStart, lt: historyEnd })) {
      const revision = revisionOfHistoryKey(key);
      if (record[0] === 3 || record[0] === 4) {
        const mark = decodeItem(revision, record);
        if (isSlotMark(mark)) index.marks.push(mark);
      }
      const last = index.revisions.length - 1;
      if (last >= 0 && index.revisions[last] === revision) index.counts[last]++;
      else {
        index.revisions.push(revision);
        index.counts.push(1);
      }
    }
    return index;
  }

  /** Adds the records of `items` made at `revision` to `ops`. */
  record(ops: WriteOp[], revision: number, items: readonly PendingItem[]): void {
    if (items.length === 0) return;
    if (items.length > changesPerRevisionMax)
      throw new RangeError(`an entry made ${items.length} changes, more than a revision holds`);
    for (const [n, item] of items.entries()) {
      ops.push({ type: 'put', key: historyKey(revision, n), value: encodeItem(item) });
      if (!isPendingChange(item)) this.marks.push({ ...item, revision });
    }
    this.revisions.push(revision);
    this.counts.push(items.length);
  }

  /** The slot marks at `from` or later, newest first. */
  marksSince(from: number): SlotMark[] {
    const out: SlotMark[] = [];
    for (let i = this.marks.length - 1; i >= 0 && this.marks[i].revision >= from; i--)
      out.push(this.marks[i]);
    return out;
  }

  /** Adds to `ops` the deletes of every record of a revision below `keepFrom`. */
  trim(ops: WriteOp[], keepFrom: number): void {
    while (this.head < this.revisions.length && this.revisions[this.head] < keepFrom) {
      const revision = this.revisions[this.head];
      for (let n = 0; n < this.counts[this.head]; n++)
        ops.push({ type: 'del', key: historyKey(revision, n) });
      this.head++;
    }
    let dropped = 0;
    while (dropped < this.marks.length && this.marks[dropped].revision < keepFrom) dropped++;
    if (dropped > 0) this.marks = this.marks.slice(dropped);
    if (this.head > 1024 && this.head * 2 > this.revisions.length) {
      this.revisions = this.revisions.slice(this.head);
      this.counts = this.counts.slice(this.head);
      this.head = 0;
    }
  }

  /** Revisions that hold records. */
  size(): number {
    return this.revisions.length - this.head;
  }
}

/**
 * The oldest revision a watch may start from at `applied` with `window` revisions kept: older
 * ones are compacted (trimmed, or before the replica began keeping history).
 */
export function oldestWatchable(applied: number, window: number, floor: number): number {
  return Math.max(floor, applied - window + 1, 1);
}

/** The records from `from` up to `through` (inclusive) in revision order. */
export function historyRange(from: number, through: number): { gte: Buffer; lt: Buffer } {
  return { gte: historyKey(from, 0), lt: historyKey(through + 1, 0) };
}
