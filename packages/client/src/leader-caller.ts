// LeaderCaller: the one retry policy of every call that must reach a Raft group's leader: the
// client's data, meta and admin calls, and the servers' calls into other groups (a kv leader
// reading the topology from the meta group, the meta leader handing a slot move to a kv group).
//
// It keeps the last known leader of each group, follows NOT_LEADER hints, hands WRONG_SHARD
// answers back after refreshing the routing, rotates over a group's known servers, backs off with
// jitter, bounds each attempt and the whole call, and says why a call gave up: UnavailableError
// when no server got the request (refused connections, no connection made before the deadline),
// TimeoutError when one did but the call did not complete. That is decided from gRPC status codes
// and channel states, never from error message text.
import * as grpc from '@grpc/grpc-js';
import type { ERaftKvClient } from '@eraftkv/protocol';
import { backoffMs, sleep, type BackoffOptions } from './backoff';
import type { Connections, UnaryCall } from './connections';
import { AccessDeniedError, InvalidArgumentError, TimeoutError, UnavailableError } from './errors';

/** What a failed TLS handshake looks like in grpc-js's connection errors. */
const tlsTrouble = /SSL|TLS|certificate|secure TLS connection/i;

/** What an answer from a server means to the call. */
export type Verdict =
  /** The request was served: the call returns this answer. */
  | { readonly kind: 'answer' }
  /** Not the leader; `hint` is the leader's address, '' when the server knows none. */
  | { readonly kind: 'redirect'; readonly hint: string }
  /** The server cannot serve now (busy, no leader, catching up): pause and try again. */
  | { readonly kind: 'retry'; readonly problem: string; readonly rotate: boolean }
  /** The server does not own the request's keys at `configVersion`: the caller routes again. */
  | { readonly kind: 'wrong-shard'; readonly configVersion: number };

/**
 * How an answer says "not the leader": the leader's address ('' when unknown), or null when it is
 * an answer.
 */
export type LeaderHint<Resp> = (resp: Resp) => string | null;

/** A LeaderHint's reading as a Verdict. */
export function hintVerdict(hint: string | null): Verdict {
  return hint === null ? { kind: 'answer' } : { kind: 'redirect', hint };
}

export interface LeaderCall<Resp> {
  /** The group (0: the meta group); its leader is remembered under this id. */
  readonly groupId: number;
  /** The servers to rotate over, asked before every attempt (the topology may change meanwhile). */
  readonly servers: () => readonly string[] | Promise<readonly string[]>;
  /** One attempt against `address`, failing after `timeoutMs`; rejects with a grpc.ServiceError. */
  readonly send: (address: string, timeoutMs: number) => Promise<Resp>;
  /** What an answer means. Throws to end the call (a refusal that retrying cannot change). */
  readonly judge: (resp: Resp, address: string) => Verdict;
  /** When the whole call gives up, in ms since the epoch. */
  readonly deadline: number;
  /** The request changes state: a TimeoutError then says that its outcome is unknown. */
  readonly write: boolean;
  /** Any member may serve it (serializable reads): rotate over the members, ignore the leader. */
  readonly anyReplica?: boolean;
  /**
   * With anyReplica: still try the known leader first (it has applied the most), and rotate over
   * the members once it fails. An answer from any member still says nothing about the leader.
   */
  readonly preferLeader?: boolean;
  /** Overrides the caller's limit on one attempt. */
  readonly attemptTimeoutMs?: number;
  /**
   * Reads the server list again. Called once, when every listed server refused the connection:
   * the members may all have been replaced since the list was read.
   */
  readonly reloadServers?: () => Promise<void>;
  /**
   * After a WRONG_SHARD answer, before the call returns it: refreshes the routing (whether and
   * how long to wait before routing again is the caller's to decide).
   */
  readonly onWrongShard?: (configVersion: number) => Promise<void>;
  /** Set when an attempt failed without an answer: the request may have taken effect. */
  readonly outcome?: { uncertain: boolean };
}

export interface LeaderCallerOptions {
  /** How long one attempt on one server may take (default 2000 ms). */
  readonly attemptTimeoutMs?: number;
  /** Retry pacing (default base 20 ms, max 500 ms). */
  readonly backoff?: BackoffOptions;
  /**
   * A call gives up with UnavailableError, before its deadline, once every server it can try has
   * refused the connection this many times and nothing else happened during the call (default
   * 2). 0: retry refused connections until the deadline.
   */
  readonly refusedRoundsMax?: number;
}

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

/** The typed error for a failed RPC to `address` that is not retried. */
export function rpcError(err: unknown, address: string): Error {
  const e = err as Partial<grpc.ServiceError>;
  const detail = e.details || e.message || String(err);
  if (e.code === grpc.status.INVALID_ARGUMENT) return new InvalidArgumentError(detail);
  if (e.code === grpc.status.PERMISSION_DENIED || e.code === grpc.status.UNAUTHENTICATED)
    return new AccessDeniedError(e.code === grpc.status.UNAUTHENTICATED, `${address}: ${detail}`);
  if (e.code === grpc.status.UNAVAILABLE)
    return new UnavailableError(`${address} is unavailable: ${detail}`);
  if (e.code === grpc.status.DEADLINE_EXCEEDED)
    return new TimeoutError(`${address} did not answer in time`);
  return err instanceof Error ? err : new Error(String(err));
}

/** The retry state of one call. */
class CallState {
  attempts = 0;
  lastProblem = '';
  /**
   * Whether the last problem shows that a server got the request (it answered, or the attempt
   * failed after the request left this process); false while nothing but refused or never made
   * connections happened.
   */
  reached = false;
  /**
   * How many times each server refused the connection during this call; null once anything else
   * happened (an answer, or a failure after which the request may have reached a server).
   */
  refusals: Map<string, number> | null = new Map();
  /** The server list was read again (its servers all refused the connection). */
  reloaded = false;
  /** The servers that answered "not the leader" during this call. */
  readonly redirectedBy = new Set<string>();
}

function groupName(groupId: number): string {
  return groupId === 0 ? 'the meta group' : `group ${groupId}`;
}

export class LeaderCaller {
  private readonly attemptTimeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly refusedRoundsMax: number;
  /** The last known leader address of each group. */
  private readonly leaders = new Map<number, string>();
  /** Where each group's rotation over its servers stands. */
  private readonly rotation = new Map<number, number>();

  constructor(
    readonly connections: Connections,
    options: LeaderCallerOptions = {},
  ) {
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 2000;
    this.backoff = options.backoff ?? { baseMs: 20, maxMs: 500 };
    this.refusedRoundsMax = options.refusedRoundsMax ?? 2;
    if (!Number.isSafeInteger(this.refusedRoundsMax) || this.refusedRoundsMax < 0) {
      throw new InvalidArgumentError(
        `refusedRoundsMax must be a non-negative integer, got ${this.refusedRoundsMax}`,
      );
    }
  }

  /** The last known leader of `groupId`, if any. */
  leader(groupId: number): string | undefined {
    return this.leaders.get(groupId);
  }

  /** Records `address` as the leader of `groupId` (an answer named it). */
  noteLeader(groupId: number, address: string): void {
    this.leaders.set(groupId, address);
  }

  /**
   * Keeps only what concerns `servers` for `groupId`: forgets a leader not among them and closes
   * the channels to other addresses. For a caller whose pool serves that one group.
   */
  retainServers(groupId: number, servers: readonly string[]): void {
    const leader = this.leaders.get(groupId);
    if (leader !== undefined && !servers.includes(leader)) this.leaders.delete(groupId);
    this.connections.closeExcept(servers);
  }

  /**
   * Calls unary `method` with `request` on the leader of `groupId` among `servers`; `leaderHint`
   * reads "not the leader" answers.
   */
  callLeader<Req, Resp>(
    groupId: number,
    servers: readonly string[],
    method: (client: ERaftKvClient) => UnaryCall<Req, Resp>,
    request: Req,
    leaderHint: LeaderHint<Resp>,
    options: Pick<LeaderCall<Resp>, 'deadline' | 'write' | 'attemptTimeoutMs' | 'outcome'>,
  ): Promise<Resp> {
    return this.call({
      ...options,
      groupId,
      servers: () => servers,
      send: (address, timeoutMs) => this.connections.unary(address, method, request, timeoutMs),
      judge: (resp) => hintVerdict(leaderHint(resp)),
    });
  }

  /** Runs `call` to its end: the first answer judged final, or a typed error. */
  async call<Resp>(call: LeaderCall<Resp>): Promise<Resp> {
    const state = new CallState();
    for (;;) {
      if (this.connections.closed) throw new UnavailableError('the client is closed');
      const servers = await call.servers();
      if (servers.length === 0)
        throw new UnavailableError(`${groupName(call.groupId)} has no server to call`);
      const address = this.pick(
        call.groupId,
        servers,
        call.anyReplica === true && call.preferLeader !== true,
      );
      const left = call.deadline - Date.now();
      if (left <= 0) throw this.deadlineError(call, state);
      let resp: Resp;
      try {
        resp = await call.send(
          address,
          Math.min(call.attemptTimeoutMs ?? this.attemptTimeoutMs, left),
        );
      } catch (err) {
        if (call.outcome !== undefined) call.outcome.uncertain = true;
        await this.afterFailure(err, address, servers, call, state);
        continue;
      }
      state.refusals = null;
      const verdict = call.judge(resp, address);
      switch (verdict.kind) {
        case 'answer':
          // A serializable read may come from a follower: that says nothing about the leader.
          if (call.anyReplica !== true) this.leaders.set(call.groupId, address);
          return resp;
        case 'redirect':
          await this.followHint(address, verdict.hint, call, state);
          continue;
        case 'retry':
          state.lastProblem = `${address}: ${verdict.problem}`;
          state.reached = true;
          if (verdict.rotate) this.rotate(call.groupId);
          await this.pause(call, state);
          continue;
        case 'wrong-shard':
          state.lastProblem = `${address}: wrong shard at config version ${verdict.configVersion}`;
          state.reached = true;
          if (call.onWrongShard !== undefined) await call.onWrongShard(verdict.configVersion);
          return resp;
      }
    }
  }

  private pick(groupId: number, servers: readonly string[], anyReplica: boolean): string {
    const leader = this.leaders.get(groupId);
    if (!anyReplica && leader !== undefined && leader !== '') return leader;
    return servers[(this.rotation.get(groupId) ?? 0) % servers.length];
  }

  /**
   * Forgets the leader of `groupId` and moves its rotation on to the next member: the next call
   * goes elsewhere (a stream to the last server broke).
   */
  rotate(groupId: number): void {
    this.leaders.delete(groupId);
    this.rotation.set(groupId, (this.rotation.get(groupId) ?? 0) + 1);
  }

  /**
   * Goes where a "not the leader" answer points: at once the first time, after a pause when no
   * leader is named, when the server names itself, or when the named server already redirected
   * this call (leadership is moving, or two servers name each other).
   */
  private async followHint<Resp>(
    address: string,
    hint: string,
    call: LeaderCall<Resp>,
    state: CallState,
  ): Promise<void> {
    state.lastProblem = `${address} is not the leader${hint ? ` (leader: ${hint})` : ' and knows no leader'}`;
    state.reached = true;
    state.attempts++;
    const circling = hint === address || state.redirectedBy.has(hint);
    state.redirectedBy.add(address);
    if (hint !== '' && hint !== address) this.leaders.set(call.groupId, hint);
    else this.rotate(call.groupId);
    if (Date.now() >= call.deadline) throw this.deadlineError(call, state);
    if (hint === '' || circling) await this.pause(call, state);
  }

  /**
   * After a failed attempt on `address`, one of `servers`: throws when the call should end,
   * otherwise pauses (or reads the server list again) before the next attempt.
   */
  private async afterFailure<Resp>(
    err: unknown,
    address: string,
    servers: readonly string[],
    call: LeaderCall<Resp>,
    state: CallState,
  ): Promise<void> {
    const e = err as Partial<grpc.ServiceError>;
    if (!retryable(e.code)) throw rpcError(err, address);
    // An attempt cut short by the call's own deadline says less than what came before it.
    const cutByCallDeadline =
      e.code === grpc.status.DEADLINE_EXCEEDED && Date.now() >= call.deadline;
    if (!cutByCallDeadline || state.lastProblem === '') {
      state.lastProblem = `${address}: ${e.details || e.message}`;
    }
    // UNAVAILABLE: no connection, or the server refused the call before serving it.
    // DEADLINE_EXCEEDED without a connection: the call waited for one and never left.
    // Once one attempt may have reached a server, the call's outcome stays unknown.
    state.reached ||=
      e.code !== grpc.status.UNAVAILABLE &&
      (e.code !== grpc.status.DEADLINE_EXCEEDED || this.connections.connected(address));
    if (this.everyServerRefused(e.code, address, servers, state)) {
      if (call.reloadServers === undefined || state.reloaded || Date.now() >= call.deadline) {
        const what = call.groupId === 0 ? 'meta endpoint' : `member of group ${call.groupId}`;
        throw new UnavailableError(
          `every ${what} refused the connection (${servers.join(', ')}; last: ${state.lastProblem}); ` +
            (tlsTrouble.test(state.lastProblem)
              ? 'the TLS handshake failed: check the CA the servers are checked against and, for a cluster run with --client-cert-auth, the client certificate and key (eraftkv-ctl --cacert --cert --key)'
              : 'check that the cluster is running and that the endpoints are right (a cluster run with TLS needs the CA: eraftkv-ctl --cacert)'),
        );
      }
      state.reloaded = true;
      state.refusals = new Map();
      this.leaders.delete(call.groupId);
      await call.reloadServers();
      return;
    }
    if (e.code !== grpc.status.RESOURCE_EXHAUSTED && e.code !== grpc.status.ABORTED) {
      this.rotate(call.groupId);
    }
    await this.pause(call, state);
  }

  /**
   * Counts a refused connection; true once every server has refused `refusedRoundsMax` times in
   * a call in which nothing else happened. Refused means UNAVAILABLE with the channel in
   * TRANSIENT_FAILURE (its connect attempt failed), so the request never left this process; any
   * other failure may have reached a server and ends the counting.
   */
  private everyServerRefused(
    code: grpc.status | undefined,
    address: string,
    servers: readonly string[],
    state: CallState,
  ): boolean {
    if (state.refusals === null) return false;
    if (code !== grpc.status.UNAVAILABLE || !this.connections.cannotConnect(address)) {
      state.refusals = null;
      return false;
    }
    if (this.refusedRoundsMax === 0) return false;
    const refusals = state.refusals;
    refusals.set(address, (refusals.get(address) ?? 0) + 1);
    return servers.every((s) => (refusals.get(s) ?? 0) >= this.refusedRoundsMax);
  }

  private async pause<Resp>(call: LeaderCall<Resp>, state: CallState): Promise<void> {
    state.attempts++;
    const wait = Math.min(
      backoffMs(state.attempts, this.backoff),
      Math.max(0, call.deadline - Date.now()),
    );
    if (wait > 0) await sleep(wait);
    if (Date.now() >= call.deadline) throw this.deadlineError(call, state);
  }

  /** The error of a call whose deadline passed: unavailable when no server got the request. */
  private deadlineError<Resp>(call: LeaderCall<Resp>, state: CallState): Error {
    const what = groupName(call.groupId);
    const last = state.lastProblem || 'nothing answered';
    if (!state.reached) {
      return new UnavailableError(
        `no node of ${what} answered before the deadline (last: ${last}); check that the cluster is running and that the endpoints are right`,
      );
    }
    return new TimeoutError(
      `${what} did not complete the request before the deadline (last: ${last})` +
        (call.write ? '; the write may or may not have been applied' : ''),
    );
  }

  /** Closes every connection of the pool; later calls are refused. */
  close(): void {
    this.connections.close();
  }
}
