// Tier 1 of the log store: the newest entries in memory, in index order. Entries arrive at the
// end and leave from the front (eviction, compaction) or from the end (a conflicting suffix), so
// it is a queue with a moving head: every operation costs what it touches, never the length of
// the tail (a tail holds up to --log-memory-mb of entries, hundreds of thousands of them).
//
// Each entry's data is copied into slabs of our own, filled in log order: an entry's data as it
// arrives is often a view into a larger buffer (an 8 KiB pool slab, or a whole AppendEntries
// message) that it would keep alive with it, and a buffer of its own per entry costs an
// allocation each. Entries leave the tail in log order too, so a slab is freed once its last
// entry has left.
import type { Entry } from '@eraftkv/raft';

/** Bytes of one slab; data larger than that gets a buffer of its own. */
const slabBytes = 256 * 1024;
/** The dead prefix of the array is dropped once it is this long and at least half the array. */
const headCompactMin = 4096;

export class EntryTail {
  private entries: Entry[] = [];
  private head = 0;
  private slab: Buffer = Buffer.allocUnsafeSlow(0);
  private slabUsed = 0;
  /** The index of the first entry (of the next pushed one when empty). */
  private firstIndex: number;
  /** Bytes of entry data held. */
  private dataBytes = 0;

  constructor(first: number) {
    this.firstIndex = first;
  }

  /** The index of the first entry held (or of the next one pushed, when empty). */
  get first(): number {
    return this.firstIndex;
  }

  get length(): number {
    return this.entries.length - this.head;
  }

  get bytes(): number {
    return this.dataBytes;
  }

  /** The entry at `index`; the caller checks that first <= index < first + length. */
  at(index: number): Entry {
    return this.entries[this.head + index - this.firstIndex];
  }

  /** Entries [lo, hi), lo and hi within the tail. */
  slice(lo: number, hi: number): Entry[] {
    const base = this.head - this.firstIndex;
    return this.entries.slice(base + lo, base + hi);
  }

  /** Appends the entry after the last one (with its data copied into the tail's slabs). */
  push(entry: Entry): void {
    if (this.length === 0) this.firstIndex = entry.index;
    this.entries.push({ ...entry, data: this.copyData(entry.data) });
    this.dataBytes += entry.data.length;
  }

  /** Drops the first `count` entries (all of them and more: the tail continues after them). */
  dropFront(count: number): void {
    if (count >= this.length) {
      this.clear(this.firstIndex + count);
      return;
    }
    const n = count;
    for (let i = 0; i < n; i++) {
      const e = this.entries[this.head + i];
      this.dataBytes -= e.data.length;
    }
    // Let the dropped entries (and their slabs) be collected.
    this.entries.fill(undefined as unknown as Entry, this.head, this.head + n);
    this.head += n;
    this.firstIndex += n;
    if (this.head >= headCompactMin && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** Drops every entry from `index` on (a conflicting suffix); the tail continues at `index`. */
  truncateFrom(index: number): void {
    if (index <= this.firstIndex) {
      this.clear(index);
      return;
    }
    const keep = this.head + index - this.firstIndex;
    if (keep >= this.entries.length) return;
    for (let i = keep; i < this.entries.length; i++) this.dataBytes -= this.entries[i].data.length;
    this.entries.length = keep;
  }

  /** Drops everything; the next entry pushed has index `next`. */
  clear(next: number): void {
    this.entries = [];
    this.head = 0;
    this.dataBytes = 0;
    this.firstIndex = next;
    this.slab = Buffer.allocUnsafeSlow(0);
    this.slabUsed = 0;
  }

  private copyData(data: Uint8Array): Buffer {
    const n = data.length;
    if (n > slabBytes / 4) {
      const own = Buffer.allocUnsafeSlow(n);
      own.set(data);
      return own;
    }
    if (this.slabUsed + n > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(slabBytes);
      this.slabUsed = 0;
    }
    const view = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    view.set(data);
    this.slabUsed += n;
    return view;
  }
}
