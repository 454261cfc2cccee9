// The meta group's state machine: the topology model (topology.ts) kept in memory and persisted
// in RocksDB under <data-dir>/state, one key per record, so that an apply writes only what it
// changed. Each apply batch is one atomic RocksDB write that also stores the applied index, so a
// crash never leaves data and index out of step (a restart re-applies what came after the index).
//
// Keys (all values JSON unless said otherwise):
//   "a"                    the applied index (8-byte big-endian unsigned)
//   "c"                    the ConfigRecord
//   "g" + id (8-byte BE)   a GroupRecord
//   "s" + slot (4-byte BE) a slot that differs from the default (no owner, Running)
//   "d" + seq (8-byte BE)  a DedupRecord
//   "u"                    the auth table (AuthTableJson: users, roles, permissions)
//
// A snapshot is one JSON file: {"format":"eraftkv-meta-topology/1","appliedIndex":N,"records":R}
// with R the canonical TopologyRecords (the snapshot store adds its own checksum).
import { readFile, writeFile } from 'node:fs/promises';
import { assertNever, EntryType, type Entry } from '@eraftkv/raft';
import {
  openRocksEngine,
  verifyStateBeforeOpen,
  type StateMachine,
  type StorageEngine,
  type WriteOp,
} from '@eraftkv/raft-server';
import type { AuthTableJson } from '@eraftkv/server-kit';
import { decodeCommand } from './topology-command-codec';
import {
  Topology,
  TopologyInvariantError,
  type CommandOutcome,
  type ConfigRecord,
  type DedupRecord,
  type GroupRecord,
  type SlotEntry,
  type SlotRecord,
  type TopologyChanges,
  type TopologyRecords,
} from './topology';

const snapshotFormat = 'eraftkv-meta-topology/1';

const prefix = {
  applied: 0x61, // 'a'
  config: 0x63, // 'c'
  group: 0x67, // 'g'
  slot: 0x73, // 's'
  dedup: 0x64, // 'd'
  auth: 0x75, // 'u'
} as const;

const appliedKey = Buffer.from([prefix.applied]);
const configKey = Buffer.from([prefix.config]);
const authKey = Buffer.from([prefix.auth]);

function key64(p: number, n: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = p;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

function slotKey(slot: number): Buffer {
  const b = Buffer.alloc(5);
  b[0] = prefix.slot;
  b.writeUInt32BE(slot, 1);
  return b;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** A stored record; one that does not parse names the store, the record and its key. */
function parse<T>(value: Buffer, where: string, key: Buffer): T {
  try {
    return JSON.parse(value.toString('utf8')) as T;
  } catch (err) {
    throw new Error(
      `${where}: record ${key.toString('hex')} does not parse (${(err as Error).message}); the meta state is damaged`,
    );
  }
}

function encodeIndex(index: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(index));
  return b;
}

function changesToOps(changes: TopologyChanges): WriteOp[] {
  const ops: WriteOp[] = [];
  if (changes.config !== null)
    ops.push({ type: 'put', key: configKey, value: json(changes.config) });
  for (const [id, group] of changes.groups) {
    const key = key64(prefix.group, id);
    ops.push(group === null ? { type: 'del', key } : { type: 'put', key, value: json(group) });
  }
  for (const [slot, record] of changes.slots) {
    const key = slotKey(slot);
    ops.push(record === null ? { type: 'del', key } : { type: 'put', key, value: json(record) });
  }
  for (const seq of changes.dedupDelete) ops.push({ type: 'del', key: key64(prefix.dedup, seq) });
  for (const d of changes.dedupPut) {
    ops.push({ type: 'put', key: key64(prefix.dedup, d.seq), value: json(d) });
  }
  if (changes.auth !== null) ops.push({ type: 'put', key: authKey, value: json(changes.auth) });
  return ops;
}

function recordsToOps(records: TopologyRecords): WriteOp[] {
  const ops: WriteOp[] = [{ type: 'put', key: configKey, value: json(records.config) }];
  for (const g of records.groups) {
    ops.push({ type: 'put', key: key64(prefix.group, g.id), value: json(g) });
  }
  for (const { slot, ...record } of records.slots) {
    ops.push({ type: 'put', key: slotKey(slot), value: json(record) });
  }
  for (const d of records.dedup) {
    ops.push({ type: 'put', key: key64(prefix.dedup, d.seq), value: json(d) });
  }
  if (records.auth !== undefined) {
    ops.push({ type: 'put', key: authKey, value: json(records.auth) });
  }
  return ops;
}

interface SnapshotFileContent {
  readonly format: string;
  readonly appliedIndex: number;
  readonly records: TopologyRecords;
}

/**
 * Writes the snapshot file of the topology `records` at applied `index`, in the format
 * restoreSnapshot reads (eraftkv-utl snapshot restore seeds a meta data dir with it).
 */
export async function writeTopologySnapshot(
  path: string,
  index: number,
  records: TopologyRecords,
): Promise<void> {
  const content: SnapshotFileContent = { format: snapshotFormat, appliedIndex: index, records };
  await writeFile(path, JSON.stringify(content));
}

export class TopologyStateMachine implements StateMachine<CommandOutcome> {
  /**
   * Every write goes through this chain, in the order it was made: a synced write of the applied
   * index (syncApplied) then lands after the applies it covers, never before one of them.
   */
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    private readonly engine: StorageEngine,
    private model: Topology,
    private applied: number,
  ) {}

  /**
   * Opens (or creates) the state under `path` and loads it into memory. With `verify`, every
   * block of it is read with its checksum checked first: the load scans blocks unchecked, and a
   * damaged topology must stop the node rather than be served.
   */
  static async open(
    path: string,
    options: { verify?: boolean } = {},
  ): Promise<TopologyStateMachine> {
    if (options.verify === true)
      await verifyStateBeforeOpen(
        path,
        `The meta state in ${path} is damaged: this meta node cannot start. ` +
          'Remove it from the meta group (eraftkv-ctl member remove --group 0 ID), move its data dir away, start it with an empty --peers and add it back as a learner (eraftkv-ctl member add --group 0 ID ADDRESS --learner): it is sent a snapshot',
      );
    const engine = await openRocksEngine(path);
    try {
      const { topology, applied } = await load(engine);
      return new TopologyStateMachine(engine, topology, applied);
    } catch (err) {
      await engine.close();
      throw err;
    }
  }

  /** The current topology (read-only use; replaced wholesale when a snapshot is restored). */
  get topology(): Topology {
    return this.model;
  }

  appliedIndex(): Promise<number> {
    return Promise.resolve(this.applied);
  }

  async apply(entries: readonly Entry[]): Promise<(CommandOutcome | undefined)[]> {
    if (entries.length === 0) return [];
    const results: (CommandOutcome | undefined)[] = [];
    for (const e of entries) {
      if (e.index <= this.applied) {
        throw new TopologyInvariantError(
          `entry ${e.index} arrived after entry ${this.applied} was applied`,
        );
      }
      switch (e.type) {
        case EntryType.Normal:
          results.push(this.model.apply(decodeCommand(e.data, e.index)));
          break;
        case EntryType.JoinNoVoteNode:
        case EntryType.JoinNode:
        case EntryType.LeaveNode:
          this.model.noteMetaMembershipChange();
          results.push(undefined);
          break;
        case EntryType.NoOp:
          results.push(undefined);
          break;
        default:
          assertNever(e.type, 'entry type');
      }
      this.applied = e.index;
    }
    const ops = changesToOps(this.model.takeChanges());
    ops.push({ type: 'put', key: appliedKey, value: encodeIndex(this.applied) });
    // Not synced: the Raft log is, and a restart re-applies whatever this write lost.
    await this.write(ops, false);
    return results;
  }

  private write(ops: WriteOp[], sync: boolean): Promise<void> {
    const done = this.writes.then(() => this.engine.write(ops, { sync }));
    this.writes = done.catch(() => undefined);
    return done;
  }

  async syncApplied(): Promise<number> {
    // Every apply so far has made its write (apply() is synchronous up to it), and the chain puts
    // this one after them: syncing RocksDB's write-ahead log here makes them all durable.
    const applied = this.applied;
    await this.write([{ type: 'put', key: appliedKey, value: encodeIndex(applied) }], true);
    return applied;
  }

  /**
   * Serializes the in-memory state in one synchronous step, so the file is one point in time
   * even while applies continue, then writes it.
   */
  async writeSnapshot(path: string): Promise<number> {
    const index = this.applied;
    await writeTopologySnapshot(path, index, this.model.toRecords());
    return index;
  }

  async restoreSnapshot(path: string, index: number): Promise<void> {
    let content: SnapshotFileContent;
    try {
      content = JSON.parse(await readFile(path, 'utf8')) as SnapshotFileContent;
    } catch (err) {
      throw new Error(`snapshot ${path} does not parse: ${(err as Error).message}`);
    }
    if (content.format !== snapshotFormat) {
      throw new Error(
        `snapshot ${path} has format "${content.format}", expected "${snapshotFormat}"`,
      );
    }
    if (content.appliedIndex !== index) {
      throw new Error(`snapshot ${path} covers index ${content.appliedIndex}, expected ${index}`);
    }
    const topology = Topology.fromRecords(content.records);
    // deleteRange is not atomic with the write below; a crash in between leaves no applied index
    // (0), and RaftServer then restores this snapshot again at start.
    const restore = this.writes.then(async () => {
      await this.engine.deleteRange({});
      const ops = recordsToOps(topology.toRecords());
      ops.push({ type: 'put', key: appliedKey, value: encodeIndex(index) });
      await this.engine.write(ops, { sync: true });
    });
    this.writes = restore.catch(() => undefined);
    // The model and index change now, with the restore queued: a syncApplied after this covers it.
    topology.takeChanges();
    this.model = topology;
    this.applied = index;
    await restore;
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}

/** Reads every record back; refuses keys it does not know (the store belongs to something else). */
async function load(engine: StorageEngine): Promise<{ topology: Topology; applied: number }> {
  let applied = 0;
  let config: ConfigRecord | null = null;
  const groups: GroupRecord[] = [];
  const slots: SlotEntry[] = [];
  const dedup: DedupRecord[] = [];
  let auth: AuthTableJson | undefined;
  for await (const [key, value] of engine.iterate({})) {
    switch (key[0]) {
      case prefix.applied:
        if (value.length !== 8) {
          throw new Error(
            `${engine.path}: the applied index record has ${value.length} bytes, not 8; the meta state is damaged`,
          );
        }
        applied = Number(value.readBigUInt64BE(0));
        break;
      case prefix.config:
        config = parse<ConfigRecord>(value, engine.path, key);
        break;
      case prefix.group:
        groups.push(parse<GroupRecord>(value, engine.path, key));
        break;
      case prefix.slot:
        slots.push({ slot: key.readUInt32BE(1), ...parse<SlotRecord>(value, engine.path, key) });
        break;
      case prefix.dedup:
        dedup.push(parse<DedupRecord>(value, engine.path, key));
        break;
      case prefix.auth:
        auth = parse<AuthTableJson>(value, engine.path, key);
        break;
      default:
        throw new Error(
          `${engine.path}: unknown key ${key.toString('hex')}; this is not an eraftkv-meta state store`,
        );
    }
  }
  if (config === null) {
    // No command has changed the config yet (only no-ops and membership entries were applied).
    if (groups.length + slots.length + dedup.length > 0) {
      throw new Error(`${engine.path}: records without a config record; the store is damaged`);
    }
    // Auth may be set up before ClusterInit.
    const topology =
      auth === undefined
        ? Topology.empty()
        : Topology.fromRecords({ ...Topology.empty().toRecords(), auth });
    return { topology, applied };
  }
  return { topology: Topology.fromRecords({ config, groups, slots, dedup, auth }), applied };
}
