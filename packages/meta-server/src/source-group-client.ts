// Step 2 of a slot move on the wire: hand a kv group (the source of the moving slots) its frozen
// config through ClusterConfigChange{SlotMove, DataServer} and read its verdict. One LeaderCaller
// per kv group (with a connection pool of its own) finds that group's leader and follows its
// NOT_LEADER hints within a deadline.
import type { ChannelCredentials } from '@grpc/grpc-js';
import * as grpc from '@grpc/grpc-js';
import {
  ErrorCode,
  type ClusterConfigChangeReq,
  type ClusterConfigChangeResp,
} from '@eraftkv/protocol';
import {
  InvalidArgumentError,
  TimeoutError,
  UnavailableError,
  type LeaderCaller,
  type LeaderHint,
} from '@eraftkv/client';
import { groupCaller } from '@eraftkv/server-kit';

/** What a source group said about its migrating slots. */
export type SourceVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: ErrorCode; readonly message: string };

/** How the coordinator reaches a source group (an interface, so tests can replace the network). */
export interface SourceGroupClient {
  /** Sends the frozen config to `groupId`'s leader among `addresses`; never rejects. */
  check(
    groupId: number,
    addresses: readonly string[],
    req: ClusterConfigChangeReq,
  ): Promise<SourceVerdict>;
  close(): void;
}

/**
 * Answers of a kv group that mean "ask elsewhere or again": NOT_LEADER names the leader; the
 * others have no hint, so the LeaderCaller tries the next address after a pause, until the
 * deadline. Shared by the meta leader's calls to source (freeze) and target (import) groups.
 */
export function kvGroupLeaderHint(resp: {
  readonly errorCode: ErrorCode;
  readonly leaderAddress: string;
}): string | null {
  switch (resp.errorCode) {
    case ErrorCode.NOT_LEADER:
      return resp.leaderAddress;
    case ErrorCode.NO_LEADER:
    case ErrorCode.BUSY:
    case ErrorCode.SNAPSHOTTING:
      return '';
    default:
      return null;
  }
}

const sourceLeaderHint: LeaderHint<ClusterConfigChangeResp> = kvGroupLeaderHint;

export class GrpcSourceGroupClient implements SourceGroupClient {
  private readonly callers = new Map<number, LeaderCaller>();
  private closed = false;
  private readonly whenClosed: Promise<SourceVerdict>;
  private markClosed: () => void = () => {};

  constructor(
    private readonly options: {
      /** The whole of step 2 for one source group, all retries included. */
      readonly deadlineMs: number;
      /** One attempt against one address. */
      readonly attemptMs: number;
      /** What kv groups are dialed with (TLS with the node's peer certificate). */
      readonly credentials?: ChannelCredentials;
    },
  ) {
    this.whenClosed = new Promise<SourceVerdict>((resolve) => {
      this.markClosed = () =>
        resolve({
          ok: false,
          code: ErrorCode.REJECTED,
          message: 'the meta server is stopping; the move was not checked',
        });
    });
  }

  async check(
    groupId: number,
    addresses: readonly string[],
    req: ClusterConfigChangeReq,
  ): Promise<SourceVerdict> {
    if (this.closed) return this.whenClosed;
    if (addresses.length === 0) {
      return {
        ok: false,
        code: ErrorCode.REJECTED,
        message: `source group ${groupId} has no servers recorded, so nobody can confirm that its slots are empty`,
      };
    }
    let caller = this.callers.get(groupId);
    if (caller === undefined) {
      caller = groupCaller({ credentials: this.options.credentials });
      this.callers.set(groupId, caller);
    } else {
      // The group's membership may have changed: drop channels to servers no longer listed.
      caller.retainServers(groupId, addresses);
    }
    const call = caller
      .callLeader(
        groupId,
        addresses,
        (client) => client.clusterConfigChange.bind(client),
        req,
        sourceLeaderHint,
        {
          deadline: Date.now() + this.options.deadlineMs,
          attemptTimeoutMs: this.options.attemptMs,
          write: true,
        },
      )
      .then(
        (resp) => verdictOf(groupId, resp),
        (err: unknown) => failureOf(groupId, err, this.options.deadlineMs),
      );
    // A stop does not wait for a slow source: the move stays Migrating and the next leader
    // resumes it. A call that outlives close() makes no further attempt (its pool is closed).
    return Promise.race([call, this.whenClosed]);
  }

  close(): void {
    this.closed = true;
    this.markClosed();
    for (const caller of this.callers.values()) caller.close();
    this.callers.clear();
  }
}

function verdictOf(groupId: number, resp: ClusterConfigChangeResp): SourceVerdict {
  // Both fields must say so: a default-valued (empty) answer must never count as "empty slots".
  if (resp.success && resp.errorCode === ErrorCode.OK) return { ok: true };
  const code = resp.errorCode === ErrorCode.OK ? ErrorCode.REJECTED : resp.errorCode;
  const detail = resp.errorMessage || `error code ${ErrorCode[code] ?? code}`;
  return { ok: false, code, message: `source group ${groupId}: ${detail}` };
}

function failureOf(groupId: number, err: unknown, deadlineMs: number): SourceVerdict {
  if (err instanceof UnavailableError || err instanceof TimeoutError) {
    return {
      ok: false,
      code: ErrorCode.REJECTED,
      message: `source group ${groupId} was unreachable for ${deadlineMs} ms (${err.message})`,
    };
  }
  const e = err as Partial<grpc.ServiceError>;
  const status =
    err instanceof InvalidArgumentError
      ? grpc.status[grpc.status.INVALID_ARGUMENT]
      : e.code !== undefined
        ? (grpc.status[e.code] ?? String(e.code))
        : 'error';
  return {
    ok: false,
    code: ErrorCode.REJECTED,
    message: `source group ${groupId} refused the frozen config (${status}: ${e.details ?? e.message ?? String(err)})`,
  };
}
