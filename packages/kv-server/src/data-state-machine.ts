// The kv group's replicated state on RocksDB (<data-dir>/state): the user's keys and values, the
// group's applied config and the dedup table, with the applied index stored in the same atomic
// write as the data each apply batch produced (see state-layout.ts for the keys).
//
// Everything `apply` decides depends only on the entries and the state before them, never on the
// clock, the node or how entries happen to be batched, so that every replica (and every replay
// after a restart) reaches the same state: ownership is checked against the config applied so
// far in log order, and a dedup record counts only while its index is within the window of the
// entry that looks it up.
import { createHash } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import {
  ClientOperationResp,
  ClientOpType,
  type DedupRecord,
  type SlotKeyValue,
  type SlotMoveChunk,
  encodeMessage,
  ErrorCode,
  formatLeaseId,
  formatSlotRanges,
  groupOfLeaseId,
  leaseIdOf,
  slotOfKey,
  type KvOpPair,
  type ClientOperationReq,
  type KeyValue,
} from '@eraftkv/protocol';
import { EntryType, type Entry } from '@eraftkv/raft';
import {
  openRocksEngine,
  verifyStateBeforeOpen,
  RejectedError,
  StoppedError,
  StorageCorruptionError,
  type Logger,
  type StateMachine,
  type StorageEngine,
  type WriteOp,
} from '@eraftkv/raft-server';
import {
  CommandDecodeError,
  CommandKind,
  decodeCommand,
  encodeAuth,
  parseAuthTable,
  parseConfigJson,
  dropKeysMax,
  type AppliedConfig,
  type Drop,
  type ImportBegin,
  type KvCommand,
} from './kv-commands';
import { AuthTable } from '@eraftkv/server-kit';
import { ApplyBatch } from './apply-batch';
import { DedupTable, unknownSlot } from './dedup-table';
import { ReadWriteGate } from './read-write-gate';
import { ensureSlotIndex, rangeIsEmpty } from './slot-index';
import { effectiveScanLimit, pairOverheadBytes, type KvLimits } from './request-validation';
import { readSnapshotFile, writeSnapshotFile } from './snapshot-file';
import {
  appliedKey,
  authKey,
  historyFloorKey,
  revisionOfHistoryKey,
  slotSinceKey,
  configKey,
  dataEnd,
  dataKey,
  dataStart,
  dedupKey,
  readU64,
  slotIndexEnd,
  slotIndexKey,
  slotIndexRange,
  u64,
  userKey,
  userKeyOfIndex,
} from './state-layout';
import { SlotImports, type ImportProgress } from './slot-imports';
import { chunkChecksum } from './slot-move-chunk';
import {
  decodeItem,
  HistoryIndex,
  historyRange,
  isSlotMark,
  oldestWatchable,
  type HistoryItem,
  type PendingChange,
  type PendingItem,
} from './watch-history';
import { rangeHolds, WatchHub, type WatchRange } from './watch-hub';
import { LeaseTable } from './lease-table';

/** What applying one normal entry produced (handed to whoever proposed it). */
export type KvApplyResult =
  | {
      readonly kind: 'applied';
      readonly ops: KvOpPair[];
      readonly configVersion: number;
      /**
       * The group's revision the request produced: the log index it was applied at (for a
       * retry, the index of the first apply).
       */
      readonly revision: number;
      /** The request was a retry of one already applied: `ops` is the stored response. */
      readonly duplicate: boolean;
    }
  | {
      readonly kind: 'wrong-shard';
      readonly configVersion: number;
      readonly message: string;
      /** The slot is moving (SLOT_MIGRATING) rather than owned elsewhere (WRONG_SHARD). */
      readonly migrating: boolean;
    }
  | { readonly kind: 'rejected'; readonly configVersion: number; readonly message: string }
  | { readonly kind: 'config'; readonly applied: boolean; readonly configVersion: number }
  | {
      /** The auth table: applied when its revision is newer than the one held. */
      readonly kind: 'auth';
      readonly applied: boolean;
      readonly revision: number;
      readonly configVersion: number;
    }
  | {
      /** A slot move command (import begin or chunk, drop) was applied. */
      readonly kind: 'moved';
      readonly configVersion: number;
      /** Import: keys imported so far. Drop: keys deleted. */
      readonly keys: number;
      /** Import: complete. Drop: the slots hold no more keys. */
      readonly done: boolean;
    }
  | {
      /** A consistency check: this replica digests its state at `index` (checkDigest). */
      readonly kind: 'check';
      readonly configVersion: number;
      readonly index: number;
    }
  | {
      /** A lease was granted, or a revoke applied (`found`: the lease was held). */
      readonly kind: 'lease';
      readonly configVersion: number;
      readonly revision: number;
      readonly id: number;
      readonly ttlSeconds: number;
      readonly found: boolean;
    };

/** What a read request produced. */
export type KvReadResult =
  | {
      readonly kind: 'read';
      readonly ops: KvOpPair[];
      readonly configVersion: number;
      /** The group's revision the read saw: the index the state had applied. */
      readonly revision: number;
    }
  | {
      readonly kind: 'wrong-shard';
      readonly configVersion: number;
      readonly message: string;
      /** The slot is moving (SLOT_MIGRATING) rather than owned elsewhere (WRONG_SHARD). */
      readonly migrating: boolean;
    }
  | { readonly kind: 'too-large'; readonly configVersion: number; readonly message: string }
  | { readonly kind: 'stale-config'; readonly configVersion: number; readonly message: string }
  | { readonly kind: 'snapshotting'; readonly configVersion: number; readonly message: string };

export interface DataStateMachineOptions {
  /** The RocksDB directory (<data-dir>/state). */
  readonly path: string;
  /**
   * A write request's response is kept for retries while its log index is within this many
   * entries of the applied index. Every member of a group must use the same value, since the
   * window decides whether a retry applies again.
   */
  readonly dedupWindowEntries: number;
  readonly logger?: Logger;
  /** Wraps the RocksDB engine (tests use it to delay or fail writes). */
  readonly wrapEngine?: (engine: StorageEngine) => StorageEngine;
  /**
   * Read every record once when opening (RocksDB checks every block it reads against its
   * checksum): a damaged state is refused at start, naming the file, instead of being found by
   * the first read of the damaged block.
   */
  readonly verifyOnOpen?: boolean;
  /**
   * The changes of the last this many revisions are kept for watches (0: none; a watch then only
   * starts from now). Every member of a group must use the same value, since the history is part
   * of the replicated state. Default: watchHistoryRevisionsDefault.
   */
  readonly watchHistoryRevisions?: number;
  /** The group this state belongs to: lease ids carry it (default 1, for tests). */
  readonly groupId?: number;
}

/** The most keys one lease holds: a revoke deletes them all in one apply. */
export const leaseKeysMax = 10_000;

/** Revisions of watch history kept when not told (--watch-history-revisions). */
export const watchHistoryRevisionsDefault = 100_000;

/** What a watcher's replay of the history read (DataStateMachine.watchHistory). */
export type HistoryRead =
  | {
      /** The revision asked for is no longer kept: `oldest` is the first that can be watched. */
      readonly kind: 'compacted';
      readonly oldest: number;
    }
  | {
      readonly kind: 'changes';
      /** The first revision read (the one asked for, or the next one for "from now"). */
      readonly from: number;
      /**
       * The changes of the range and every slot mark from `from` through `through`, in revision
       * order.
       */
      readonly items: HistoryItem[];
      readonly through: number;
      /** Everything up to the applied index was read: the watcher joined the live changes. */
      readonly joined: boolean;
      /** The slots served just before `from`, with the start of each one's period (slotsAt). */
      readonly slots: { readonly slot: number; readonly since: number }[];
      readonly slotCount: number;
    };

/** A replay reads at most this many history records per call (it holds applies meanwhile). */
const historyRecordsPerRead = 4096;

/** What remains of a read response's byte bound (KvLimits.responseBytesMax). */
interface ResponseBudget {
  bytesLeft: number;
  pairs: number;
  /** A Scan stopped at the bound: later Scans of the request return nothing, with `more`. */
  exhausted: boolean;
}

/** A slot move's export reads this many values at once. */
const exportKeysPerRead = 64;

/** A Scan yields to the event loop after this many keys, so that one scan cannot hog it. */
const scanSliceKeys = 256;

/** The config the state machine decides ownership with, and the slots it serves. */
interface Ownership {
  readonly config: AppliedConfig | null;
  /** Slots listed with status Running: the only ones read or written. */
  readonly served: ReadonlySet<number>;
  /**
   * For each served slot, the config version its period of ownership began at (0: before this
   * state kept it), for watchers ordering a moved slot's events (watch-history.ts).
   */
  readonly since: ReadonlyMap<number, number>;
}

const noOwnership: Ownership = { config: null, served: new Set(), since: new Map() };

function servedBy(config: AppliedConfig): Set<number> {
  return new Set(config.slots.filter((s) => s.status === 'Running').map((s) => s.id));
}

/** The ownership of a stored config and its stored periods (absent: all from before, 0). */
function ownershipOf(config: AppliedConfig | null, since: ReadonlyMap<number, number>): Ownership {
  if (config === null) return noOwnership;
  const served = servedBy(config);
  return {
    config,
    served,
    since: new Map([...served].map((slot) => [slot, since.get(slot) ?? 0])),
  };
}

/**
 * The ownership after `config` applies, and the slot marks of what it changed. The slots of a
 * group's first config begin their period with it and make no mark (nothing was watched before).
 */
function ownershipAfter(
  before: Ownership,
  config: AppliedConfig,
): { ownership: Ownership; marks: PendingItem[] } {
  const served = servedBy(config);
  const since = new Map<number, number>();
  const marks: PendingItem[] = [];
  for (const slot of [...before.served].sort((a, b) => a - b)) {
    if (served.has(slot)) continue;
    marks.push({
      type: 'slot-left',
      slot,
      configVersion: config.version,
      since: before.since.get(slot) ?? 0,
    });
  }
  for (const slot of [...served].sort((a, b) => a - b)) {
    const kept = before.served.has(slot);
    since.set(slot, kept ? (before.since.get(slot) ?? 0) : config.version);
    if (!kept && before.config !== null)
      marks.push({
        type: 'slot-arrived',
        slot,
        configVersion: config.version,
        since: config.version,
      });
  }
  return { ownership: { config, served, since }, marks };
}

function encodeSince(since: ReadonlyMap<number, number>): Buffer {
  return Buffer.from(JSON.stringify([...since.entries()]), 'utf8');
}

function parseSince(path: string, raw: Buffer | undefined): Map<number, number> {
  if (raw === undefined) return new Map();
  const fail = (): never => {
    throw new Error(`${path}: the stored periods of slot ownership ('v') are damaged`);
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    return fail();
  }
  if (!Array.isArray(parsed)) return fail();
  const out = new Map<number, number>();
  for (const pair of parsed as unknown[]) {
    if (
      !Array.isArray(pair) ||
      pair.length !== 2 ||
      !pair.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
    )
      return fail();
    out.set(pair[0] as number, pair[1] as number);
  }
  return out;
}

function configVersionOf(o: Ownership): number {
  return o.config?.version ?? 0;
}

/**
 * Why a key is not served, for WRONG_SHARD and SLOT_MIGRATING answers: `migrating` when its slot
 * is moving (Migrating here, the source, or Importing, the target), which a client retries.
 */
function notServed(o: Ownership, key: Uint8Array): { message: string; migrating: boolean } | null {
  if (o.config === null)
    return { message: 'this group has applied no config yet', migrating: false };
  const slot = slotOfKey(key, o.config.slotCount);
  if (o.served.has(slot)) return null;
  const listed = o.config.slots.find((s) => s.id === slot);
  if (listed === undefined)
    return {
      message: `slot ${slot} is not owned by this group at config version ${o.config.version}`,
      migrating: false,
    };
  return {
    message: `slot ${slot} is ${listed.status} at config version ${o.config.version} (a move is under way); retry shortly`,
    migrating: listed.status === 'Migrating' || listed.status === 'Importing',
  };
}

const noBytes = Buffer.alloc(0);

/** The consistency checks whose digests a replica keeps (the leader asks for the latest). */
const checksKept = 8;

/** The answer to `op`: its type, key and sign, and `fields`; every other field at its default. */
function resultOp(op: KvOpPair, fields: Partial<KvOpPair>): KvOpPair {
  return {
    opType: op.opType,
    key: op.key,
    value: noBytes,
    success: false,
    opSign: op.opSign,
    endKey: noBytes,
    limit: 0,
    found: false,
    kvs: [],
    more: false,
    deleted: 0,
    lease: 0,
    ...fields,
  };
}

/** The command of a log entry, or why it does not decode (refused alike on every replica). */
function decodeEntry(entry: Entry): KvCommand | CommandDecodeError {
  try {
    return decodeCommand(entry.data);
  } catch (err) {
    if (err instanceof CommandDecodeError) return err;
    throw err;
  }
}

export class DataStateMachine implements StateMachine<KvApplyResult> {
  private applied: number;
  private ownership: Ownership;
  /** The users, roles and permissions as last applied (checked at each request's entry). */
  private authTable: AuthTable;
  private restoring = false;
  private closed = false;
  /** A write of applied entries failed: the state is unknown, nothing is applied or read since. */
  private writeFailure: Error | null = null;
  /** The first corruption RocksDB reported in the state, if any: nothing here is trusted since. */
  private corrupt: StorageCorruptionError | null = null;
  private readonly gate = new ReadWriteGate();
  /** Digests made at consistency check entries, by index ('pending' while being made). */
  private readonly checks = new Map<number, { readonly digest: string } | 'pending'>();
  /** The watchers of the changes this replica applies from now on. */
  readonly watchers = new WatchHub();
  private readonly historyWindow: number;

  private constructor(
    private readonly engine: StorageEngine,
    private readonly options: DataStateMachineOptions,
    applied: number,
    config: AppliedConfig | null,
    since: ReadonlyMap<number, number>,
    auth: AuthTable,
    private dedup: DedupTable,
    private imports: SlotImports,
    private history: HistoryIndex,
    private leases: LeaseTable,
  ) {
    if (!Number.isSafeInteger(options.dedupWindowEntries) || options.dedupWindowEntries < 1)
      throw new RangeError(`dedupWindowEntries must be a positive integer`);
    this.historyWindow = options.watchHistoryRevisions ?? watchHistoryRevisionsDefault;
    if (!Number.isSafeInteger(this.historyWindow) || this.historyWindow < 0)
      throw new RangeError(`watchHistoryRevisions must be a non-negative integer`);
    this.applied = applied;
    this.watchers.revision = applied;
    this.ownership = ownershipOf(config, since);
    this.authTable = auth;
  }

  static async open(options: DataStateMachineOptions): Promise<DataStateMachine> {
    if (options.verifyOnOpen === true)
      await verifyStateBeforeOpen(
        options.path,
        `The kv state in ${options.path} is damaged: this replica cannot start. ` +
          'Remove it from its group (eraftkv-ctl member remove), move its data dir away, start it with an empty --peers and add it back as a learner (eraftkv-ctl member add --learner): it is sent a snapshot',
      );
    const opened = await openRocksEngine(options.path);
    const engine = options.wrapEngine?.(opened) ?? opened;
    try {
      const { applied, config, since, auth } = await DataStateMachine.load(engine);
      await ensureSlotIndex(engine, config, options.logger);
      return new DataStateMachine(
        engine,
        options,
        applied,
        config,
        since,
        auth,
        await DedupTable.load(engine),
        await SlotImports.load(engine),
        await HistoryIndex.load(engine, applied),
        await LeaseTable.load(engine),
      );
    } catch (err) {
      await engine.close();
      throw err;
    }
  }

  private static async load(engine: StorageEngine): Promise<{
    applied: number;
    config: AppliedConfig | null;
    since: Map<number, number>;
    auth: AuthTable;
  }> {
    const [appliedRaw, configRaw, authRaw, sinceRaw] = await Promise.all([
      engine.get(appliedKey),
      engine.get(configKey),
      engine.get(authKey),
      engine.get(slotSinceKey),
    ]);
    let auth = AuthTable.empty();
    if (authRaw !== undefined) {
      try {
        auth = parseAuthTable(authRaw);
      } catch (err) {
        throw new Error(
          `${engine.path}: the stored auth table is damaged (${(err as Error).message})`,
        );
      }
    }
    return {
      applied: appliedRaw === undefined ? 0 : readU64(appliedRaw),
      config: configRaw === undefined ? null : parseConfigJson(configRaw.toString('utf8')),
      since: parseSince(engine.path, sinceRaw),
      auth,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // StateMachine
  // ---------------------------------------------------------------------------------------------

  appliedIndex(): Promise<number> {
    return Promise.resolve(this.applied);
  }

  /**
   * Applies the entries in one RocksDB write. The results resolve as soon as they are decided,
   * before the write lands: the entries are committed (on a quorum's disks), and everything read
   * through this state machine waits for the write (it holds the gate until then), so an answer
   * given early is never contradicted by a read. The Ready loop goes on meanwhile. A write that
   * fails leaves the state unknown: every later apply and read fails with it.
   */
  apply(entries: readonly Entry[]): Promise<(KvApplyResult | undefined)[]> {
    if (entries.length === 0) return Promise.resolve([]);
    return new Promise((resolveResults, reject) => {
      void this.gate.exclusive(() => this.applyBatch(entries, resolveResults)).catch(reject);
    });
  }

  private async applyBatch(
    entries: readonly Entry[],
    decided: (results: (KvApplyResult | undefined)[]) => void,
  ): Promise<void> {
    try {
      this.assertOpen();
      if (this.writeFailure !== null) throw this.writeFailure;
      const first = entries[0].index;
      if (first <= this.applied) {
        // The Raft runtime hands each entry over once, in order; anything else is a bug.
        throw new Error(`apply got entry ${first} but the state has applied ${this.applied}`);
      }
      let batch = new ApplyBatch(this.engine);
      const commands = entries.map((entry) =>
        entry.type === EntryType.Normal && !isCheckEntry(entry) ? decodeEntry(entry) : null,
      );
      await batch.prefetch(this.keysRead(commands));
      let ownership = this.ownership;
      const results: (KvApplyResult | undefined)[] = [];
      const changes: HistoryItem[] = [];
      for (const [i, entry] of entries.entries()) {
        const command = commands[i];
        if (entry.type !== EntryType.Normal) {
          results.push(undefined);
          continue;
        }
        if (command === null) {
          // Everything before the check goes to disk, then the check reads the state as of its
          // index from a RocksDB snapshot while the entries after it are applied.
          await this.writeApplied(batch, entry.index);
          this.startCheck(entry.index);
          batch = new ApplyBatch(this.engine, batch);
          results.push({
            kind: 'check',
            configVersion: configVersionOf(ownership),
            index: entry.index,
          });
          continue;
        }
        const outcome = await this.applyEntry(entry, command, batch, ownership, changes);
        ownership = outcome.ownership;
        results.push(outcome.result);
      }
      const last = entries[entries.length - 1].index;
      const written = this.writeApplied(batch, last);
      this.applied = last;
      this.ownership = ownership;
      decided(results);
      await written;
      // On disk: the watchers may see it (a replay reading the history meanwhile waits for us).
      this.watchers.publish(changes, last);
    } catch (err) {
      throw this.noteStorageFailure(err);
    }
  }

  /**
   * Writes a batch of applied entries up to `index` (with the applied index and the dedup
   * records that fell out of the window). A failed write leaves the state unknown: every later
   * apply and read fails with it.
   */
  private async writeApplied(batch: ApplyBatch, index: number): Promise<void> {
    this.dedup.prune(batch.ops, index - this.options.dedupWindowEntries);
    this.history.trim(batch.ops, index - this.historyWindow + 1);
    batch.put(appliedKey, u64(index));
    try {
      await this.engine.write(batch.ops, { sync: false });
    } catch (err) {
      this.writeFailure = err instanceof Error ? err : new Error(String(err));
      this.options.logger?.error('applying to the kv state failed; its state is unknown', {
        error: this.writeFailure.message,
      });
      throw err;
    }
  }

  /**
   * Starts the digest of a consistency check at `index`: the iterator is made now (RocksDB pins
   * a snapshot of the state as written up to `index`) and read in the background.
   */
  private startCheck(index: number): void {
    const pairs = this.engine.iterate({});
    this.checks.set(index, 'pending');
    for (const old of this.checks.keys()) {
      if (this.checks.size <= checksKept) break;
      this.checks.delete(old);
    }
    digestOf(pairs).then(
      (digest) => {
        if (this.checks.has(index)) this.checks.set(index, { digest });
      },
      (err: unknown) => {
        this.checks.delete(index);
        // A damaged block found by the check makes this replica report itself corrupt.
        this.noteStorageFailure(err);
        this.options.logger?.warn('a consistency check could not read the state', {
          index,
          error: (err as Error).message,
        });
      },
    );
  }

  /** The digest made at the consistency check at `index`, 'pending', or null (none here). */
  checkDigest(index: number): { readonly digest: string } | 'pending' | null {
    return this.checks.get(index) ?? null;
  }

  /** Whether a write's changes are kept: for the watch history, or for this replica's watchers. */
  private keepsChanges(): boolean {
    return this.historyWindow > 0 || this.watchers.size() > 0;
  }

  /**
   * The data keys the client requests among `commands` will read as they apply: deletes and
   * gets, and puts when their previous value goes to the watch history or to a watcher.
   */
  private keysRead(commands: readonly (KvCommand | CommandDecodeError | null)[]): Buffer[] {
    const keepChanges = this.keepsChanges();
    const keys: Buffer[] = [];
    for (const command of commands) {
      if (command === null || command instanceof CommandDecodeError) continue;
      if (command.kind !== CommandKind.ClientRequest) continue;
      for (const op of command.request.kvs)
        if (op.opType !== ClientOpType.Put || keepChanges) keys.push(dataKey(op.key));
    }
    return keys;
  }

  private async applyEntry(
    entry: Entry,
    command: KvCommand | CommandDecodeError,
    batch: ApplyBatch,
    ownership: Ownership,
    changes: HistoryItem[],
  ): Promise<{ result: KvApplyResult; ownership: Ownership }> {
    if (command instanceof CommandDecodeError) {
      // The same bytes are replayed on every replica and after every restart: stopping here would
      // stop the group for good, so a malformed entry is refused the same way everywhere.
      const err = command;
      this.options.logger?.error('log entry refused: it does not decode', {
        index: entry.index,
        error: err.message,
      });
      return {
        result: {
          kind: 'rejected',
          configVersion: configVersionOf(ownership),
          message: `log entry ${entry.index} does not decode: ${err.message}`,
        },
        ownership,
      };
    }
    switch (command.kind) {
      case CommandKind.Config: {
        const current = configVersionOf(ownership);
        if (command.config.version <= current) {
          return {
            result: { kind: 'config', applied: false, configVersion: current },
            ownership,
          };
        }
        batch.put(configKey, Buffer.from(JSON.stringify(command.config), 'utf8'));
        this.imports.settle(batch, command.config);
        const next = ownershipAfter(ownership, command.config);
        batch.put(slotSinceKey, encodeSince(next.ownership.since));
        this.recordChanges(batch, entry.index, next.marks, changes);
        return {
          result: { kind: 'config', applied: true, configVersion: command.config.version },
          ownership: next.ownership,
        };
      }
      case CommandKind.Auth: {
        const configVersion = configVersionOf(ownership);
        const revision = command.table.revision;
        if (revision <= this.authTable.revision) {
          return {
            result: {
              kind: 'auth',
              applied: false,
              revision: this.authTable.revision,
              configVersion,
            },
            ownership,
          };
        }
        batch.put(authKey, encodeAuth(command.table).subarray(1));
        this.authTable = command.table;
        return { result: { kind: 'auth', applied: true, revision, configVersion }, ownership };
      }
      case CommandKind.ClientRequest:
        return {
          result: await this.applyRequest(entry.index, command.request, batch, ownership, changes),
          ownership,
        };
      case CommandKind.ImportBegin:
      case CommandKind.ImportChunk: {
        const config = ownership.config;
        const version = configVersionOf(ownership);
        if (config === null)
          return {
            result: { kind: 'rejected', configVersion: 0, message: 'no config applied yet' },
            ownership,
          };
        if (command.kind === CommandKind.ImportBegin) {
          const left = await this.clearForImport(command.begin, batch, config);
          if (left !== null)
            return {
              result: { kind: 'rejected', configVersion: version, message: left },
              ownership,
            };
        }
        const outcome =
          command.kind === CommandKind.ImportBegin
            ? await this.imports.begin(batch, command.begin, config)
            : this.imports.chunk(batch, command.chunk, config, this.dedup, entry.index);
        return {
          result: outcome.ok
            ? {
                kind: 'moved',
                configVersion: version,
                keys: outcome.progress.keys,
                done: outcome.progress.done,
              }
            : { kind: 'rejected', configVersion: version, message: outcome.message },
          ownership,
        };
      }
      case CommandKind.Drop:
        return { result: await this.applyDrop(command.drop, batch, ownership), ownership };
      case CommandKind.LeaseGrant: {
        const configVersion = configVersionOf(ownership);
        const group = this.options.groupId ?? 1;
        const id = leaseIdOf(group, entry.index);
        if (id === null)
          return {
            result: {
              kind: 'rejected',
              configVersion,
              message: `lease ids of group ${group} at log index ${entry.index} would not be safe integers`,
            },
            ownership,
          };
        this.leases.grant(batch.ops, id, command.grant.ttlSeconds);
        return {
          result: {
            kind: 'lease',
            configVersion,
            revision: entry.index,
            id,
            ttlSeconds: command.grant.ttlSeconds,
            found: true,
          },
          ownership,
        };
      }
      case CommandKind.LeaseRevoke:
        return {
          result: await this.applyRevoke(entry.index, command.revoke.id, batch, ownership, changes),
          ownership,
        };
      case CommandKind.Check:
        // applyBatch takes every check entry itself (isCheckEntry); nothing else decodes as one.
        return {
          result: { kind: 'check', configVersion: configVersionOf(ownership), index: entry.index },
          ownership,
        };
    }
  }

  /**
   * Revokes lease `id`: deletes every key attached to it that the group serves, each a change
   * watchers see at this revision. A lease with a key in a slot frozen for a move is not revoked
   * (SLOT_MIGRATING, which the caller retries): the key can change only once the move has rolled
   * back, which it does, since a source refuses to move leased keys (leasedKeysIn).
   */
  private async applyRevoke(
    index: number,
    id: number,
    batch: ApplyBatch,
    ownership: Ownership,
    changes: HistoryItem[],
  ): Promise<KvApplyResult> {
    const configVersion = configVersionOf(ownership);
    const lease = this.leases.get(id);
    if (lease === undefined)
      return { kind: 'lease', configVersion, revision: index, id, ttlSeconds: 0, found: false };
    const made: PendingChange[] = [];
    const slotCount = ownership.config?.slotCount ?? 0;
    const keys = [...lease.keys].sort().map((user) => Buffer.from(user, 'latin1'));
    const frozen = new Set(
      (ownership.config?.slots ?? []).filter((s) => s.status === 'Migrating').map((s) => s.id),
    );
    const held =
      frozen.size === 0 ? undefined : keys.find((key) => frozen.has(slotOfKey(key, slotCount)));
    if (held !== undefined)
      return {
        kind: 'wrong-shard',
        configVersion,
        migrating: true,
        message: `lease ${formatLeaseId(id)} holds key ${JSON.stringify(held.toString('latin1'))} of slot ${slotOfKey(held, slotCount)}, frozen for a move at config version ${configVersion}; retry shortly`,
      };
    this.leases.revoke(batch.ops, id);
    for (const key of keys) {
      if (slotCount === 0) break;
      const slot = slotOfKey(key, slotCount);
      if (!ownership.served.has(slot)) continue;
      const stored = dataKey(key);
      const prev = await batch.get(stored);
      if (prev === undefined) continue;
      batch.del(stored);
      batch.del(slotIndexKey(slot, key));
      made.push({ type: 'delete', key, value: noBytes, prev });
    }
    this.recordChanges(batch, index, made, changes);
    return {
      kind: 'lease',
      configVersion,
      revision: index,
      id,
      ttlSeconds: lease.ttlSeconds,
      found: true,
    };
  }

  /** Records what one entry changed in the history and for the watchers of this batch. */
  private recordChanges(
    batch: ApplyBatch,
    index: number,
    made: readonly PendingItem[],
    changes: HistoryItem[],
  ): void {
    if (made.length === 0) return;
    if (this.historyWindow > 0) this.history.record(batch.ops, index, made);
    for (const change of made) changes.push({ ...change, revision: index });
  }

  /**
   * The keys of `slots` attached to a lease: how many, and the first few with their lease. A
   * lease belongs to its group, so a move's source refuses to move these (config-watcher.ts).
   */
  leasedKeysIn(slots: readonly number[]): {
    count: number;
    first: { key: Buffer; lease: number; slot: number }[];
  } {
    const slotCount = this.ownership.config?.slotCount ?? 0;
    if (slotCount === 0 || slots.length === 0) return { count: 0, first: [] };
    return this.leases.attachedIn(new Set(slots), (key) => slotOfKey(key, slotCount), 3);
  }

  /** The leases this replica holds (their TTLs and keys; not when they expire). */
  leaseTable(): Pick<LeaseTable, 'get' | 'all' | 'size'> {
    return this.leases;
  }

  /**
   * Deletes up to `drop.limit` keys of slots this group neither serves, freezes nor imports:
   * what a move leaves behind in its source, or a rolled back import in its target. A slot
   * Importing with no import in progress holds only such keys too (the group may have gone from
   * one move of the slot to the next without applying the config in between).
   */
  private async applyDrop(
    drop: Drop,
    batch: ApplyBatch,
    ownership: Ownership,
  ): Promise<KvApplyResult> {
    const configVersion = configVersionOf(ownership);
    const listed = new Map((ownership.config?.slots ?? []).map((s) => [s.id, s.status]));
    const inUse = this.imports.slotsInUse();
    for (const slot of drop.slots) {
      const status = listed.get(slot);
      if ((status !== undefined && status !== 'Importing') || inUse.has(slot))
        return {
          kind: 'rejected',
          configVersion,
          message: `slot ${slot} is ${inUse.has(slot) ? 'being imported' : status} at config version ${configVersion}; only slots the group no longer holds are dropped`,
        };
    }
    const deleted = await this.dropKeysOf(drop.slots, drop.limit, batch);
    return { kind: 'moved', configVersion, keys: deleted, done: deleted < drop.limit };
  }

  /** Deletes up to `limit` keys of `slots` (with their slot index and lease entries). */
  private async dropKeysOf(
    slots: readonly number[],
    limit: number,
    batch: ApplyBatch,
  ): Promise<number> {
    let deleted = 0;
    for (const slot of slots) {
      const keys = await batch.keysIn(slotIndexRange(slot), limit - deleted);
      for (const indexKey of keys) {
        const user = userKeyOfIndex(indexKey);
        batch.del(dataKey(user));
        batch.del(indexKey);
        this.leases.attach(batch.ops, user, 0);
      }
      deleted += keys.length;
      if (deleted >= limit) break;
    }
    return deleted;
  }

  /**
   * Before an import begins (none in progress for its move): the slots, all Importing, may still
   * hold what an earlier move of them left here, when this group went from that move's config to
   * this one's without applying the one in between (its roll-back, or the slot leaving). Only
   * one move of a slot runs at a time, so that earlier move is over: its import progress is
   * forgotten and its keys are dropped, up to dropKeysMax per entry. A begin older than an import
   * in progress (from a meta leader that has since lost its place) changes nothing. Null when the
   * import may begin; else why not yet (the importer asks again).
   */
  private async clearForImport(
    begin: ImportBegin,
    batch: ApplyBatch,
    config: AppliedConfig,
  ): Promise<string | null> {
    if (this.imports.get(begin.version, begin.source) !== undefined) return null;
    const importing = new Set(
      config.slots.filter((s) => s.status === 'Importing').map((s) => s.id),
    );
    if (!begin.slots.every((slot) => importing.has(slot))) return null;
    if (this.imports.laterOverlapping(begin.version, begin.slots))
      return `a move of slots ${formatSlotRanges(begin.slots)} begun at config version ${begin.version} or later is being imported here; the import of an earlier one does not begin`;
    this.imports.forget(batch, this.imports.earlierOverlapping(begin.version, begin.slots));
    const dropped = await this.dropKeysOf(begin.slots, dropKeysMax, batch);
    if (dropped < dropKeysMax) return null;
    return `slots ${formatSlotRanges(begin.slots)} still held ${dropped}+ keys from an earlier move; ${dropped} were dropped, retry to drop the rest before the import begins`;
  }

  private async applyRequest(
    index: number,
    req: ClientOperationReq,
    batch: ApplyBatch,
    ownership: Ownership,
    changes: HistoryItem[],
  ): Promise<KvApplyResult> {
    const configVersion = configVersionOf(ownership);
    const dedup =
      req.clientId !== '' && req.commandId > 0 ? dedupKey(req.clientId, req.commandId) : null;
    if (dedup !== null) {
      const stored = this.dedup.lookup(dedup, index, this.options.dedupWindowEntries);
      if (stored !== null) {
        return {
          kind: 'applied',
          // An empty record is a request of puts only: its answer is each put, successful.
          ops:
            stored.response.length === 0
              ? req.kvs.map((op) => resultOp(op, { success: true }))
              : ClientOperationResp.decode(stored.response).ops,
          configVersion,
          revision: stored.index,
          duplicate: true,
        };
      }
    }
    for (const [i, op] of req.kvs.entries()) {
      if (
        op.opType !== ClientOpType.Put &&
        op.opType !== ClientOpType.Get &&
        op.opType !== ClientOpType.Del
      ) {
        return {
          kind: 'rejected',
          configVersion,
          message: `op ${i} has op type ${op.opType}, which a write request cannot carry`,
        };
      }
    }
    if (req.kvs.length === 0) return { kind: 'rejected', configVersion, message: 'no operations' };
    // Ownership of every op first: a request applies entirely or not at all.
    for (const op of req.kvs) {
      const problem = notServed(ownership, op.key);
      if (problem !== null) return { kind: 'wrong-shard', configVersion, ...problem };
    }
    const leaseProblem = this.leaseProblem(req);
    if (leaseProblem !== null) return { kind: 'rejected', configVersion, message: leaseProblem };
    const ops: KvOpPair[] = [];
    // What the request changed, for the watch history (and the watchers of this replica).
    const made: PendingChange[] = [];
    const keepChanges = this.keepsChanges();
    // Every op passed the ownership check, so a config is applied.
    const slotCount = (ownership.config as AppliedConfig).slotCount;
    // The one slot of every key of the request, or unknownSlot (for the dedup record).
    let requestSlot: number | null = null;
    for (const op of req.kvs) {
      const key = dataKey(op.key);
      const slot = slotOfKey(op.key, slotCount);
      requestSlot = requestSlot === null || requestSlot === slot ? slot : unknownSlot;
      switch (op.opType) {
        case ClientOpType.Put: {
          const value = Buffer.from(op.value);
          if (keepChanges)
            made.push({ type: 'put', key: Buffer.from(op.key), value, prev: await batch.get(key) });
          batch.put(key, value);
          batch.put(slotIndexKey(slot, op.key), noBytes);
          this.leases.attach(batch.ops, op.key, op.lease);
          ops.push(resultOp(op, { success: true }));
          break;
        }
        case ClientOpType.Get: {
          const value = await batch.get(key);
          ops.push(
            resultOp(op, {
              success: true,
              found: value !== undefined,
              value: value ?? Buffer.alloc(0),
            }),
          );
          break;
        }
        case ClientOpType.Del: {
          const prev = await batch.get(key);
          const existed = prev !== undefined;
          if (existed) {
            batch.del(key);
            batch.del(slotIndexKey(slot, op.key));
            this.leases.attach(batch.ops, op.key, 0);
            if (keepChanges)
              made.push({ type: 'delete', key: Buffer.from(op.key), value: noBytes, prev });
          }
          ops.push(resultOp(op, { success: true, deleted: existed ? 1 : 0 }));
          break;
        }
        default:
          throw new Error(`unreachable op type ${op.opType}`);
      }
    }
    if (dedup !== null) {
      // A request of puts only is answered by its own ops, each successful: its record keeps no
      // answer (an encoded answer has at least one op, so an empty one is never ambiguous).
      const putsOnly = req.kvs.every((op) => op.opType === ClientOpType.Put);
      const stored = putsOnly
        ? noBytes
        : encodeMessage(ClientOperationResp, {
            ops,
            errorCode: ErrorCode.OK,
            leaderAddress: '',
            configVersion: 0,
            errorMessage: '',
            leaderId: 0,
            groupId: 0,
            requestId: 0,
            statusCode: 0,
            // The record keeps the index it was applied at: the revision comes from there.
            revision: 0,
          });
      this.dedup.record(batch.ops, dedup, index, stored, requestSlot ?? unknownSlot);
    }
    this.recordChanges(batch, index, made, changes);
    return { kind: 'applied', ops, configVersion, revision: index, duplicate: false };
  }

  /**
   * Why the leases a request's puts name cannot take their keys, or null: each must be held by
   * this group and stay within leaseKeysMax.
   */
  private leaseProblem(req: ClientOperationReq): string | null {
    const adding = new Map<number, number>();
    for (const [i, op] of req.kvs.entries()) {
      if (op.opType !== ClientOpType.Put || op.lease === 0) continue;
      const lease = this.leases.get(op.lease);
      const hex = formatLeaseId(op.lease);
      if (lease === undefined) {
        const group = groupOfLeaseId(op.lease);
        return group === (this.options.groupId ?? 1)
          ? `kvs[${i}]: lease ${hex} is not held (expired, revoked or never granted)`
          : `kvs[${i}]: lease ${hex} belongs to group ${group}, but the key is in group ${this.options.groupId ?? 1}: a lease holds keys of its own group only`;
      }
      const more = (adding.get(op.lease) ?? 0) + 1;
      adding.set(op.lease, more);
      if (lease.keys.size + more > leaseKeysMax)
        return `kvs[${i}]: lease ${hex} already holds ${lease.keys.size} keys, the most a lease holds is ${leaseKeysMax}`;
    }
    return null;
  }

  syncApplied(): Promise<number> {
    return this.watchStorage(
      this.gate.exclusive(async () => {
        this.assertOpen();
        // After a failed write `applied` counts entries whose data may not be stored: it must
        // never be made durable.
        if (this.writeFailure !== null) throw this.writeFailure;
        // A synced write syncs RocksDB's write-ahead log, and with it every apply before it.
        const applied = this.applied;
        await this.engine.write([{ type: 'put', key: appliedKey, value: u64(applied) }], {
          sync: true,
        });
        return applied;
      }),
    );
  }

  writeSnapshot(path: string): Promise<number> {
    return this.watchStorage(this.writeSnapshotFile(path));
  }

  private async writeSnapshotFile(path: string): Promise<number> {
    this.assertOpen();
    // One iterator reads every record, applied index included, from one implicit RocksDB
    // snapshot: the file is one point in time even while applies continue.
    const seen: { applied: number | null } = { applied: null };
    const engine = this.engine;
    async function* records(): AsyncGenerator<readonly [Buffer, Buffer]> {
      for await (const [key, value] of engine.iterate({})) {
        if (key.equals(appliedKey)) seen.applied = readU64(value);
        yield [key, value];
      }
    }
    await writeSnapshotFile(path, records());
    if (seen.applied === null) throw new Error('cannot snapshot a state that has applied nothing');
    return seen.applied;
  }

  async restoreSnapshot(path: string, index: number): Promise<void> {
    this.restoring = true;
    try {
      await this.gate.exclusive(async () => {
        this.assertOpen();
        // The applied index goes first and comes back last: a crash in between leaves a state
        // that has applied nothing, which the Raft runtime restores from the snapshot again.
        await this.engine.write([{ type: 'del', key: appliedKey }], { sync: true });
        await this.engine.deleteRange({});
        let snapshotApplied: number | null = null;
        let ops: WriteOp[] = [];
        let opsBytes = 0;
        for await (const [key, value] of readSnapshotFile(path)) {
          if (key.equals(appliedKey)) {
            snapshotApplied = readU64(value);
            continue;
          }
          ops.push({ type: 'put', key, value });
          opsBytes += key.length + value.length;
          if (opsBytes >= 4 * 1024 * 1024) {
            await this.engine.write(ops, { sync: false });
            ops = [];
            opsBytes = 0;
          }
        }
        if (snapshotApplied !== index) {
          throw new Error(
            `snapshot ${path} covers applied index ${String(snapshotApplied)}, but it was installed as ${index}`,
          );
        }
        ops.push({ type: 'put', key: appliedKey, value: u64(index) });
        await this.engine.write(ops, { sync: true });
        const loaded = await DataStateMachine.load(this.engine);
        // A snapshot of a replica that predates the slot index has none.
        await ensureSlotIndex(this.engine, loaded.config, this.options.logger);
        this.applied = loaded.applied;
        this.ownership = ownershipOf(loaded.config, loaded.since);
        this.authTable = loaded.auth;
        this.dedup = await DedupTable.load(this.engine);
        this.imports = await SlotImports.load(this.engine);
        this.history = await HistoryIndex.load(this.engine, loaded.applied);
        this.leases = await LeaseTable.load(this.engine);
        // The state jumped past changes no watcher here was given: each ends, and resumes from
        // its last revision (from this replica's history, or another replica's).
        this.watchers.revision = loaded.applied;
        this.watchers.cutAll(
          `this replica installed a snapshot at revision ${loaded.applied}; resume the watch from the last revision received`,
        );
      });
    } finally {
      this.restoring = false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.gate.exclusive(async () => {
      this.closed = true;
      this.watchers.cutAll(
        'the server is stopping; resume the watch from the last revision received',
      );
      await this.engine.close();
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new StoppedError('the kv state is closed (the server is stopping)');
  }

  /**
   * Why this replica's state cannot be trusted (RocksDB reported corruption in it, or a write of
   * applied entries failed), or null. Once set it stays: the node reports itself unhealthy and
   * refuses reads.
   */
  corruption(): string | null {
    if (this.corrupt !== null) return this.corrupt.message;
    if (this.writeFailure !== null)
      return `a write of applied entries to the kv state failed: ${this.writeFailure.message}`;
    return null;
  }

  /** Remembers the first corruption RocksDB reports; returns `err` to be thrown on. */
  private noteStorageFailure(err: unknown): unknown {
    if (err instanceof StorageCorruptionError && this.corrupt === null) {
      this.corrupt = err;
      this.options.logger?.error('the kv state is corrupt: this replica must be replaced', {
        error: err.message,
      });
    }
    return err;
  }

  /** `work`, remembering a corruption it runs into. */
  private async watchStorage<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (err) {
      throw this.noteStorageFailure(err);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Reads
  // ---------------------------------------------------------------------------------------------

  /** The applied config (null before the first one). */
  appliedConfig(): AppliedConfig | null {
    return this.ownership.config;
  }

  configVersion(): number {
    return configVersionOf(this.ownership);
  }

  /**
   * Serves the Gets and Scans of a read-only request from the applied state, all from one point
   * of it (no apply runs in between). Gets of unserved slots make the whole request WRONG_SHARD;
   * Scans return only keys of served slots.
   *
   * The response is bounded by limits.responseBytesMax (pairOverheadBytes per pair included):
   * Gets are read first and answered whole (beyond the bound the request is too large); Scans
   * then share what remains, in request order. The Scan that reaches the bound stops with `more`,
   * and the Scans after it return no pairs with `more` (send them again). The first pair of a
   * response is always taken, so that a paging client always makes progress.
   */
  /**
   * `clientVersion` (the config version of the client's topology, 0: not given) makes a Scan
   * complete across slot moves: the scan runs only when this group's applied config is the one
   * the client routed by (an older client is told WRONG_SHARD, a newer one STALE_SERVER_CONFIG),
   * since a scan otherwise passes silently over slots the two views disagree on.
   */
  async read(ops: readonly KvOpPair[], limits: KvLimits, clientVersion = 0): Promise<KvReadResult> {
    // Nothing read from a corrupt state is trusted (RocksDB does not verify the checksums of the
    // blocks a scan reads): every read is refused, as the first one that ran into it was.
    if (this.corrupt !== null) throw this.corrupt;
    if (this.restoring) {
      return {
        kind: 'snapshotting',
        configVersion: this.configVersion(),
        message: 'this replica is installing a snapshot; retry shortly or ask another replica',
      };
    }
    return this.gate.shared(async (): Promise<KvReadResult> => {
      try {
        this.assertOpen();
        // Checked once the gate is held: a write that failed while a read waited fails the read.
        if (this.writeFailure !== null) throw this.writeFailure;
        const ownership = this.ownership;
        const configVersion = configVersionOf(ownership);
        if (ownership.config === null) {
          return {
            kind: 'wrong-shard',
            configVersion,
            message: 'this group has applied no config yet',
            migrating: false,
          };
        }
        if (clientVersion !== 0 && ops.some((op) => op.opType === ClientOpType.Scan)) {
          if (clientVersion > configVersion)
            return {
              kind: 'stale-config',
              configVersion,
              message: `this group has applied config version ${configVersion}, not yet ${clientVersion}; retry shortly`,
            };
          if (clientVersion < configVersion)
            return {
              kind: 'wrong-shard',
              configVersion,
              message: `the topology changed since config version ${clientVersion} (this group is at ${configVersion}): refresh it and scan again`,
              migrating: false,
            };
        }
        for (const op of ops) {
          if (op.opType !== ClientOpType.Get) continue;
          const problem = notServed(ownership, op.key);
          if (problem !== null) return { kind: 'wrong-shard', configVersion, ...problem };
        }
        const budget: ResponseBudget = {
          bytesLeft: limits.responseBytesMax,
          pairs: 0,
          exhausted: false,
        };
        const results: KvOpPair[] = new Array<KvOpPair>(ops.length);
        for (const [i, op] of ops.entries()) {
          if (op.opType === ClientOpType.Scan) continue;
          if (op.opType !== ClientOpType.Get) {
            throw new RangeError(`kvs[${i}] is not a read (op type ${op.opType})`);
          }
          const value = await this.engine.get(dataKey(op.key));
          const size = op.key.length + (value?.length ?? 0) + pairOverheadBytes;
          if (size > budget.bytesLeft && budget.pairs > 0) {
            return {
              kind: 'too-large',
              configVersion,
              message: `the Gets of this request would return more than ${limits.responseBytesMax} bytes (--response-bytes-max) at kvs[${i}]; read fewer keys per request`,
            };
          }
          budget.bytesLeft -= size;
          budget.pairs++;
          results[i] = resultOp(op, {
            success: true,
            found: value !== undefined,
            value: value ?? Buffer.alloc(0),
          });
        }
        for (const [i, op] of ops.entries()) {
          if (op.opType !== ClientOpType.Scan) continue;
          results[i] = budget.exhausted
            ? resultOp(op, { success: true, kvs: [], more: true })
            : await this.scan(op, ownership, effectiveScanLimit(op.limit, limits), budget);
        }
        // Applies wait for the gate: the state read is the one at `applied`.
        return { kind: 'read', ops: results, configVersion, revision: this.applied };
      } catch (err) {
        throw this.noteStorageFailure(err);
      }
    });
  }

  private async scan(
    op: KvOpPair,
    ownership: Ownership,
    limit: number,
    budget: ResponseBudget,
  ): Promise<KvOpPair> {
    const config = ownership.config as AppliedConfig;
    const start = dataKey(op.key);
    const end = op.endKey.length === 0 ? dataEnd : dataKey(op.endKey);
    const kvs: KeyValue[] = [];
    let more = false;
    let examined = 0;
    if (Buffer.compare(start, end) < 0) {
      for await (const [key, value] of this.engine.iterate({ gte: start, lt: end })) {
        // RocksDB hands over cached pairs without yielding: give other requests their turn.
        if (++examined % scanSliceKeys === 0) await yieldToEventLoop();
        const user = userKey(key);
        if (!ownership.served.has(slotOfKey(user, config.slotCount))) continue;
        if (kvs.length >= limit) {
          more = true;
          break;
        }
        const size = user.length + value.length + pairOverheadBytes;
        if (size > budget.bytesLeft && budget.pairs > 0) {
          more = true;
          budget.exhausted = true;
          break;
        }
        budget.bytesLeft -= size;
        budget.pairs++;
        kvs.push({ key: Buffer.from(user), value });
      }
    }
    return resultOp(op, { success: true, kvs, more });
  }

  /**
   * Which of `slots` hold at least one key: a look at the first entry of each slot's range of the
   * slot index. `slotCount` must be the applied config's (the index was built with it).
   */
  slotsHoldingKeys(slots: readonly number[], slotCount: number): Promise<number[]> {
    // Shared with applies, like every read: an apply answers before its write lands, and the look
    // must see that write.
    return this.watchStorage(this.gate.shared(() => this.findSlotsHoldingKeys(slots, slotCount)));
  }

  private async findSlotsHoldingKeys(
    slots: readonly number[],
    slotCount: number,
  ): Promise<number[]> {
    this.assertOpen();
    const config = this.ownership.config;
    if (config === null) return [];
    if (config.slotCount !== slotCount) {
      throw new Error(
        `asked about slots of a ${slotCount}-slot cluster, but the applied config has ${config.slotCount} slots`,
      );
    }
    const found: number[] = [];
    for (const slot of [...new Set(slots)].sort((a, b) => a - b)) {
      if (!(await rangeIsEmpty(this.engine, slotIndexRange(slot)))) found.push(slot);
    }
    return found;
  }

  /**
   * The next chunk of a slot move's copy from this group, the source (docs/slot-migration.md):
   * keys of `slots` in order of slot and key from the cursor on, then the dedup records, within
   * about `budgetBytes` (at least one item while any is left). Every slot must be Migrating in
   * the applied config: frozen, so its keys no longer change here and any moment gives the
   * same copy.
   */
  exportSlots(req: {
    readonly source: number;
    readonly version: number;
    readonly slots: readonly number[];
    readonly nextSlot: number;
    readonly afterKey: Uint8Array;
    readonly dedupAfter: number;
    readonly budgetBytes: number;
  }): Promise<SlotMoveChunk> {
    return this.watchStorage(this.gate.shared(() => this.readExportChunk(req)));
  }

  private async readExportChunk(
    req: Parameters<DataStateMachine['exportSlots']>[0],
  ): Promise<SlotMoveChunk> {
    this.assertOpen();
    const config = this.ownership.config;
    if (config === null)
      throw new RejectedError(ErrorCode.REJECTED, 'this group has applied no config yet');
    const status = new Map(config.slots.map((x) => [x.id, x.status]));
    const slots = [...new Set(req.slots)].sort((a, b) => a - b);
    for (const slot of slots) {
      if (status.get(slot) !== 'Migrating')
        throw new RejectedError(
          ErrorCode.REJECTED,
          `slot ${slot} is ${status.get(slot) ?? 'not owned'} here at config version ${config.version}, not frozen for a move`,
        );
    }
    const pairs: SlotKeyValue[] = [];
    let bytes = 0;
    let nextSlot = req.nextSlot;
    let afterKey = Buffer.from(req.afterKey);
    // A pair goes in while it fits the budget; the first one always does (a chunk moves forward).
    const fits = (size: number): boolean => pairs.length === 0 || bytes + size <= req.budgetBytes;
    let stopped = false;
    for (const slot of slots) {
      if (slot < nextSlot) continue;
      const range = slotIndexRange(slot);
      const resume = slot === nextSlot && afterKey.length > 0;
      const keys: Buffer[] = [];
      let added = 0;
      /** Reads the values of `keys` and adds the pairs that fit; false when one did not. */
      const take = async (): Promise<boolean> => {
        const values = await Promise.all(keys.map((key) => this.engine.get(dataKey(key))));
        for (const [i, key] of keys.entries()) {
          const value = values[i];
          // The index and the data are written together: a key without its value is corruption.
          if (value === undefined)
            throw new StorageCorruptionError(
              this.engine.path,
              `the slot index of ${this.engine.path} lists a key of slot ${slot} that has no value`,
            );
          if (!fits(key.length + value.length)) return false;
          pairs.push({ slot, key, value });
          bytes += key.length + value.length;
          added++;
        }
        keys.length = 0;
        return true;
      };
      for await (const [indexKey] of this.engine.iterate({
        gte: resume ? slotIndexKey(slot, afterKey) : range.gte,
        lt: range.lt,
      })) {
        const user = userKeyOfIndex(indexKey);
        if (resume && user.equals(afterKey)) continue;
        keys.push(Buffer.from(user));
        if (keys.length >= exportKeysPerRead && !(await take())) {
          stopped = true;
          break;
        }
      }
      if (!stopped && !(await take())) stopped = true;
      if (stopped) {
        // The next chunk starts after the last pair of this slot taken here, if any.
        nextSlot = slot;
        if (added > 0) afterKey = Buffer.from(pairs[pairs.length - 1].key);
        else if (!resume) afterKey = Buffer.alloc(0);
        break;
      }
      // This slot is copied: the next starts at the following one (past the last: slotCount).
      nextSlot = slots.find((x) => x > slot) ?? config.slotCount;
      afterKey = Buffer.alloc(0);
    }
    let dedup: DedupRecord[] = [];
    let dedupAfter = req.dedupAfter;
    let done = false;
    if (!stopped && (pairs.length === 0 || bytes < req.budgetBytes)) {
      // The records of the moving slots' requests (and of requests whose slot is not known).
      const moving = new Set(slots);
      const records = this.dedup.recordsAfter(
        req.dedupAfter,
        Math.max(1, req.budgetBytes - bytes),
        moving,
      );
      dedup = records.map((r) => ({ id: r.id, response: r.response }));
      if (records.length > 0) dedupAfter = records[records.length - 1].index;
      done = this.dedup.recordsAfter(dedupAfter, 1, moving).length === 0;
      nextSlot = config.slotCount;
    } else if (!stopped) {
      nextSlot = config.slotCount;
    }
    const chunk: SlotMoveChunk = {
      sourceShardId: req.source,
      configVersion: req.version,
      pairs,
      dedup,
      nextSlot,
      afterKey,
      dedupAfter,
      done,
      crc32: 0,
    };
    return { ...chunk, crc32: chunkChecksum(chunk) };
  }

  /** The slots of every import in progress here (gc leaves their keys alone). */
  slotsInImport(): Set<number> {
    return this.imports.slotsInUse();
  }

  /** Where the import of the move begun at `version` from `source` stands, if it is in progress. */
  importProgress(version: number, source: number): ImportProgress | undefined {
    return this.imports.get(version, source);
  }

  /**
   * The slots that hold at least one key here, ascending: one seek per such slot through the
   * slot index (not a walk over every key).
   */
  async slotsWithKeys(): Promise<number[]> {
    return (await this.slotsWithKeysAt()).slots;
  }

  /** slotsWithKeys, with the applied index it was read at (no apply in between). */
  slotsWithKeysAt(): Promise<{ index: number; slots: number[] }> {
    return this.watchStorage(
      this.gate.shared(async () => {
        this.assertOpen();
        const slots: number[] = [];
        let from = 0;
        for (;;) {
          let slot = -1;
          for await (const [key] of this.engine.iterate({
            gte: slotIndexRange(from).gte,
            lt: slotIndexEnd,
            limit: 1,
          })) {
            slot = key.readUInt16BE(1);
          }
          if (slot < 0) break;
          slots.push(slot);
          if (slot === 0xffff) break;
          from = slot + 1;
        }
        return { index: this.applied, slots };
      }),
    );
  }

  /** How many dedup records the state holds. */
  dedupRecordCount(): Promise<number> {
    this.assertOpen();
    return Promise.resolve(this.dedup.size());
  }

  /**
   * A copy of the group's data as of now (a backup): the applied index and config, the slots the
   * group owns in it (Running or Migrating: a slot being imported still belongs to its source),
   * and their keys in key order from a RocksDB snapshot taken now, read lazily by the caller.
   */
  backupCursor(): Promise<{
    readonly index: number;
    readonly configVersion: number;
    readonly slots: number[];
    readonly pairs: AsyncIterable<[Buffer, Buffer]>;
  }> {
    return this.watchStorage(
      this.gate.shared(() => {
        this.assertOpen();
        const config = this.ownership.config;
        if (config === null)
          throw new RejectedError(ErrorCode.REJECTED, 'this group has applied no config yet');
        const owned = new Set(
          config.slots
            .filter((x) => x.status === 'Running' || x.status === 'Migrating')
            .map((x) => x.id),
        );
        const all = this.engine.iterate({ gte: dataStart, lt: dataEnd });
        const slotCount = config.slotCount;
        async function* ownedPairs(): AsyncGenerator<[Buffer, Buffer]> {
          for await (const [key, value] of all) {
            const user = userKey(key);
            if (owned.has(slotOfKey(user, slotCount))) yield [user, value];
          }
        }
        return Promise.resolve({
          index: this.applied,
          configVersion: config.version,
          slots: [...owned].sort((a, b) => a - b),
          pairs: ownedPairs(),
        });
      }),
    );
  }

  /**
   * Reads the watch history of `range` from revision `from` (0: from the next revision) for a
   * watcher, at most about `budgetBytes` of matching changes and historyRecordsPerRead records.
   * When that reaches the applied index, `join` runs before any later apply can publish: the
   * watcher then gets every later change live, and none twice.
   */
  watchHistory(
    range: WatchRange,
    from: number,
    budgetBytes: number,
    join: () => void,
  ): Promise<HistoryRead> {
    return this.watchStorage(
      this.gate.shared(async (): Promise<HistoryRead> => {
        this.assertOpen();
        if (this.corrupt !== null) throw this.corrupt;
        if (this.writeFailure !== null) throw this.writeFailure;
        const applied = this.applied;
        const start = from === 0 ? applied + 1 : from;
        const oldest = oldestWatchable(applied, this.historyWindow, this.history.floor);
        if (start < oldest) return { kind: 'compacted', oldest };
        const items: HistoryItem[] = [];
        const owned = this.slotsAt(start);
        const read = (through: number, joined: boolean): HistoryRead => ({
          kind: 'changes',
          from: start,
          items,
          through,
          joined,
          slotCount: this.ownership.config?.slotCount ?? 0,
          slots: owned,
        });
        let bytes = 0;
        let records = 0;
        if (start <= applied) {
          for await (const [key, record] of this.engine.iterate(historyRange(start, applied))) {
            const revision = revisionOfHistoryKey(key);
            // Stop between revisions: a response never splits the changes of one write.
            const last = items.length > 0 ? items[items.length - 1].revision : start - 1;
            if (
              revision !== last &&
              (bytes >= budgetBytes || records >= historyRecordsPerRead) &&
              revision > start
            )
              return read(revision - 1, false);
            records++;
            const item = decodeItem(revision, record);
            if (isSlotMark(item)) {
              items.push(item);
              continue;
            }
            if (!rangeHolds(range, item.key)) continue;
            items.push(item);
            bytes += item.key.length + item.value.length + (item.prev?.length ?? 0);
          }
        }
        join();
        return read(Math.max(applied, start - 1), true);
      }),
    );
  }

  /**
   * The slots this group served just before revision `start` (within the history kept), with the
   * config version each one's period of ownership began at: the ones served now, with the slot
   * marks from `start` on undone.
   */
  private slotsAt(start: number): { slot: number; since: number }[] {
    const since = new Map(this.ownership.since);
    for (const mark of this.history.marksSince(start)) {
      if (mark.type === 'slot-arrived') since.delete(mark.slot);
      else since.set(mark.slot, mark.since);
    }
    return [...since.entries()]
      .sort(([a], [b]) => a - b)
      .map(([slot, version]) => ({ slot, since: version }));
  }

  /** The users, roles and permissions as applied here (requests are checked against them). */
  auth(): AuthTable {
    return this.authTable;
  }

  /**
   * A SHA-256 of every record of the state (data, config, dedup table) and the applied index it
   * covers, read with no apply in between: replicas at the same index must agree.
   */
  stateDigest(): Promise<{ index: number; digest: string }> {
    return this.watchStorage(
      this.gate.shared(async () => {
        this.assertOpen();
        return { index: this.applied, digest: await digestOf(this.engine.iterate({})) };
      }),
    );
  }
}

/** Whether an entry is a consistency check (CommandKind.Check and nothing else). */
function isCheckEntry(entry: Entry): boolean {
  return entry.data.length === 1 && entry.data[0] === (CommandKind.Check as number);
}

/** The SHA-256 of every record but the applied index, each as length-prefixed key and value. */
async function digestOf(pairs: AsyncIterable<[Buffer, Buffer]>): Promise<string> {
  const hash = createHash('sha256');
  const length = Buffer.alloc(4);
  for await (const [key, value] of pairs) {
    // Not part of the replicated state: where each replica began keeping history.
    if (key.equals(appliedKey) || key.equals(historyFloorKey)) continue;
    length.writeUInt32BE(key.length);
    hash.update(length).update(key);
    length.writeUInt32BE(value.length);
    hash.update(length).update(value);
  }
  return hash.digest('hex');
}
