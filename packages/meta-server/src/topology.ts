// The cluster topology as a pure, deterministic state machine: the shard groups and their servers,
// the owner and status of every slot, a config version that grows with every change, and a
// bounded table of the requests already applied. Every replica of the meta group applies the same
// commands in log order and must reach byte-identical state, so nothing here reads a clock, a
// random source or the disk: times travel inside the commands, stamped by the proposing leader.
import {
  ErrorCode,
  formatSlotRanges,
  SlotStatus,
  slotCountDefault,
  slotCountMax,
} from '@eraftkv/protocol';
import { AuthTable, type AuthCommand, type AuthTableJson } from '@eraftkv/server-kit';

/** One kv server as the topology records it: its node id within its group and its address. */
export interface ServerRecord {
  readonly id: number;
  readonly address: string;
}

/** A kv shard group. Its slots are found through the slot records (owner = this group's id). */
export interface GroupRecord {
  readonly id: number;
  /** Sorted by id. */
  readonly servers: readonly ServerRecord[];
}

/**
 * An unfinished move of a slot. The wire Slot has no target field, so the target lives here; a
 * new meta leader needs it to resume the move. `sinceVersion` names the move: a finish command
 * applies only to the move it was decided for, never to a later move of the same slot.
 */
export interface SlotMoveRecord {
  readonly target: number;
  readonly sinceVersion: number;
}

export interface SlotRecord {
  /** The owning group, 0 for none. */
  readonly owner: number;
  /** Running, or Migrating while a move checks that the slot holds no key. */
  readonly status: SlotStatus.Running | SlotStatus.Migrating;
  /** Milliseconds since the Unix epoch of the last change (stamped by the proposer). */
  readonly modifiedMs: number;
  readonly move: SlotMoveRecord | null;
}

/** Identifies a client request so that a retried request is applied once. */
export interface RequestId {
  readonly clientId: string;
  readonly commandId: number;
}

/** What the dedup table remembers of an applied request: its final answer. */
export interface StoredOutcome {
  readonly code: ErrorCode;
  readonly message: string;
}

/** One remembered request. `seq` orders the table: the lowest is evicted first. */
export interface DedupRecord extends RequestId {
  readonly seq: number;
  readonly outcome: StoredOutcome;
}

/** The scalar part of the state. */
export interface ConfigRecord {
  readonly initialized: boolean;
  readonly slotCount: number;
  readonly configVersion: number;
  /** How many requests the dedup table keeps; fixed by ClusterInit so that replicas agree. */
  readonly dedupWindowEntries: number;
  readonly dedupNextSeq: number;
}

/** A slot that differs from the default (no owner, Running, never modified). */
export interface SlotEntry extends SlotRecord {
  readonly slot: number;
}

/**
 * The whole state as plain records in a canonical order: groups by id, non-default slots by slot
 * id, the dedup table by seq. Snapshots are this object as JSON; RocksDB stores one key per record.
 */
export interface TopologyRecords {
  readonly config: ConfigRecord;
  readonly groups: readonly GroupRecord[];
  readonly slots: readonly SlotEntry[];
  readonly dedup: readonly DedupRecord[];
  /** Users, roles and permissions; absent in the records of a version without auth (empty). */
  readonly auth?: AuthTableJson;
}

/**
 * The commands of the meta group's log. `request` is the client's (client_id, command_id), or
 * null when the request has none (then a retry may apply twice). `nowMs` is the proposer's clock,
 * recorded as the slots' status_modify_time.
 */
export type TopologyCommand =
  | {
      readonly kind: 'cluster-init';
      /** 0 means the default, 1024. */
      readonly slotCount: number;
      readonly dedupWindowEntries: number;
      readonly request: RequestId | null;
    }
  | { readonly kind: 'shard-join'; readonly group: GroupRecord; readonly request: RequestId | null }
  | { readonly kind: 'shard-leave'; readonly groupId: number; readonly request: RequestId | null }
  | {
      readonly kind: 'server-join';
      readonly groupId: number;
      readonly server: ServerRecord;
      readonly request: RequestId | null;
    }
  | {
      readonly kind: 'server-leave';
      readonly groupId: number;
      readonly serverId: number;
      readonly request: RequestId | null;
    }
  | {
      /** Step 1 of a slot move: assign slots without an owner, mark owned slots Migrating. */
      readonly kind: 'slot-move-begin';
      readonly target: number;
      readonly slots: readonly number[];
      readonly nowMs: number;
      readonly request: RequestId | null;
    }
  | {
      /** Step 3 of a slot move: give the Migrating slots to the target, or roll them back. */
      readonly kind: 'slot-move-finish';
      readonly target: number;
      readonly moves: readonly { readonly slot: number; readonly sinceVersion: number }[];
      readonly commit: boolean;
      /** With commit = false: why the move failed, the answer remembered for the request. */
      readonly failure: StoredOutcome | null;
      readonly nowMs: number;
      readonly request: RequestId | null;
    }
  | {
      /** A change of users, roles or permissions (allowed before ClusterInit too). */
      readonly kind: 'auth';
      readonly change: AuthCommand;
      readonly request: RequestId | null;
    };

export type TopologyCommandKind = TopologyCommand['kind'];

/** A slot a begin command left Migrating: step 2 must ask `source` whether it is empty. */
export interface MovingSlot {
  readonly slot: number;
  readonly source: number;
  readonly target: number;
  readonly sinceVersion: number;
}

/** The result of applying one command, handed to the proposer. */
export interface CommandOutcome {
  /** ErrorCode.OK on success. */
  readonly code: ErrorCode;
  readonly message: string;
  /** The request had been applied before; this is the remembered answer. */
  readonly deduplicated: boolean;
  /** slot-move-begin only: the requested slots that now wait for step 2. */
  readonly moving: readonly MovingSlot[];
}

/** The records changed since the last takeChanges(), for the state machine to persist. */
export interface TopologyChanges {
  readonly config: ConfigRecord | null;
  /** null: the group was deleted. */
  readonly groups: ReadonlyMap<number, GroupRecord | null>;
  /** null: the slot is back to the default (nothing to store). */
  readonly slots: ReadonlyMap<number, SlotRecord | null>;
  readonly dedupPut: readonly DedupRecord[];
  readonly dedupDelete: readonly number[];
  /** The auth table, when it changed. */
  readonly auth: AuthTableJson | null;
}

/** The dedup window before ClusterInit sets one, and the default ClusterInit records. */
export const dedupWindowEntriesDefault = 10_000;
/** A bound on the dedup window, so that a bad flag cannot make the table unbounded. */
export const dedupWindowEntriesMax = 1_000_000;

const defaultSlot: SlotRecord = {
  owner: 0,
  status: SlotStatus.Running,
  modifiedMs: 0,
  move: null,
};

function isDefaultSlot(s: SlotRecord): boolean {
  return s.owner === 0 && s.status === SlotStatus.Running && s.modifiedMs === 0 && s.move === null;
}

/** A broken invariant of stored or replicated state: only a bug (or a corrupt disk) causes it. */
export class TopologyInvariantError extends Error {
  override name = 'TopologyInvariantError';
}

function check(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new TopologyInvariantError(message());
}

function ok(moving: readonly MovingSlot[] = []): CommandOutcome {
  return { code: ErrorCode.OK, message: '', deduplicated: false, moving };
}

function fail(code: ErrorCode, message: string): CommandOutcome {
  return { code, message, deduplicated: false, moving: [] };
}

/** What executing a command did: its answer, and whether the request is finished. */
interface Execution {
  readonly outcome: CommandOutcome;
  /** Whether any record changed (then the config version grows by one). */
  readonly changed: boolean;
  /** Whether the outcome is the request's final answer (remembered for retries). */
  readonly final: boolean;
}

/** Slots as ranges ("0-255,512"), the first `max` ranges of them and how many slots remain. */
function describeSlots(slots: readonly number[], max = 8): string {
  const sorted = [...new Set(slots)].sort((a, b) => a - b);
  const ranges = formatSlotRanges(sorted).split(',');
  if (ranges.length <= max) return ranges.join(',');
  const shown = ranges.slice(0, max);
  const count = shown.reduce((n, r) => {
    const [from, to] = r.split('-').map(Number);
    return n + (to === undefined ? 1 : to - from + 1);
  }, 0);
  return `${shown.join(',')} and ${sorted.length - count} more`;
}

export class Topology {
  private config: ConfigRecord;
  private readonly groups = new Map<number, GroupRecord>();
  /** Dense, slotCount long once initialized. */
  private slots: SlotRecord[] = [];
  /** Keyed by requestKey(); Map order is insertion order, which is seq order. */
  private readonly dedup = new Map<string, DedupRecord>();
  private changedConfig = false;
  private readonly changedGroups = new Set<number>();
  private readonly changedSlots = new Set<number>();
  private dedupPut: DedupRecord[] = [];
  private dedupDelete: number[] = [];
  private authTable = AuthTable.empty();
  private changedAuth = false;

  private constructor(config: ConfigRecord) {
    this.config = config;
  }

  /** The state of a meta group that has applied nothing. */
  static empty(): Topology {
    return new Topology({
      initialized: false,
      slotCount: 0,
      configVersion: 0,
      dedupWindowEntries: dedupWindowEntriesDefault,
      dedupNextSeq: 1,
    });
  }

  /** Rebuilds the state from its records (a snapshot or the store), checking every invariant. */
  static fromRecords(records: TopologyRecords): Topology {
    const t = new Topology({ ...records.config });
    const c = t.config;
    check(
      Number.isSafeInteger(c.slotCount) && c.slotCount >= 0 && c.slotCount <= slotCountMax,
      () => `stored slot count ${c.slotCount} is out of range`,
    );
    check(c.initialized === c.slotCount > 0, () => 'stored slot count disagrees with initialized');
    t.slots = Array.from({ length: c.slotCount }, () => defaultSlot);
    for (const g of records.groups) {
      check(!t.groups.has(g.id), () => `group ${g.id} is stored twice`);
      t.groups.set(g.id, { id: g.id, servers: g.servers.map((s) => ({ ...s })) });
    }
    for (const s of records.slots) {
      check(
        Number.isInteger(s.slot) && s.slot >= 0 && s.slot < c.slotCount,
        () => `stored slot ${s.slot} is outside [0, ${c.slotCount})`,
      );
      t.slots[s.slot] = {
        owner: s.owner,
        status: s.status,
        modifiedMs: s.modifiedMs,
        move: s.move === null ? null : { ...s.move },
      };
    }
    for (const d of [...records.dedup].sort((a, b) => a.seq - b.seq)) {
      check(d.seq < c.dedupNextSeq, () => `dedup record ${d.seq} is not below the next seq`);
      t.dedup.set(requestKey(d), { ...d, outcome: { ...d.outcome } });
    }
    if (records.auth !== undefined) {
      try {
        t.authTable = AuthTable.fromJson(records.auth);
      } catch (err) {
        throw new TopologyInvariantError(
          `the stored auth table is damaged: ${(err as Error).message}`,
        );
      }
    }
    t.assertInvariants();
    return t;
  }

  /** The whole state as records in canonical order (equal states give equal records). */
  toRecords(): TopologyRecords {
    const slots: SlotEntry[] = [];
    this.slots.forEach((s, slot) => {
      if (!isDefaultSlot(s)) slots.push({ slot, ...s });
    });
    return {
      config: { ...this.config },
      groups: [...this.groups.values()].sort((a, b) => a.id - b.id),
      slots,
      dedup: [...this.dedup.values()].sort((a, b) => a.seq - b.seq),
      auth: this.authTable.toJson(),
    };
  }

  /** Checks the invariants that only a bug can break; throws TopologyInvariantError. */
  assertInvariants(): void {
    const c = this.config;
    check(this.slots.length === c.slotCount, () => 'the slot table length is not the slot count');
    check(
      this.dedup.size <= c.dedupWindowEntries,
      () => `the dedup table holds ${this.dedup.size} > ${c.dedupWindowEntries} entries`,
    );
    for (const g of this.groups.values()) {
      check(Number.isSafeInteger(g.id) && g.id >= 1, () => `group id ${g.id} is not positive`);
      const ids = new Set(g.servers.map((s) => s.id));
      check(ids.size === g.servers.length, () => `group ${g.id} lists a server id twice`);
    }
    this.slots.forEach((s, slot) => {
      check(
        s.owner === 0 || this.groups.has(s.owner),
        () => `slot ${slot} is owned by missing group ${s.owner}`,
      );
      check(
        (s.status === SlotStatus.Migrating) === (s.move !== null),
        () =>
          `slot ${slot} is ${s.status === SlotStatus.Migrating ? 'Migrating without' : 'Running with'} a move`,
      );
      if (s.move !== null) {
        check(s.owner !== 0, () => `slot ${slot} is migrating without an owner`);
        check(
          this.groups.has(s.move.target) && s.move.target !== s.owner,
          () => `slot ${slot} is migrating to invalid group ${s.move?.target}`,
        );
      }
    });
  }

  // -------------------------------------------------------------------------------------------
  // Reads
  // -------------------------------------------------------------------------------------------

  get initialized(): boolean {
    return this.config.initialized;
  }

  get slotCount(): number {
    return this.config.slotCount;
  }

  get configVersion(): number {
    return this.config.configVersion;
  }

  get dedupWindowEntries(): number {
    return this.config.dedupWindowEntries;
  }

  /** Users, roles and permissions, as applied. */
  get auth(): AuthTable {
    return this.authTable;
  }

  /** Number of requests the dedup table remembers now. */
  get dedupSize(): number {
    return this.dedup.size;
  }

  /** Group ids in ascending order. */
  groupIds(): number[] {
    return [...this.groups.keys()].sort((a, b) => a - b);
  }

  group(id: number): GroupRecord | undefined {
    return this.groups.get(id);
  }

  slot(id: number): SlotRecord {
    const s = this.slots[id];
    if (s === undefined) throw new RangeError(`slot ${id} is outside [0, ${this.slotCount})`);
    return s;
  }

  /** The slots owned by `groupId` (Running or Migrating away), ascending. */
  slotsOwnedBy(groupId: number): SlotEntry[] {
    const out: SlotEntry[] = [];
    this.slots.forEach((s, slot) => {
      if (s.owner === groupId) out.push({ slot, ...s });
    });
    return out;
  }

  /** Every slot that is Migrating, ascending: the moves a meta leader has to finish. */
  migratingSlots(): MovingSlot[] {
    const out: MovingSlot[] = [];
    this.slots.forEach((s, slot) => {
      if (s.move !== null) {
        out.push({
          slot,
          source: s.owner,
          target: s.move.target,
          sinceVersion: s.move.sinceVersion,
        });
      }
    });
    return out;
  }

  /** The remembered answer of a request, if the window still holds it. */
  remembered(request: RequestId): StoredOutcome | undefined {
    return this.dedup.get(requestKey(request))?.outcome;
  }

  // -------------------------------------------------------------------------------------------
  // Commands
  // -------------------------------------------------------------------------------------------

  /**
   * Applies one command and returns its answer. A request applied before (same client id and
   * command id, still in the window) changes nothing and returns the remembered answer.
   */
  apply(command: TopologyCommand): CommandOutcome {
    const request = command.request;
    if (request !== null) {
      const seen = this.remembered(request);
      if (seen !== undefined) return { ...seen, deduplicated: true, moving: [] };
    }
    const { outcome, changed, final } = this.execute(command);
    if (changed) this.bumpVersion();
    if (request !== null && final) this.remember(request, outcome);
    return outcome;
  }

  /**
   * Called for every applied membership entry of the meta group: the meta group is part of the
   * topology that clients read (as group 0), so its changes count as config changes too.
   */
  noteMetaMembershipChange(): void {
    if (this.config.initialized) this.bumpVersion();
  }

  private execute(command: TopologyCommand): Execution {
    if (command.kind === 'cluster-init')
      return this.init(command.slotCount, command.dedupWindowEntries);
    if (command.kind === 'auth') return this.changeAuth(command.change);
    if (!this.config.initialized) {
      return {
        outcome: fail(
          ErrorCode.NOT_INITIALIZED,
          'the cluster is not initialized; send ClusterInit first',
        ),
        changed: false,
        final: true,
      };
    }
    switch (command.kind) {
      case 'shard-join':
        return this.shardJoin(command.group);
      case 'shard-leave':
        return this.shardLeave(command.groupId);
      case 'server-join':
        return this.serverJoin(command.groupId, command.server);
      case 'server-leave':
        return this.serverLeave(command.groupId, command.serverId);
      case 'slot-move-begin':
        return this.slotMoveBegin(command.target, command.slots, command.nowMs);
      case 'slot-move-finish':
        return this.slotMoveFinish(command);
    }
  }

  /** Auth changes have their own revision (in the table): they leave the config version alone. */
  private changeAuth(change: AuthCommand): Execution {
    const result = this.authTable.apply(change);
    if ('refused' in result) {
      return { outcome: fail(ErrorCode.REJECTED, result.refused), changed: false, final: true };
    }
    this.authTable = result.table;
    this.changedAuth = true;
    return { outcome: ok(), changed: false, final: true };
  }

  private init(slotCount: number, dedupWindowEntries: number): Execution {
    if (this.config.initialized) {
      return {
        outcome: fail(
          ErrorCode.ALREADY_INITIALIZED,
          `the cluster is already initialized with ${this.config.slotCount} slots`,
        ),
        changed: false,
        final: true,
      };
    }
    const count = slotCount === 0 ? slotCountDefault : slotCount;
    if (!Number.isSafeInteger(count) || count < 1 || count > slotCountMax) {
      return rejected(`slot count must be an integer in [1, ${slotCountMax}], got ${slotCount}`);
    }
    if (
      !Number.isSafeInteger(dedupWindowEntries) ||
      dedupWindowEntries < 1 ||
      dedupWindowEntries > dedupWindowEntriesMax
    ) {
      return rejected(
        `dedup window must be an integer in [1, ${dedupWindowEntriesMax}], got ${dedupWindowEntries}`,
      );
    }
    this.setConfig({ initialized: true, slotCount: count, dedupWindowEntries });
    this.slots = Array.from({ length: count }, () => defaultSlot);
    this.trimDedup();
    return { outcome: ok(), changed: true, final: true };
  }

  private shardJoin(group: GroupRecord): Execution {
    if (!Number.isSafeInteger(group.id) || group.id < 1) {
      return rejected(`group id must be a positive integer, got ${group.id}`);
    }
    if (this.groups.has(group.id)) {
      return final(fail(ErrorCode.GROUP_EXISTS, `group ${group.id} already exists`));
    }
    const ids = new Set<number>();
    const addresses = new Set<string>();
    for (const s of group.servers) {
      if (!Number.isSafeInteger(s.id) || s.id < 1)
        return rejected(`server id ${s.id} is not positive`);
      if (ids.has(s.id)) return rejected(`server id ${s.id} appears twice in group ${group.id}`);
      if (addresses.has(s.address))
        return rejected(`address ${s.address} appears twice in group ${group.id}`);
      ids.add(s.id);
      addresses.add(s.address);
    }
    this.setGroup({ id: group.id, servers: sortServers(group.servers) });
    return { outcome: ok(), changed: true, final: true };
  }

  private shardLeave(groupId: number): Execution {
    if (!this.groups.has(groupId)) return final(groupNotFound(groupId));
    const owned: number[] = [];
    const incoming: number[] = [];
    this.slots.forEach((s, slot) => {
      if (s.owner === groupId) owned.push(slot);
      else if (s.move?.target === groupId) incoming.push(slot);
    });
    if (owned.length > 0) {
      return final(
        fail(
          ErrorCode.GROUP_HAS_SLOTS,
          `group ${groupId} still owns ${owned.length} slot(s) (${describeSlots(owned)}); move them to another group first`,
        ),
      );
    }
    if (incoming.length > 0) {
      return final(
        fail(
          ErrorCode.GROUP_HAS_SLOTS,
          `slot(s) ${describeSlots(incoming)} are moving to group ${groupId}; wait for the move to finish`,
        ),
      );
    }
    this.deleteGroup(groupId);
    return { outcome: ok(), changed: true, final: true };
  }

  private serverJoin(groupId: number, server: ServerRecord): Execution {
    const group = this.groups.get(groupId);
    if (group === undefined) return final(groupNotFound(groupId));
    if (!Number.isSafeInteger(server.id) || server.id < 1) {
      return rejected(`server id ${server.id} is not positive`);
    }
    const existing = group.servers.find((s) => s.id === server.id);
    if (existing !== undefined) {
      return final(
        fail(
          ErrorCode.NODE_EXISTS,
          `group ${groupId} already records server ${server.id} at ${existing.address}`,
        ),
      );
    }
    const sameAddress = group.servers.find((s) => s.address === server.address);
    if (sameAddress !== undefined) {
      return rejected(
        `address ${server.address} is already recorded for server ${sameAddress.id} of group ${groupId}`,
      );
    }
    this.setGroup({ id: groupId, servers: sortServers([...group.servers, server]) });
    return { outcome: ok(), changed: true, final: true };
  }

  private serverLeave(groupId: number, serverId: number): Execution {
    const group = this.groups.get(groupId);
    if (group === undefined) return final(groupNotFound(groupId));
    if (!group.servers.some((s) => s.id === serverId)) {
      return final(
        fail(ErrorCode.NODE_NOT_FOUND, `group ${groupId} records no server ${serverId}`),
      );
    }
    this.setGroup({ id: groupId, servers: group.servers.filter((s) => s.id !== serverId) });
    return { outcome: ok(), changed: true, final: true };
  }

  private slotMoveBegin(target: number, requested: readonly number[], nowMs: number): Execution {
    if (!this.groups.has(target)) return final(groupNotFound(target));
    const slots = [...new Set(requested)].sort((a, b) => a - b);
    const outside = slots.filter((s) => !Number.isInteger(s) || s < 0 || s >= this.slotCount);
    if (outside.length > 0) {
      return rejected(
        `slot(s) ${describeSlots(outside)} are outside [0, ${this.slotCount}) (the cluster has ${this.slotCount} slots)`,
      );
    }
    // All checks first: the command applies to every slot or to none.
    for (const slot of slots) {
      const move = this.slots[slot].move;
      if (move !== null && move.target !== target) {
        return rejected(
          `slot ${slot} is already moving from group ${this.slots[slot].owner} to group ${move.target} (since config version ${move.sinceVersion}); retry when that move has finished`,
        );
      }
    }
    const version = this.config.configVersion + 1;
    const moving: MovingSlot[] = [];
    let changed = false;
    for (const slot of slots) {
      const s = this.slots[slot];
      if (s.move !== null) {
        // Already moving to this target (a retried request): step 2 picks it up again.
        moving.push({ slot, source: s.owner, target, sinceVersion: s.move.sinceVersion });
      } else if (s.owner === target) {
        // Nothing to do.
      } else if (s.owner === 0) {
        // No owner, so no data to check: assigned at once.
        this.setSlot(slot, {
          owner: target,
          status: SlotStatus.Running,
          modifiedMs: nowMs,
          move: null,
        });
        changed = true;
      } else {
        this.setSlot(slot, {
          owner: s.owner,
          status: SlotStatus.Migrating,
          modifiedMs: nowMs,
          move: { target, sinceVersion: version },
        });
        moving.push({ slot, source: s.owner, target, sinceVersion: version });
        changed = true;
      }
    }
    return { outcome: ok(moving), changed, final: moving.length === 0 };
  }

  private slotMoveFinish(
    command: Extract<TopologyCommand, { kind: 'slot-move-finish' }>,
  ): Execution {
    const stale: number[] = [];
    let changed = false;
    for (const { slot, sinceVersion } of command.moves) {
      const s = this.slots[slot] as SlotRecord | undefined;
      if (
        s === undefined ||
        s.move === null ||
        s.move.target !== command.target ||
        s.move.sinceVersion !== sinceVersion
      ) {
        // Finished already (for example by another meta leader that resumed the move).
        stale.push(slot);
        continue;
      }
      this.setSlot(slot, {
        owner: command.commit ? command.target : s.owner,
        status: SlotStatus.Running,
        modifiedMs: command.nowMs,
        move: null,
      });
      changed = true;
    }
    let outcome: CommandOutcome;
    if (!command.commit) {
      outcome = command.failure
        ? fail(command.failure.code, command.failure.message)
        : fail(ErrorCode.REJECTED, `the move to group ${command.target} was rolled back`);
    } else if (stale.length > 0) {
      outcome = fail(
        ErrorCode.REJECTED,
        `slot(s) ${describeSlots(stale)} were no longer moving to group ${command.target} (another meta leader finished that move); read the topology again`,
      );
    } else {
      outcome = ok();
    }
    return { outcome, changed, final: true };
  }

  // -------------------------------------------------------------------------------------------
  // Mutations (each records what changed, for the state machine to persist)
  // -------------------------------------------------------------------------------------------

  private bumpVersion(): void {
    this.setConfig({ configVersion: this.config.configVersion + 1 });
  }

  private setConfig(patch: Partial<ConfigRecord>): void {
    this.config = { ...this.config, ...patch };
    this.changedConfig = true;
  }

  private setGroup(group: GroupRecord): void {
    this.groups.set(group.id, group);
    this.changedGroups.add(group.id);
  }

  private deleteGroup(id: number): void {
    this.groups.delete(id);
    this.changedGroups.add(id);
  }

  private setSlot(slot: number, record: SlotRecord): void {
    this.slots[slot] = record;
    this.changedSlots.add(slot);
  }

  private remember(request: RequestId, outcome: CommandOutcome): void {
    const record: DedupRecord = {
      seq: this.config.dedupNextSeq,
      clientId: request.clientId,
      commandId: request.commandId,
      outcome: { code: outcome.code, message: outcome.message },
    };
    this.setConfig({ dedupNextSeq: record.seq + 1 });
    this.dedup.set(requestKey(request), record);
    this.dedupPut.push(record);
    this.trimDedup();
  }

  /** Forgets the oldest requests beyond the window. */
  private trimDedup(): void {
    while (this.dedup.size > this.config.dedupWindowEntries) {
      const [key, oldest] = this.dedup.entries().next().value as [string, DedupRecord];
      this.dedup.delete(key);
      const put = this.dedupPut.findIndex((d) => d.seq === oldest.seq);
      // Added and evicted in the same batch: it never needs to reach the disk.
      if (put >= 0) this.dedupPut.splice(put, 1);
      else this.dedupDelete.push(oldest.seq);
    }
  }

  /** The records changed since the last call; the journal is emptied. */
  takeChanges(): TopologyChanges {
    const groups = new Map<number, GroupRecord | null>();
    for (const id of this.changedGroups) groups.set(id, this.groups.get(id) ?? null);
    const slots = new Map<number, SlotRecord | null>();
    for (const slot of this.changedSlots) {
      const s = this.slots[slot];
      slots.set(slot, isDefaultSlot(s) ? null : s);
    }
    const changes: TopologyChanges = {
      config: this.changedConfig ? { ...this.config } : null,
      groups,
      slots,
      dedupPut: this.dedupPut,
      dedupDelete: this.dedupDelete,
      auth: this.changedAuth ? this.authTable.toJson() : null,
    };
    this.changedConfig = false;
    this.changedAuth = false;
    this.changedGroups.clear();
    this.changedSlots.clear();
    this.dedupPut = [];
    this.dedupDelete = [];
    return changes;
  }
}

/** A request id worth remembering: both parts set. */
export function isRequestId(clientId: string, commandId: number): boolean {
  return clientId !== '' && commandId > 0;
}

function requestKey(r: RequestId): string {
  return JSON.stringify([r.clientId, r.commandId]);
}

function sortServers(servers: readonly ServerRecord[]): ServerRecord[] {
  return servers.map((s) => ({ id: s.id, address: s.address })).sort((a, b) => a.id - b.id);
}

function groupNotFound(id: number): CommandOutcome {
  return fail(ErrorCode.GROUP_NOT_FOUND, `group ${id} does not exist`);
}

function final(outcome: CommandOutcome): Execution {
  return { outcome, changed: false, final: true };
}

/** A command the service should have refused: answered, never applied. */
function rejected(message: string): Execution {
  return final(fail(ErrorCode.REJECTED, message));
}
