// EraftKvClient: the TypeScript client of eraftkv. Given the meta servers' addresses it caches
// the topology and each group's leader, routes every key by its slot, follows NOT_LEADER and
// WRONG_SHARD hints, and retries with jittered backoff within a per-call deadline. Every write
// carries (client id, command id), so a write retried after a lost answer applies once.
//
//   const client = new EraftKvClient({ endpoints: ['127.0.0.1:8088'] });
//   await client.put('hello', 'world');
//   (await client.get('hello'))?.toString(); // 'world'
//   client.close();
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import {
  ChangeType,
  ClientOpType,
  ErrorCode,
  HandleServerType,
  HealthCheckResponse_ServingStatus,
  MemberChangeType,
  ReadConsistency,
  type ClientOperationReq,
  type ClientOperationResp,
  type ClusterConfigChangeReq,
  type ClusterConfigChangeResp,
  type ERaftKvClient,
  KvOpPair,
  type StatusResp,
} from '@eraftkv/protocol';
import { backoffMs, sleep, type BackoffOptions } from './backoff';
import { Connections, type UnaryCall } from './connections';
import {
  ClusterError,
  describeErrorCode,
  InvalidArgumentError,
  TimeoutError,
  UnavailableError,
  WrongShardError,
} from './errors';
import { Topology, type GroupInfo } from './topology';

export type Bytes = string | Uint8Array;

export interface EraftKvClientOptions {
  /** Addresses (host:port) of meta servers; one reachable member is enough. */
  readonly endpoints: readonly string[];
  /** How long one call may take, retries included (default 5000 ms). */
  readonly deadlineMs?: number;
  /** How long one attempt on one server may take (default 2000 ms). */
  readonly attemptTimeoutMs?: number;
  /** Retry pacing (default base 20 ms, max 500 ms). */
  readonly backoff?: BackoffOptions;
  /** Identifies this client's writes for exactly-once retries (default: a random UUID). */
  readonly clientId?: string;
  /** The largest gRPC message sent or received (default 16 MiB). */
  readonly messageBytesMax?: number;
  /**
   * A call gives up with UnavailableError, without waiting for its deadline, once every server it
   * can try (the meta endpoints, or a group's members) has refused the connection this many times
   * and nothing else happened during the call: no server is running there (default 2). 0 turns
   * this off, so that calls retry until their deadline (to ride out a restart of every node).
   */
  readonly refusedRoundsMax?: number;
}

export interface CallOptions {
  /** Overrides the client's deadline for this call. */
  readonly deadlineMs?: number;
}

export interface ReadOptions extends CallOptions {
  /** Read the local state of whichever replica answers, without a leadership check (may be stale). */
  readonly serializable?: boolean;
}

export interface KeyValue {
  readonly key: Buffer;
  readonly value: Buffer;
}

export interface ScanResult {
  /** Pairs in key-byte order. */
  readonly kvs: KeyValue[];
  /** More pairs remain after the last one returned. */
  readonly more: boolean;
}

export type BatchOp =
  | { readonly type: 'put'; readonly key: Bytes; readonly value: Bytes }
  | { readonly type: 'get'; readonly key: Bytes }
  | { readonly type: 'del'; readonly key: Bytes };

export type BatchResult =
  | { readonly type: 'put' }
  | { readonly type: 'get'; readonly value: Buffer | undefined }
  | { readonly type: 'del'; readonly deleted: boolean };

export interface ClusterView {
  readonly configVersion: number;
  readonly slotCount: number;
  readonly groups: readonly GroupInfo[];
}

export interface MemberView {
  readonly id: number;
  readonly address: string;
  readonly learner: boolean;
  /** Which data dir of the node is the member (it changes when a node is re-created). */
  readonly incarnation: number;
}

function memberView(m: MemberView): MemberView {
  return { id: m.id, address: m.address, learner: m.learner, incarnation: m.incarnation };
}

/**
 * Whether a membership change refused as NODE_NOT_FOUND / NODE_EXISTS is in fact already in
 * effect (the membership in the answer shows it), as after a retry of a change that was applied.
 */
function alreadyDone(
  changeType: MemberChangeType,
  nodeId: number,
  address: string,
  code: ErrorCode,
  members: readonly { id: number; address: string; learner: boolean }[],
): boolean {
  const member = members.find((m) => m.id === nodeId);
  switch (changeType) {
    case MemberChangeType.REMOVE:
      return code === ErrorCode.NODE_NOT_FOUND && member === undefined;
    case MemberChangeType.ADD_LEARNER:
    case MemberChangeType.ADD_VOTER:
    case MemberChangeType.PROMOTE:
      return (
        code === ErrorCode.NODE_EXISTS &&
        member !== undefined &&
        (address === '' || member.address === address) &&
        (changeType === MemberChangeType.ADD_LEARNER || !member.learner)
      );
    default:
      return false;
  }
}

/** Turns user input into bytes: strings are UTF-8. */
export function toBytes(value: Bytes): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.isBuffer(value)
    ? value
    : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

type Method<Req, Resp> = (client: ERaftKvClient) => UnaryCall<Req, Resp>;

const configChange: Method<ClusterConfigChangeReq, ClusterConfigChangeResp> = (c) =>
  c.clusterConfigChange.bind(c);

/** gRPC statuses worth another attempt (on this or another server). */
function retryable(code: grpc.status | undefined): boolean {
  return (
    code === grpc.status.UNAVAILABLE ||
    code === grpc.status.DEADLINE_EXCEEDED ||
    code === grpc.status.RESOURCE_EXHAUSTED ||
    code === grpc.status.ABORTED ||
    code === grpc.status.CANCELLED
  );
}

/** The retry state of one call. */
interface Attempt {
  readonly groupId: number;
  readonly write: boolean;
  readonly deadline: number;
  attempts: number;
  lastProblem: string;
  /**
   * How many times each server refused the connection during this call; null once anything else
   * happened (an answer, or a failure after which the request may have reached a server).
   */
  refusals: Map<string, number> | null;
  /** The topology was read again during this call (its members all refused the connection). */
  topologyRefreshed: boolean;
}

function newAttempt(groupId: number, write: boolean, deadline: number): Attempt {
  return {
    groupId,
    write,
    deadline,
    attempts: 0,
    lastProblem: '',
    refusals: new Map(),
    topologyRefreshed: false,
  };
}

export class EraftKvClient {
  readonly clientId: string;
  private readonly endpoints: string[];
  private readonly deadlineMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly refusedRoundsMax: number;
  private readonly connections: Connections;
  private commandSeq = 0;
  private topologyCache: Topology | null = null;
  private topologyFetch: Promise<Topology> | null = null;
  /** The last known leader address of each group (0 is the meta group). */
  private readonly leaders = new Map<number, string>();
  private readonly rotation = new Map<number, number>();
  private closed = false;

  constructor(options: EraftKvClientOptions) {
    if (options.endpoints.length === 0)
      throw new InvalidArgumentError('at least one meta endpoint is needed');
    for (const e of options.endpoints) {
      if (!/^[^\s:/]+:\d{1,5}$/.test(e))
        throw new InvalidArgumentError(`endpoint "${e}" is not host:port`);
    }
    this.endpoints = [...options.endpoints];
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 2000;
    this.backoff = options.backoff ?? { baseMs: 20, maxMs: 500 };
    this.refusedRoundsMax = options.refusedRoundsMax ?? 2;
    if (!Number.isSafeInteger(this.refusedRoundsMax) || this.refusedRoundsMax < 0) {
      throw new InvalidArgumentError(
        `refusedRoundsMax must be a non-negative integer, got ${this.refusedRoundsMax}`,
      );
    }
    this.clientId = options.clientId ?? randomUUID();
    this.connections = new Connections(options.messageBytesMax ?? 16 * 1024 * 1024);
  }

  // -------------------------------------------------------------------------------------------
  // Data
  // -------------------------------------------------------------------------------------------

  /** Writes `value` under `key`. */
  async put(key: Bytes, value: Bytes, options: CallOptions = {}): Promise<void> {
    await this.batch([{ type: 'put', key, value }], options);
  }

  /** The value of `key`, or undefined when the key does not exist (an empty value exists). */
  async get(key: Bytes, options: ReadOptions = {}): Promise<Buffer | undefined> {
    const k = toBytes(key);
    const resp = await this.dataCall(
      [k],
      [{ ...emptyOp(), opType: ClientOpType.Get, key: k }],
      false,
      options,
    );
    const op = resp.ops[0];
    return op?.found ? op.value : undefined;
  }

  /** Deletes `key`; true if it existed. */
  async del(key: Bytes, options: CallOptions = {}): Promise<boolean> {
    const [result] = await this.batch([{ type: 'del', key }], options);
    return result.type === 'del' && result.deleted;
  }

  /**
   * The pairs with keys in [start, end) (end empty or omitted: no upper bound), in key-byte
   * order, at most `limit` (default 1000); `more` says that the limit stopped the scan before the
   * end. Keys live in every group, so each group is asked and the answers are merged. A server
   * answers at most its own bound per request (--scan-limit-max pairs, --response-bytes-max
   * bytes), so the scan continues in pages, each from the last key returned + 0x00, until it has
   * `limit` pairs or the range ends. The pages are separate reads: a scan that spans several
   * pages is not one point in time.
   */
  async scan(
    start: Bytes,
    end: Bytes | undefined,
    options: ReadOptions & { limit?: number } = {},
  ): Promise<ScanResult> {
    const limit = options.limit ?? 1000;
    if (!Number.isSafeInteger(limit) || limit <= 0)
      throw new InvalidArgumentError(`limit must be a positive integer, got ${limit}`);
    const endKey = end === undefined ? Buffer.alloc(0) : toBytes(end);
    const deadline = Date.now() + (options.deadlineMs ?? this.deadlineMs);
    const kvs: KeyValue[] = [];
    let from = toBytes(start);
    for (let moves = 0; ; moves++) {
      const result = await this.scanGroups(from, endKey, limit, kvs, options, deadline);
      if (result !== null) return { kvs, more: result.more };
      // A group answered WRONG_SHARD: the topology moved under the scan. The pairs taken so far
      // are final (each came before every pair not yet taken); go on after the last one.
      if (moves >= 10)
        throw new WrongShardError('the topology kept changing during the scan; retry');
      if (kvs.length > 0) from = keyAfter(kvs[kvs.length - 1].key);
    }
  }

  /**
   * Merges the groups' pages into `out` in key order until it holds `limit` pairs or every group
   * is done. A group's next page is fetched only once its current one is used up, since its next
   * key may come before the other groups' keys. Null when a group answered WRONG_SHARD.
   */
  private async scanGroups(
    from: Buffer,
    endKey: Buffer,
    limit: number,
    out: KeyValue[],
    options: ReadOptions,
    deadline: number,
  ): Promise<{ more: boolean } | null> {
    const topology = await this.topology(false, deadline);
    const pagers: ScanPager[] = topology
      .dataGroups()
      .filter((g) => g.slots.length > 0)
      .map((g) => ({ groupId: g.id, page: [], taken: 0, next: from }));
    for (;;) {
      if (out.length === limit) {
        return { more: pagers.some((p) => p.taken < p.page.length || p.next !== null) };
      }
      const used = pagers.filter((p) => p.taken === p.page.length && p.next !== null);
      const refills = await Promise.all(
        used.map((p) => this.scanPage(p, endKey, limit - out.length, options, deadline)),
      );
      if (refills.includes(false)) return null;
      let best: ScanPager | null = null;
      for (const p of pagers) {
        if (p.taken === p.page.length) continue;
        if (best === null || Buffer.compare(p.page[p.taken].key, best.page[best.taken].key) < 0)
          best = p;
      }
      if (best === null) return { more: false };
      out.push(best.page[best.taken++]);
    }
  }

  /** Fetches a group's next page into its pager; false when the group answered WRONG_SHARD. */
  private async scanPage(
    pager: ScanPager,
    endKey: Buffer,
    wanted: number,
    options: ReadOptions,
    deadline: number,
  ): Promise<boolean> {
    const from = pager.next;
    if (from === null) return true;
    const resp = await this.groupCall(
      pager.groupId,
      {
        ...emptyRequest(),
        kvs: [{ ...emptyOp(), opType: ClientOpType.Scan, key: from, endKey, limit: wanted }],
        readConsistency: options.serializable
          ? ReadConsistency.SERIALIZABLE
          : ReadConsistency.LINEARIZABLE,
      },
      false,
      deadline,
      options.serializable === true,
    );
    if (resp.errorCode === ErrorCode.WRONG_SHARD) return false;
    const op = resp.ops[0];
    const pairs = op?.kvs ?? [];
    if (op?.more === true && pairs.length === 0) {
      // A server returns at least one pair whenever more remain; anything else would loop.
      throw new ClusterError(
        ErrorCode.REJECTED,
        `group ${pager.groupId} answered a Scan with more pairs to come but none returned`,
      );
    }
    pager.page = pairs.map((kv) => ({ key: kv.key, value: kv.value }));
    pager.taken = 0;
    pager.next = op?.more === true ? keyAfter(pairs[pairs.length - 1].key) : null;
    return true;
  }

  /**
   * Several operations on keys of one group, applied atomically and in order (a get sees the
   * batch's earlier writes). Keys of different groups are refused with InvalidArgumentError.
   */
  async batch(ops: readonly BatchOp[], options: CallOptions = {}): Promise<BatchResult[]> {
    if (ops.length === 0) throw new InvalidArgumentError('a batch needs at least one operation');
    const keys = ops.map((op) => toBytes(op.key));
    const wire: KvOpPair[] = ops.map((op, i) => {
      switch (op.type) {
        case 'put':
          return { ...emptyOp(), opType: ClientOpType.Put, key: keys[i], value: toBytes(op.value) };
        case 'get':
          return { ...emptyOp(), opType: ClientOpType.Get, key: keys[i] };
        case 'del':
          return { ...emptyOp(), opType: ClientOpType.Del, key: keys[i] };
      }
    });
    const writes = ops.some((op) => op.type !== 'get');
    const resp = await this.dataCall(keys, wire, writes, options);
    return ops.map((op, i): BatchResult => {
      const result = resp.ops[i];
      switch (op.type) {
        case 'put':
          return { type: 'put' };
        case 'get':
          return { type: 'get', value: result?.found ? result.value : undefined };
        case 'del':
          return { type: 'del', deleted: (result?.deleted ?? 0) > 0 };
      }
    });
  }

  private async dataCall(
    keys: Buffer[],
    ops: KvOpPair[],
    write: boolean,
    options: ReadOptions,
  ): Promise<ClientOperationResp> {
    const deadline = Date.now() + (options.deadlineMs ?? this.deadlineMs);
    const request: ClientOperationReq = {
      ...emptyRequest(),
      kvs: ops,
      // The same (client id, command id) on every attempt: the servers apply the write once.
      clientId: write ? this.clientId : '',
      commandId: write ? ++this.commandSeq : 0,
      readConsistency: options.serializable
        ? ReadConsistency.SERIALIZABLE
        : ReadConsistency.LINEARIZABLE,
    };
    let refreshed = false;
    for (;;) {
      const topology = await this.topology(false, deadline);
      const groups = new Set(keys.map((k) => topology.groupOf(k)));
      if (groups.size > 1 || groups.has(0)) {
        // Maybe the cached topology is stale: look again once before refusing.
        if (!refreshed) {
          refreshed = true;
          await this.topology(true, deadline);
          continue;
        }
        if (groups.has(0)) {
          const key = keys.find((k) => topology.groupOf(k) === 0)!;
          throw new ClusterError(
            ErrorCode.WRONG_SHARD,
            `slot ${topology.slotOf(key)} of key ${JSON.stringify(key.toString())} belongs to no group: ` +
              "assign slots with 'eraftkv-ctl slot move' (npm start gives every slot to group 1)",
          );
        }
        throw new InvalidArgumentError(
          `the keys of one request must belong to one group; these span groups ${[...groups].join(', ')}`,
        );
      }
      const [groupId] = groups;
      const resp = await this.groupCall(
        groupId,
        request,
        write,
        deadline,
        options.serializable === true,
      );
      if (resp.errorCode === ErrorCode.WRONG_SHARD) {
        // groupCall refreshed the topology; route again.
        continue;
      }
      return resp;
    }
  }

  /**
   * Sends a data request to a group: to its leader (or, for serializable reads, any member),
   * following NOT_LEADER hints and retrying until the deadline. Returns the first answer that is
   * OK or WRONG_SHARD (after refreshing the topology).
   */
  private async groupCall(
    groupId: number,
    request: ClientOperationReq,
    write: boolean,
    deadline: number,
    anyReplica: boolean,
  ): Promise<ClientOperationResp> {
    const attempt = newAttempt(groupId, write, deadline);
    let wrongShards = 0;
    for (;;) {
      this.assertOpen();
      const topology = await this.topology(false, deadline);
      const group = topology.groups.get(groupId);
      if (group === undefined || group.servers.length === 0) {
        await this.topology(true, deadline);
        throw new ClusterError(
          ErrorCode.GROUP_NOT_FOUND,
          `group ${groupId} is not in the topology`,
        );
      }
      const addresses = group.servers.map((s) => s.address);
      const address = this.pickServer(groupId, addresses, anyReplica);
      let resp: ClientOperationResp;
      try {
        resp = await this.connections.processRw(address, request, this.attemptTimeout(deadline));
      } catch (err) {
        try {
          await this.afterRpcError(err, address, attempt, addresses);
        } catch (failure) {
          // Every member the cached topology names refused the connection: they may all have
          // been replaced since (removed, new members added), so the topology is read again
          // once before the call gives up.
          if (
            !(failure instanceof UnavailableError) ||
            attempt.topologyRefreshed ||
            Date.now() >= deadline
          ) {
            throw failure;
          }
          attempt.topologyRefreshed = true;
          attempt.refusals = new Map();
          this.leaders.delete(groupId);
          await this.topology(true, deadline);
        }
        continue;
      }
      attempt.refusals = null;
      switch (resp.errorCode) {
        case ErrorCode.OK:
          this.leaders.set(groupId, address);
          return resp;
        case ErrorCode.NOT_LEADER:
          this.followHint(groupId, address, resp.leaderAddress, attempt);
          if (resp.leaderAddress === '') await this.pause(attempt);
          continue;
        case ErrorCode.WRONG_SHARD:
          if (++wrongShards > 20) {
            throw new WrongShardError(
              `group ${groupId} kept answering WRONG_SHARD (config version ${resp.configVersion}): the topology is changing; retry`,
            );
          }
          attempt.lastProblem = `${address}: wrong shard at config version ${resp.configVersion}`;
          await this.topology(true, deadline);
          if (this.topologyCache !== null && this.topologyCache.version < resp.configVersion) {
            // The meta group has not caught up with the server yet, or a move is in progress.
            await this.pause(attempt);
          } else if (wrongShards > 1) {
            await this.pause(attempt);
          }
          return resp;
        case ErrorCode.NO_LEADER:
        case ErrorCode.BUSY:
        case ErrorCode.SNAPSHOTTING:
        case ErrorCode.STALE_SERVER_CONFIG:
          attempt.lastProblem = `${address}: ${describeErrorCode(resp.errorCode)}`;
          this.rotate(groupId);
          await this.pause(attempt);
          continue;
        default:
          throw new ClusterError(
            resp.errorCode,
            `${describeErrorCode(resp.errorCode)}: ${resp.errorMessage}`,
          );
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Topology and administration (the meta group)
  // -------------------------------------------------------------------------------------------

  /** The cached topology, or a fresh one (`refresh`, or none cached yet). */
  private async topology(refresh: boolean, deadline: number): Promise<Topology> {
    if (!refresh && this.topologyCache !== null) return this.topologyCache;
    if (this.topologyFetch === null) {
      this.topologyFetch = this.metaCall(
        { ...emptyConfigRequest(), changeType: ChangeType.ShardsQuery },
        deadline,
      )
        .then((resp) => {
          const topology = new Topology(resp);
          if (this.topologyCache === null || topology.version >= this.topologyCache.version) {
            this.topologyCache = topology;
          }
          return this.topologyCache;
        })
        .finally(() => {
          this.topologyFetch = null;
        });
    }
    return this.topologyFetch;
  }

  /** Sends a request to the meta leader; refused changes become ClusterErrors. */
  private async metaCall(
    request: ClusterConfigChangeReq,
    deadline: number,
    acceptError: (code: ErrorCode) => boolean = () => false,
  ): Promise<ClusterConfigChangeResp> {
    const write =
      request.changeType !== ChangeType.ShardsQuery &&
      request.changeType !== ChangeType.MembersQuery;
    const attempt = newAttempt(0, write, deadline);
    for (;;) {
      this.assertOpen();
      const address = this.pickServer(0, this.endpoints, false);
      let resp: ClusterConfigChangeResp;
      try {
        resp = await this.connections.unary(
          address,
          configChange,
          request,
          this.attemptTimeout(deadline),
        );
      } catch (err) {
        await this.afterRpcError(err, address, attempt, this.endpoints);
        continue;
      }
      attempt.refusals = null;
      if (resp.errorCode === ErrorCode.OK || acceptError(resp.errorCode)) {
        this.leaders.set(0, address);
        return resp;
      }
      if (resp.errorCode === ErrorCode.NOT_LEADER || resp.errorCode === ErrorCode.NO_LEADER) {
        this.followHint(0, address, resp.leaderAddress, attempt);
        if (resp.leaderAddress === '') await this.pause(attempt);
        continue;
      }
      if (resp.errorCode === ErrorCode.BUSY) {
        await this.pause(attempt);
        continue;
      }
      throw new ClusterError(
        resp.errorCode,
        `${describeErrorCode(resp.errorCode)}${resp.errorMessage ? `: ${resp.errorMessage}` : ''}`,
      );
    }
  }

  private configRequest(fields: Partial<ClusterConfigChangeReq>): ClusterConfigChangeReq {
    return {
      ...emptyConfigRequest(),
      clientId: this.clientId,
      commandId: ++this.commandSeq,
      ...fields,
    };
  }

  /** Initialises a new cluster with `slotCount` slots (default 1024). */
  async initCluster(slotCount = 0, options: CallOptions = {}): Promise<ClusterView> {
    const resp = await this.metaCall(
      this.configRequest({ changeType: ChangeType.ClusterInit, slotCount }),
      Date.now() + (options.deadlineMs ?? this.deadlineMs),
    );
    return this.adopt(resp);
  }

  /** The current topology (linearizable). */
  async cluster(options: ReadOptions = {}): Promise<ClusterView> {
    const resp = await this.metaCall(
      {
        ...emptyConfigRequest(),
        changeType: ChangeType.ShardsQuery,
        serializable: options.serializable === true,
      },
      Date.now() + (options.deadlineMs ?? this.deadlineMs),
    );
    return this.adopt(resp);
  }

  /** Registers kv group `groupId` served by `servers` (host:port of its members, ids 1..n in order). */
  async addGroup(
    groupId: number,
    servers: readonly string[],
    options: CallOptions = {},
  ): Promise<ClusterView> {
    positiveId(groupId, 'group id');
    if (servers.length === 0)
      throw new InvalidArgumentError('a group needs at least one server address');
    const resp = await this.metaCall(
      this.configRequest({
        changeType: ChangeType.ShardJoin,
        handleServerType: HandleServerType.DataServer,
        shardId: groupId,
        shardGroup: {
          id: groupId,
          slots: [],
          servers: servers.map((address, i) => ({ id: i + 1, address, serverStatus: 0 })),
          leaderId: 0,
        },
      }),
      Date.now() + (options.deadlineMs ?? this.deadlineMs),
    );
    return this.adopt(resp);
  }

  /** Unregisters kv group `groupId` (it must own no slots). */
  async removeGroup(groupId: number, options: CallOptions = {}): Promise<ClusterView> {
    positiveId(groupId, 'group id');
    const resp = await this.metaCall(
      this.configRequest({ changeType: ChangeType.ShardLeave, shardId: groupId }),
      Date.now() + (options.deadlineMs ?? this.deadlineMs),
    );
    return this.adopt(resp);
  }

  /** Gives `slots` to group `groupId`. Refused (SLOT_NOT_EMPTY) for slots that hold data. */
  async moveSlots(
    groupId: number,
    slots: readonly number[],
    options: CallOptions = {},
  ): Promise<ClusterView> {
    positiveId(groupId, 'group id');
    if (slots.length === 0) throw new InvalidArgumentError('no slots to move');
    const resp = await this.metaCall(
      this.configRequest({
        changeType: ChangeType.SlotMove,
        shardId: groupId,
        shardGroup: {
          id: groupId,
          slots: slots.map((id) => ({ id, slotStatus: 0, statusModifyTime: 0 })),
          servers: [],
          leaderId: 0,
        },
      }),
      // A move asks the source group to freeze the slots first: allow it more time.
      Date.now() + (options.deadlineMs ?? Math.max(this.deadlineMs, 30_000)),
    );
    return this.adopt(resp);
  }

  /** The members of a group (0: the meta group), with their roles, from its leader's status. */
  async members(
    groupId: number,
    options: CallOptions = {},
  ): Promise<{ leaderId: number; members: MemberView[] }> {
    const status = await this.leaderStatus(
      groupId,
      Date.now() + (options.deadlineMs ?? this.deadlineMs),
    );
    return {
      leaderId: status.leaderId,
      members: (status.membership?.members ?? []).map(memberView),
    };
  }

  /** Adds node `nodeId` at `address` to a group, as a learner (auto-promoted) or a voter. */
  async addMember(
    groupId: number,
    nodeId: number,
    address: string,
    learner: boolean,
    options: CallOptions = {},
  ): Promise<MemberView[]> {
    positiveId(nodeId, 'node id');
    return this.memberChange(
      groupId,
      learner ? MemberChangeType.ADD_LEARNER : MemberChangeType.ADD_VOTER,
      nodeId,
      address,
      options,
    );
  }

  async removeMember(
    groupId: number,
    nodeId: number,
    options: CallOptions = {},
  ): Promise<MemberView[]> {
    positiveId(nodeId, 'node id');
    return this.memberChange(groupId, MemberChangeType.REMOVE, nodeId, '', options);
  }

  async promoteMember(
    groupId: number,
    nodeId: number,
    options: CallOptions = {},
  ): Promise<MemberView[]> {
    positiveId(nodeId, 'node id');
    return this.memberChange(groupId, MemberChangeType.PROMOTE, nodeId, '', options);
  }

  private async memberChange(
    groupId: number,
    changeType: MemberChangeType,
    nodeId: number,
    address: string,
    options: CallOptions,
  ): Promise<MemberView[]> {
    const deadline = Date.now() + (options.deadlineMs ?? this.deadlineMs);
    const outcome = { uncertain: false };
    const resp = await this.adminCall(
      groupId,
      (c) => c.memberChange.bind(c),
      { groupId, changeType, nodeId, address },
      (r) =>
        r.errorCode === ErrorCode.NOT_LEADER || r.errorCode === ErrorCode.NO_LEADER
          ? r.leaderAddress
          : null,
      deadline,
      outcome,
    );
    const members = resp.membership?.members ?? [];
    if (outcome.uncertain && alreadyDone(changeType, nodeId, address, resp.errorCode, members)) {
      // An earlier attempt whose answer was lost made the change: the group is as asked.
      return members.map(memberView);
    }
    if (resp.errorCode !== ErrorCode.OK) {
      throw new ClusterError(
        resp.errorCode,
        `${describeErrorCode(resp.errorCode)}: ${resp.errorMessage}`,
      );
    }
    return (resp.membership?.members ?? []).map(memberView);
  }

  /** Hands the leadership of a group to node `nodeId`; resolves once it leads. */
  async transferLeader(groupId: number, nodeId: number, options: CallOptions = {}): Promise<void> {
    positiveId(nodeId, 'node id');
    const deadline = Date.now() + (options.deadlineMs ?? this.deadlineMs);
    const resp = await this.adminCall(
      groupId,
      (c) => c.transferLeader.bind(c),
      { groupId, targetId: nodeId },
      (r) =>
        r.errorCode === ErrorCode.NOT_LEADER || r.errorCode === ErrorCode.NO_LEADER
          ? r.leaderAddress
          : null,
      deadline,
    );
    if (resp.errorCode !== ErrorCode.OK) {
      throw new ClusterError(
        resp.errorCode,
        `${describeErrorCode(resp.errorCode)}: ${resp.errorMessage}`,
      );
    }
    this.leaders.set(groupId, resp.leaderAddress);
  }

  /**
   * One node's own status (no leadership check). With `withDigest`, also a digest of its whole
   * state machine (a full scan: for consistency checks, not for monitoring).
   */
  async status(
    address: string,
    options: CallOptions & { withDigest?: boolean } = {},
  ): Promise<StatusResp> {
    try {
      return await this.connections.unary(
        address,
        (c) => c.status.bind(c),
        { withDigest: options.withDigest === true },
        options.deadlineMs ?? this.attemptTimeoutMs,
      );
    } catch (err) {
      throw this.rpcError(err, address);
    }
  }

  /** Whether a node answers grpc.health.v1 with SERVING. */
  async health(address: string, options: CallOptions = {}): Promise<boolean> {
    const client = this.connections.health(address);
    return new Promise<boolean>((resolve, reject) => {
      client.check(
        { service: '' },
        new grpc.Metadata(),
        { deadline: Date.now() + (options.deadlineMs ?? this.attemptTimeoutMs) },
        (err, resp) => {
          if (err) reject(this.rpcError(err, address));
          else resolve(resp.status === HealthCheckResponse_ServingStatus.SERVING);
        },
      );
    });
  }

  /** The addresses of a group's members as the topology records them (0: the meta endpoints). */
  async groupAddresses(groupId: number, options: CallOptions = {}): Promise<string[]> {
    if (groupId === 0) return [...this.endpoints];
    const topology = await this.topology(
      true,
      Date.now() + (options.deadlineMs ?? this.deadlineMs),
    );
    const group = topology.groups.get(groupId);
    if (group === undefined)
      throw new ClusterError(ErrorCode.GROUP_NOT_FOUND, `group ${groupId} is not in the topology`);
    return group.servers.map((s) => s.address);
  }

  private async leaderStatus(groupId: number, deadline: number): Promise<StatusResp> {
    const addresses = await this.groupAddresses(groupId, { deadlineMs: deadline - Date.now() });
    const attempt = newAttempt(groupId, false, deadline);
    for (;;) {
      const address = this.pickServer(groupId, addresses, false);
      let status: StatusResp;
      try {
        status = await this.connections.unary(
          address,
          (c) => c.status.bind(c),
          { withDigest: false },
          this.attemptTimeout(deadline),
        );
      } catch (err) {
        await this.afterRpcError(err, address, attempt, addresses);
        continue;
      }
      attempt.refusals = null;
      if (status.role === 'leader') {
        this.leaders.set(groupId, address);
        return status;
      }
      this.followHint(groupId, address, status.leaderAddress, attempt);
      if (status.leaderAddress === '') await this.pause(attempt);
    }
  }

  private async adminCall<Req, Resp>(
    groupId: number,
    method: Method<Req, Resp>,
    request: Req,
    leaderHint: (resp: Resp) => string | null,
    deadline: number,
    /** Set when an attempt's outcome is unknown (no answer): it may have taken effect. */
    outcome: { uncertain: boolean } = { uncertain: false },
  ): Promise<Resp> {
    const addresses = await this.groupAddresses(groupId, { deadlineMs: deadline - Date.now() });
    const attempt = newAttempt(groupId, true, deadline);
    for (;;) {
      const address = this.pickServer(groupId, addresses, false);
      let resp: Resp;
      try {
        resp = await this.connections.unary(
          address,
          method,
          request,
          this.attemptTimeout(deadline),
        );
      } catch (err) {
        outcome.uncertain = true;
        await this.afterRpcError(err, address, attempt, addresses);
        continue;
      }
      attempt.refusals = null;
      const hint = leaderHint(resp);
      if (hint === null) {
        this.leaders.set(groupId, address);
        return resp;
      }
      this.followHint(groupId, address, hint, attempt);
      if (hint === '') await this.pause(attempt);
    }
  }

  private adopt(resp: ClusterConfigChangeResp): ClusterView {
    const topology = new Topology(resp);
    if (this.topologyCache === null || topology.version >= this.topologyCache.version)
      this.topologyCache = topology;
    return {
      configVersion: topology.version,
      slotCount: topology.slotCount,
      groups: [...topology.groups.values()],
    };
  }

  // -------------------------------------------------------------------------------------------
  // Retry machinery
  // -------------------------------------------------------------------------------------------

  private attemptTimeout(deadline: number): number {
    const left = deadline - Date.now();
    if (left <= 0) throw new TimeoutError('the deadline passed');
    return Math.min(this.attemptTimeoutMs, left);
  }

  private pickServer(groupId: number, addresses: readonly string[], anyReplica: boolean): string {
    const leader = this.leaders.get(groupId);
    if (!anyReplica && leader !== undefined && leader !== '') return leader;
    const i = (this.rotation.get(groupId) ?? 0) % addresses.length;
    return addresses[i];
  }

  private rotate(groupId: number): void {
    this.leaders.delete(groupId);
    this.rotation.set(groupId, (this.rotation.get(groupId) ?? 0) + 1);
  }

  private followHint(groupId: number, address: string, hint: string, attempt: Attempt): void {
    attempt.lastProblem = `${address} is not the leader${hint ? ` (leader: ${hint})` : ' and knows no leader'}`;
    attempt.attempts++;
    if (hint !== '' && hint !== address) this.leaders.set(groupId, hint);
    else this.rotate(groupId);
    if (Date.now() >= attempt.deadline) throw this.deadlineError(attempt);
  }

  /**
   * After a failed RPC to `address`, one of `servers` (those the call rotates over): throws when
   * the call should end, otherwise pauses before the next try.
   */
  private async afterRpcError(
    err: unknown,
    address: string,
    attempt: Attempt,
    servers: readonly string[],
  ): Promise<void> {
    if (err instanceof TimeoutError) throw this.deadlineError(attempt);
    const e = err as grpc.ServiceError;
    if (!retryable(e.code)) throw this.rpcError(err, address);
    attempt.lastProblem = `${address}: ${e.details || e.message}`;
    this.noteRefusal(e, address, attempt, servers);
    if (e.code !== grpc.status.RESOURCE_EXHAUSTED && e.code !== grpc.status.ABORTED) {
      this.rotate(attempt.groupId);
    }
    await this.pause(attempt);
  }

  /**
   * Counts a refused connection; throws UnavailableError once every server has refused
   * `refusedRoundsMax` times in a call in which nothing else happened. Refused means UNAVAILABLE
   * with the channel in TRANSIENT_FAILURE (its connect attempt failed), so the request never left
   * this process; any other failure may have reached a server and ends the counting.
   */
  private noteRefusal(
    e: grpc.ServiceError,
    address: string,
    attempt: Attempt,
    servers: readonly string[],
  ): void {
    if (attempt.refusals === null) return;
    if (e.code !== grpc.status.UNAVAILABLE || !this.connections.cannotConnect(address)) {
      attempt.refusals = null;
      return;
    }
    if (this.refusedRoundsMax === 0) return;
    const refusals = attempt.refusals;
    refusals.set(address, (refusals.get(address) ?? 0) + 1);
    if (servers.every((s) => (refusals.get(s) ?? 0) >= this.refusedRoundsMax)) {
      const what = attempt.groupId === 0 ? 'meta endpoint' : `member of group ${attempt.groupId}`;
      throw new UnavailableError(
        `every ${what} refused the connection (${servers.join(', ')}; last: ${attempt.lastProblem}); ` +
          'check that the cluster is running and that the endpoints are right',
      );
    }
  }

  private async pause(attempt: Attempt): Promise<void> {
    attempt.attempts++;
    const wait = Math.min(
      backoffMs(attempt.attempts, this.backoff),
      Math.max(0, attempt.deadline - Date.now()),
    );
    if (wait > 0) await sleep(wait);
    if (Date.now() >= attempt.deadline) throw this.deadlineError(attempt);
  }

  /** The error for a call whose deadline passed: unavailable when no node answered at all. */
  private deadlineError(attempt: Attempt): Error {
    const what = attempt.groupId === 0 ? 'the meta group' : `group ${attempt.groupId}`;
    const last = attempt.lastProblem || 'nothing answered';
    // "Waiting for LB pick": the call timed out before any connection was ready, so it never
    // left this process; like a refused connection, that means nothing answered.
    if (
      /UNAVAILABLE|No connection|ECONNREFUSED|connect|Waiting for LB pick/i.test(last) ||
      attempt.lastProblem === ''
    ) {
      return new UnavailableError(
        `no node of ${what} answered before the deadline (last: ${last}); check that the cluster is running and that the endpoints are right`,
      );
    }
    return new TimeoutError(
      `${what} did not complete the request before the deadline (last: ${last})` +
        (attempt.write ? '; the write may or may not have been applied' : ''),
    );
  }

  private rpcError(err: unknown, address: string): Error {
    const e = err as grpc.ServiceError;
    if (e.code === grpc.status.INVALID_ARGUMENT)
      return new InvalidArgumentError(e.details || e.message);
    if (e.code === grpc.status.UNAVAILABLE) {
      return new UnavailableError(`${address} is unavailable: ${e.details || e.message}`);
    }
    if (e.code === grpc.status.DEADLINE_EXCEEDED)
      return new TimeoutError(`${address} did not answer in time`);
    return err instanceof Error ? err : new Error(String(err));
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('the client is closed');
  }

  /** Closes every connection; the client cannot be used afterwards. */
  close(): void {
    this.closed = true;
    this.connections.close();
  }
}

function positiveId(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new InvalidArgumentError(`${what} must be a positive integer, got ${value}`);
}

/** Where a group's scan goes on: its page, how much of it is merged, where its next page starts. */
interface ScanPager {
  readonly groupId: number;
  page: KeyValue[];
  taken: number;
  /** The start of the next page; null once the group has no more pairs in the range. */
  next: Buffer | null;
}

/** The smallest key after `key` in byte order. */
function keyAfter(key: Buffer): Buffer {
  return Buffer.concat([key, Buffer.from([0])]);
}

function emptyOp(): KvOpPair {
  return KvOpPair.fromPartial({});
}

function emptyRequest(): ClientOperationReq {
  return {
    opTimestamp: 0,
    clientId: '',
    commandId: 0,
    kvs: [],
    readConsistency: ReadConsistency.LINEARIZABLE,
    configVersion: 0,
    requestId: 0,
  };
}

function emptyConfigRequest(): ClusterConfigChangeReq {
  return {
    changeType: ChangeType.ShardsQuery,
    handleServerType: HandleServerType.MetaServer,
    shardId: 0,
    server: undefined,
    configVersion: 0,
    opSign: 0,
    commandId: 0,
    clientId: '',
    shardGroup: undefined,
    slotCount: 0,
    serializable: false,
  };
}
