// The requests a RaftServer has accepted and not yet answered, after etcd's pkg/wait: each waits
// under an id, is triggered with its result or failed with an error, and all of them fail at once
// when the node stops. Wait is the registry itself; the classes below it hold the three kinds of
// pending client request (proposals are a Wait keyed by log index) and the peer requests waiting
// for the core's answer.
//   - PendingReads: linearizable reads, first waiting for the leader to confirm its leadership
//     (a ReadState), then for the state machine to apply up to the read's index.
//   - PendingTransfers: leadership transfers, done when the target leads, abandoned after a time.
//   - PendingAnswers: peer requests stepped into the core, answered with the core's response.
import { MessageType, type Message, type NodeId } from '@eraftkv/raft';
import { ErrorCode } from '@eraftkv/protocol';
import { RejectedError } from './errors';

/** One registered waiter: what it was registered with, and how to settle it. */
export interface Waiter<T, Tag> {
  readonly tag: Tag;
  readonly resolve: (value: T) => void;
  readonly reject: (err: Error) => void;
}

/** Waiters by id, in the order they registered. */
export class Wait<K, T, Tag = undefined> {
  private readonly waiters = new Map<K, Waiter<T, Tag>>();

  get size(): number {
    return this.waiters.size;
  }

  /** Resolves with the value `id` is triggered with, rejects with the error it is failed with. */
  register(id: K, tag: Tag): Promise<T> {
    if (this.waiters.has(id)) return Promise.reject(new Error(`duplicate wait id ${String(id)}`));
    return new Promise((resolve, reject) => this.put(id, { tag, resolve, reject }));
  }

  /** Registers a waiter taken from elsewhere (a request moving from one stage to the next). */
  put(id: K, waiter: Waiter<T, Tag>): void {
    this.waiters.set(id, waiter);
  }

  /** Removes and returns the waiter registered under `id`, for the caller to settle. */
  take(id: K): Waiter<T, Tag> | undefined {
    const waiter = this.waiters.get(id);
    if (waiter !== undefined) this.waiters.delete(id);
    return waiter;
  }

  trigger(id: K, value: T): boolean {
    const waiter = this.take(id);
    waiter?.resolve(value);
    return waiter !== undefined;
  }

  /** Resolves every waiter `which` picks, in registration order. */
  triggerWhere(which: (id: K, tag: Tag) => boolean, value: T): void {
    for (const [id, waiter] of this.waiters) {
      if (!which(id, waiter.tag)) continue;
      this.waiters.delete(id);
      waiter.resolve(value);
    }
  }

  /** Resolves the earliest waiter `which` picks; false when none does. */
  triggerFirst(which: (id: K, tag: Tag) => boolean, value: T): boolean {
    for (const [id, waiter] of this.waiters) {
      if (!which(id, waiter.tag)) continue;
      this.waiters.delete(id);
      waiter.resolve(value);
      return true;
    }
    return false;
  }

  /** Rejects every waiter `which` picks, with the error `err` makes for it. */
  failWhere(which: (id: K, tag: Tag) => boolean, err: (id: K, tag: Tag) => Error): void {
    for (const [id, waiter] of this.waiters) {
      if (!which(id, waiter.tag)) continue;
      this.waiters.delete(id);
      waiter.reject(err(id, waiter.tag));
    }
  }

  failAll(err: Error): void {
    const all = [...this.waiters.values()];
    this.waiters.clear();
    for (const waiter of all) waiter.reject(err);
  }
}

/**
 * Linearizable reads (readIndex): registered under the request id given to the core, confirmed
 * with the index the core's ReadState names, served once the state machine applied that index.
 */
export class PendingReads {
  private nextId = 0;
  /** Waiting for the leader to confirm its leadership. */
  private readonly confirming = new Wait<number, void>();
  /** Confirmed, waiting for the state machine to apply up to the index (the tag). */
  private readonly applying = new Wait<number, void, number>();

  /** A new request id for the core's readIndex. */
  nextRequestId(): number {
    return ++this.nextId;
  }

  register(id: number): Promise<void> {
    return this.confirming.register(id, undefined);
  }

  /** The core confirmed read `id` at `index`: served now if `applied` reached it, else later. */
  confirmed(id: number, index: number, applied: number): void {
    const waiter = this.confirming.take(id);
    if (waiter === undefined) return;
    if (applied >= index) waiter.resolve();
    else this.applying.put(id, { tag: index, resolve: waiter.resolve, reject: waiter.reject });
  }

  /** The state machine applied up to `applied`: serves the reads confirmed at or below it. */
  applied(applied: number): void {
    this.applying.triggerWhere((_id, index) => index <= applied, undefined);
  }

  /** The leader lost its leadership: the core dropped the reads it had not confirmed. */
  failUnconfirmed(err: Error): void {
    this.confirming.failAll(err);
  }

  failAll(err: Error): void {
    this.confirming.failAll(err);
    this.applying.failAll(err);
  }
}

/** Leadership transfers: each done when its target leads, abandoned at its deadline. */
export class PendingTransfers {
  private nextId = 0;
  private readonly transfers = new Wait<
    number,
    void,
    { readonly target: NodeId; readonly deadline: number }
  >();

  register(target: NodeId, deadline: number): Promise<void> {
    return this.transfers.register(++this.nextId, { target, deadline });
  }

  leaderChanged(leader: NodeId): void {
    this.transfers.triggerWhere((_id, t) => t.target === leader, undefined);
  }

  /** Abandons the transfers whose deadline passed. */
  expire(now: number): void {
    this.transfers.failWhere(
      (_id, t) => now > t.deadline,
      (_id, t) =>
        new RejectedError(
          ErrorCode.TRANSFER_FAILED,
          `node ${t.target} did not take over leadership in time; the transfer was abandoned`,
        ),
    );
  }

  failAll(err: Error): void {
    this.transfers.failAll(err);
  }
}

/** Which response types answer a request of each type on its RPC. */
function answers(request: MessageType, response: MessageType): boolean {
  switch (request) {
    case MessageType.Vote:
      return response === MessageType.VoteResponse;
    case MessageType.PreVote:
      return response === MessageType.PreVoteResponse;
    case MessageType.Append:
    case MessageType.Heartbeat:
      return response === MessageType.AppendResponse || response === MessageType.HeartbeatResponse;
    case MessageType.Snapshot:
      return response === MessageType.AppendResponse;
    case MessageType.TimeoutNow:
    case MessageType.VoteResponse:
    case MessageType.PreVoteResponse:
    case MessageType.AppendResponse:
    case MessageType.HeartbeatResponse:
      return false;
  }
}

/**
 * Peer requests stepped into the core, waiting for its response to ride back on their RPC's
 * reply; null when the core dropped the request (or the node stopped). Numbered in step order, so
 * that a Ready can tell the requests stepped before it from those stepped while it ran.
 */
export class PendingAnswers {
  private nextSeq = 0;
  private readonly waiting = new Wait<
    number,
    Message | null,
    { readonly from: NodeId; readonly request: MessageType }
  >();

  register(request: Message): Promise<Message | null> {
    return this.waiting.register(this.nextSeq++, { from: request.from, request: request.type });
  }

  /** Every request registered before now has a number below this. */
  cutoff(): number {
    return this.nextSeq;
  }

  /** Hands the core's response to the earliest request from its receiver that it answers. */
  answer(response: Message): void {
    this.waiting.triggerFirst(
      (_seq, w) => w.from === response.to && answers(w.request, response.type),
      response,
    );
  }

  /** The requests registered before `cutoff` that are still waiting were dropped by the core. */
  droppedBefore(cutoff: number): void {
    this.waiting.triggerWhere((seq) => seq < cutoff, null);
  }

  dropAll(): void {
    this.waiting.triggerWhere(() => true, null);
  }
}
