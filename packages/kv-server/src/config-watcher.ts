// How a kv group follows the topology (docs/servers-contract.md, "Config watch" and "Moving slots
// without losing a key"). Only the group's leader acts:
//
// - every `pollMs` it reads the topology from the meta group (ShardsQuery) and, when the meta
//   config_version is newer than the group's applied config, proposes the group's record as a
//   config entry, so that ownership changes at one point of the group's log;
// - it keeps the meta group's record of the group's servers in step with the Raft membership
//   (ServerJoin / ServerLeave with DataServer);
// - it serves the meta leader's SlotMove hand-over: make the given config part of the log, wait
//   until it is applied here, then say whether the frozen (Migrating) slots hold any key.
import {
  AuthAction,
  AuthReq,
  ChangeType,
  ClusterConfigChangeReq,
  ClusterConfigChangeResp,
  ErrorCode,
  formatLeaseId,
  formatSlotRanges,
  HandleServerType,
  ServerStatus,
  ShardGroup,
  Slot,
  SlotStatus,
  slotCountMax,
  type AuthResp,
  type ERaftKvClient,
} from '@eraftkv/protocol';
import type { LeaderCaller, LeaderHint } from '@eraftkv/client';
import { errorAnswer } from '@eraftkv/server-kit';
import {
  InvalidArgumentError,
  NotLeaderError,
  type Logger,
  type RaftServer,
} from '@eraftkv/raft-server';
import { type Member } from '@eraftkv/raft';
import type { DataStateMachine, KvApplyResult } from './data-state-machine';
import {
  configFromTopology,
  dropKeysMax,
  encodeAuth,
  encodeConfig,
  encodeDrop,
  parseAuthTable,
} from './kv-commands';

export interface ConfigWatcherOptions {
  readonly groupId: number;
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  /** Calls the meta group's leader (see groupCaller in server-kit); closed by stop(). */
  readonly meta: LeaderCaller;
  /** The meta servers' addresses (--meta). */
  readonly metaAddresses: readonly string[];
  readonly pollMs: number;
  readonly logger: Logger;
}

/** Drops (of up to dropKeysMax keys each) per poll: a poll never holds the log for long. */
const dropRoundsPerPoll = 8;

const metaMethod = (client: ERaftKvClient) => client.clusterConfigChange.bind(client);

/** NOT_LEADER / NO_LEADER answers carry the leader's address; anything else is an answer. */
const metaLeaderHint: LeaderHint<ClusterConfigChangeResp> = (resp) =>
  resp.errorCode === ErrorCode.NOT_LEADER || resp.errorCode === ErrorCode.NO_LEADER
    ? resp.leaderAddress
    : null;

const authLeaderHint: LeaderHint<AuthResp> = (resp) =>
  resp.errorCode === ErrorCode.NOT_LEADER || resp.errorCode === ErrorCode.NO_LEADER
    ? resp.leaderAddress
    : null;

export class ConfigWatcher {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private polling: Promise<void> = Promise.resolve();
  /** Whether the last poll reached the meta group (problems are logged once per streak). */
  private metaReachable = true;
  /** The config version and term of the last look for leftover keys, and whether it found work. */
  private sweptAt = '';
  private leftoversMayExist = false;
  /** The last problem fetching the auth table ('' when none). */
  private authProblem = '';
  /** A refresh of the auth table asked by refused requests, while it runs. */
  private authRefresh: Promise<boolean> | null = null;

  constructor(private readonly options: ConfigWatcherOptions) {}

  start(): void {
    this.schedule(0);
  }

  /** Stops polling; a poll in flight finishes without acting on its answer. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.options.meta.close();
    await this.polling;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.polling = this.pollOnce()
        .catch((err: unknown) =>
          this.options.logger.warn('config poll failed', { error: (err as Error).message }),
        )
        .finally(() => this.schedule(this.options.pollMs));
    }, delayMs);
    // The gRPC server keeps a server process alive; the poll timer alone should not.
    this.timer.unref();
  }

  /** One round: read the topology, propose a newer config, sync the server record. */
  async pollOnce(): Promise<void> {
    const { raft, stateMachine, groupId, logger } = this.options;
    if (this.stopped || !raft.isLeader()) return;
    let topology: ClusterConfigChangeResp;
    try {
      topology = await this.callMeta({ changeType: ChangeType.ShardsQuery });
      this.noteMeta(true, '');
    } catch (err) {
      this.noteMeta(false, (err as Error).message);
      return;
    }
    if (this.stopped || !raft.isLeader()) return;
    if (topology.errorCode !== ErrorCode.OK) {
      // NOT_INITIALIZED before ClusterInit: nothing to follow yet.
      logger.debug('topology query answered without a topology', {
        errorCode: ErrorCode[topology.errorCode] ?? topology.errorCode,
        error: topology.errorMessage,
      });
      return;
    }
    // The auth table first: a config that gives the group slots then always comes after the
    // table of its time in the log (a new group never serves its first slots unchecked).
    await this.syncAuth(topology.authRevision);
    if (this.stopped || !raft.isLeader()) return;
    if (topology.configVersion > stateMachine.configVersion()) {
      try {
        const config = configFromTopology({
          groupId,
          version: topology.configVersion,
          slotCount: topology.slotCount,
          groups: topology.shardGroup,
        });
        const result = await raft.propose(encodeConfig(config));
        if (result?.kind === 'config' && result.applied) {
          logger.info('config applied', {
            version: config.version,
            slots: config.slots.length,
            servers: config.servers.length,
          });
        }
      } catch (err) {
        logger.warn('could not propose the new config', {
          version: topology.configVersion,
          error: (err as Error).message,
        });
        return;
      }
    }
    const record = topology.shardGroup.find((g) => g.id === groupId);
    if (record !== undefined) await this.syncServers(record);
    try {
      await this.dropLeftovers();
    } catch (err) {
      // Reading the state failed (the node is stopping, or its state is corrupt: /health says
      // so): look again next poll. A poll never fails, so nothing goes unhandled.
      this.leftoversMayExist = true;
      logger.warn('could not look for keys of slots this group no longer holds', {
        error: (err as Error).message,
      });
    }
  }

  /**
   * Deletes, through the log, the keys of slots this group holds but no longer lists (a move
   * took them away, or an import was rolled back), or lists as Importing with no import in
   * progress (what an earlier move left, when the config in between was never applied here), a
   * bounded number per poll. It looks again after every new config, after gaining leadership and
   * while it finds work.
   */
  private async dropLeftovers(): Promise<void> {
    const { raft, stateMachine, logger } = this.options;
    const config = stateMachine.appliedConfig();
    if (config === null || this.stopped || !raft.isLeader()) return;
    const term = raft.status().term;
    if (!this.leftoversMayExist && this.sweptAt === `${config.version}/${term}`) return;
    this.sweptAt = `${config.version}/${term}`;
    const listed = new Set(config.slots.filter((s) => s.status !== 'Importing').map((s) => s.id));
    const inUse = stateMachine.slotsInImport();
    const leftovers = (await stateMachine.slotsWithKeys()).filter(
      (slot) => !listed.has(slot) && !inUse.has(slot),
    );
    this.leftoversMayExist = false;
    if (leftovers.length === 0) return;
    let deleted = 0;
    for (let round = 0; round < dropRoundsPerPoll; round++) {
      if (this.stopped || !raft.isLeader()) return;
      let result: KvApplyResult | undefined;
      try {
        result = await raft.propose(encodeDrop({ slots: leftovers, limit: dropKeysMax }));
      } catch (err) {
        logger.warn('could not drop the keys of slots this group no longer holds', {
          slots: formatSlotRanges(leftovers),
          error: (err as Error).message,
        });
        this.leftoversMayExist = true;
        return;
      }
      if (result?.kind !== 'moved') {
        // The config changed in between (a slot is listed again): look again next poll.
        this.leftoversMayExist = true;
        return;
      }
      deleted += result.keys;
      if (result.done) {
        logger.info('dropped the keys of slots this group no longer holds', {
          slots: formatSlotRanges(leftovers),
          keys: deleted,
        });
        return;
      }
    }
    this.leftoversMayExist = true;
  }

  /** Makes the meta record of this group's servers match the Raft membership. */
  private async syncServers(record: ShardGroup): Promise<void> {
    const { raft, groupId, logger } = this.options;
    const members: readonly Member[] = raft.membership();
    const changes: {
      change: ChangeType.ServerJoin | ChangeType.ServerLeave;
      id: number;
      address: string;
    }[] = [];
    for (const m of members) {
      const recorded = record.servers.find((s) => s.id === m.id);
      if (recorded !== undefined && recorded.address === m.address) continue;
      if (recorded !== undefined)
        changes.push({ change: ChangeType.ServerLeave, id: m.id, address: recorded.address });
      changes.push({ change: ChangeType.ServerJoin, id: m.id, address: m.address });
    }
    for (const s of record.servers) {
      if (!members.some((m) => m.id === s.id))
        changes.push({ change: ChangeType.ServerLeave, id: s.id, address: s.address });
    }
    for (const c of changes) {
      if (this.stopped || !raft.isLeader()) return;
      try {
        const resp = await this.callMeta({
          changeType: c.change,
          handleServerType: HandleServerType.DataServer,
          shardId: groupId,
          server: { id: c.id, address: c.address, serverStatus: ServerStatus.Up },
        });
        const done =
          resp.errorCode === ErrorCode.OK ||
          (c.change === ChangeType.ServerJoin && resp.errorCode === ErrorCode.NODE_EXISTS) ||
          (c.change === ChangeType.ServerLeave && resp.errorCode === ErrorCode.NODE_NOT_FOUND);
        if (done) {
          logger.info('meta record of the group servers updated', {
            change: ChangeType[c.change],
            server: c.id,
            address: c.address,
          });
        } else {
          logger.warn('meta refused to update the group servers', {
            change: ChangeType[c.change],
            server: c.id,
            errorCode: ErrorCode[resp.errorCode] ?? resp.errorCode,
            error: resp.errorMessage,
          });
          return;
        }
      } catch (err) {
        this.noteMeta(false, (err as Error).message);
        return;
      }
    }
  }

  /**
   * Brings the auth table up to the meta group's revision now, on the leader: a request refused
   * by the table held here asks, so that a grant acknowledged before the request was sent is
   * seen without waiting for the next poll. Concurrent asks share one round (one AuthStatus read
   * of the meta group, and the table's proposal if it is newer). True when a newer table was
   * applied, so the refusal is worth deciding again.
   */
  refreshAuth(): Promise<boolean> {
    this.authRefresh ??= this.refreshAuthOnce().finally(() => {
      this.authRefresh = null;
    });
    return this.authRefresh;
  }

  private async refreshAuthOnce(): Promise<boolean> {
    const { raft, stateMachine } = this.options;
    if (this.stopped || !raft.isLeader()) return false;
    const before = stateMachine.auth().revision;
    let revision: number;
    try {
      const status = await this.options.meta.callLeader(
        0,
        this.options.metaAddresses,
        (client) => client.auth.bind(client),
        AuthReq.fromPartial({ action: AuthAction.AuthStatus }),
        authLeaderHint,
        { deadline: Date.now() + 2000, write: false },
      );
      if (status.errorCode !== ErrorCode.OK) return false;
      revision = status.revision;
    } catch {
      // The meta group is out of reach: the refusal stands on the table held here.
      return false;
    }
    if (revision <= before) return false;
    await this.syncAuth(revision);
    return stateMachine.auth().revision > before;
  }

  /**
   * Puts the meta group's users, roles and permissions in the group's log when the meta group has
   * a newer revision than the one applied here, so that every replica checks requests against the
   * same table (a change reaches the group within about one poll).
   */
  private async syncAuth(revision: number): Promise<void> {
    const { raft, stateMachine, logger } = this.options;
    if (revision <= stateMachine.auth().revision || this.stopped || !raft.isLeader()) return;
    let problem = '';
    try {
      const resp = await this.options.meta.callLeader(
        0,
        this.options.metaAddresses,
        (client) => client.auth.bind(client),
        AuthReq.fromPartial({ action: AuthAction.AuthList }),
        authLeaderHint,
        { deadline: Date.now() + Math.max(2000, 4 * this.options.pollMs), write: false },
      );
      if (resp.errorCode !== ErrorCode.OK) {
        problem = `${ErrorCode[resp.errorCode] ?? resp.errorCode}: ${resp.errorMessage}`;
      } else {
        const table = parseAuthTable(resp.tableJson);
        if (table.revision > stateMachine.auth().revision && !this.stopped && raft.isLeader()) {
          const result = await raft.propose(encodeAuth(table));
          if (result?.kind === 'auth' && result.applied) {
            logger.info('auth table applied', { revision: table.revision, enabled: table.enabled });
          }
        }
      }
    } catch (err) {
      problem = (err as Error).message;
    }
    // One line per streak of the same problem: the poll asks again every pollMs.
    if (problem !== '' && problem !== this.authProblem) {
      logger.warn(
        'could not bring the auth table up to date; requests are checked against the last one applied',
        {
          revision,
          error: problem,
        },
      );
    }
    this.authProblem = problem;
  }

  private callMeta(fields: Partial<ClusterConfigChangeReq>): Promise<ClusterConfigChangeResp> {
    return this.options.meta.callLeader(
      0,
      this.options.metaAddresses,
      metaMethod,
      ClusterConfigChangeReq.fromPartial(fields),
      metaLeaderHint,
      {
        deadline: Date.now() + Math.max(2000, 4 * this.options.pollMs),
        write: fields.changeType !== ChangeType.ShardsQuery,
      },
    );
  }

  private noteMeta(reachable: boolean, problem: string): void {
    if (reachable && !this.metaReachable) this.options.logger.info('meta group reachable again');
    if (!reachable && this.metaReachable)
      this.options.logger.warn('cannot reach the meta group leader', { error: problem });
    this.metaReachable = reachable;
  }

  // ---------------------------------------------------------------------------------------------
  // SlotMove hand-over (step 2 of a slot move, sent by the meta leader)
  // ---------------------------------------------------------------------------------------------

  /**
   * Makes the source's record at `config_version` part of this group's log, waits until it is
   * applied here (from then on the Migrating slots are frozen in log order), and answers whether
   * those slots hold any key. Idempotent: a retry at the same version proposes nothing new.
   */
  async handOver(req: ClusterConfigChangeReq): Promise<ClusterConfigChangeResp> {
    const { raft, stateMachine, groupId } = this.options;
    const record = checkHandOver(req);
    const answer = (fields: Partial<ClusterConfigChangeResp>): ClusterConfigChangeResp => {
      const leaderId = raft.leaderId();
      return ClusterConfigChangeResp.fromPartial({
        configVersion: stateMachine.configVersion(),
        slotCount: stateMachine.appliedConfig()?.slotCount ?? 0,
        leaderId,
        leaderAddress: raft.addressOf(leaderId),
        ...fields,
      });
    };
    const failure = (err: unknown): ClusterConfigChangeResp => {
      const a = errorAnswer(err);
      return answer({
        success: false,
        errorCode: a.errorCode,
        errorMessage: a.errorMessage,
        leaderId: a.leaderId,
        leaderAddress: a.leaderAddress,
      });
    };
    if (req.shardId !== groupId) {
      return answer({
        success: false,
        errorCode: ErrorCode.REJECTED,
        errorMessage: `this server belongs to group ${groupId}, not to group ${req.shardId}`,
      });
    }
    if (!raft.isLeader()) {
      const leader = raft.leaderId();
      return failure(new NotLeaderError(leader, raft.addressOf(leader)));
    }
    try {
      // After the read index this node has applied everything committed so far: a config at
      // this version already in the log is then visible in the applied config.
      await raft.readIndex();
      if (req.configVersion > stateMachine.configVersion()) {
        const config = configFromTopology({
          groupId,
          version: req.configVersion,
          slotCount: req.slotCount,
          groups: [record],
        });
        await raft.propose(encodeConfig(config));
      }
    } catch (err) {
      return failure(err);
    }
    if (stateMachine.configVersion() < req.configVersion) {
      // propose() resolves once the entry is applied here, so this is not expected to happen.
      return answer({
        success: false,
        errorCode: ErrorCode.REJECTED,
        errorMessage: `config version ${req.configVersion} is not applied yet (applied: ${stateMachine.configVersion()}); retry`,
      });
    }
    const migrating = record.slots
      .filter((s) => s.slotStatus === SlotStatus.Migrating)
      .map((s) => s.id);
    // A lease belongs to this group (docs/leases.md): its keys cannot move to another one. The
    // move rolls back, and the slots serve here again.
    const leased = stateMachine.leasedKeysIn(migrating);
    if (leased.count > 0) {
      const first = leased.first
        .map(
          (k) =>
            `${JSON.stringify(k.key.toString('latin1'))} (slot ${k.slot}, lease ${formatLeaseId(k.lease)})`,
        )
        .join(', ');
      return answer({
        success: false,
        errorCode: ErrorCode.REJECTED,
        errorMessage: `${leased.count} key${leased.count > 1 ? 's' : ''} of the moving slots ${leased.count > 1 ? 'are' : 'is'} attached to leases of group ${groupId}, and a lease cannot move to another group: ${first}${leased.count > leased.first.length ? ', ...' : ''}. Revoke those leases or move other slots`,
      });
    }
    const holding = await stateMachine.slotsHoldingKeys(migrating, req.slotCount);
    if (holding.length > 0) {
      return answer({
        success: false,
        errorCode: ErrorCode.SLOT_NOT_EMPTY,
        errorMessage: `slot${holding.length > 1 ? 's' : ''} ${formatSlotRanges(holding)} of group ${groupId} hold${holding.length > 1 ? '' : 's'} data: the target imports ${holding.length > 1 ? 'their' : 'its'} keys before the move commits`,
        shardGroup: [
          ShardGroup.fromPartial({
            id: groupId,
            slots: holding.map((id) => Slot.fromPartial({ id, slotStatus: SlotStatus.Migrating })),
            leaderId: raft.leaderId(),
          }),
        ],
      });
    }
    return answer({ success: true, errorCode: ErrorCode.OK });
  }
}

/** Checks the shape of a hand-over request; throws an InvalidArgumentError. */
function checkHandOver(req: ClusterConfigChangeReq): ShardGroup {
  if (req.handleServerType !== HandleServerType.DataServer) {
    throw new InvalidArgumentError(
      'a SlotMove sent to a kv server must have handle_server_type DataServer',
    );
  }
  const record = req.shardGroup;
  if (record === undefined) {
    throw new InvalidArgumentError(
      "a SlotMove hand-over must carry the group's record in shard_group",
    );
  }
  if (record.id !== req.shardId) {
    throw new InvalidArgumentError(
      `shard_group.id (${record.id}) must equal shard_id (${req.shardId}) in a hand-over`,
    );
  }
  if (!Number.isSafeInteger(req.configVersion) || req.configVersion < 1) {
    throw new InvalidArgumentError(`config_version must be at least 1, got ${req.configVersion}`);
  }
  if (!Number.isInteger(req.slotCount) || req.slotCount < 1 || req.slotCount > slotCountMax) {
    throw new InvalidArgumentError(
      `slot_count must be in [1, ${slotCountMax}], got ${req.slotCount}`,
    );
  }
  const seen = new Set<number>();
  for (const [i, s] of record.slots.entries()) {
    if (!Number.isInteger(s.id) || s.id < 0 || s.id >= req.slotCount)
      throw new InvalidArgumentError(
        `shard_group.slots[${i}].id is ${s.id}, outside [0, ${req.slotCount})`,
      );
    if (seen.has(s.id))
      throw new InvalidArgumentError(`shard_group.slots lists slot ${s.id} twice`);
    seen.add(s.id);
    if (
      s.slotStatus !== SlotStatus.Running &&
      s.slotStatus !== SlotStatus.Migrating &&
      s.slotStatus !== SlotStatus.Importing &&
      s.slotStatus !== SlotStatus.Init
    ) {
      throw new InvalidArgumentError(
        `shard_group.slots[${i}].slot_status ${String(s.slotStatus)} is not a SlotStatus`,
      );
    }
  }
  return record;
}
