// WatchOrder: how the changes of several groups are passed on so that each key's come in the
// order they were applied while its slot moves (docs/watch.md, "Watching across groups").
import { slotOfKey } from '@eraftkv/protocol';
import type { WatchBatch, WatchEvent, WatchSlotMark } from '../src';
import { WatchOrder, type BatchSink, type Pausable } from '../src/watch-order';

const slotCount = 16;

/** Keys in two different slots. */
const keyOf = (slot: number): string => {
  for (let i = 0; ; i++) if (slotOfKey(Buffer.from(`k${i}`), slotCount) === slot) return `k${i}`;
};
const k = keyOf(3);
const other = keyOf(7);

function put(key: string, revision: number): WatchEvent {
  return { type: 'put', key: Buffer.from(key), value: Buffer.from(`${revision}`), revision };
}

function mark(
  type: WatchSlotMark['type'],
  slot: number,
  revision: number,
  since: number,
): WatchSlotMark {
  return { type, slot, revision, configVersion: since, sinceConfigVersion: since };
}

class Sink implements BatchSink {
  readonly batches: WatchBatch[] = [];
  max = Infinity;
  room(): boolean {
    return this.batches.length < this.max;
  }
  push(batch: WatchBatch): void {
    this.batches.push(batch);
  }
  /** What was passed on, as group:key@revision and group:slot-left(slot)@revision, in order. */
  passed(): string[] {
    return this.batches.flatMap((b) =>
      [
        ...b.events.map((e) => ({
          r: e.revision,
          s: `${b.group}:${e.key.toString()}@${e.revision}`,
        })),
        ...b.slotMarks.map((m) => ({
          r: m.revision,
          s: `${b.group}:${m.type}(${m.slot})@${m.revision}`,
        })),
      ]
        .sort((x, y) => x.r - y.r)
        .map((x) => x.s),
    );
  }
}

class Stream implements Pausable {
  paused = false;
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
}

/**
 * A WatchOrder over a new Sink with `groups` added and started, each as [group, the version its
 * period of slot 3 began at (null: it does not write slot 3), its start revision].
 */
function startedOrder(...groups: [number, number | null, number][]): {
  sink: Sink;
  order: WatchOrder;
} {
  const sink = new Sink();
  const order = new WatchOrder(sink, 8);
  for (const [group] of groups) order.add(group);
  for (const [group, since, revision] of groups) {
    const slots = since === null ? [] : [{ slot: 3, sinceConfigVersion: since }];
    order.start(group, { revision, slotCount, slots });
  }
  return { sink, order };
}

describe('WatchOrder', () => {
  const stream = new Stream();

  it('passes nothing of a slot on until every group has started', () => {
    const sink = new Sink();
    const order = new WatchOrder(sink, 8);
    order.add(1);
    order.add(2);
    order.start(1, { revision: 9, slotCount, slots: [{ slot: 3, sinceConfigVersion: 1 }] });
    order.receive(1, { revision: 10, changes: [put(k, 10)], progress: false }, stream);
    expect(sink.passed()).toEqual([]);
    expect(order.started).toBe(false);
    order.start(2, { revision: 0, slotCount, slots: [] });
    expect(order.started).toBe(true);
    expect(sink.batches.map((b) => [b.group, b.created, b.revision])).toEqual([
      [1, true, 9],
      [2, true, 0],
      [1, false, 10],
    ]);
  });

  it("holds a moved slot's changes in its new group, and that group's later changes behind them, until the old group's period ends", () => {
    // Group 1 writes slot 3 since version 1; group 2 since version 5 (the move came later).
    const { sink, order } = startedOrder([1, 1, 9], [2, 5, 2]);
    order.receive(2, { revision: 4, changes: [put(other, 3), put(k, 4)], progress: false }, stream);
    order.receive(2, { revision: 6, changes: [put(other, 6)], progress: false }, stream);
    // Group 2's change of another slot goes on; the moved slot's waits, and what follows it.
    expect(sink.passed()).toEqual([`2:${other}@3`]);
    expect(sink.batches.at(-1)?.revision).toBe(3);
    order.receive(1, { revision: 10, changes: [put(k, 10)], progress: false }, stream);
    order.receive(
      1,
      { revision: 12, changes: [mark('slot-left', 3, 11, 1), put(other, 12)], progress: false },
      stream,
    );
    expect(sink.passed()).toEqual([
      `2:${other}@3`,
      `1:${k}@10`,
      `1:slot-left(3)@11`,
      `1:${other}@12`,
      `2:${k}@4`,
      `2:${other}@6`,
    ]);
    expect(sink.batches.filter((b) => b.group === 2).map((b) => b.revision)).toEqual([2, 3, 4, 6]);
  });

  it('holds every change of a revision while one of them waits (a batch never covers half a revision)', () => {
    const { sink, order } = startedOrder([1, 1, 9], [2, 5, 2]);
    // One request in group 2 wrote a key of slot 7 and one of slot 3 (moved in at version 5).
    order.receive(2, { revision: 4, changes: [put(other, 4), put(k, 4)], progress: false }, stream);
    expect(sink.passed()).toEqual([]);
    expect(sink.batches.filter((b) => b.group === 2).map((b) => b.revision)).toEqual([2]);
    order.receive(
      1,
      { revision: 10, changes: [mark('slot-left', 3, 10, 1)], progress: false },
      stream,
    );
    expect(sink.passed()).toEqual([`1:slot-left(3)@10`, `2:${other}@4`, `2:${k}@4`]);
    const last = sink.batches.at(-1);
    expect([last?.group, last?.revision, last?.events.length]).toEqual([2, 4, 2]);
  });

  it('follows the periods that slot marks begin: a slot that came back waits for the period between', () => {
    const { sink, order } = startedOrder([1, 1, 0], [2, null, 0]);
    // Slot 3 goes to group 2 (version 4) and back to group 1 (version 8).
    order.receive(
      1,
      {
        revision: 9,
        changes: [mark('slot-left', 3, 5, 1), mark('slot-arrived', 3, 8, 8), put(k, 9)],
        progress: false,
      },
      stream,
    );
    // Group 2 has not shown its period yet: group 1's change goes on (no earlier period known).
    expect(sink.passed().at(-1)).toBe(`1:${k}@9`);

    const { sink: sink2, order: order2 } = startedOrder([1, 1, 0], [2, null, 0]);
    order2.receive(
      2,
      { revision: 3, changes: [mark('slot-arrived', 3, 2, 4), put(k, 3)], progress: false },
      stream,
    );
    order2.receive(
      1,
      {
        revision: 9,
        changes: [mark('slot-left', 3, 1, 1), mark('slot-arrived', 3, 8, 8), put(k, 9)],
        progress: false,
      },
      stream,
    );
    // Group 2's period (version 4) has not ended: group 1's (version 8) waits for it.
    // Group 2's change of slot 3 waited for group 1's first period to end; group 1's change in
    // its second period (version 8) waits for group 2's (version 4).
    expect(sink2.passed()).toEqual([
      `2:slot-arrived(3)@2`,
      `1:slot-left(3)@1`,
      `1:slot-arrived(3)@8`,
      `2:${k}@3`,
    ]);
    order2.receive(
      2,
      { revision: 5, changes: [mark('slot-left', 3, 5, 4)], progress: false },
      stream,
    );
    expect(sink2.passed().slice(-2)).toEqual([`2:slot-left(3)@5`, `1:${k}@9`]);
  });

  it('ends the periods of a group gone from the topology once what it sent is passed on', () => {
    const { sink, order } = startedOrder([1, 1, 0], [2, 5, 0]);
    order.receive(2, { revision: 1, changes: [put(k, 1)], progress: false }, stream);
    expect(sink.passed()).toEqual([]);
    order.end(1);
    expect(sink.passed()).toEqual([`2:${k}@1`]);
    // A group never started holds nothing back once it is gone.
    order.add(3);
    order.receive(2, { revision: 2, changes: [put(k, 2)], progress: false }, stream);
    expect(sink.passed()).toHaveLength(1);
    order.end(3);
    expect(sink.passed()).toEqual([`2:${k}@1`, `2:${k}@2`]);
  });

  it('passes progress on, and without a slot count orders nothing across groups', () => {
    const sink = new Sink();
    const order = new WatchOrder(sink, 8);
    order.add(1);
    order.start(1, { revision: 3, slotCount: 0, slots: [] });
    order.receive(1, { revision: 7, changes: [], progress: true }, stream);
    order.receive(1, { revision: 8, changes: [put(k, 8)], progress: false }, stream);
    expect(sink.batches.slice(1)).toEqual([
      { group: 1, revision: 7, events: [], slotMarks: [], created: false, progress: true },
      {
        group: 1,
        revision: 8,
        events: [put(k, 8)],
        slotMarks: [],
        created: false,
        progress: false,
      },
    ]);
  });

  it('stops at a full sink, and pauses a stream whose lane is full until it is down to half', () => {
    const sink = new Sink();
    const order = new WatchOrder(sink, 4);
    const s = new Stream();
    order.add(1);
    order.start(1, { revision: 0, slotCount, slots: [] });
    sink.max = 1;
    for (let r = 1; r <= 3; r++)
      order.receive(1, { revision: r, changes: [put(k, r)], progress: false }, s);
    expect(s.paused).toBe(false);
    order.receive(1, { revision: 4, changes: [put(k, 4)], progress: false }, s);
    // The created batch fills the sink: the four responses wait in the lane, which is full.
    expect(sink.batches).toHaveLength(1);
    expect(s.paused).toBe(true);
    sink.max = 3;
    order.drain();
    expect(sink.batches).toHaveLength(3);
    expect(s.paused).toBe(false);
    sink.max = Infinity;
    order.drain();
    expect(sink.passed()).toEqual([1, 2, 3, 4].map((r) => `1:${k}@${r}`));
  });
});
