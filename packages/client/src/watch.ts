// Watch: the changes of a key, a range or a prefix as one async iterable of batches
// (docs/watch.md). A Watch RPC watches one kv group and counts in that group's revisions (its log
// indexes); a key's slot may move between groups, so every kv group is watched, for a key as for
// a range, and WatchOrder passes their changes on so that each key's come in the order they were
// applied. Each group's stream is reopened after it breaks, from the revision after the last one
// received, through the session's LeaderCaller (the known leader first, then the other members,
// with its backoff). Everything between the servers and the consumer is bounded: streams are
// paused while the consumer is behind.
import { strict as assert } from 'node:assert';
import * as grpc from '@grpc/grpc-js';
import {
  ErrorCode,
  prefixRangeEnd,
  WatchEventType,
  type WatchEvent as WireWatchEvent,
  type WatchReq,
  type WatchResp,
} from '@eraftkv/protocol';
import { backoffMs, sleep } from './backoff';
import type { CallOptions, ClientSession } from './client-session';
import type { Topology } from './topology';
import { ClusterError, InvalidArgumentError, WatchCompactedError } from './errors';
import { toBytes, type Bytes } from './kv-client';
import type { Verdict } from './leader-caller';
import { statusEnd, unansweredEnd, type StatusEnd } from './stream-end';
import { WatchOrder, type BatchSink, type GroupResponse, type GroupStart } from './watch-order';

export interface WatchOptions extends CallOptions {
  /**
   * The end of the range watched, exclusive; a single 0 byte: every key from `key` on. Omitted:
   * `key` alone.
   */
  readonly rangeEnd?: Bytes;
  /** Watch every key that starts with `key` (an empty key: every key). Excludes rangeEnd. */
  readonly prefix?: boolean;
  /**
   * The first revision to deliver changes of, in every group watched (0 or omitted: from now).
   * Revisions are per group: the same number is another point in time in another group.
   */
  readonly startRevision?: number;
  /**
   * Start revisions by group id (a watch resumed where another stopped: each group's last
   * WatchBatch.revision + 1). They win over startRevision for their groups, and over revision 1
   * for a group that joins the topology during the watch; groups not watched are ignored.
   */
  readonly startRevisions?: Readonly<Record<number, number>>;
  /** Deliver each event's previous value (WatchEvent.prevValue). */
  readonly prevKv?: boolean;
  /** Ask the servers for progress notifications while nothing changes (WatchBatch.progress). */
  readonly progressNotify?: boolean;
  /** Ends the watch: every stream is cancelled and the iterable ends without an error. */
  readonly signal?: AbortSignal;
  /**
   * How many batches may wait for the consumer (default 64), and how many responses of a group
   * may wait for their turn (a slot's changes wait for the group it moved from): past it the
   * streams are paused (the servers then stop sending) until half of them are taken.
   */
  readonly queuedBatchesMax?: number;
}

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly key: Buffer;
  /** put: the value written; delete: empty. */
  readonly value: Buffer;
  /** The revision of the group that applied the change (the changes of one request share one). */
  readonly revision: number;
  /** With prevKv: the value the key held before the change, when it held one. */
  readonly prevValue?: Buffer;
}

/**
 * A group stopped (slot-left: frozen for a move, or given away) or began (slot-arrived: a move
 * finished, or was rolled back) writing a slot the watch covers.
 */
export interface WatchSlotMark {
  readonly type: 'slot-left' | 'slot-arrived';
  readonly slot: number;
  readonly revision: number;
  /** The topology version that did it. */
  readonly configVersion: number;
  /** The topology version at which the group's ownership of the slot that this ends (or begins) began. */
  readonly sinceConfigVersion: number;
}

export interface WatchBatch {
  readonly group: number;
  /**
   * Every matching change of `group` up to this revision has been delivered, in this batch or
   * before it: a watch started at revision + 1 (startRevisions) goes on exactly after it.
   */
  readonly revision: number;
  /** In revision order. */
  readonly events: readonly WatchEvent[];
  /**
   * Slots the group stopped or began writing (slot moves), in revision order. After a slot left,
   * the changes of its keys come from the group it went to, in that group's batches (after every
   * change this group made to them).
   */
  readonly slotMarks: readonly WatchSlotMark[];
  /**
   * The group's watch has started (once per group, first): no events, `revision` is the start
   * revision minus one.
   */
  readonly created: boolean;
  /** A progress notification (progressNotify): no events, nothing changed up to `revision`. */
  readonly progress: boolean;
}

const queuedBatchesMaxDefault = 64;

/**
 * The changes of a key, a range or a prefix: see EraftKvClient.watch. Iterate it once; break out
 * of the loop (or abort the signal, or cancel()) to stop it.
 */
export class Watch implements AsyncIterable<WatchBatch> {
  private readonly key: Buffer;
  private readonly rangeEnd: Buffer;
  private readonly queue: BatchQueue;
  private readonly order: WatchOrder;
  /** The groups watched (their streams may have ended: a group gone from the topology). */
  private readonly watched = new Set<number>();
  /** Ends the iterable: the user stopped the watch, or the client was closed. */
  private readonly ending = new AbortController();
  /** Stops every stream: the watch ended, or a group failed (its error is queued). */
  private readonly halting = new AbortController();
  private iterated = false;
  /** The topology is being read again (after a slot left a group), and whether once more. */
  private following = false;
  private followAgain = false;

  constructor(
    private readonly session: ClientSession,
    key: Bytes,
    private readonly options: WatchOptions = {},
  ) {
    this.key = toBytes(key);
    if (options.prefix === true && options.rangeEnd !== undefined)
      throw new InvalidArgumentError('a watch takes a range end or prefix: true, not both');
    this.rangeEnd =
      options.prefix === true
        ? prefixRangeEnd(this.key)
        : options.rangeEnd === undefined
          ? Buffer.alloc(0)
          : toBytes(options.rangeEnd);
    if (this.rangeEnd.length === 0 && this.key.length === 0)
      throw new InvalidArgumentError('a watch needs a key (or prefix: true, for every key)');
    const fromKey = this.rangeEnd.length === 1 && this.rangeEnd[0] === 0;
    if (this.rangeEnd.length > 0 && !fromKey && Buffer.compare(this.rangeEnd, this.key) <= 0)
      throw new InvalidArgumentError('the range end of a watch must come after its key');
    revisionOption(options.startRevision ?? 0, 'startRevision');
    for (const [group, revision] of Object.entries(options.startRevisions ?? {}))
      revisionOption(revision, `startRevisions[${group}]`);
    const max = options.queuedBatchesMax ?? queuedBatchesMaxDefault;
    if (!Number.isSafeInteger(max) || max < 1)
      throw new InvalidArgumentError(`queuedBatchesMax must be a positive integer, got ${max}`);
    this.queue = new BatchQueue(max, () => this.order.drain());
    this.order = new WatchOrder(this.queue, max);
  }

  /** How many batches wait for the consumer now. */
  get queuedBatches(): number {
    return this.queue.length;
  }

  /**
   * Whether every group watched has started (its `created` batch is queued or taken): from then
   * on the watch misses no change of any group.
   */
  startedEveryGroup(): boolean {
    return this.watched.size > 0 && this.order.started;
  }

  /** Ends the watch, as its signal does. */
  cancel(): void {
    this.ending.abort();
    this.halting.abort();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<WatchBatch> {
    if (this.iterated) throw new InvalidArgumentError('a watch is iterated once; open another');
    this.iterated = true;
    const stops = [this.options.signal, this.session.connections.closeSignal].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    const stop = (): void => this.cancel();
    for (const s of stops) {
      if (s.aborted) this.cancel();
      else s.addEventListener('abort', stop, { once: true });
    }
    try {
      if (this.ending.signal.aborted) return;
      const topology = await this.session.topology(false, this.session.deadline(this.options));
      const groups = kvGroups(topology);
      if (groups.length === 0)
        throw new ClusterError(ErrorCode.GROUP_NOT_FOUND, 'the topology has no kv group to watch');
      for (const group of groups) this.watchGroup(group, this.options.startRevision ?? 0);
      for (;;) {
        const entry = await this.queue.take(this.ending.signal);
        if (entry === null) return;
        if (entry instanceof Error) throw entry;
        yield entry;
      }
    } finally {
      for (const s of stops) s.removeEventListener('abort', stop);
      this.cancel();
    }
  }

  /**
   * Starts the watch of `group` (from `startRevisions`, else `start`); it runs until the watch
   * ends or the group is gone from the topology, and its failure ends the watch.
   */
  private watchGroup(group: number, start: number): void {
    if (this.watched.has(group)) return;
    this.watched.add(group);
    this.order.add(group);
    const watcher = new GroupWatch(
      group,
      this.options.startRevisions?.[group] ?? start,
      {
        key: this.key,
        rangeEnd: this.rangeEnd,
        prevKv: this.options.prevKv === true,
        progressNotify: this.options.progressNotify === true,
      },
      {
        session: this.session,
        order: this.order,
        signal: this.halting.signal,
        slotLeft: () => void this.followTopology(),
      },
      this.options,
    );
    watcher.run().then(
      () => this.order.end(group),
      (err: unknown) => {
        if (this.halting.signal.aborted) return;
        const e = err instanceof Error ? err : new Error(String(err));
        e.message = `watch of group ${group}: ${e.message}`;
        this.queue.fail(e);
        this.halting.abort();
      },
    );
  }

  /**
   * Reads the topology again (a slot left a group: it may have gone to a group created since) and
   * watches the kv groups not watched yet from their first revision: a group created after the
   * watch began holds nothing older. Retried with backoff until it succeeds or the watch ends.
   */
  private async followTopology(): Promise<void> {
    this.followAgain = true;
    if (this.following) return;
    this.following = true;
    try {
      for (let failures = 0; this.followAgain && !this.halting.signal.aborted;) {
        this.followAgain = false;
        try {
          const deadline = this.session.deadline(this.options);
          for (const group of kvGroups(await this.session.topology(true, deadline)))
            this.watchGroup(group, 1);
          failures = 0;
        } catch {
          this.followAgain = true;
          await sleep(backoffMs(++failures, this.session.backoff), this.halting.signal);
        }
      }
    } finally {
      this.following = false;
    }
  }
}

/** The ids of the kv groups of `topology` that have servers to watch. */
function kvGroups(topology: Topology): number[] {
  return topology
    .dataGroups()
    .filter((g) => g.servers.length > 0)
    .map((g) => g.id);
}

function revisionOption(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${value}`);
}

/** How a group's stream ended: by its status, or with a compacted answer. */
type StreamEnd =
  | StatusEnd
  /** The revision asked for is older than the group's history. */
  | { readonly kind: 'compacted'; readonly compactRevision: number; readonly reason: string };

function stopped(): Error {
  return new Error('the watch was stopped');
}

/** One Watch call to one server. */
class GroupStream {
  /** How it ended (it is cancelled then, and what it still receives is dropped). */
  readonly ended: Promise<StreamEnd>;
  /** True at its first response; false when it ended before one. */
  readonly answered: Promise<boolean>;
  /** It ended before its first response, and the next member should be tried: why. */
  refusal: string | null = null;
  /** It delivered something after its first response (the reopening backoff starts over). */
  progressed = false;
  /**
   * The parts of a revision whose changes were too large for one response (fragments), held
   * until its last part: a batch never carries part of a revision, and a stream cut before the
   * last part is resumed from that revision, which comes again whole. One revision's changes are
   * bounded by what one write may carry.
   */
  held: WireWatchEvent[] = [];
  private done = false;
  private settle!: (end: StreamEnd) => void;
  private answer!: (answered: boolean) => void;

  constructor(
    readonly address: string,
    private readonly call: grpc.ClientReadableStream<WatchResp>,
    accept: (resp: WatchResp, stream: GroupStream) => StreamEnd | null,
  ) {
    this.ended = new Promise((resolve) => (this.settle = resolve));
    this.answered = new Promise((resolve) => (this.answer = resolve));
    call.on('data', (resp: WatchResp) => {
      if (this.done) return;
      this.answer(true);
      const end = accept(resp, this);
      if (end !== null) this.finish(end);
    });
    // The status that follows says the same; without a listener the error would be thrown.
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => this.finish(statusEnd(status, address)));
  }

  finish(end: StreamEnd): void {
    if (this.done) return;
    this.done = true;
    this.answer(false);
    this.settle(end);
    this.call.cancel();
  }

  pause(): void {
    this.call.pause();
  }

  resume(): void {
    this.call.resume();
  }
}

/** What a GroupWatch shares with the other groups of its watch. */
interface WatchShared {
  readonly session: ClientSession;
  readonly order: WatchOrder;
  /** Stops the group's streams and its loop. */
  readonly signal: AbortSignal;
  /** A slot left the group (the topology changed). */
  readonly slotLeft: () => void;
}

/** One group's part of a watch: its stream, reopened where it stood after it breaks. */
class GroupWatch {
  /**
   * Every matching change of the group up to this revision was received (and handed to the
   * WatchOrder); null until the group said where a watch from now starts.
   */
  private received: number | null;
  private started = false;
  /** The node last tried no longer serves the group: read the topology before the next attempt. */
  private refreshTopology = false;

  constructor(
    private readonly group: number,
    startRevision: number,
    private readonly request: Omit<WatchReq, 'groupId' | 'startRevision'>,
    private readonly shared: WatchShared,
    private readonly callOptions: CallOptions,
  ) {
    this.received = startRevision > 0 ? startRevision - 1 : null;
  }

  /**
   * Watches until the signal stops it, or the group is gone from the topology (it owned no slot
   * then, so nothing more can come from it); throws why the group's watch cannot go on.
   */
  async run(): Promise<void> {
    const { session, signal } = this.shared;
    for (let failures = 0; !signal.aborted;) {
      let stream: GroupStream;
      try {
        stream = await this.open();
      } catch (err) {
        if (err instanceof ClusterError && err.code === ErrorCode.GROUP_NOT_FOUND) return;
        throw err;
      }
      const end = await stream.ended;
      if (signal.aborted) return;
      switch (end.kind) {
        case 'compacted':
          throw new WatchCompactedError(
            this.group,
            end.compactRevision,
            `revision ${this.nextRevision()} is older than the history the group keeps: the oldest ` +
              `revision that can still be watched is ${end.compactRevision}` +
              (end.reason === '' ? '' : ` (${end.reason})`),
          );
        case 'failed':
          throw end.error;
        case 'broken':
          if (end.code === grpc.status.FAILED_PRECONDITION) this.refreshTopology = true;
          session.caller.rotate(this.group);
          failures = stream.progressed ? 1 : failures + 1;
          await sleep(backoffMs(failures, session.backoff), signal);
      }
    }
  }

  /** The revision a stream opened now starts at (0: from now). */
  private nextRevision(): number {
    return this.received === null ? 0 : this.received + 1;
  }

  /** A stream of the group that has answered, opened through the LeaderCaller's retries. */
  private open(): Promise<GroupStream> {
    const { session } = this.shared;
    const deadline = session.deadline(this.callOptions);
    return session.caller.call<GroupStream>({
      groupId: this.group,
      servers: () => {
        if (this.shared.signal.aborted) throw stopped();
        const refresh = this.refreshTopology;
        this.refreshTopology = false;
        return session.groupAddresses(this.group, deadline, refresh);
      },
      send: (address, timeoutMs) => this.attempt(address, timeoutMs),
      judge: (stream): Verdict =>
        stream.refusal === null
          ? { kind: 'answer' }
          : { kind: 'retry', problem: stream.refusal, rotate: true },
      deadline,
      write: false,
      // Any member serves a watch; the leader, as far as it is known, has applied the most.
      anyReplica: true,
      preferLeader: true,
      reloadServers: async () => {
        await session.topology(true, deadline);
      },
    });
  }

  /**
   * Opens a stream on `address` and waits for its first response. A stream that ended before one
   * rejects with its status for the LeaderCaller to judge, or is returned as a refusal.
   */
  private async attempt(address: string, timeoutMs: number): Promise<GroupStream> {
    const { session, signal } = this.shared;
    if (signal.aborted) throw stopped();
    const call = session.connections.client(address).watch({
      ...this.request,
      groupId: this.group,
      startRevision: this.nextRevision(),
    });
    const stream = new GroupStream(address, call, (resp, s) => this.accept(resp, s));
    const stop = (): void => stream.finish({ kind: 'failed', error: stopped() });
    signal.addEventListener('abort', stop, { once: true });
    void stream.ended.then(() => signal.removeEventListener('abort', stop));
    const timer = setTimeout(
      () =>
        stream.finish({
          kind: 'broken',
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `no answer to the watch in ${timeoutMs} ms`,
        }),
      Math.max(1, timeoutMs),
    );
    const answered = await stream.answered;
    clearTimeout(timer);
    if (answered) return stream;
    const end = await stream.ended;
    // A compacted answer is an answer: only a status can end a stream that gave none.
    assert(end.kind !== 'compacted', 'a watch stream ended compacted before its first response');
    if (end.kind === 'failed') throw end.error;
    const unanswered = unansweredEnd(end);
    if ('error' in unanswered) throw unanswered.error;
    if (end.code === grpc.status.FAILED_PRECONDITION) this.refreshTopology = true;
    stream.refusal = unanswered.refusal;
    return stream;
  }

  /**
   * Takes a response: queues what it adds to what was delivered. Returns how the stream ends
   * when the response ends it.
   */
  private accept(resp: WatchResp, stream: GroupStream): StreamEnd | null {
    if (resp.compactRevision > 0) {
      return {
        kind: 'compacted',
        compactRevision: resp.compactRevision,
        reason: resp.cancelReason,
      };
    }
    if (!this.started && !resp.created) {
      // A lane that never starts would hold every group's changes back.
      return {
        kind: 'failed',
        error: new ClusterError(
          ErrorCode.REJECTED,
          `${stream.address} answered the watch without a created response first`,
        ),
      };
    }
    const before = this.received;
    // What this stream or one before it sent already is dropped.
    const fresh = before === null ? resp.events : resp.events.filter((e) => e.revision > before);
    if (resp.fragment) {
      stream.held.push(...fresh);
      stream.progressed = true;
      return null;
    }
    const wire = stream.held.length === 0 ? fresh : [...stream.held, ...fresh];
    stream.held = [];
    const changes = changesOf(wire);
    if (typeof changes === 'string') {
      return {
        kind: 'failed',
        error: new ClusterError(ErrorCode.REJECTED, `${stream.address} sent ${changes}`),
      };
    }
    // Events come in revision order: the last one has the highest.
    this.received = Math.max(
      before ?? resp.revision,
      resp.revision,
      wire.at(-1)?.revision ?? resp.revision,
    );
    if (resp.created) {
      // A reopened stream starts where the last one stopped: nothing to tell the order.
      if (this.started) return null;
      this.started = true;
      const start: GroupStart = {
        revision: this.received,
        slotCount: resp.slotCount,
        slots: resp.slots.map((s) => ({ slot: s.slot, sinceConfigVersion: s.sinceConfigVersion })),
      };
      this.shared.order.start(this.group, start);
      return null;
    }
    stream.progressed = true;
    if (changes.length > 0 || resp.events.length === 0) {
      const response: GroupResponse = {
        revision: this.received,
        changes,
        progress: changes.length === 0,
      };
      this.shared.order.receive(this.group, response, stream);
    }
    if (changes.some((c) => c.type === 'slot-left')) this.shared.slotLeft();
    return null;
  }
}

/** The events and slot marks of `wire`, in its order; what is wrong when a type is unknown. */
function changesOf(wire: readonly WireWatchEvent[]): (WatchEvent | WatchSlotMark)[] | string {
  const changes: (WatchEvent | WatchSlotMark)[] = [];
  for (const e of wire) {
    switch (e.type) {
      case WatchEventType.WATCH_PUT:
      case WatchEventType.WATCH_DELETE:
        changes.push({
          type: e.type === WatchEventType.WATCH_PUT ? 'put' : 'delete',
          key: e.key,
          value: e.value,
          revision: e.revision,
          ...(e.hasPrev ? { prevValue: e.prevValue } : {}),
        });
        break;
      case WatchEventType.WATCH_SLOT_LEFT:
      case WatchEventType.WATCH_SLOT_ARRIVED:
        changes.push({
          type: e.type === WatchEventType.WATCH_SLOT_LEFT ? 'slot-left' : 'slot-arrived',
          slot: e.slot,
          revision: e.revision,
          configVersion: e.configVersion,
          sinceConfigVersion: e.sinceConfigVersion,
        });
        break;
      default:
        return `an event of unknown type ${String(e.type)}`;
    }
  }
  return changes;
}

/**
 * The batches of every group waiting for the consumer, then the watch's error if it failed: the
 * WatchOrder's sink. It has room below `max`; each batch taken lets the order pass more on.
 */
class BatchQueue implements BatchSink {
  private readonly entries: (WatchBatch | Error)[] = [];
  private wake: (() => void) | null = null;
  private failed = false;

  constructor(
    private readonly max: number,
    private readonly taken: () => void,
  ) {}

  get length(): number {
    return this.entries.length;
  }

  room(): boolean {
    return this.entries.length < this.max;
  }

  push(batch: WatchBatch): void {
    if (this.failed) return;
    this.entries.push(batch);
    this.wake?.();
  }

  /** Queues `err` after the batches waiting: the consumer gets them, then it; nothing after. */
  fail(err: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.entries.push(err);
    this.wake?.();
  }

  /** The next entry, once there is one; null when `ending` ends the watch first. */
  async take(ending: AbortSignal): Promise<WatchBatch | Error | null> {
    while (this.entries.length === 0 && !ending.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.wake = null;
          ending.removeEventListener('abort', done);
          resolve();
        };
        this.wake = done;
        ending.addEventListener('abort', done, { once: true });
      });
    }
    if (ending.aborted) return null;
    const entry = this.entries.shift()!;
    if (!this.failed) this.taken();
    return entry;
  }
}
