// Watch (docs/watch.md): one server stream per watch of a key, a range or a prefix in this node's
// kv group. A watch first replays the group's history from the revision asked for, a bounded
// read at a time, each sent and drained before the next (a slow reader holds one read of memory
// here); once the replay reaches the applied index the watcher joins the live changes, which the
// state machine hands over after each apply batch is on disk. The changes that arrive while the
// last replayed response is being written wait behind it, so the stream stays in revision order.
//
// Memory is bounded per stream: live responses the reader has not taken yet count against
// --watch-stream-buffer-bytes, and a watcher beyond it is cut with RESOURCE_EXHAUSTED (it resumes
// from its last revision, from the history), never buffered without end. Watches per node are
// bounded by --watches-max.
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  slotOfKey,
  WatchEventType,
  type WatchEvent,
  type WatchReq,
  type WatchResp,
} from '@eraftkv/protocol';
import { AccessDeniedError, type Logger } from '@eraftkv/raft-server';
import { failureStatus, type AccessControl } from '@eraftkv/server-kit';
import type { ConfigWatcher } from './config-watcher';
import type { DataStateMachine } from './data-state-machine';
import type { KvLimits } from './request-validation';
import { isSlotMark, type HistoryItem } from './watch-history';
import type { HubWatcher, WatchRange } from './watch-hub';

export interface WatchLimits {
  /** Bytes of responses one stream may have waiting for its reader before it is cut. */
  readonly streamBufferBytes: number;
  /** Watches this node serves at once. */
  readonly watchesMax: number;
  /** A watch that asked for progress gets a response when nothing was sent for this long. */
  readonly progressIntervalMs: number;
}

export const defaultWatchLimits: WatchLimits = {
  streamBufferBytes: 8 * 1024 * 1024,
  watchesMax: 10_000,
  progressIntervalMs: 10_000,
};

export interface WatchServiceOptions {
  readonly groupId: number;
  readonly stateMachine: DataStateMachine;
  readonly limits: KvLimits;
  readonly watchLimits: WatchLimits;
  readonly access: AccessControl;
  /** Refreshes the auth table once before a refusal is final (a grant made just before). */
  readonly watcher: Pick<ConfigWatcher, 'refreshAuth'>;
  readonly registry: Registry;
  readonly metricLabels: { readonly group_id: string; readonly node_id: string };
  readonly logger: Logger;
}

/** A response is filled up to about this many bytes of keys and values. */
const responseBytesTarget = 1024 * 1024;
/** The changes of one revision beyond this go out in several responses (fragments). */
const fragmentBytesMax = 8 * 1024 * 1024;
/** What an event costs beyond its key and values (field tags, lengths, revision). */
const eventOverheadBytes = 32;

const allKeysFrom = Buffer.from([0]);
const noBytes = Buffer.alloc(0);

function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** The keys a request covers, or why it is malformed. */
export function watchRangeOf(req: WatchReq, keyBytesMax: number): WatchRange | string {
  const start = bufferOf(req.key);
  const end = bufferOf(req.rangeEnd);
  if (start.length > keyBytesMax)
    return `key is ${start.length} bytes, above the ${keyBytesMax}-byte limit (--key-bytes-max)`;
  if (end.length > keyBytesMax + 1)
    return `range_end is ${end.length} bytes, above the ${keyBytesMax + 1}-byte limit`;
  if (end.length === 0) {
    if (start.length === 0)
      return 'key is empty: watch a key, a range [key, range_end), or every key from key on (range_end a single 0 byte)';
    return { start, end: undefined };
  }
  if (end.equals(allKeysFrom)) return { start, end: null };
  if (Buffer.compare(end, start) <= 0) return 'range_end must be after key';
  return { start, end };
}

function eventSize(change: HistoryItem, withPrev: boolean): number {
  if (isSlotMark(change)) return eventOverheadBytes;
  return (
    change.key.length +
    change.value.length +
    (withPrev ? (change.prev?.length ?? 0) : 0) +
    eventOverheadBytes
  );
}

function eventOf(item: HistoryItem, withPrev: boolean): WatchEvent {
  if (isSlotMark(item)) {
    return {
      type:
        item.type === 'slot-left'
          ? WatchEventType.WATCH_SLOT_LEFT
          : WatchEventType.WATCH_SLOT_ARRIVED,
      key: noBytes,
      value: noBytes,
      revision: item.revision,
      hasPrev: false,
      prevValue: noBytes,
      slot: item.slot,
      configVersion: item.configVersion,
      sinceConfigVersion: item.since,
    };
  }
  const prev = withPrev ? item.prev : undefined;
  return {
    type: item.type === 'put' ? WatchEventType.WATCH_PUT : WatchEventType.WATCH_DELETE,
    key: item.key,
    value: item.value,
    revision: item.revision,
    hasPrev: prev !== undefined,
    prevValue: prev ?? noBytes,
    slot: 0,
    configVersion: 0,
    sinceConfigVersion: 0,
  };
}

export function watchHandler(
  o: WatchServiceOptions,
): grpc.handleServerStreamingCall<WatchReq, WatchResp> {
  const active = new Set<WatchStream>();
  // Read at each scrape: the streams open now.
  new Gauge({
    name: 'eraftkv_kv_watchers',
    help: 'Watch streams this node serves (replaying history or live).',
    labelNames: ['group_id', 'node_id'],
    registers: [o.registry],
    collect() {
      this.set(o.metricLabels, active.size);
    },
  });
  const eventsSent = new Counter({
    name: 'eraftkv_kv_watch_events_sent_total',
    help: 'Watch events written to watch streams.',
    labelNames: ['group_id', 'node_id'],
    registers: [o.registry],
  });
  const cuts = new Counter({
    name: 'eraftkv_kv_watches_cut_total',
    help: 'Watch streams this node ended before their reader did: reason is slow (the reader fell behind by --watch-stream-buffer-bytes), snapshot (this replica installed a snapshot) or stopping.',
    labelNames: ['group_id', 'node_id', 'reason'],
    registers: [o.registry],
  });
  eventsSent.inc(o.metricLabels, 0);
  for (const reason of ['slow', 'snapshot', 'stopping']) cuts.inc({ ...o.metricLabels, reason }, 0);
  const metrics: StreamMetrics = {
    sent: (events) => eventsSent.inc(o.metricLabels, events),
    cut: (reason) => cuts.inc({ ...o.metricLabels, reason }),
  };

  return (call) => {
    const stream = new WatchStream(o, call, metrics, () => active.delete(stream));
    if (active.size >= o.watchLimits.watchesMax) {
      stream.fail({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `this node already serves ${active.size} watches (--watches-max); retry with backoff or watch from another replica`,
      });
      return;
    }
    active.add(stream);
    stream.run().catch((err: unknown) => {
      const status = failureStatus(err, o.logger, 'Watch');
      stream.fail({ code: status.status, details: status.details });
    });
  };
}

interface StreamMetrics {
  sent(events: number): void;
  cut(reason: 'slow' | 'snapshot' | 'stopping'): void;
}

/** One watch: its replay, then its live changes, until the reader or the node ends it. */
class WatchStream implements HubWatcher {
  range: WatchRange = { start: noBytes, end: undefined };
  private start = 0;
  private prevKv = false;
  /** The last revision every change up to which was sent (responses' `revision`). */
  private sentThrough = 0;
  /** Bytes of responses written and not yet taken by the transport. */
  private pendingBytes = 0;
  /** Live changes that came while the replay's last response was being written. */
  private held: { items: readonly HistoryItem[]; revision: number }[] | null = null;
  /** A watch of one key gets the slot marks of its key's slot only (null: every mark). */
  private keySlot: number | null = null;
  private joined = false;
  private ended = false;
  private sentSinceTick = false;
  private ticker: NodeJS.Timeout | null = null;
  /** The transport's buffer is full: the replay waits for 'drain' before reading more. */
  private needDrain = false;

  constructor(
    private readonly o: WatchServiceOptions,
    private readonly call: grpc.ServerWritableStream<WatchReq, WatchResp>,
    private readonly metrics: StreamMetrics,
    /** Called once when the stream ends, however it ends. */
    private readonly onEnd: () => void,
  ) {
    call.on('cancelled', () => this.finish());
    call.on('close', () => this.finish());
  }

  async run(): Promise<void> {
    const req = this.call.request;
    const o = this.o;
    if (req.groupId !== 0 && req.groupId !== o.groupId) {
      this.fail({
        code: grpc.status.FAILED_PRECONDITION,
        details: `group_id is ${req.groupId}, but this node serves group ${o.groupId}; refresh the topology`,
      });
      return;
    }
    const range = watchRangeOf(req, o.limits.keyBytesMax);
    if (typeof range === 'string') {
      this.fail({ code: grpc.status.INVALID_ARGUMENT, details: range });
      return;
    }
    this.range = range;
    this.prevKv = req.prevKv;
    await this.checkAccess();
    let from = req.startRevision;
    let first = true;
    while (!this.ended) {
      const read = await o.stateMachine.watchHistory(this.range, from, responseBytesTarget, () =>
        this.join(),
      );
      if (this.ended) return;
      if (read.kind === 'compacted') {
        this.write(
          {
            ...this.response(read.oldest - 1),
            compactRevision: read.oldest,
            cancelReason: `revision ${from} is older than the history this group keeps (--watch-history-revisions); the oldest that can be watched is ${read.oldest}`,
          },
          0,
        );
        this.finish();
        this.call.end();
        return;
      }
      if (first) {
        first = false;
        this.start = read.from;
        this.sentThrough = read.from - 1;
        if (this.range.end === undefined && read.slotCount > 0)
          this.keySlot = slotOfKey(this.range.start, read.slotCount);
        const slots = read.slots
          .filter((x) => this.keySlot === null || x.slot === this.keySlot)
          .map((x) => ({ slot: x.slot, sinceConfigVersion: x.since }));
        this.write(
          { ...this.response(this.sentThrough), created: true, slotCount: read.slotCount, slots },
          0,
        );
        if (req.progressNotify) this.startTicks();
      }
      this.send(this.covered(read.items), read.through);
      // Joined: the held live changes follow at once (writes keep their order).
      if (read.joined) break;
      await this.drained();
      from = read.through + 1;
    }
    if (this.ended) return;
    // The replay is written: the live changes held meanwhile follow it, then come as they apply.
    const held = this.held ?? [];
    this.held = null;
    for (const batch of held) this.deliver(batch.items, batch.revision);
  }

  private async checkAccess(): Promise<void> {
    const access = this.o.access;
    if (!access.enabled) return;
    const caller = access.callerOf(this.call);
    const keys = [
      {
        kind: 'read' as const,
        start: this.range.start,
        end: this.range.end === undefined ? noBytes : (this.range.end ?? allKeysFrom),
        what: 'the watched keys',
      },
    ];
    try {
      access.requireKeys(caller, keys);
    } catch (err) {
      if (!(err instanceof AccessDeniedError) || !(await this.o.watcher.refreshAuth())) throw err;
      access.requireKeys(caller, keys);
    }
  }

  private join(): void {
    this.joined = true;
    this.held = [];
    this.o.stateMachine.watchers.add(this);
  }

  deliver(items: readonly HistoryItem[], revision: number): void {
    if (this.ended) return;
    if (this.held !== null) {
      this.held.push({ items, revision });
      return;
    }
    // A watch from a future revision skips what comes before it.
    const wanted = this.covered(
      items.length > 0 && items[0].revision < this.start
        ? items.filter((c) => c.revision >= this.start)
        : items,
    );
    if (wanted.length === 0) return;
    this.send(wanted, revision);
    if (this.pendingBytes > this.o.watchLimits.streamBufferBytes) {
      this.metrics.cut('slow');
      this.fail({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `the watcher fell behind: ${this.pendingBytes} bytes of events waited for it, above --watch-stream-buffer-bytes (${this.o.watchLimits.streamBufferBytes}); resume from revision ${this.sentThrough + 1}`,
      });
    }
  }

  /** `items` without the slot marks of other slots than a one-key watch's. */
  private covered(items: readonly HistoryItem[]): readonly HistoryItem[] {
    const slot = this.keySlot;
    if (slot === null || !items.some((x) => isSlotMark(x) && x.slot !== slot)) return items;
    return items.filter((x) => !isSlotMark(x) || x.slot === slot);
  }

  cut(reason: string): void {
    if (this.ended) return;
    this.metrics.cut(reason.includes('snapshot') ? 'snapshot' : 'stopping');
    this.fail({ code: grpc.status.UNAVAILABLE, details: reason });
  }

  fail(status: { code: grpc.status; details: string }): void {
    if (this.ended) return;
    this.finish();
    this.call.emit('error', status);
  }

  /** Sends `changes` (whole revisions, in order) with everything through `through` covered. */
  private send(changes: readonly HistoryItem[], through: number): void {
    let events: WatchEvent[] = [];
    let bytes = 0;
    const flush = (revision: number, fragment: boolean): void => {
      this.write({ ...this.response(revision), events, fragment }, bytes);
      this.metrics.sent(events.length);
      events = [];
      bytes = 0;
    };
    for (let i = 0; i < changes.length;) {
      // The changes of one revision: they go in one response, or in fragments when too large.
      const revision = changes[i].revision;
      let j = i;
      let size = 0;
      while (j < changes.length && changes[j].revision === revision) {
        size += eventSize(changes[j], this.prevKv);
        j++;
      }
      if (events.length > 0 && bytes + size > responseBytesTarget) flush(revision - 1, false);
      if (size > fragmentBytesMax) {
        for (let k = i; k < j; k++) {
          const one = eventSize(changes[k], this.prevKv);
          if (events.length > 0 && bytes + one > fragmentBytesMax) flush(revision - 1, true);
          events.push(eventOf(changes[k], this.prevKv));
          bytes += one;
        }
      } else {
        for (let k = i; k < j; k++) events.push(eventOf(changes[k], this.prevKv));
        bytes += size;
      }
      i = j;
    }
    if (events.length > 0 || through > this.sentThrough) flush(through, false);
  }

  private response(revision: number): WatchResp {
    return {
      groupId: this.o.groupId,
      revision,
      events: [],
      created: false,
      compactRevision: 0,
      cancelReason: '',
      fragment: false,
      slotCount: 0,
      slots: [],
    };
  }

  private write(resp: WatchResp, bytes: number): void {
    if (this.ended) return;
    if (!resp.fragment) this.sentThrough = Math.max(this.sentThrough, resp.revision);
    this.sentSinceTick = true;
    const size = bytes + 64;
    this.pendingBytes += size;
    const more = this.call.write(resp, () => {
      this.pendingBytes -= size;
    });
    if (!more) this.needDrain = true;
  }

  /** Resolves once the transport took what was written (or the stream ended). */
  private drained(): Promise<void> {
    if (this.ended || !this.needDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.needDrain = false;
        this.call.off('drain', done);
        this.call.off('close', done);
        resolve();
      };
      this.call.once('drain', done);
      this.call.once('close', done);
    });
  }

  private startTicks(): void {
    this.ticker = setInterval(() => {
      if (this.ended) return;
      if (!this.sentSinceTick && this.joined && this.held === null) {
        const revision = Math.max(this.sentThrough, this.o.stateMachine.watchers.revision);
        this.write(this.response(revision), 0);
      }
      this.sentSinceTick = false;
    }, this.o.watchLimits.progressIntervalMs);
    this.ticker.unref();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
    if (this.ticker !== null) clearInterval(this.ticker);
    if (this.joined) this.o.stateMachine.watchers.remove(this);
  }
}
