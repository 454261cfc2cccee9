// ClusterConfigChange on a meta server, as the table in docs/servers-contract.md fixes it:
// malformed requests are INVALID_ARGUMENT before anything is proposed; changes go through the
// meta group's log (or, for MetaServer ServerJoin/ServerLeave, through its membership); queries
// are linearizable through ReadIndex on the leader unless they ask to be serializable; followers
// answer NOT_LEADER with the leader's address. Every answer carries the whole topology with the
// meta group first as id 0.
import {
  ChangeType,
  ErrorCode,
  HandleServerType,
  slotCountMax,
  type ClusterConfigChangeReq,
  type ClusterConfigChangeResp,
  type ERaftKvServer,
} from '@eraftkv/protocol';
import {
  checkPeerAddress,
  errorAnswer,
  unaryHandler,
  type AccessControl,
} from '@eraftkv/server-kit';
import {
  InvalidArgumentError,
  NotLeaderError,
  type Logger,
  type PeerCall,
  type RaftServer,
} from '@eraftkv/raft-server';
import type { SlotMoveCoordinator } from './slot-move';
import {
  dedupWindowEntriesMax,
  isRequestId,
  type CommandOutcome,
  type RequestId,
  type ServerRecord,
  type Topology,
  type TopologyCommand,
} from './topology';
import { topologyToWire } from './topology-wire';

export interface MetaServiceDeps {
  readonly raft: RaftServer<CommandOutcome>;
  /** Proposes a command; resolves with its outcome once applied on this node. */
  readonly propose: (command: TopologyCommand) => Promise<CommandOutcome>;
  /** The applied topology on this node. */
  readonly topology: () => Topology;
  readonly slotMoves: SlotMoveCoordinator;
  /** What ClusterInit records as the dedup window. */
  readonly dedupWindowEntries: number;
  /** Who may change the topology (with auth enabled, the role root). */
  readonly access: AccessControl;
  /** Where errors that become INTERNAL (bugs) are logged. */
  readonly logger: Logger;
}

/** The longest client_id accepted: it is stored in the replicated dedup table. */
export const clientIdBytesMax = 256;

/** What a valid request asks for. */
type Plan =
  | { readonly kind: 'query'; readonly serializable: boolean }
  | { readonly kind: 'command'; readonly command: TopologyCommand }
  | { readonly kind: 'meta-join'; readonly server: ServerRecord }
  | { readonly kind: 'meta-leave'; readonly serverId: number }
  | {
      readonly kind: 'slot-move';
      readonly target: number;
      readonly slots: readonly number[];
      readonly request: RequestId | null;
    };

function invalid(message: string): never {
  throw new InvalidArgumentError(message);
}

function positiveId(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 1)
    invalid(`${what} must be a positive integer, got ${value}`);
  return value;
}

function requestOf(req: ClusterConfigChangeReq): RequestId | null {
  if (Buffer.byteLength(req.clientId, 'utf8') > clientIdBytesMax) {
    invalid(`client_id is longer than ${clientIdBytesMax} bytes`);
  }
  if (!Number.isSafeInteger(req.commandId) || req.commandId < 0) {
    invalid(`command_id must be a non-negative integer, got ${req.commandId}`);
  }
  return isRequestId(req.clientId, req.commandId)
    ? { clientId: req.clientId, commandId: req.commandId }
    : null;
}

function serverOf(req: ClusterConfigChangeReq): ServerRecord {
  if (req.server === undefined) invalid('server is required');
  return {
    id: positiveId(req.server.id, 'server.id'),
    address: checkPeerAddress(req.server.address, 'server.address'),
  };
}

/**
 * The servers of a ShardJoin. Ids are the kv nodes' Raft ids; when every id is 0 (a tool that
 * only knows addresses), the servers are numbered 1..n in the order given, as --peers would be.
 */
function groupServersOf(req: ClusterConfigChangeReq): ServerRecord[] {
  const servers = req.shardGroup?.servers ?? [];
  const numbered = servers.every((s) => s.id === 0);
  const out = servers.map((s, i) => ({
    id: numbered ? i + 1 : positiveId(s.id, `shard_group.servers[${i}].id`),
    address: checkPeerAddress(s.address, `shard_group.servers[${i}].address`),
  }));
  if (new Set(out.map((s) => s.id)).size !== out.length)
    invalid('shard_group.servers repeats a server id');
  if (new Set(out.map((s) => s.address)).size !== out.length) {
    invalid('shard_group.servers repeats an address');
  }
  return out;
}

/** Checks a request and says what it asks for; throws an InvalidArgumentError if malformed. */
export function planRequest(
  req: ClusterConfigChangeReq,
  topology: Topology,
  dedupWindowEntries: number,
): Plan {
  const request = requestOf(req);
  const dataServer = req.handleServerType === HandleServerType.DataServer;
  if (req.handleServerType !== HandleServerType.MetaServer && !dataServer) {
    invalid(`unknown handle_server_type ${String(req.handleServerType)}`);
  }
  switch (req.changeType) {
    case ChangeType.ShardsQuery:
    case ChangeType.MembersQuery:
      return { kind: 'query', serializable: req.serializable };
    case ChangeType.ClusterInit:
      if (
        !Number.isSafeInteger(req.slotCount) ||
        req.slotCount < 0 ||
        req.slotCount > slotCountMax
      ) {
        invalid(
          `slot_count must be an integer in [0, ${slotCountMax}] (0 means 1024), got ${req.slotCount}`,
        );
      }
      if (dedupWindowEntries < 1 || dedupWindowEntries > dedupWindowEntriesMax) {
        throw new Error(`the dedup window ${dedupWindowEntries} is out of range`);
      }
      return {
        kind: 'command',
        command: { kind: 'cluster-init', slotCount: req.slotCount, dedupWindowEntries, request },
      };
    case ChangeType.ShardJoin: {
      if (req.shardGroup === undefined) invalid('shard_group is required');
      const id = positiveId(req.shardGroup.id, 'shard_group.id');
      return {
        kind: 'command',
        command: { kind: 'shard-join', group: { id, servers: groupServersOf(req) }, request },
      };
    }
    case ChangeType.ShardLeave:
      return {
        kind: 'command',
        command: { kind: 'shard-leave', groupId: positiveId(req.shardId, 'shard_id'), request },
      };
    case ChangeType.SlotMove: {
      const target = positiveId(req.shardId, 'shard_id (the group that gets the slots)');
      const slots = (req.shardGroup?.slots ?? []).map((s) => s.id);
      if (slots.length === 0) invalid('shard_group.slots lists no slot to move');
      if (slots.length > slotCountMax) invalid(`at most ${slotCountMax} slots per move`);
      const limit = topology.initialized ? topology.slotCount : slotCountMax;
      slots.forEach((slot, i) => {
        if (!Number.isSafeInteger(slot) || slot < 0 || slot >= limit) {
          invalid(`shard_group.slots[${i}].id is ${slot}, outside [0, ${limit})`);
        }
      });
      if (new Set(slots).size !== slots.length) invalid('shard_group.slots repeats a slot');
      return { kind: 'slot-move', target, slots, request };
    }
    case ChangeType.ServerJoin: {
      const server = serverOf(req);
      if (!dataServer) return { kind: 'meta-join', server };
      const groupId = positiveId(req.shardId, 'shard_id');
      return { kind: 'command', command: { kind: 'server-join', groupId, server, request } };
    }
    case ChangeType.ServerLeave: {
      if (req.server === undefined) invalid('server is required');
      const serverId = positiveId(req.server.id, 'server.id');
      if (!dataServer) return { kind: 'meta-leave', serverId };
      const groupId = positiveId(req.shardId, 'shard_id');
      return { kind: 'command', command: { kind: 'server-leave', groupId, serverId, request } };
    }
    case ChangeType.UNRECOGNIZED:
    default:
      return invalid(`unknown change_type ${String(req.changeType)}`);
  }
}

export function clusterConfigChangeHandler(
  deps: MetaServiceDeps,
): ERaftKvServer['clusterConfigChange'] {
  const { raft } = deps;

  /** The answer with the topology as this node has applied it. */
  const answer = (outcome: { code: ErrorCode; message: string }): ClusterConfigChangeResp => {
    const topology = deps.topology();
    const leaderId = raft.leaderId();
    const copied = deps.slotMoves.copied();
    return {
      success: outcome.code === ErrorCode.OK,
      errorCode: outcome.code,
      errorMessage: outcome.message,
      shardGroup: topologyToWire(topology, raft.membership(), leaderId),
      configVersion: topology.configVersion,
      slotCount: topology.slotCount,
      leaderId,
      leaderAddress: raft.addressOf(leaderId),
      slotMoveKeysCopied: copied.keys,
      slotMoveBytesCopied: copied.bytes,
      authRevision: topology.auth.revision,
    };
  };

  /** A routing outcome (not leader, no leader): hints only, no unconfirmed topology. */
  const redirect = (err: unknown): ClusterConfigChangeResp => {
    const a = errorAnswer(err);
    const topology = deps.topology();
    return {
      success: false,
      errorCode: a.errorCode,
      errorMessage: a.errorMessage,
      shardGroup: [],
      configVersion: topology.configVersion,
      slotCount: topology.slotCount,
      leaderId: a.leaderId,
      leaderAddress: a.leaderAddress,
      slotMoveKeysCopied: 0,
      slotMoveBytesCopied: 0,
      authRevision: topology.auth.revision,
    };
  };

  const requireLeader = (): void => {
    if (raft.isLeader()) return;
    const leader = raft.leaderId() === raft.selfId ? 0 : raft.leaderId();
    throw new NotLeaderError(leader, raft.addressOf(leader));
  };

  /** With auth enabled, only root changes the topology; a kv group keeps its own server record. */
  const authorize = (plan: Plan, changeType: ChangeType, call: PeerCall): void => {
    if (plan.kind === 'query') return;
    const what = ChangeType[changeType] ?? 'a topology change';
    const own =
      plan.kind === 'command' &&
      (plan.command.kind === 'server-join' || plan.command.kind === 'server-leave')
        ? [plan.command.groupId]
        : [];
    deps.access.requireAdmin(call, what, own);
  };

  const work = async (
    req: ClusterConfigChangeReq,
    call: PeerCall,
  ): Promise<ClusterConfigChangeResp> => {
    const plan = planRequest(req, deps.topology(), deps.dedupWindowEntries);
    authorize(plan, req.changeType, call);
    try {
      switch (plan.kind) {
        case 'query':
          if (!plan.serializable) {
            requireLeader();
            await raft.readIndex();
          }
          return answer({ code: ErrorCode.OK, message: '' });
        case 'command':
          return answer(await deps.propose(plan.command));
        case 'slot-move':
          requireLeader();
          return answer(await deps.slotMoves.move(plan.target, plan.slots, plan.request));
        case 'meta-join':
          await raft.addLearner(plan.server.id, plan.server.address);
          return answer({ code: ErrorCode.OK, message: '' });
        case 'meta-leave':
          await raft.removeMember(plan.serverId);
          return answer({ code: ErrorCode.OK, message: '' });
      }
    } catch (err) {
      const a = redirect(err);
      if (a.errorCode === ErrorCode.NOT_LEADER || a.errorCode === ErrorCode.NO_LEADER) return a;
      // A refused membership change (NODE_EXISTS, NODE_NOT_FOUND, ...): answer with the topology.
      return answer({ code: a.errorCode, message: a.errorMessage });
    }
  };

  return unaryHandler(work, deps.logger);
}
