// AdminClient: the administration of eraftkv: the cluster's topology (init, groups, slots), the
// members of each Raft group, leadership transfers, and one node's status or health. It shares
// the session (connection pool, leader cache, topology) with KvClient.
import * as grpc from '@grpc/grpc-js';
import {
  ChangeType,
  ErrorCode,
  HandleServerType,
  HealthCheckResponse_ServingStatus,
  MemberChangeType,
  type ERaftKvClient,
  type BackupChunk,
  type ReplicaDigest,
  type StatusResp,
} from '@eraftkv/protocol';
import type { CallOptions, ClientSession, ClusterView, ReadOptions } from './client-session';
import { emptyConfigRequest } from './client-session';
import type { UnaryCall } from './connections';
import { ClusterError, describeErrorCode, InvalidArgumentError } from './errors';
import { rpcError, type LeaderHint, type Verdict } from './leader-caller';

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

/** The fields MemberChange and TransferLeader answers share. */
interface AdminResp {
  readonly errorCode: ErrorCode;
  readonly leaderAddress: string;
}

/** NOT_LEADER / NO_LEADER admin answers carry the leader's address; anything else is an answer. */
const adminLeaderHint: LeaderHint<AdminResp> = (r) =>
  r.errorCode === ErrorCode.NOT_LEADER || r.errorCode === ErrorCode.NO_LEADER
    ? r.leaderAddress
    : null;

const answer: Verdict = { kind: 'answer' };

function positiveId(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new InvalidArgumentError(`${what} must be a positive integer, got ${value}`);
}

export class AdminClient {
  constructor(private readonly session: ClientSession) {}

  /** Initialises a new cluster with `slotCount` slots (default 1024). */
  async initCluster(slotCount = 0, options: CallOptions = {}): Promise<ClusterView> {
    const resp = await this.session.metaCall(
      this.session.configRequest({ changeType: ChangeType.ClusterInit, slotCount }),
      this.session.deadline(options),
    );
    return this.session.adopt(resp);
  }

  /** The current topology (linearizable). */
  async cluster(options: ReadOptions = {}): Promise<ClusterView> {
    const resp = await this.session.metaCall(
      {
        ...emptyConfigRequest(),
        changeType: ChangeType.ShardsQuery,
        serializable: options.serializable === true,
      },
      this.session.deadline(options),
    );
    return this.session.adopt(resp);
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
    const resp = await this.session.metaCall(
      this.session.configRequest({
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
      this.session.deadline(options),
    );
    return this.session.adopt(resp);
  }

  /** Unregisters kv group `groupId` (it must own no slots). */
  async removeGroup(groupId: number, options: CallOptions = {}): Promise<ClusterView> {
    positiveId(groupId, 'group id');
    const resp = await this.session.metaCall(
      this.session.configRequest({ changeType: ChangeType.ShardLeave, shardId: groupId }),
      this.session.deadline(options),
    );
    return this.session.adopt(resp);
  }

  /**
   * Gives `slots` to group `groupId`, with their keys (docs/slot-migration.md): it resolves once
   * the move is committed, or rejects when it was rolled back. Give it time: a move copies data.
   */
  async moveSlots(
    groupId: number,
    slots: readonly number[],
    options: CallOptions = {},
  ): Promise<ClusterView> {
    positiveId(groupId, 'group id');
    if (slots.length === 0) throw new InvalidArgumentError('no slots to move');
    const resp = await this.session.metaCall(
      this.session.configRequest({
        changeType: ChangeType.SlotMove,
        shardId: groupId,
        shardGroup: {
          id: groupId,
          slots: slots.map((id) => ({ id, slotStatus: 0, statusModifyTime: 0, targetShardId: 0 })),
          servers: [],
          leaderId: 0,
        },
      }),
      // A move asks the source group to freeze the slots first: allow it more time.
      this.session.deadline(options, Math.max(this.session.deadlineMs, 30_000)),
    );
    return this.session.adopt(resp);
  }

  /**
   * The members of a group (0: the meta group), with their roles, from its leader's status: the
   * membership its log holds (a change takes effect once appended), with the leader's commit and
   * last log index (the membership is committed once commitIndex reaches that lastLogIndex).
   */
  async members(
    groupId: number,
    options: CallOptions = {},
  ): Promise<{
    leaderId: number;
    members: MemberView[];
    commitIndex: number;
    lastLogIndex: number;
  }> {
    const status = await this.leaderStatus(groupId, this.session.deadline(options));
    return {
      leaderId: status.leaderId,
      members: (status.membership?.members ?? []).map(memberView),
      commitIndex: status.commitIndex,
      lastLogIndex: status.lastLogIndex,
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
    const deadline = this.session.deadline(options);
    const outcome = { uncertain: false };
    const resp = await this.adminCall(
      groupId,
      (c) => c.memberChange.bind(c),
      { groupId, changeType, nodeId, address },
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

  /**
   * A consistency check of kv group `groupId` now: its leader appends a check entry and collects
   * every member's digest of its state at that index (equal digests: equal data). The check
   * scans every replica's whole state, so give it a deadline that allows for that.
   */
  async hashKv(
    groupId: number,
    options: CallOptions = {},
  ): Promise<{ index: number; replicas: ReplicaDigest[] }> {
    positiveId(groupId, 'group id');
    const deadline = this.session.deadline(options);
    const resp = await this.adminCall(groupId, (c) => c.hashKv.bind(c), { groupId }, deadline);
    if (resp.errorCode !== ErrorCode.OK) {
      throw new ClusterError(
        resp.errorCode,
        `${describeErrorCode(resp.errorCode)}: ${resp.errorMessage}`,
      );
    }
    return { index: resp.index, replicas: resp.replicas };
  }

  /**
   * A consistent copy of kv group `groupId`'s data, streamed by its leader in chunks (every key of
   * the slots it owns at one applied index; see BackupReq). Stopping the iteration cancels the
   * call. The stream has no deadline of its own: a large group takes as long as it takes.
   */
  async *backup(
    groupId: number,
    options: CallOptions & { chunkBytes?: number } = {},
  ): AsyncGenerator<BackupChunk> {
    positiveId(groupId, 'group id');
    const deadline = this.session.deadline(options);
    const servers = await this.session.groupAddresses(groupId, deadline);
    let leader = '';
    let last = '';
    for (const address of servers) {
      try {
        const s = await this.status(address, { deadlineMs: Math.min(2000, deadline - Date.now()) });
        if (s.role === 'leader') {
          leader = address;
          break;
        }
        if (s.leaderAddress !== '') leader = s.leaderAddress;
      } catch (err) {
        last = (err as Error).message;
      }
    }
    if (leader === '')
      throw new ClusterError(
        ErrorCode.NO_LEADER,
        `kv group ${groupId} has no leader to copy from${last === '' ? '' : ` (${last})`}`,
      );
    const call = this.session.connections
      .client(leader)
      .backup({ groupId, chunkBytes: options.chunkBytes ?? 0 }, new grpc.Metadata());
    try {
      for await (const chunk of call as AsyncIterable<BackupChunk>) yield chunk;
    } catch (err) {
      throw rpcError(err, leader);
    } finally {
      call.cancel();
    }
  }

  /** Hands the leadership of a group to node `nodeId`; resolves once it leads. */
  async transferLeader(groupId: number, nodeId: number, options: CallOptions = {}): Promise<void> {
    positiveId(nodeId, 'node id');
    const deadline = this.session.deadline(options);
    const resp = await this.adminCall(
      groupId,
      (c) => c.transferLeader.bind(c),
      { groupId, targetId: nodeId },
      deadline,
    );
    if (resp.errorCode !== ErrorCode.OK) {
      throw new ClusterError(
        resp.errorCode,
        `${describeErrorCode(resp.errorCode)}: ${resp.errorMessage}`,
      );
    }
    this.session.caller.noteLeader(groupId, resp.leaderAddress);
  }

  /**
   * One node's own status (no leadership check). With `withDigest`, also a digest of its whole
   * state machine (a full scan: for consistency checks, not for monitoring); with `withSlots`,
   * the slots for which it holds keys (kv servers).
   */
  async status(
    address: string,
    options: CallOptions & { withDigest?: boolean; withSlots?: boolean } = {},
  ): Promise<StatusResp> {
    try {
      return await this.session.connections.unary(
        address,
        (c) => c.status.bind(c),
        {
          withDigest: options.withDigest === true,
          withSlots: options.withSlots === true,
          checkIndex: 0,
        },
        options.deadlineMs ?? this.session.attemptTimeoutMs,
      );
    } catch (err) {
      throw rpcError(err, address);
    }
  }

  /** Whether a node answers grpc.health.v1 with SERVING. */
  async health(address: string, options: CallOptions = {}): Promise<boolean> {
    const client = this.session.connections.health(address);
    return new Promise<boolean>((resolve, reject) => {
      client.check(
        { service: '' },
        new grpc.Metadata(),
        { deadline: Date.now() + (options.deadlineMs ?? this.session.attemptTimeoutMs) },
        (err, resp) => {
          if (err) reject(rpcError(err, address));
          else resolve(resp.status === HealthCheckResponse_ServingStatus.SERVING);
        },
      );
    });
  }

  /** The addresses of a group's members as the topology records them (0: the meta endpoints). */
  groupAddresses(groupId: number, options: CallOptions = {}): Promise<string[]> {
    return this.session.groupAddresses(groupId, this.session.deadline(options));
  }

  /** The status of a group's leader, found among the members the topology records. */
  private async leaderStatus(groupId: number, deadline: number): Promise<StatusResp> {
    const servers = await this.session.groupAddresses(groupId, deadline);
    return this.session.caller.call({
      groupId,
      servers: () => servers,
      send: (address, timeoutMs) =>
        this.session.connections.unary(
          address,
          (c) => c.status.bind(c),
          { withDigest: false, withSlots: false, checkIndex: 0 },
          timeoutMs,
        ),
      judge: (status) =>
        status.role === 'leader' ? answer : { kind: 'redirect', hint: status.leaderAddress },
      deadline,
      write: false,
    });
  }

  /** A unary admin request to a group's leader, found among the members the topology records. */
  private async adminCall<Req, Resp extends AdminResp>(
    groupId: number,
    method: (client: ERaftKvClient) => UnaryCall<Req, Resp>,
    request: Req,
    deadline: number,
    /** Set when an attempt's outcome is unknown (no answer): it may have taken effect. */
    outcome: { uncertain: boolean } = { uncertain: false },
  ): Promise<Resp> {
    const servers = await this.session.groupAddresses(groupId, deadline);
    return this.session.caller.callLeader(groupId, servers, method, request, adminLeaderHint, {
      deadline,
      write: true,
      outcome,
    });
  }
}
