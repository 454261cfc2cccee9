// WatchOrder: how a watch of several groups passes their changes on so that each key's changes
// come in the order they were applied (docs/watch.md, "Watching across groups"). A key's slot
// belongs to one group at a time, and a slot move hands it over with no write anywhere in
// between: a key's changes are those of successive periods of ownership, one group each, ordered
// by the topology version each began at. Each group's first response lists the periods it is in,
// and its slot marks end (left) and begin (arrived) periods as its stream goes on.
//
// Every group is a lane of responses, passed on in its revision order. A change of a slot whose
// period began after another group's period of that slot that has not ended (its left mark has
// not been passed on) waits, and the lane waits behind it: within a group every change keeps its
// revision order. That cannot deadlock: a group waits only for a period that ended before its
// own began, so the group waited for is always earlier in time than the one waiting. Nothing of
// a slot is passed on until every lane has started (a lagging group may still be in an earlier
// period).
//
// Bounded: a lane holding `pendingMax` responses pauses the streams that fill it until it is down
// to half, and nothing is passed on while the sink is full.
import { slotOfKey } from '@eraftkv/protocol';
import type { WatchBatch, WatchEvent, WatchSlotMark } from './watch';

/** A stream that can stop delivering for a while. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

/** Where batches go: the consumer's queue. */
export interface BatchSink {
  /** Whether a batch passed on now would be taken without going past the sink's bound. */
  room(): boolean;
  push(batch: WatchBatch): void;
}

/** A group's first response: where it starts, and the periods of the slots it writes there. */
export interface GroupStart {
  readonly revision: number;
  /** The cluster's slot count (0: not told, the changes are not ordered across groups). */
  readonly slotCount: number;
  readonly slots: readonly { readonly slot: number; readonly sinceConfigVersion: number }[];
}

/** One response of a group: its changes in revision order, and the revision it covers. */
export interface GroupResponse {
  readonly revision: number;
  readonly changes: readonly (WatchEvent | WatchSlotMark)[];
  /** A progress notification (no changes). */
  readonly progress: boolean;
}

class Lane {
  readonly pending: GroupResponse[] = [];
  /** How many changes of the first pending response were passed on. */
  taken = 0;
  started = false;
  /** The group is gone from the topology: once its lane is empty its periods are over. */
  ending = false;
  slotCount = 0;
  /** The periods the group is in where its lane stands: slot -> the version it began at. */
  readonly owned = new Map<number, number>();
  /** Every change up to this revision was passed on. */
  passed = 0;
  readonly paused = new Set<Pausable>();

  constructor(readonly group: number) {}
}

function isMark(change: WatchEvent | WatchSlotMark): change is WatchSlotMark {
  return change.type === 'slot-left' || change.type === 'slot-arrived';
}

export class WatchOrder {
  private readonly lanes = new Map<number, Lane>();

  constructor(
    private readonly sink: BatchSink,
    private readonly pendingMax: number,
  ) {}

  /** Whether every lane has started (each group has sent its first response). */
  get started(): boolean {
    for (const lane of this.lanes.values()) if (!lane.started) return false;
    return true;
  }

  /** A group to wait for: nothing of a slot is passed on until it has started. */
  add(group: number): void {
    if (!this.lanes.has(group)) this.lanes.set(group, new Lane(group));
  }

  /** A group's first response: its periods, and a `created` batch for the consumer. */
  start(group: number, start: GroupStart): void {
    const lane = this.lane(group);
    lane.started = true;
    lane.slotCount = start.slotCount;
    for (const s of start.slots) lane.owned.set(s.slot, s.sinceConfigVersion);
    lane.passed = start.revision;
    // One per group, past the sink's bound if need be: the consumer learns where each starts.
    this.sink.push({
      group,
      revision: start.revision,
      events: [],
      slotMarks: [],
      created: true,
      progress: false,
    });
    this.drain();
  }

  /** A response of `group`'s stream `from`. */
  receive(group: number, resp: GroupResponse, from: Pausable): void {
    const lane = this.lane(group);
    lane.pending.push(resp);
    if (lane.pending.length >= this.pendingMax && !lane.paused.has(from)) {
      from.pause();
      lane.paused.add(from);
    }
    this.drain();
  }

  /** The group is gone from the topology: what it sent is passed on, then its periods end. */
  end(group: number): void {
    const lane = this.lanes.get(group);
    if (lane === undefined) return;
    lane.ending = true;
    this.drain();
  }

  /** Passes on whatever can be, until nothing more can (or the sink is full). */
  drain(): void {
    for (let moved = true; moved;) {
      moved = false;
      for (const lane of [...this.lanes.values()]) {
        if (this.advance(lane)) moved = true;
        if (lane.ending && lane.pending.length === 0) {
          this.lanes.delete(lane.group);
          moved = true;
        }
      }
    }
  }

  private lane(group: number): Lane {
    const lane = this.lanes.get(group);
    if (lane === undefined) throw new Error(`watch order: group ${group} was never added`);
    return lane;
  }

  /** Passes on what lane can; true when it passed anything on. */
  private advance(lane: Lane): boolean {
    let moved = false;
    while (lane.pending.length > 0 && this.sink.room()) {
      const head = lane.pending[0];
      const events: WatchEvent[] = [];
      const slotMarks: WatchSlotMark[] = [];
      let blocked: WatchEvent | null = null;
      // The changes of one revision pass together: a request's changes in several slots, one of
      // which waits, all wait (a batch's revision must never cover half a revision).
      let revision = -1;
      let revisionTaken = lane.taken;
      let revisionEvents = 0;
      for (; lane.taken < head.changes.length; lane.taken++) {
        const change = head.changes[lane.taken];
        if (change.revision !== revision) {
          revision = change.revision;
          revisionTaken = lane.taken;
          revisionEvents = events.length;
        }
        if (isMark(change)) {
          if (change.type === 'slot-left') lane.owned.delete(change.slot);
          else lane.owned.set(change.slot, change.sinceConfigVersion);
          slotMarks.push(change);
        } else if (this.mayPass(lane, change)) {
          events.push(change);
        } else {
          blocked = change;
          events.length = revisionEvents;
          lane.taken = revisionTaken;
          break;
        }
      }
      const done = blocked === null;
      if (done) {
        lane.pending.shift();
        lane.taken = 0;
      }
      // Cut short, the batch covers the revisions before the change that waits.
      lane.passed = Math.max(lane.passed, blocked === null ? head.revision : blocked.revision - 1);
      if (events.length > 0 || slotMarks.length > 0 || (done && head.progress)) {
        this.sink.push({
          group: lane.group,
          revision: lane.passed,
          events,
          slotMarks,
          created: false,
          progress: events.length === 0 && slotMarks.length === 0,
        });
        moved = true;
      }
      if (!done) break;
      moved = true;
    }
    if (lane.paused.size > 0 && lane.pending.length <= this.pendingMax / 2) {
      for (const stream of lane.paused) stream.resume();
      lane.paused.clear();
    }
    return moved;
  }

  /** Whether `event` of `lane` may be passed on: no other lane is in an earlier period of its slot. */
  private mayPass(lane: Lane, event: WatchEvent): boolean {
    if (!this.started) return false;
    if (lane.slotCount <= 0) return true;
    const slot = slotOfKey(event.key, lane.slotCount);
    const since = lane.owned.get(slot);
    if (since === undefined) return true;
    for (const other of this.lanes.values()) {
      const otherSince = other === lane ? undefined : other.owned.get(slot);
      if (otherSince !== undefined && otherSince < since) return false;
    }
    return true;
  }
}
