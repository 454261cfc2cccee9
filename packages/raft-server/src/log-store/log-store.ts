// The two-tier log store (the RaftLog / LogStore pair of the ERaftKV design): tier 1 is an
// in-memory tail of recent entries bounded in bytes, from which the core reads and replication
// is served; tier 2 is RocksDB, which holds every entry since the last compaction durably. Reads
// that miss tier 1 start an asynchronous load and answer "unavailable" until it completes, so the
// core never blocks. Terms are kept in memory for the whole log.
//
// Writes happen only through persist(), installSnapshot() and compact(); the in-memory view
// changes only after the write is durable, so the core never counts an entry as stored early.
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, Membership as MembershipProto } from '@eraftkv/protocol';
import { EraftError } from '../errors';
import { membershipFromWire, membershipToWire } from '../transport/message-codec';
import {
  emptyHardState,
  invariant,
  isMembershipEntry,
  limitEntriesBytes,
  type Entry,
  type HardState,
  type InitialState,
  type LogStorage,
  type Membership,
  type SnapshotMeta,
} from '@eraftkv/raft';
import type { StorageEngine, WriteOp } from '../storage-engine';
import {
  checkStoredNumber,
  CorruptEntryError,
  decodeEntry,
  encodeEntry,
  entryKey,
  entryKeyEnd,
  indexOfEntryKey,
} from './entry-codec';
import { EntryTail } from './entry-tail';
import { TermRuns } from './term-runs';

const hardStateKey = Buffer.from('m:hard');
const startKey = Buffer.from('m:start');
const snapshotKey = Buffer.from('m:snap');

export interface LogStoreOptions {
  /** Bytes of entry data kept in memory (tier 1) before older entries are evicted. */
  readonly memoryBytesMax: number;
  /** Entries loaded back from RocksDB are kept in this many chunks for reuse. */
  readonly loadedChunksMax?: number;
  /** Named in errors, so that an operator knows which data dir is affected. */
  readonly description: string;
}

/**
 * The log store refuses to open: the data on disk is damaged or inconsistent (DATA_LOSS if a
 * request ever met it).
 */
export class LogStoreCorruptError extends EraftError {
  override name = 'LogStoreCorruptError';
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.OK, grpc.status.DATA_LOSS, message, options);
  }
}

interface LoadedChunk {
  readonly first: number;
  readonly entries: readonly Entry[];
}

// The log's metadata records. Each is checked on the way out (every number fits its six bytes)
// and on the way in (the record has its size and decodes), and an error names the record.

function encodeHardState(h: HardState): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeUIntBE(checkStoredNumber(h.term, 'hard state term'), 0, 6);
  b.writeUIntBE(checkStoredNumber(h.vote, 'hard state vote'), 6, 6);
  b.writeUIntBE(checkStoredNumber(h.commit, 'hard state commit'), 12, 6);
  return b;
}

function decodeHardState(b: Buffer, where: string): HardState {
  if (b.length !== 18) {
    throw new LogStoreCorruptError(
      `${where}: the hard state record (key m:hard) has ${b.length} bytes, not 18`,
    );
  }
  return { term: b.readUIntBE(0, 6), vote: b.readUIntBE(6, 6), commit: b.readUIntBE(12, 6) };
}

function encodeStart(index: number, term: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUIntBE(checkStoredNumber(index, 'log start index'), 0, 6);
  b.writeUIntBE(checkStoredNumber(term, 'log start term'), 6, 6);
  return b;
}

function decodeStart(b: Buffer, where: string): { index: number; term: number } {
  if (b.length !== 12) {
    throw new LogStoreCorruptError(
      `${where}: the log start record (key m:start) has ${b.length} bytes, not 12`,
    );
  }
  return { index: b.readUIntBE(0, 6), term: b.readUIntBE(6, 6) };
}

export function encodeSnapshotMeta(s: SnapshotMeta): Buffer {
  const membership = Buffer.from(MembershipProto.encode(membershipToWire(s.membership)).finish());
  const b = Buffer.allocUnsafe(12 + membership.length);
  b.writeUIntBE(checkStoredNumber(s.index, 'snapshot index'), 0, 6);
  b.writeUIntBE(checkStoredNumber(s.term, 'snapshot term'), 6, 6);
  membership.copy(b, 12);
  return b;
}

export function decodeSnapshotMeta(b: Buffer, where = 'snapshot metadata'): SnapshotMeta {
  if (b.length < 12) {
    throw new LogStoreCorruptError(`${where}: the record has ${b.length} bytes, fewer than 12`);
  }
  let membership: Membership;
  try {
    membership = membershipFromWire(MembershipProto.decode(b.subarray(12)), 'membership');
  } catch (err) {
    throw new LogStoreCorruptError(
      `${where}: the membership does not decode: ${(err as Error).message}`,
    );
  }
  return { index: b.readUIntBE(0, 6), term: b.readUIntBE(6, 6), membership };
}

export class LogStore implements LogStorage {
  private hardState: HardState = emptyHardState;
  /** The latest snapshot's metadata (the bootstrap point of a new group counts as one). */
  private snapshotMeta: SnapshotMeta;
  private readonly terms = new TermRuns();
  /** Tier 1: the newest entries. */
  private readonly tail: EntryTail;
  /** Entries at or above this index are never evicted (the application has not applied them). */
  private retainFrom = Number.MAX_SAFE_INTEGER;
  private loaded: LoadedChunk[] = [];
  private readonly loading = new Set<number>();
  private failure: Error | null = null;
  /** Writes run one after another: each computes its batch from the state the previous left. */
  private writeQueue: Promise<unknown> = Promise.resolve();
  /** Called when entries that were unavailable have been loaded from RocksDB. */
  onEntriesLoaded: () => void = () => {};
  /** Called when removing compacted entries failed (they stay; the next open retries). */
  onRemovalFailed: (err: Error) => void = () => {};
  /** Background removals of compacted entries, one after another. */
  private removals: Promise<void> = Promise.resolve();
  /** Called when snapshot() had no snapshot to offer (the runtime should write one). */
  onSnapshotNeeded: () => void = () => {};
  /** Whether a snapshot file exists for snapshotMeta (set by the runtime). */
  private snapshotFileReady = false;
  /** Membership entries after the snapshot, collected by the startup scan. */
  private readonly membershipEntriesAtOpen: Entry[] = [];

  private constructor(
    private readonly engine: StorageEngine,
    private readonly options: LogStoreOptions,
    start: { index: number; term: number },
    snapshot: SnapshotMeta,
  ) {
    this.snapshotMeta = snapshot;
    this.terms.reset(start.index, start.term);
    this.tail = new EntryTail(start.index + 1);
  }

  /** True when the engine holds no log yet (a new data dir). */
  static async isNew(engine: StorageEngine): Promise<boolean> {
    return (await engine.get(startKey)) === undefined;
  }

  /**
   * Opens the store, verifying every stored entry (checksum, position, no gaps). A new store
   * (nothing on disk) starts from `bootstrap` when given: the membership a new group starts with,
   * recorded as the snapshot at index 1, term 1.
   */
  static async open(
    engine: StorageEngine,
    options: LogStoreOptions,
    bootstrap: Membership | null,
  ): Promise<LogStore> {
    const where = options.description;
    const [hardRaw, startRaw, snapRaw] = await Promise.all([
      engine.get(hardStateKey),
      engine.get(startKey),
      engine.get(snapshotKey),
    ]);
    let store: LogStore;
    if (startRaw === undefined) {
      // A new store. With a bootstrap membership it begins as a group's first members do.
      const start = bootstrap ? { index: 1, term: 1 } : { index: 0, term: 0 };
      const snapshot: SnapshotMeta = { ...start, membership: bootstrap ?? [] };
      const hardState: HardState = bootstrap ? { term: 1, vote: 0, commit: 1 } : emptyHardState;
      await engine.write(
        [
          { type: 'put', key: startKey, value: encodeStart(start.index, start.term) },
          { type: 'put', key: snapshotKey, value: encodeSnapshotMeta(snapshot) },
          { type: 'put', key: hardStateKey, value: encodeHardState(hardState) },
        ],
        { sync: true },
      );
      store = new LogStore(engine, options, start, snapshot);
      store.hardState = hardState;
      return store;
    }
    if (snapRaw === undefined || hardRaw === undefined) {
      throw new LogStoreCorruptError(
        `${where}: log metadata is incomplete (missing ${snapRaw === undefined ? 'snapshot' : 'hard state'})`,
      );
    }
    const start = decodeStart(startRaw, where);
    const snapshot = decodeSnapshotMeta(snapRaw, `${where}: the snapshot record (key m:snap)`);
    store = new LogStore(engine, options, start, snapshot);
    store.hardState = decodeHardState(hardRaw, where);
    await store.scan(where);
    // Entries below the start that a compaction had not yet removed when the node stopped.
    store.removeEntries(0, start.index + 1);
    return store;
  }

  /** Reads every entry once at startup: verifies them, rebuilds terms and fills tier 1. */
  private async scan(where: string): Promise<void> {
    let expected = this.terms.lastIndex() + 1;
    const snapshotIndex = this.snapshotMeta.index;
    for await (const [key, value] of this.engine.iterate({
      gte: entryKey(expected),
      lt: entryKeyEnd,
    })) {
      const index = indexOfEntryKey(key);
      if (index !== expected) {
        throw new LogStoreCorruptError(
          `${where}: the log has a gap: entry ${expected} is missing (next stored entry is ${index})`,
        );
      }
      let entry: Entry;
      try {
        entry = decodeEntry(value, index, where);
      } catch (err) {
        if (err instanceof CorruptEntryError) throw new LogStoreCorruptError(err.message);
        throw err;
      }
      this.terms.push(index, entry.term);
      if (index > snapshotIndex && isMembershipEntry(entry.type))
        this.membershipEntriesAtOpen.push(entry);
      this.tail.push(entry);
      if (index % 1024 === 0) this.evict();
      expected++;
    }
    this.evict();
  }

  /** Evicts the oldest tier-1 entries while over budget (never those still to be applied). */
  private evict(): void {
    const tail = this.tail;
    let drop = 0;
    let bytes = tail.bytes;
    const first = tail.first;
    while (
      drop < tail.length - 1 &&
      bytes > this.options.memoryBytesMax &&
      first + drop < this.retainFrom
    ) {
      bytes -= tail.at(first + drop).data.length;
      drop++;
    }
    if (drop > 0) tail.dropFront(drop);
  }

  /** Tells the store which entries the application still needs (they stay in memory). */
  setRetainFrom(index: number): void {
    this.retainFrom = index;
    this.evict();
  }

  /**
   * Records a new snapshot point: the state machine's state at `meta.index` is durable, in a
   * snapshot file (`withFile`, which snapshot() then offers to followers) or in the state
   * machine's own store (then snapshot() asks for a file when a follower needs one).
   */
  setSnapshot(meta: SnapshotMeta, withFile: boolean): Promise<void> {
    return this.serial(() => this.setSnapshotNow(meta, withFile));
  }

  private async setSnapshotNow(meta: SnapshotMeta, withFile: boolean): Promise<void> {
    invariant(
      meta.index >= this.snapshotMeta.index,
      () => `snapshot ${meta.index} is older than ${this.snapshotMeta.index}`,
    );
    await this.engine.write([{ type: 'put', key: snapshotKey, value: encodeSnapshotMeta(meta) }], {
      sync: true,
    });
    this.snapshotMeta = meta;
    this.snapshotFileReady = withFile;
  }

  markSnapshotFileReady(ready: boolean): void {
    this.snapshotFileReady = ready;
  }

  // ---------------------------------------------------------------------------------------------
  // LogStorage (what the core reads)
  // ---------------------------------------------------------------------------------------------

  /**
   * At open: the state machine has applied up to `applied`, so every entry up to it was committed.
   * The runtime applies committed entries while the write of the commit index that covers them may
   * still be in flight, so after a crash the stored commit index can be lower: it is raised to
   * `applied` (in memory; the next persist stores it). An applied index beyond the log changes
   * nothing here (the core refuses to start on it).
   */
  commitAtLeast(applied: number): void {
    if (applied > this.hardState.commit && applied <= this.lastIndex()) {
      this.hardState = { ...this.hardState, commit: applied };
    }
  }

  initialState(): InitialState {
    // Read when the core starts; the membership entries are those found by the startup scan.
    return {
      hardState: this.hardState,
      snapshot: this.snapshotMeta,
      membershipEntries: this.membershipEntriesAtOpen,
    };
  }

  firstIndex(): number {
    return this.terms.firstIndex() + 1;
  }

  lastIndex(): number {
    return this.terms.lastIndex();
  }

  term(index: number): number | undefined {
    return this.terms.term(index);
  }

  entries(lo: number, hi: number, bytesMax: number): readonly Entry[] | null {
    invariant(
      lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo < hi,
      () =>
        `${this.options.description}: entries [${lo}, ${hi}) outside [${this.firstIndex()}, ${this.lastIndex() + 1})`,
    );
    if (lo >= this.tail.first && this.tail.length > 0) {
      return limitEntriesBytes(this.tail.slice(lo, hi), bytesMax);
    }
    for (const chunk of this.loaded) {
      const offset = lo - chunk.first;
      if (offset >= 0 && offset < chunk.entries.length) {
        return limitEntriesBytes(chunk.entries.slice(offset, hi - chunk.first), bytesMax);
      }
    }
    this.load(lo, Math.min(hi, this.tail.first), bytesMax);
    return null;
  }

  snapshot(): SnapshotMeta | null {
    if (this.snapshotFileReady && this.snapshotMeta.index >= this.firstIndex() - 1) {
      return this.snapshotMeta;
    }
    this.onSnapshotNeeded();
    return null;
  }

  /** Loads [lo, hi) from RocksDB into the loaded chunks, then reports through onEntriesLoaded. */
  private load(lo: number, hi: number, bytesMax: number): void {
    if (this.loading.has(lo) || this.failure !== null) return;
    this.loading.add(lo);
    void (async () => {
      const entries: Entry[] = [];
      let bytes = 0;
      try {
        for await (const [key, value] of this.engine.iterate({
          gte: entryKey(lo),
          lt: entryKey(hi),
        })) {
          const entry = decodeEntry(value, indexOfEntryKey(key), this.options.description);
          entries.push(entry);
          bytes += entry.data.length;
          if (bytes >= bytesMax) break;
        }
      } catch (err) {
        this.failure = err as Error;
      } finally {
        this.loading.delete(lo);
      }
      // Only keep what still matches the log (a truncation or compaction may have happened).
      if (entries.length > 0 && entries[0].index === lo && this.term(lo) === entries[0].term) {
        this.loaded.push({ first: lo, entries });
        const max = this.options.loadedChunksMax ?? 4;
        if (this.loaded.length > max) this.loaded.shift();
      }
      this.onEntriesLoaded();
    })();
  }

  /** A failure seen by a background load (a corrupt entry); the runtime stops the node. */
  backgroundFailure(): Error | null {
    return this.failure;
  }

  // ---------------------------------------------------------------------------------------------
  // Writes (what the runtime does with each Ready)
  // ---------------------------------------------------------------------------------------------

  /**
   * Persists a Ready's entries (replacing any stored suffix from entries[0].index) and hard state
   * in one atomic batch, synced when `sync` is set. The in-memory view changes only afterwards.
   */
  persist(entries: readonly Entry[], hardState: HardState | null, sync: boolean): Promise<void> {
    return this.serial(() => this.persistNow(entries, hardState, sync));
  }

  private async persistNow(
    entries: readonly Entry[],
    hardState: HardState | null,
    sync: boolean,
  ): Promise<void> {
    this.assertUsable();
    const ops: WriteOp[] = [];
    const first = entries.length > 0 ? entries[0].index : 0;
    const oldLast = this.lastIndex();
    if (entries.length > 0) {
      invariant(
        first >= this.firstIndex() && first <= oldLast + 1,
        () =>
          `${this.options.description}: append at ${first} outside [${this.firstIndex()}, ${oldLast + 1}]`,
      );
      // Remove the conflicting suffix; keys that the new entries overwrite need no delete.
      const newLast = entries[entries.length - 1].index;
      for (let i = Math.max(first, newLast + 1); i <= oldLast; i++) {
        ops.push({ type: 'del', key: entryKey(i) });
      }
      for (const e of entries)
        ops.push({ type: 'put', key: entryKey(e.index), value: encodeEntry(e) });
    }
    if (hardState !== null)
      ops.push({ type: 'put', key: hardStateKey, value: encodeHardState(hardState) });
    if (ops.length === 0) return;
    await this.exclusiveWrite(ops, sync);
    if (hardState !== null) this.hardState = hardState;
    if (entries.length > 0) {
      if (first <= oldLast) this.truncateFrom(first);
      for (const e of entries) {
        this.terms.push(e.index, e.term);
        this.tail.push(e);
      }
      this.evict();
    }
  }

  private truncateFrom(index: number): void {
    this.terms.truncateFrom(index);
    this.tail.truncateFrom(index);
    this.loaded = this.loaded.filter((c) => c.first + c.entries.length <= index);
  }

  /**
   * Replaces the whole log with a snapshot installed from the leader: no entries remain, the log
   * continues after the snapshot.
   */
  installSnapshot(meta: SnapshotMeta, hardState: HardState | null): Promise<void> {
    return this.serial(() => this.installSnapshotNow(meta, hardState));
  }

  private async installSnapshotNow(meta: SnapshotMeta, hardState: HardState | null): Promise<void> {
    this.assertUsable();
    const ops: WriteOp[] = [];
    for (let i = this.firstIndex(); i <= this.lastIndex(); i++)
      ops.push({ type: 'del', key: entryKey(i) });
    ops.push({ type: 'put', key: startKey, value: encodeStart(meta.index, meta.term) });
    ops.push({ type: 'put', key: snapshotKey, value: encodeSnapshotMeta(meta) });
    if (hardState !== null)
      ops.push({ type: 'put', key: hardStateKey, value: encodeHardState(hardState) });
    await this.exclusiveWrite(ops, true);
    if (hardState !== null) this.hardState = hardState;
    this.snapshotMeta = meta;
    this.snapshotFileReady = true;
    this.terms.reset(meta.index, meta.term);
    this.tail.clear(meta.index + 1);
    this.loaded = [];
  }

  /** Removes every entry up to and including `index` (covered by a snapshot). */
  compact(index: number): Promise<void> {
    return this.serial(() => this.compactNow(index));
  }

  private async compactNow(index: number): Promise<void> {
    this.assertUsable();
    const first = this.firstIndex();
    if (index < first) return;
    invariant(
      index <= this.lastIndex(),
      () => `compact to ${index} beyond the last index ${this.lastIndex()}`,
    );
    invariant(
      index <= this.snapshotMeta.index,
      () => `compact to ${index} beyond the snapshot ${this.snapshotMeta.index}`,
    );
    const term = this.term(index);
    invariant(term !== undefined, () => `no term at ${index}`);
    // The new start first, then the entries below it in the background: a crash in between
    // leaves entries below the start, which nothing reads and the next open removes. (A batch of
    // one delete per entry would hold the event loop for as long as it takes to build.)
    await this.exclusiveWrite(
      [{ type: 'put', key: startKey, value: encodeStart(index, term) }],
      false,
    );
    this.removeEntries(first, index + 1);
    this.terms.dropBefore(index);
    if (index >= this.tail.first) this.tail.dropFront(index + 1 - this.tail.first);
    this.loaded = this.loaded.filter((c) => c.first > index);
  }

  /**
   * Deletes the stored entries in [from, to) (below the log's start) in the background, one range
   * at a time. Writes go on meanwhile: they never touch indexes below the start. A compaction
   * removes only what it compacted: a range from 0 would walk the tombstones of every earlier one.
   */
  private removeEntries(from: number, to: number): void {
    const removal = this.removals.then(() =>
      this.engine.deleteRange({ gte: entryKey(from), lt: entryKey(to) }),
    );
    this.removals = removal.catch((err: unknown) => {
      // Stale entries below the start are harmless (the next open removes them again).
      this.onRemovalFailed(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /** Runs `work` after every write queued before it: writes never interleave. */
  private serial(work: () => Promise<void>): Promise<void> {
    const result = this.writeQueue.then(work);
    this.writeQueue = result.catch(() => undefined);
    return result;
  }

  private async exclusiveWrite(ops: WriteOp[], sync: boolean): Promise<void> {
    try {
      await this.engine.write(ops, { sync });
    } catch (err) {
      // A write that failed (above all a failed sync) leaves the disk in an unknown state: the
      // store refuses everything afterwards and the node must stop without acknowledging.
      this.failure = err as Error;
      throw err;
    }
  }

  private assertUsable(): void {
    if (this.failure !== null) {
      throw new Error(
        `${this.options.description}: log store is unusable after an earlier failure: ${this.failure.message}`,
      );
    }
  }

  /** The stored hard state (what a restart would see). */
  storedHardState(): HardState {
    return this.hardState;
  }

  latestSnapshot(): SnapshotMeta {
    return this.snapshotMeta;
  }

  /** Bytes of entry data held in tier 1. */
  memoryBytes(): number {
    return this.tail.bytes;
  }

  memoryFirstIndex(): number {
    return this.tail.first;
  }

  async close(): Promise<void> {
    await this.removals;
    await this.engine.close();
  }
}
