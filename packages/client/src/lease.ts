// Leases (docs/leases.md), etcd's: a lease has a TTL, and keys put with it are deleted when it
// expires or is revoked. A lease belongs to one kv group, whose leader decides its expiry, and
// its id carries that group (lease-id.ts); so it can hold keys of that group only. Every call
// goes to the group's leader through the session's LeaderCaller (NOT_LEADER answers followed,
// retries paced by its backoff), the keep-alive stream included: LeaseKeepAlive opens it there
// and opens it again, where the LeaderCaller finds the leader, whenever it breaks.
import { strict as assert } from 'node:assert';
import * as grpc from '@grpc/grpc-js';
import {
  ErrorCode,
  LeaseAction,
  LeaseReq,
  type LeaseKeepAliveReq,
  type LeaseKeepAliveResp,
  type LeaseResp,
} from '@eraftkv/protocol';
import { backoffMs, sleep } from './backoff';
import type { CallOptions, ClientSession } from './client-session';
import { ClusterError, InvalidArgumentError, LeaseNotFoundError } from './errors';
import { kvAnswerVerdict, toBytes, type Bytes } from './kv-client';
import type { LeaderCall, Verdict } from './leader-caller';
import { formatLeaseId, leaseGroupOf } from './lease-id';
import { statusEnd, unansweredEnd, type StatusEnd } from './stream-end';

export interface LeaseGrantOptions extends CallOptions {
  /** The kv group to grant the lease in. */
  readonly group?: number;
  /** Grant it in the group that owns this key's slot (the key the lease is meant to hold). */
  readonly key?: Bytes;
}

export interface LeaseGrant {
  readonly id: number;
  /** The TTL granted, in seconds. */
  readonly ttlSeconds: number;
  /** The kv group the lease belongs to. */
  readonly group: number;
  /** The group's revision of the grant. */
  readonly revision: number;
}

export interface LeaseTimeToLive {
  readonly id: number;
  readonly group: number;
  /** The seconds left before the lease expires; -1 when it is not held (expired, revoked). */
  readonly ttlSeconds: number;
  /** The TTL it was granted with (0 when it is not held). */
  readonly grantedTtlSeconds: number;
  /** The keys attached to it, when asked for (`keys: true`), in byte order. */
  readonly keys: Buffer[];
}

/** A lease of a group's listing. */
export interface LeaseStatus {
  readonly id: number;
  readonly group: number;
  readonly ttlSeconds: number;
  readonly grantedTtlSeconds: number;
}

/** One answer of a keep-alive: the lease's TTL started again. */
export interface LeaseKeepAliveResponse {
  readonly id: number;
  readonly ttlSeconds: number;
}

export interface LeaseKeepAliveOptions extends CallOptions {
  /** Stops the keep-alive, as close() does. */
  readonly signal?: AbortSignal;
}

/** The longest wait between two keep-alives (what a timer can wait). */
const keepAliveIntervalMsMax = 2 ** 31 - 1;

/**
 * How long after an answer the next keep-alive goes: a third of the TTL (333 ms for a TTL of
 * 1 s), so that two may be lost before the lease expires.
 */
export function keepAliveIntervalMs(ttlSeconds: number): number {
  return Math.min(Math.round((ttlSeconds * 1000) / 3), keepAliveIntervalMsMax);
}

/** Lease answers are judged as any kv answer; LEASE_NOT_FOUND is an answer the caller reads. */
function leaseVerdict(resp: LeaseResp): Verdict {
  return resp.errorCode === ErrorCode.LEASE_NOT_FOUND ? { kind: 'answer' } : kvAnswerVerdict(resp);
}

function notFound(id: number): LeaseNotFoundError {
  return new LeaseNotFoundError(
    id,
    `lease ${formatLeaseId(id)} not found (never granted, expired or revoked)`,
  );
}

/** A LEASE_NOT_FOUND answer where none can come (a grant, a listing). */
function unexpectedNotFound(group: number, what: string): ClusterError {
  return new ClusterError(
    ErrorCode.REJECTED,
    `group ${group} answered ${what} with LEASE_NOT_FOUND`,
  );
}

export class LeaseClient {
  constructor(private readonly session: ClientSession) {}

  /**
   * Grants a lease of `ttlSeconds` in one kv group: `group` if given, else the group that owns
   * `key`'s slot, else the kv group with the lowest id. A lease holds keys of its own group only,
   * so grant it with the key it is meant to hold (or one of the same group). The cluster refuses
   * a TTL above its maximum (InvalidArgumentError). A grant retried after a lost answer may
   * leave a second lease unused: it expires after its TTL.
   */
  async grant(ttlSeconds: number, options: LeaseGrantOptions = {}): Promise<LeaseGrant> {
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1)
      throw new InvalidArgumentError(
        `a lease TTL is a whole number of seconds >= 1, got ${ttlSeconds}`,
      );
    const deadline = this.session.deadline(options);
    const group = await this.grantGroup(options, deadline);
    const resp = await this.call(
      group,
      LeaseReq.fromPartial({ action: LeaseAction.LEASE_GRANT, groupId: group, ttlSeconds }),
      { deadline, write: true },
    );
    if (resp.errorCode !== ErrorCode.OK) throw unexpectedNotFound(group, 'a grant');
    const lease = resp.leases[0];
    if (lease === undefined)
      throw new ClusterError(
        ErrorCode.REJECTED,
        `group ${group} answered a grant without its lease`,
      );
    return { id: lease.id, ttlSeconds: lease.grantedTtlSeconds, group, revision: resp.revision };
  }

  /**
   * Revokes lease `id`, deleting every key attached to it; returns its group's revision of the
   * revoke. LeaseNotFoundError when the lease is not held, unless an earlier attempt of this call
   * may have revoked it (its answer lost): then the lease is gone either way.
   */
  async revoke(id: number, options: CallOptions = {}): Promise<{ revision: number }> {
    const group = leaseGroupOf(id);
    const outcome = { uncertain: false };
    const resp = await this.call(
      group,
      LeaseReq.fromPartial({ action: LeaseAction.LEASE_REVOKE, id }),
      {
        deadline: this.session.deadline(options),
        write: true,
        outcome,
      },
    );
    if (resp.errorCode === ErrorCode.LEASE_NOT_FOUND && !outcome.uncertain) throw notFound(id);
    return { revision: resp.revision };
  }

  /**
   * The seconds left of lease `id` and the TTL it was granted with (`ttlSeconds` -1 when it is
   * not held, as etcd answers), and with `keys` the keys attached to it.
   */
  async timeToLive(
    id: number,
    options: CallOptions & { keys?: boolean } = {},
  ): Promise<LeaseTimeToLive> {
    const group = leaseGroupOf(id);
    const resp = await this.call(
      group,
      LeaseReq.fromPartial({
        action: LeaseAction.LEASE_TIME_TO_LIVE,
        id,
        keys: options.keys === true,
      }),
      { deadline: this.session.deadline(options), write: false },
    );
    const lease = resp.errorCode === ErrorCode.OK ? resp.leases[0] : undefined;
    if (lease === undefined || lease.ttlSeconds < 0)
      return { id, group, ttlSeconds: -1, grantedTtlSeconds: 0, keys: [] };
    return {
      id,
      group,
      ttlSeconds: lease.ttlSeconds,
      grantedTtlSeconds: lease.grantedTtlSeconds,
      keys: lease.keys,
    };
  }

  /**
   * The leases of kv group `group`, or of every kv group when it is omitted, in id order (so by
   * group), each with its group.
   */
  async list(options: CallOptions & { group?: number } = {}): Promise<LeaseStatus[]> {
    const deadline = this.session.deadline(options);
    const groups =
      options.group === undefined
        ? (await this.session.topology(false, deadline))
            .dataGroups()
            .filter((g) => g.servers.length > 0)
            .map((g) => g.id)
        : [groupOption(options.group)];
    const answers = await Promise.all(
      groups.map(async (group) => {
        const resp = await this.call(
          group,
          LeaseReq.fromPartial({ action: LeaseAction.LEASE_LIST, groupId: group }),
          { deadline, write: false },
        );
        if (resp.errorCode !== ErrorCode.OK) throw unexpectedNotFound(group, 'a listing');
        return resp.leases.map((l): LeaseStatus => ({
          id: l.id,
          group,
          ttlSeconds: l.ttlSeconds,
          grantedTtlSeconds: l.grantedTtlSeconds,
        }));
      }),
    );
    return answers.flat().sort((a, b) => a.id - b.id);
  }

  /**
   * Keeps lease `id` alive once: its TTL starts again. Returns the TTL; LeaseNotFoundError when
   * the lease is not held.
   */
  async keepAliveOnce(id: number, options: CallOptions = {}): Promise<number> {
    const lease = { id, group: leaseGroupOf(id) };
    const { stream, first } = await openKeepAlive(
      this.session,
      lease,
      this.session.deadline(options),
      this.session.connections.closeSignal,
    );
    stream.finish({ kind: 'failed', error: stopped() });
    return first.ttlSeconds;
  }

  /** Keeps lease `id` alive in the background until it is closed: see LeaseKeepAlive. */
  keepAlive(id: number, options: LeaseKeepAliveOptions = {}): LeaseKeepAlive {
    return new LeaseKeepAlive(this.session, id, options);
  }

  /** The group a grant goes to (see grant). */
  private async grantGroup(options: LeaseGrantOptions, deadline: number): Promise<number> {
    if (options.group !== undefined && options.key !== undefined)
      throw new InvalidArgumentError('a lease is granted in a group or for a key, not both');
    if (options.group !== undefined) return groupOption(options.group);
    const topology = await this.session.topology(false, deadline);
    if (options.key !== undefined) {
      const key = toBytes(options.key);
      const group = topology.groupOf(key);
      if (group === 0)
        throw new ClusterError(
          ErrorCode.WRONG_SHARD,
          `slot ${topology.slotOf(key)} of key ${JSON.stringify(key.toString())} belongs to no group`,
        );
      return group;
    }
    const first = topology.dataGroups()[0];
    if (first === undefined)
      throw new ClusterError(
        ErrorCode.GROUP_NOT_FOUND,
        'the topology has no kv group to grant a lease in',
      );
    return first.id;
  }

  /** A Lease call to the leader of `group`. */
  private call(
    group: number,
    request: LeaseReq,
    options: Pick<LeaderCall<LeaseResp>, 'deadline' | 'write' | 'outcome'>,
  ): Promise<LeaseResp> {
    const { session } = this;
    return session.caller.call({
      ...session.groupRouting(group, options.deadline),
      ...options,
      send: (address, timeoutMs) =>
        session.connections.unary(address, (c) => c.lease.bind(c), request, timeoutMs),
      judge: leaseVerdict,
    });
  }
}

function groupOption(group: number): number {
  if (!Number.isSafeInteger(group) || group < 1)
    throw new InvalidArgumentError(`a lease's group is a kv group id (>= 1), got ${group}`);
  return group;
}

function stopped(): Error {
  return new Error('the keep-alive was stopped');
}

/** How a keep-alive stream ended. */
type KeepAliveEnd = StatusEnd | AnswerEnd;

/** How an answer ends a keep-alive stream. */
type AnswerEnd =
  /** The node is not the leader; `hint` is the leader's address ('' when it knows none). */
  | { readonly kind: 'redirect'; readonly hint: string }
  /** The node cannot serve now: open the stream again, on another member. */
  | { readonly kind: 'retry'; readonly problem: string }
  | { readonly kind: 'failed'; readonly error: Error };

/**
 * How keep-alive answer `resp` ends its stream, or null when it is a TTL started again. A lease
 * not held (TTL 0, or LEASE_NOT_FOUND) ends the keep-alive with LeaseNotFoundError.
 */
function answerEnd(resp: LeaseKeepAliveResp, id: number): AnswerEnd | null {
  if (resp.errorCode === ErrorCode.LEASE_NOT_FOUND) return { kind: 'failed', error: notFound(id) };
  let verdict: Verdict;
  try {
    verdict = kvAnswerVerdict(resp);
  } catch (err) {
    return { kind: 'failed', error: err instanceof Error ? err : new Error(String(err)) };
  }
  switch (verdict.kind) {
    case 'answer':
      if (resp.id !== id) {
        const error = new ClusterError(
          ErrorCode.REJECTED,
          `a keep-alive of lease ${formatLeaseId(id)} was answered for lease ${formatLeaseId(resp.id)}`,
        );
        return { kind: 'failed', error };
      }
      return resp.ttlSeconds > 0 ? null : { kind: 'failed', error: notFound(id) };
    case 'redirect':
      return { kind: 'redirect', hint: verdict.hint };
    case 'retry':
      return { kind: 'retry', problem: verdict.problem };
    case 'wrong-shard':
      return { kind: 'retry', problem: 'wrong shard' };
  }
}

/** One LeaseKeepAlive call to one server, keeping one lease alive. */
class KeepAliveStream {
  /** How it ended (it is cancelled then, and what it still receives is dropped). */
  readonly ended: Promise<KeepAliveEnd>;
  /** Its first answer; null when it ended before one. */
  readonly first: Promise<LeaseKeepAliveResp | null>;
  /** It was answered after its first answer (the reopening backoff starts over). */
  progressed = false;
  private done = false;
  private answered = false;
  /** The next keep-alive, or the deadline of the one sent. */
  private timer: NodeJS.Timeout | undefined;
  private onAnswer: ((resp: LeaseKeepAliveResp) => void) | null = null;
  private settle!: (end: KeepAliveEnd) => void;
  private answerFirst!: (resp: LeaseKeepAliveResp | null) => void;

  constructor(
    readonly address: string,
    private readonly call: grpc.ClientDuplexStream<LeaseKeepAliveReq, LeaseKeepAliveResp>,
    private readonly id: number,
  ) {
    this.ended = new Promise((resolve) => (this.settle = resolve));
    this.first = new Promise((resolve) => (this.answerFirst = resolve));
    call.on('data', (resp: LeaseKeepAliveResp) => {
      if (this.done) return;
      clearTimeout(this.timer);
      if (!this.answered) {
        this.answered = true;
        this.answerFirst(resp);
        return;
      }
      this.progressed = true;
      this.onAnswer?.(resp);
    });
    // The status that follows says the same; without a listener the error would be thrown.
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => this.finish(statusEnd(status, address)));
  }

  /** Sends a keep-alive; the stream is broken unless an answer comes within `timeoutMs`. */
  send(timeoutMs: number): void {
    if (this.done) return;
    this.call.write({ id: this.id });
    this.timer = setTimeout(
      () =>
        this.finish({
          kind: 'broken',
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `${this.address} did not answer a keep-alive in ${timeoutMs} ms`,
        }),
      Math.max(1, timeoutMs),
    );
  }

  /** Sends the next keep-alive after `delayMs`, to be answered within `timeoutMs`. */
  sendAfter(delayMs: number, timeoutMs: number): void {
    if (this.done) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.send(timeoutMs), delayMs);
  }

  /** Hands the answers after the first to `take`. */
  listen(take: (resp: LeaseKeepAliveResp) => void): void {
    this.onAnswer = take;
  }

  finish(end: KeepAliveEnd): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.answerFirst(null);
    this.settle(end);
    this.call.cancel();
  }
}

/** A keep-alive stream and its first answer, a TTL started again. */
interface OpenedKeepAlive {
  readonly stream: KeepAliveStream;
  readonly first: LeaseKeepAliveResp;
}

/** An attempt's result: its stream and first answer, or why the next member should be tried. */
type KeepAliveAttempt =
  | OpenedKeepAlive
  | { readonly stream: KeepAliveStream; readonly first: null; readonly refusal: string };

/**
 * Opens a keep-alive stream of `lease` on its group's leader, through the LeaderCaller: the
 * first keep-alive is sent at once, and a stream whose first answer is not a TTL started again
 * is cancelled (NOT_LEADER: the leader named is tried next). Stops when `signal` is aborted.
 */
async function openKeepAlive(
  session: ClientSession,
  lease: { readonly id: number; readonly group: number },
  deadline: number,
  signal: AbortSignal,
): Promise<OpenedKeepAlive> {
  const routing = session.groupRouting(lease.group, deadline);
  const opened = await session.caller.call<KeepAliveAttempt>({
    ...routing,
    servers: () => {
      if (signal.aborted) throw stopped();
      return routing.servers();
    },
    send: (address, timeoutMs) => attemptKeepAlive(session, lease.id, address, timeoutMs, signal),
    judge: (attempt): Verdict => {
      if (attempt.first === null) return { kind: 'retry', problem: attempt.refusal, rotate: true };
      const end = answerEnd(attempt.first, lease.id);
      if (end === null) return { kind: 'answer' };
      attempt.stream.finish(end);
      switch (end.kind) {
        case 'failed':
          throw end.error;
        case 'redirect':
          return { kind: 'redirect', hint: end.hint };
        case 'retry':
          return { kind: 'retry', problem: end.problem, rotate: true };
      }
    },
    deadline,
    write: false,
  });
  assert(opened.first !== null, 'a refused keep-alive stream was judged an answer');
  return opened;
}

/**
 * Opens a keep-alive stream on `address`, sends the first keep-alive and waits for its answer. A
 * stream that ended before one rejects with its status for the LeaderCaller to judge, or is
 * returned as a refusal.
 */
async function attemptKeepAlive(
  session: ClientSession,
  id: number,
  address: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<KeepAliveAttempt> {
  if (signal.aborted) throw stopped();
  const stream = new KeepAliveStream(
    address,
    session.connections.client(address).leaseKeepAlive(),
    id,
  );
  const stop = (): void => stream.finish({ kind: 'failed', error: stopped() });
  signal.addEventListener('abort', stop, { once: true });
  void stream.ended.then(() => signal.removeEventListener('abort', stop));
  stream.send(timeoutMs);
  const first = await stream.first;
  if (first !== null) return { stream, first };
  const end = await stream.ended;
  // Only a status can end a stream that gave no answer.
  assert(
    end.kind === 'failed' || end.kind === 'broken',
    `a keep-alive stream ended ${end.kind} unanswered`,
  );
  if (end.kind === 'failed') throw end.error;
  const unanswered = unansweredEnd(end);
  if ('error' in unanswered) throw unanswered.error;
  return { stream, first: null, refusal: unanswered.refusal };
}

/**
 * The newest keep-alive answer not taken yet, then how the keep-alive ended. One slot: an answer
 * not taken is replaced by the next, so a reader that falls behind costs no memory.
 */
class LatestAnswer {
  private answer: LeaseKeepAliveResponse | undefined;
  private end: { readonly error: Error | null } | null = null;
  private wake: (() => void) | null = null;

  put(answer: LeaseKeepAliveResponse): void {
    if (this.end !== null) return;
    this.answer = answer;
    this.wake?.();
  }

  /** Ends it: an answer not taken is still taken before a failure, and dropped at a close. */
  finish(error: Error | null): void {
    if (this.end !== null) return;
    this.end = { error };
    if (error === null) this.answer = undefined;
    this.wake?.();
  }

  async take(): Promise<
    { readonly answer: LeaseKeepAliveResponse } | { readonly error: Error | null }
  > {
    while (this.answer === undefined && this.end === null) {
      await new Promise<void>((resolve) => {
        this.wake = () => {
          this.wake = null;
          resolve();
        };
      });
    }
    const answer = this.answer;
    this.answer = undefined;
    if (answer !== undefined) return { answer };
    return this.end ?? { error: null };
  }
}

/**
 * A lease kept alive in the background, over one LeaseKeepAlive stream to its group's leader: a
 * keep-alive goes at once, then a third of the TTL after each answer; one not answered within the
 * client's attempt timeout counts the stream as broken. A stream that breaks, or a node that says
 * it is not the leader, is followed to the leader (the one named, else the group's other members)
 * with backoff, and the first keep-alive goes again at once; the keep-alive fails when no leader
 * answers within the client's deadline or, when that is later, the time the lease expires
 * without keep-alives.
 *
 * Its answers come as an async iterable, the newest only (an answer not taken is replaced by the
 * next one):
 *
 *   const keeper = client.leaseKeepAlive(id);
 *   for await (const { ttlSeconds } of keeper) ...
 *
 * The iterable throws LeaseNotFoundError when the lease is gone (expired or revoked: the server
 * answers TTL 0), and the error that stopped the keep-alive otherwise; it ends without an error
 * when the keep-alive is closed (close(), the signal, the client closed, or a break out of the
 * loop). Without iterating, `ended` says when and why it stopped.
 */
export class LeaseKeepAlive implements AsyncIterable<LeaseKeepAliveResponse> {
  readonly id: number;
  readonly group: number;
  /**
   * Settles when the keep-alive stops: with null when it was closed, else with why it failed
   * (LeaseNotFoundError: the lease is gone). It never rejects.
   */
  readonly ended: Promise<Error | null>;
  private readonly answers = new LatestAnswer();
  private readonly halting = new AbortController();
  private newest: LeaseKeepAliveResponse | undefined;
  /** When the lease expires without another keep-alive, in ms since the epoch (0: unknown). */
  private expiresAtMs = 0;
  private iterated = false;

  constructor(
    private readonly session: ClientSession,
    id: number,
    private readonly options: LeaseKeepAliveOptions = {},
  ) {
    this.group = leaseGroupOf(id);
    this.id = id;
    const stops = [options.signal, session.connections.closeSignal].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    const stop = (): void => this.close();
    for (const s of stops) {
      if (s.aborted) this.close();
      else s.addEventListener('abort', stop, { once: true });
    }
    this.ended = this.run().then(
      () => null,
      (err: unknown) =>
        this.halting.signal.aborted ? null : err instanceof Error ? err : new Error(String(err)),
    );
    void this.ended.then((error) => {
      for (const s of stops) s.removeEventListener('abort', stop);
      this.halting.abort();
      this.answers.finish(error);
    });
  }

  /** The last answer received, if any. */
  get latest(): LeaseKeepAliveResponse | undefined {
    return this.newest;
  }

  /** Stops keeping the lease alive (the lease itself stays until its TTL runs out). */
  close(): void {
    this.halting.abort();
    this.answers.finish(null);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<LeaseKeepAliveResponse> {
    if (this.iterated)
      throw new InvalidArgumentError('a keep-alive is iterated once; read `latest` or `ended`');
    this.iterated = true;
    try {
      for (;;) {
        const next = await this.answers.take();
        if ('answer' in next) yield next.answer;
        else if (next.error !== null) throw next.error;
        else return;
      }
    } finally {
      this.close();
    }
  }

  /** Keeps the lease alive until it is closed; throws why it cannot go on. */
  private async run(): Promise<void> {
    const { session } = this;
    const signal = this.halting.signal;
    for (let failures = 0; !signal.aborted;) {
      const deadline = Math.max(session.deadline(this.options), this.expiresAtMs);
      const { stream, first } = await openKeepAlive(session, this, deadline, signal);
      stream.listen((resp) => {
        const end = answerEnd(resp, this.id);
        if (end === null) this.take(stream, resp);
        else stream.finish(end);
      });
      this.take(stream, first);
      const end = await stream.ended;
      if (signal.aborted) return;
      switch (end.kind) {
        case 'failed':
          throw end.error;
        case 'redirect':
          if (end.hint !== '' && end.hint !== stream.address)
            session.caller.noteLeader(this.group, end.hint);
          else session.caller.rotate(this.group);
          break;
        case 'retry':
        case 'broken':
          session.caller.rotate(this.group);
      }
      failures = stream.progressed ? 1 : failures + 1;
      await sleep(backoffMs(failures, session.backoff), signal);
    }
  }

  /** Takes a TTL started again, and sends the next keep-alive a third of it later. */
  private take(stream: KeepAliveStream, resp: LeaseKeepAliveResp): void {
    const answer = { id: this.id, ttlSeconds: resp.ttlSeconds };
    this.newest = answer;
    this.expiresAtMs = Date.now() + resp.ttlSeconds * 1000;
    this.answers.put(answer);
    stream.sendAfter(keepAliveIntervalMs(resp.ttlSeconds), this.session.attemptTimeoutMs);
  }
}
