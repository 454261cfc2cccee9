// ClientSession: what KvClient and AdminClient share: one connection pool, one LeaderCaller
// (so one cache of each group's leader), the cached topology read from the meta group, and the
// client id with its command sequence (every write of either carries (client id, command id)).
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import {
  ChangeType,
  ClusterConfigChangeReq,
  defaultMessageBytesMax,
  ErrorCode,
  HandleServerType,
  type ClusterConfigChangeResp,
} from '@eraftkv/protocol';
import type { BackoffOptions } from './backoff';
import { Connections } from './connections';
import { ClusterError, describeErrorCode, InvalidArgumentError } from './errors';
import { LeaderCaller, type LeaderCall, type Verdict } from './leader-caller';
import { Topology, type GroupInfo } from './topology';

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
  /**
   * TLS: the CA certificates (PEM) that the servers' certificates are checked against, and a
   * client certificate and key (PEM) for clusters started with --client-cert-auth. Absent:
   * plaintext (a TLS cluster refuses it).
   */
  readonly tls?: ClientTls;
  /** The channel credentials themselves (servers pass reloadable ones); overrides `tls`. */
  readonly credentials?: grpc.ChannelCredentials;
}

/** The TLS material of a client, as PEM (read the files yourself: eraftkv-ctl's --cacert...). */
export interface ClientTls {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** The channel credentials of `tls` (plaintext when absent). */
export function clientCredentials(tls: ClientTls | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw new InvalidArgumentError('a client certificate and its key go together');
  return grpc.credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null);
}

export interface CallOptions {
  /** Overrides the client's deadline for this call. */
  readonly deadlineMs?: number;
}

export interface ReadOptions extends CallOptions {
  /** Read the local state of whichever replica answers, without a leadership check (may be stale). */
  readonly serializable?: boolean;
}

export interface ClusterView {
  readonly configVersion: number;
  readonly slotCount: number;
  readonly groups: readonly GroupInfo[];
  /**
   * Keys and bytes the answering meta node has copied to move targets since it started (it
   * copies as leader): a move's progress is the difference from a view read before it.
   */
  readonly slotMoveCopied: { readonly keys: number; readonly bytes: number };
}

/** The part of a LeaderCall that says which kv group it goes to and how its members are found. */
export type GroupRouting = Required<
  Pick<LeaderCall<unknown>, 'groupId' | 'servers' | 'reloadServers'>
>;

export class ClientSession {
  readonly clientId: string;
  readonly endpoints: readonly string[];
  readonly deadlineMs: number;
  readonly attemptTimeoutMs: number;
  /** Retry pacing, of the LeaderCaller's attempts and of reopening a broken watch stream. */
  readonly backoff: BackoffOptions;
  readonly connections: Connections;
  readonly caller: LeaderCaller;
  private commandSeq = 0;
  private topologyCache: Topology | null = null;
  private topologyFetch: Promise<Topology> | null = null;

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
    this.clientId = options.clientId ?? randomUUID();
    this.backoff = options.backoff ?? { baseMs: 20, maxMs: 500 };
    this.connections = new Connections(
      options.messageBytesMax ?? defaultMessageBytesMax,
      options.credentials ?? clientCredentials(options.tls),
    );
    this.caller = new LeaderCaller(this.connections, {
      attemptTimeoutMs: this.attemptTimeoutMs,
      backoff: this.backoff,
      refusedRoundsMax: options.refusedRoundsMax ?? 2,
    });
  }

  /** When a call with `options` gives up (`defaultMs`: when the call has its own default). */
  deadline(options: CallOptions, defaultMs = this.deadlineMs): number {
    return Date.now() + (options.deadlineMs ?? defaultMs);
  }

  /** The command id of this client's next write. */
  nextCommandId(): number {
    return ++this.commandSeq;
  }

  /** The cached topology, or a fresh one (`refresh`, or none cached yet). */
  async topology(refresh: boolean, deadline: number): Promise<Topology> {
    if (!refresh && this.topologyCache !== null) return this.topologyCache;
    if (this.topologyFetch === null) {
      this.topologyFetch = this.metaCall(
        { ...emptyConfigRequest(), changeType: ChangeType.ShardsQuery },
        deadline,
      )
        .then((resp) => {
          this.adopt(resp);
          return this.topologyCache!;
        })
        .finally(() => {
          this.topologyFetch = null;
        });
    }
    return this.topologyFetch;
  }

  /** The cached topology's version (-1 when none is cached). */
  topologyVersion(): number {
    return this.topologyCache?.version ?? -1;
  }

  /** Caches the topology in a meta answer unless a newer one is cached; returns its view. */
  adopt(resp: ClusterConfigChangeResp): ClusterView {
    const topology = new Topology(resp);
    if (this.topologyCache === null || topology.version >= this.topologyCache.version)
      this.topologyCache = topology;
    return {
      configVersion: topology.version,
      slotCount: topology.slotCount,
      groups: [...topology.groups.values()],
      slotMoveCopied: { keys: resp.slotMoveKeysCopied, bytes: resp.slotMoveBytesCopied },
    };
  }

  /** Sends a request to the meta leader; refused changes become ClusterErrors. */
  metaCall(request: ClusterConfigChangeReq, deadline: number): Promise<ClusterConfigChangeResp> {
    const write =
      request.changeType !== ChangeType.ShardsQuery &&
      request.changeType !== ChangeType.MembersQuery;
    return this.caller.call({
      groupId: 0,
      servers: () => this.endpoints,
      send: (address, timeoutMs) =>
        this.connections.unary(address, (c) => c.clusterConfigChange.bind(c), request, timeoutMs),
      judge: metaVerdict,
      deadline,
      write,
    });
  }

  /** A meta write request: carries this client's id and its next command id. */
  configRequest(fields: Partial<ClusterConfigChangeReq>): ClusterConfigChangeReq {
    return {
      ...emptyConfigRequest(),
      clientId: this.clientId,
      commandId: this.nextCommandId(),
      ...fields,
    };
  }

  /**
   * The addresses of a group's members as the topology records them (0: the meta endpoints), from
   * a fresh topology unless `refresh` is false.
   */
  async groupAddresses(groupId: number, deadline: number, refresh = true): Promise<string[]> {
    if (groupId === 0) return [...this.endpoints];
    const topology = await this.topology(refresh, deadline);
    const group = topology.groups.get(groupId);
    if (group === undefined)
      throw new ClusterError(ErrorCode.GROUP_NOT_FOUND, `group ${groupId} is not in the topology`);
    return group.servers.map((s) => s.address);
  }

  /**
   * Where a LeaderCall to kv group `groupId` goes: the members the cached topology names (a group
   * missing from it is looked up once more, then refused with GROUP_NOT_FOUND), and the topology
   * read again when every one of them refused the connection (they may all have been replaced
   * since: removed, new members added).
   */
  groupRouting(groupId: number, deadline: number): GroupRouting {
    return {
      groupId,
      servers: async () => {
        const group = (await this.topology(false, deadline)).groups.get(groupId);
        if (group === undefined || group.servers.length === 0) {
          await this.topology(true, deadline);
          throw new ClusterError(
            ErrorCode.GROUP_NOT_FOUND,
            `group ${groupId} is not in the topology`,
          );
        }
        return group.servers.map((s) => s.address);
      },
      reloadServers: async () => {
        await this.topology(true, deadline);
      },
    };
  }

  /** Closes every connection; no call can be made afterwards. */
  close(): void {
    this.caller.close();
  }
}

/** What a meta answer means: NOT_LEADER / NO_LEADER redirect, BUSY waits, other errors end. */
export function metaVerdict(resp: {
  readonly errorCode: ErrorCode;
  readonly leaderAddress: string;
  readonly errorMessage: string;
}): Verdict {
  switch (resp.errorCode) {
    case ErrorCode.OK:
      return { kind: 'answer' };
    case ErrorCode.NOT_LEADER:
    case ErrorCode.NO_LEADER:
      return { kind: 'redirect', hint: resp.leaderAddress };
    case ErrorCode.BUSY:
      return { kind: 'retry', problem: describeErrorCode(resp.errorCode), rotate: false };
    default:
      throw new ClusterError(
        resp.errorCode,
        `${describeErrorCode(resp.errorCode)}${resp.errorMessage ? `: ${resp.errorMessage}` : ''}`,
      );
  }
}

export function emptyConfigRequest(): ClusterConfigChangeReq {
  return ClusterConfigChangeReq.fromPartial({
    changeType: ChangeType.ShardsQuery,
    handleServerType: HandleServerType.MetaServer,
  });
}
