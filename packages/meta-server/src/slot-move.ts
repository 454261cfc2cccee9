// The slot move of docs/slot-migration.md, driven by the meta leader, one batch of slots at a
// time (at most slotsPerBatch slots; a request the topology refuses whole stays one batch):
//
//   1. propose slot-move-begin: slots without an owner are assigned at once; owned slots become
//      Migrating (owner unchanged, the target recorded), which freezes them in the source group
//      once it applies that config, and makes the target list them as Importing;
//   2. hand each source group its frozen config (ClusterConfigChange{SlotMove, DataServer}); it
//      answers whether the migrating slots hold any key;
//   3. have the target import them (SlotImport, repeated until the target says the import is
//      complete), even when the source's slots are empty: the import's begin clears what an
//      earlier move of them may have left in the target;
//   4. propose slot-move-finish: commit (owner = target) when every source is frozen and copied,
//      roll back otherwise. A batch is all or nothing; a request whose later batch fails keeps the
//      batches before it moved, and its answer says how many slots moved.
//
// Who decides what: the meta log decides begin, commit and rollback; the source's log records
// the freeze, the target's log the import and its progress; each kv leader drops, through its
// log, keys of slots its config no longer lists.
//
// Moves run one at a time on a leader, so a source group never sees the Migrating slots of two
// moves in one check. Slots left Migrating by a meta leader that died between steps 1 and 4 are
// resumed from step 2 (steps 2 and 3 are idempotent): when this node gains leadership,
// periodically while it leads, and before every new move (so a retried request finds its slots
// settled).
import { ChangeType, ClusterConfigChangeReq, ErrorCode, HandleServerType } from '@eraftkv/protocol';
import type { Logger } from '@eraftkv/raft-server';
import type { SourceGroupClient, SourceVerdict } from './source-group-client';
import type { TargetGroupClient } from './target-group-client';
import type { CommandOutcome, MovingSlot, RequestId, Topology, TopologyCommand } from './topology';
import { groupToWire } from './topology-wire';

export interface SlotMoveDeps {
  /** Proposes a command and resolves with its outcome once applied here (RaftServer.propose). */
  readonly propose: (command: TopologyCommand) => Promise<CommandOutcome>;
  /** The applied topology on this node. */
  readonly topology: () => Topology;
  readonly isLeader: () => boolean;
  /** Resolves once this node's state is as new as the group's (RaftServer.readIndex). */
  readonly confirmLeadership: () => Promise<void>;
  readonly sources: SourceGroupClient;
  readonly targets: TargetGroupClient;
  readonly logger: Logger;
  readonly nowMs: () => number;
  /** Counts finished batches and how long each took from its freeze to its end (metrics). */
  readonly onSettled?: (committed: boolean, slotCount: number, seconds: number) => void;
  /** The most slots one batch of a move freezes and copies at once (default 64). */
  readonly slotsPerBatch?: number;
  /** Counts slots, keys and bytes copied to targets (metrics). */
  readonly onCopied?: (slots: number, keys: number, bytes: number) => void;
}

export class SlotMoveCoordinator {
  /** The tail of the chain of moves: each waits for the previous one. */
  private tail: Promise<unknown> = Promise.resolve();
  private running = 0;
  private timer: NodeJS.Timeout | null = null;
  private wasLeader = false;
  private stopped = false;
  /** Keys and bytes this node has had copied to move targets since it started. */
  private readonly copiedTotals = { keys: 0, bytes: 0 };

  constructor(private readonly deps: SlotMoveDeps) {}

  /** Keys and bytes copied to targets by moves this node drove, since it started (monotonic). */
  copied(): { keys: number; bytes: number } {
    return { ...this.copiedTotals };
  }

  /**
   * Gives `slots` to group `target` (a SlotMove request). Rejects with RaftServer's errors
   * (NotLeaderError, ...) when this node cannot propose.
   */
  move(
    target: number,
    slots: readonly number[],
    request: RequestId | null,
  ): Promise<CommandOutcome> {
    return this.exclusive(async () => {
      await this.resumeLocked();
      const batches = this.batchesOf(target, slots);
      let moved = 0;
      let outcome: CommandOutcome | null = null;
      for (const [i, batch] of batches.entries()) {
        // Only the last batch carries the request id: a retried request redoes the batches
        // before it (those already moved change nothing) and finds the last one's answer.
        const last = i === batches.length - 1;
        const begin = await this.deps.propose({
          kind: 'slot-move-begin',
          target,
          slots: batch,
          nowMs: this.deps.nowMs(),
          request: last ? request : null,
        });
        outcome =
          begin.code !== ErrorCode.OK || begin.moving.length === 0
            ? begin
            : await this.settle(target, begin.moving, last ? request : null);
        if (outcome.code !== ErrorCode.OK) {
          if (moved === 0) return outcome;
          return {
            ...outcome,
            message: `${moved} of the ${slots.length} slot(s) moved to group ${target} before this failure: ${outcome.message}`,
          };
        }
        moved += batch.length;
      }
      if (outcome === null) throw new Error('a slot move of no slots');
      return outcome;
    });
  }

  /**
   * `slots` in batches of at most slotsPerBatch, each moved (frozen, copied, committed) in turn so
   * that a slot's writes wait for the copy of its own batch only. A request the topology would
   * refuse (a slot out of range, or moving to another group) stays one batch: it is refused whole.
   */
  private batchesOf(target: number, slots: readonly number[]): number[][] {
    const sorted = [...new Set(slots)].sort((a, b) => a - b);
    const topology = this.deps.topology();
    const refused = sorted.some((slot) => {
      if (!Number.isInteger(slot) || slot < 0 || slot >= topology.slotCount) return true;
      const move = topology.slot(slot).move;
      return move !== null && move.target !== target;
    });
    const size = this.deps.slotsPerBatch ?? 64;
    if (refused || sorted.length <= size) return [sorted];
    const batches: number[][] = [];
    for (let i = 0; i < sorted.length; i += size) batches.push(sorted.slice(i, i + size));
    return batches;
  }

  /** Finishes every move left Migrating (a no-op when there is none). */
  resume(): Promise<void> {
    return this.exclusive(() => this.resumeLocked());
  }

  /**
   * Checks every `intervalMs` whether this node leads with moves left Migrating, and resumes
   * them; a node that just became leader checks at once.
   */
  watch(intervalMs: number): void {
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    const leader = this.deps.isLeader();
    const gained = leader && !this.wasLeader;
    this.wasLeader = leader;
    if (!leader || this.stopped || this.running > 0) return;
    // A new leader may not have applied the last leader's begin yet: confirm first, then look.
    if (!gained && this.deps.topology().migratingSlots().length === 0) return;
    this.deps
      .confirmLeadership()
      .then(() => this.resume())
      .catch((err: unknown) => {
        // Lost leadership or stopping: whoever leads next resumes the moves.
        this.deps.logger.debug('slot move resume deferred', { error: (err as Error).message });
      });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    this.running++;
    const run = this.tail.then(work).finally(() => this.running--);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async resumeLocked(): Promise<void> {
    const migrating = this.deps.topology().migratingSlots();
    if (migrating.length === 0) return;
    const byTarget = new Map<number, MovingSlot[]>();
    for (const m of migrating) byTarget.set(m.target, [...(byTarget.get(m.target) ?? []), m]);
    for (const [target, moves] of byTarget) {
      if (this.stopped) return;
      this.deps.logger.info('resuming a slot move left unfinished', {
        target,
        slots: moves.length,
      });
      await this.settle(target, moves, null);
    }
  }

  /** Steps 2 and 3 for slots already Migrating to `target`. */
  private async settle(
    target: number,
    moving: readonly MovingSlot[],
    request: RequestId | null,
  ): Promise<CommandOutcome> {
    const bySource = new Map<number, MovingSlot[]>();
    for (const m of moving) bySource.set(m.source, [...(bySource.get(m.source) ?? []), m]);
    const sources = [...bySource.keys()].sort((a, b) => a - b);
    const started = this.deps.nowMs();
    const failures: Extract<SourceVerdict, { ok: false }>[] = [];
    for (const source of sources) {
      const verdict = await this.freezeAndCopy(target, source, bySource.get(source) ?? []);
      if (!verdict.ok) failures.push(verdict);
    }
    const commit = failures.length === 0;
    const slotList = moving.map((m) => m.slot);
    const failure = commit
      ? null
      : {
          code: failures[0].code,
          message: `the move of ${slotList.length} slot(s) to group ${target} was rolled back: ${failures
            .map((f) => f.message)
            .join('; ')}`,
        };
    const outcome = await this.deps.propose({
      kind: 'slot-move-finish',
      target,
      moves: moving.map((m) => ({ slot: m.slot, sinceVersion: m.sinceVersion })),
      commit,
      failure,
      nowMs: this.deps.nowMs(),
      request,
    });
    this.deps.onSettled?.(commit, slotList.length, (this.deps.nowMs() - started) / 1000);
    const fields = { target, slots: slotList.length, sources: sources.join(',') };
    if (commit) this.deps.logger.info('slot move committed', fields);
    else this.deps.logger.warn('slot move rolled back', { ...fields, reason: failure?.message });
    return outcome;
  }

  /**
   * Steps 2 and 3 for the slots of one source group: freeze them there and have the target
   * import them (by move: one import per config version the slots began at).
   */
  private async freezeAndCopy(
    target: number,
    source: number,
    slots: readonly MovingSlot[],
  ): Promise<SourceVerdict> {
    const frozen = await this.askSource(source);
    // Empty slots at the source are not enough: the target may still hold keys of them from an
    // earlier move (it can go from that move's config to this one's without applying the one in
    // between, which would have had them dropped), and once the move commits it would serve them
    // as its own. An import's begin drops them first, so the import runs whatever the source
    // holds (for empty slots it copies nothing).
    if (!frozen.ok && frozen.code !== ErrorCode.SLOT_NOT_EMPTY) return frozen;
    const topology = this.deps.topology();
    const addresses = (group: number): string[] =>
      (topology.group(group)?.servers ?? []).map((s) => s.address);
    const byVersion = new Map<number, number[]>();
    for (const m of slots)
      byVersion.set(m.sinceVersion, [...(byVersion.get(m.sinceVersion) ?? []), m.slot]);
    for (const [version, batch] of [...byVersion].sort(([a], [b]) => a - b)) {
      const started = this.deps.nowMs();
      const imported = await this.deps.targets.importBatch({
        target,
        targetAddresses: addresses(target),
        source,
        sourceAddresses: addresses(source),
        version,
        slots: batch,
      });
      if (!imported.ok) return { ok: false, code: ErrorCode.REJECTED, message: imported.message };
      this.copiedTotals.keys += imported.keys;
      this.copiedTotals.bytes += imported.bytes;
      this.deps.onCopied?.(batch.length, imported.keys, imported.bytes);
      this.deps.logger.info('slots copied to their target', {
        source,
        target,
        slots: batch.length,
        keys: imported.keys,
        bytes: imported.bytes,
        ms: this.deps.nowMs() - started,
      });
    }
    return { ok: true };
  }

  /** Step 2 for one source group: its record at the current config version, frozen slots included. */
  private askSource(source: number): Promise<SourceVerdict> {
    const topology = this.deps.topology();
    const record = groupToWire(topology, source);
    if (record === undefined) {
      // ShardLeave refuses a group that owns slots, so only a bug gets here.
      throw new Error(`source group ${source} of a migrating slot does not exist`);
    }
    const req = ClusterConfigChangeReq.fromPartial({
      changeType: ChangeType.SlotMove,
      handleServerType: HandleServerType.DataServer,
      shardId: source,
      configVersion: topology.configVersion,
      slotCount: topology.slotCount,
      shardGroup: record,
    });
    return this.deps.sources.check(
      source,
      record.servers.map((s) => s.address),
      req,
    );
  }
}
