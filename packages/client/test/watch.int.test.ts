// EraftKvClient.watch against scripted fake kv nodes on 127.0.0.1 (real gRPC): what the batches
// carry, a broken stream resumed from the revision after the last one delivered (on the next
// member, nothing twice), the topology read again when a node no longer serves the group, a
// compacted start, refusals, several groups merged into one iterable, backpressure, and the ways
// a watch ends.
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import {
  slotOfKey,
  WatchEvent as WireWatchEvent,
  WatchEventType,
  WatchResp,
  type WatchReq,
} from '@eraftkv/protocol';
import {
  closedAddress,
  startFakeERaftKv,
  waitFor,
  type StartedServer,
} from '@eraftkv/test-support';
import {
  AccessDeniedError,
  EraftKvClient,
  InvalidArgumentError,
  UnavailableError,
  WatchCompactedError,
  type WatchBatch,
} from '../src';
import { fastClient, keyInSlots, next, slotCount, startMeta, type FakeMeta } from './fake-meta';

type WatchCall = grpc.ServerWritableStream<WatchReq, WatchResp>;

interface FakeWatchNode {
  address: string;
  server: StartedServer | null;
  /** Every Watch call received, in order (their requests are call.request). */
  calls: WatchCall[];
  /**
   * What the next Watch calls do, in order. Past the script a call is answered `created` at its
   * start revision and held open.
   */
  script: ((call: WatchCall) => void | Promise<void>)[];
}

function resp(fields: Partial<WatchResp>): WatchResp {
  return { ...WatchResp.fromPartial({ groupId: 1 }), ...fields };
}

function created(call: WatchCall, revision = Math.max(0, call.request.startRevision - 1)): void {
  call.write(resp({ groupId: call.request.groupId, created: true, revision }));
}

function put(key: string, value: string, revision: number, prev?: string): WireWatchEvent {
  return {
    ...WireWatchEvent.fromPartial({}),
    type: WatchEventType.WATCH_PUT,
    key: Buffer.from(key),
    value: Buffer.from(value),
    revision,
    hasPrev: prev !== undefined,
    prevValue: Buffer.from(prev ?? ''),
  };
}

function del(key: string, revision: number, prev?: string): WireWatchEvent {
  return { ...put(key, '', revision, prev), type: WatchEventType.WATCH_DELETE };
}

/** Ends a call with a status, as a server handler does. */
function fail(call: WatchCall, code: grpc.status, details: string): void {
  call.emit('error', { code, details });
}

async function startWatchNode(): Promise<FakeWatchNode> {
  const node: FakeWatchNode = { address: '', server: null, calls: [], script: [] };
  node.server = await startFakeERaftKv(
    {
      watch: (call) => {
        node.calls.push(call);
        void (node.script.shift() ?? created)(call);
      },
    },
    { what: 'the fake kv node' },
  );
  node.address = node.server.address;
  return node;
}

/** The revisions of a batch's events. */
const revisions = (batches: readonly WatchBatch[]): number[] =>
  batches.flatMap((b) => b.events.map((e) => e.revision));

describe('EraftKvClient.watch', () => {
  let meta: FakeMeta;
  let a: FakeWatchNode;
  let b: FakeWatchNode;
  let c: FakeWatchNode;
  const clients: EraftKvClient[] = [];
  const newClient = (): EraftKvClient => fastClient(meta, clients);
  const allSlots = Array.from({ length: slotCount }, (_, i) => i);

  beforeAll(async () => {
    [meta, a, b, c] = await Promise.all([
      startMeta(),
      startWatchNode(),
      startWatchNode(),
      startWatchNode(),
    ]);
  });
  beforeEach(() => {
    // Group 1 on a and b (a is asked first); c serves what a test gives it.
    meta.groups = new Map([[1, { servers: [a.address, b.address], slots: allSlots }]]);
    meta.version = 1;
    for (const node of [a, b, c]) {
      node.calls = [];
      node.script = [];
    }
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    for (const s of [meta, a, b, c]) await s.server?.close();
  });

  it('delivers the start, the events with their previous values, and progress notifications', async () => {
    const client = newClient();
    a.script = [
      (call) => {
        created(call, 9);
        call.write(resp({ revision: 10, events: [put('k', 'v1', 10)] }));
        call.write(resp({ revision: 12, events: [put('k', 'v2', 11, 'v1'), del('k', 12, 'v2')] }));
        call.write(resp({ revision: 15 }));
      },
    ];
    const it = client.watch('k', { prevKv: true, progressNotify: true })[Symbol.asyncIterator]();
    expect(await next(it, 4)).toEqual([
      { group: 1, revision: 9, events: [], slotMarks: [], created: true, progress: false },
      {
        group: 1,
        revision: 10,
        events: [{ type: 'put', key: Buffer.from('k'), value: Buffer.from('v1'), revision: 10 }],
        slotMarks: [],
        created: false,
        progress: false,
      },
      {
        group: 1,
        revision: 12,
        events: [
          {
            type: 'put',
            key: Buffer.from('k'),
            value: Buffer.from('v2'),
            revision: 11,
            prevValue: Buffer.from('v1'),
          },
          {
            type: 'delete',
            key: Buffer.from('k'),
            value: Buffer.alloc(0),
            revision: 12,
            prevValue: Buffer.from('v2'),
          },
        ],
        slotMarks: [],
        created: false,
        progress: false,
      },
      { group: 1, revision: 15, events: [], slotMarks: [], created: false, progress: true },
    ]);
    expect(a.calls.map((call) => call.request)).toEqual([
      {
        groupId: 1,
        key: Buffer.from('k'),
        rangeEnd: Buffer.alloc(0),
        startRevision: 0,
        prevKv: true,
        progressNotify: true,
      },
    ]);
    expect(b.calls).toHaveLength(0);
    // Leaving the loop cancels the stream.
    await it.return(undefined);
    await waitFor(() => a.calls[0].cancelled, { what: 'the stream to be cancelled' });
  });

  const cuts: [string, (call: WatchCall) => void][] = [
    ['UNAVAILABLE', (call) => fail(call, grpc.status.UNAVAILABLE, 'the node is stopping')],
    ['CANCELLED', (call) => fail(call, grpc.status.CANCELLED, 'the node is stopping')],
    [
      'RESOURCE_EXHAUSTED',
      (call) => fail(call, grpc.status.RESOURCE_EXHAUSTED, 'the watcher is too slow'),
    ],
    ['INTERNAL', (call) => fail(call, grpc.status.INTERNAL, 'the node is dying')],
    [
      'FAILED_PRECONDITION',
      (call) => fail(call, grpc.status.FAILED_PRECONDITION, 'this node serves group 3'),
    ],
    ['OK without a compacted answer', (call) => call.end()],
  ];
  it.each(cuts)(
    'resumes a stream ended by %s from the revision after the last delivered, on the next member, delivering nothing twice',
    async (_, cut) => {
      const client = newClient();
      a.script = [
        (call) => {
          created(call);
          call.write(resp({ revision: 6, events: [put('k', '5', 5), put('k', '6', 6)] }));
        },
      ];
      b.script = [
        (call) => {
          created(call);
          // Event 6 again: the client drops what it delivered already.
          call.write(
            resp({ revision: 8, events: [put('k', '6', 6), put('k', '7', 7), put('k', '8', 8)] }),
          );
        },
      ];
      const it = client.watch('k', { startRevision: 5 })[Symbol.asyncIterator]();
      const before = await next(it, 2);
      // Cut once the client has the events, so that none is lost in flight.
      cut(a.calls[0]);
      const after = await next(it, 1);
      expect(before[0]).toMatchObject({ created: true, revision: 4 });
      expect(revisions([...before, ...after])).toEqual([5, 6, 7, 8]);
      expect(after[0].revision).toBe(8);
      expect(a.calls.map((call) => call.request.startRevision)).toEqual([5]);
      expect(b.calls.map((call) => call.request.startRevision)).toEqual([7]);
      await it.return(undefined);
    },
  );

  it('holds the parts of a revision sent in fragments until its last part, and resumes a cut before it from that revision', async () => {
    const client = newClient();
    const fragment = (call: WatchCall): void => {
      call.write(
        resp({ revision: 4, events: [put('a', '1', 5), put('b', '2', 5)], fragment: true }),
      );
    };
    let lastPart = (): void => {};
    a.script = [
      (call) => {
        created(call);
        fragment(call);
        lastPart = () => {
          call.write(resp({ revision: 6, events: [put('c', '3', 5), put('d', '4', 6)] }));
        };
      },
      (call) => {
        created(call);
        fragment(call);
      },
    ];
    b.script = [
      (call) => {
        created(call);
        fragment(call);
        call.write(resp({ revision: 5, events: [put('c', '3', 5)] }));
      },
    ];
    const keys = (batch: WatchBatch): string[] => batch.events.map((e) => e.key.toString());

    const whole = client.watch('k', { startRevision: 5 })[Symbol.asyncIterator]();
    expect(await next(whole, 1)).toMatchObject([{ created: true, revision: 4 }]);
    lastPart();
    const [batch] = await next(whole, 1);
    expect(keys(batch)).toEqual(['a', 'b', 'c', 'd']);
    expect(revisions([batch])).toEqual([5, 5, 5, 6]);
    expect(batch.revision).toBe(6);
    await whole.return(undefined);

    // Cut before the last part: the parts held are dropped, and revision 5 comes again whole.
    const resumed = client.watch('k', { startRevision: 5 })[Symbol.asyncIterator]();
    expect(await next(resumed, 1)).toMatchObject([{ created: true, revision: 4 }]);
    fail(a.calls[1], grpc.status.UNAVAILABLE, 'the node is stopping');
    const [again] = await next(resumed, 1);
    expect(keys(again)).toEqual(['a', 'b', 'c']);
    expect(again.revision).toBe(5);
    expect(b.calls.map((call) => call.request.startRevision)).toEqual([5]);
    await resumed.return(undefined);
  });

  it('delivers the slots a group stops or begins writing apart from the events, and fails on an event type it does not know', async () => {
    const client = newClient();
    const mark = (type: WatchEventType, revision: number): WireWatchEvent =>
      WireWatchEvent.fromPartial({
        type,
        revision,
        slot: 3,
        configVersion: 8,
        sinceConfigVersion: 2,
      });
    a.script = [
      (call) => {
        created(call, 9);
        call.write(
          resp({
            revision: 12,
            events: [
              put('k', 'v', 10),
              mark(WatchEventType.WATCH_SLOT_LEFT, 11),
              mark(WatchEventType.WATCH_SLOT_ARRIVED, 12),
            ],
          }),
        );
        // A mark alone moves the revision on too: nothing after it comes again.
        call.write(resp({ revision: 13, events: [mark(WatchEventType.WATCH_SLOT_LEFT, 13)] }));
        call.write(
          resp({
            revision: 14,
            events: [{ ...put('k', 'v', 14), type: WatchEventType.UNRECOGNIZED }],
          }),
        );
      },
    ];
    const it = client.watch('k')[Symbol.asyncIterator]();
    const [, batch, markOnly] = await next(it, 3);
    expect(batch.events.map((e) => [e.type, e.revision])).toEqual([['put', 10]]);
    expect(batch.slotMarks).toEqual([
      { type: 'slot-left', slot: 3, revision: 11, configVersion: 8, sinceConfigVersion: 2 },
      { type: 'slot-arrived', slot: 3, revision: 12, configVersion: 8, sinceConfigVersion: 2 },
    ]);
    expect(batch.revision).toBe(12);
    expect(markOnly).toMatchObject({ revision: 13, events: [], progress: false });
    expect(markOnly.slotMarks).toHaveLength(1);
    await expect(it.next()).rejects.toThrow(
      `watch of group 1: ${a.address} sent an event of unknown type ${WatchEventType.UNRECOGNIZED}`,
    );
  });

  it('reads the topology again when a node says it no longer serves the group, and goes where it says', async () => {
    const client = newClient();
    a.script = [
      (call) => {
        // The group moved to c between the client's topology read and its call.
        meta.groups.set(1, { servers: [c.address], slots: allSlots });
        meta.version = 2;
        fail(call, grpc.status.FAILED_PRECONDITION, 'this node serves group 3');
      },
    ];
    const queries = meta.queries;
    const it = client.watch('k')[Symbol.asyncIterator]();
    expect(await next(it, 1)).toEqual([
      { group: 1, revision: 0, events: [], slotMarks: [], created: true, progress: false },
    ]);
    expect(a.calls).toHaveLength(1);
    expect(b.calls).toHaveLength(0);
    expect(c.calls.map((call) => call.request.groupId)).toEqual([1]);
    expect(meta.queries).toBeGreaterThanOrEqual(queries + 2);
    await it.return(undefined);
  });

  it('throws WatchCompactedError, naming the group and the oldest revision it can still watch', async () => {
    const client = newClient();
    a.script = [
      (call) => {
        call.write(resp({ compactRevision: 50, cancelReason: 'revision 3 is compacted' }));
        call.end();
      },
    ];
    const batches: WatchBatch[] = [];
    const failure = (async () => {
      for await (const batch of client.watch('k', { startRevision: 3 })) batches.push(batch);
    })();
    await expect(failure).rejects.toThrow(WatchCompactedError);
    await expect(failure).rejects.toMatchObject({
      group: 1,
      compactRevision: 50,
      message:
        'watch of group 1: revision 3 is older than the history the group keeps: the oldest ' +
        'revision that can still be watched is 50 (revision 3 is compacted)',
    });
    expect(batches).toEqual([]);
    expect(a.calls).toHaveLength(1);
    expect(b.calls).toHaveLength(0);
  });

  it('throws a refusal that retrying cannot change without trying again', async () => {
    const client = newClient();
    a.script = [(call) => fail(call, grpc.status.INVALID_ARGUMENT, 'key: too long')];
    const refused = client.watch('k')[Symbol.asyncIterator]().next();
    await expect(refused).rejects.toThrow(InvalidArgumentError);
    await expect(refused).rejects.toThrow('watch of group 1: key: too long');
    expect(a.calls.length + b.calls.length).toBe(1);

    // Refused after the start: the batches before come first.
    a.script = [
      (call) => {
        created(call, 7);
        setImmediate(() => fail(call, grpc.status.PERMISSION_DENIED, 'user u may not read k'));
      },
    ];
    const it = client.watch('k')[Symbol.asyncIterator]();
    expect(await next(it, 1)).toMatchObject([{ created: true, revision: 7 }]);
    await expect(it.next()).rejects.toThrow(AccessDeniedError);
    expect(a.calls.length + b.calls.length).toBe(2);
  });

  it('fails when a server sends changes before saying where the watch starts', async () => {
    a.script = [
      (call) => {
        call.write(resp({ revision: 3, events: [put('k', 'v', 3)] }));
      },
    ];
    await expect(newClient().watch('k')[Symbol.asyncIterator]().next()).rejects.toThrow(
      `watch of group 1: ${a.address} answered the watch without a created response first`,
    );
  });

  it('fails, naming the group, when no member can be reached', async () => {
    meta.groups.set(1, { servers: [await closedAddress()], slots: allSlots });
    const it = newClient().watch('k')[Symbol.asyncIterator]();
    await expect(it.next()).rejects.toThrow(UnavailableError);
    await expect(newClient().watch('k')[Symbol.asyncIterator]().next()).rejects.toThrow(
      /^watch of group 1: every member of group 1 refused the connection/,
    );
  });

  it('watches every kv group, for a prefix as for a key alone, each from its own start revision', async () => {
    const client = newClient();
    const group1Slots = allSlots.slice(0, slotCount / 2);
    const group2Slots = allSlots.slice(slotCount / 2);
    meta.groups = new Map([
      [1, { servers: [a.address], slots: group1Slots }],
      [2, { servers: [c.address], slots: group2Slots }],
    ]);
    a.script = [
      (call) => {
        created(call);
        call.write(resp({ revision: 10, events: [put('p/a', '1', 10)] }));
        call.write(resp({ revision: 12, events: [put('p/b', '2', 12)] }));
      },
    ];
    c.script = [
      (call) => {
        created(call);
        call.write(
          resp({ groupId: 2, revision: 31, events: [put('p/c', '3', 30), del('p/c', 31)] }),
        );
      },
    ];
    const it = client
      .watch('p/', { prefix: true, startRevision: 10, startRevisions: { 2: 30 } })
      [Symbol.asyncIterator]();
    const batches = await next(it, 5);
    const ofGroup = (g: number): WatchBatch[] => batches.filter((batch) => batch.group === g);
    expect(ofGroup(1).map((batch) => [batch.created, batch.revision])).toEqual([
      [true, 9],
      [false, 10],
      [false, 12],
    ]);
    expect(revisions(ofGroup(1))).toEqual([10, 12]);
    expect(ofGroup(2).map((batch) => [batch.created, batch.revision])).toEqual([
      [true, 29],
      [false, 31],
    ]);
    expect(revisions(ofGroup(2))).toEqual([30, 31]);
    for (const [node, groupId, startRevision] of [
      [a, 1, 10],
      [c, 2, 30],
    ] as const) {
      expect(node.calls.map((call) => call.request)).toEqual([
        {
          groupId,
          key: Buffer.from('p/'),
          rangeEnd: Buffer.from('p0'),
          startRevision,
          prevKv: false,
          progressNotify: false,
        },
      ]);
    }
    await it.return(undefined);

    // A key's slot may move to another group: every group is watched for it too.
    const key = keyInSlots(group2Slots);
    const single = client.watch(key)[Symbol.asyncIterator]();
    const started = await next(single, 2);
    expect(started.map((batch) => [batch.group, batch.created]).sort()).toEqual([
      [1, true],
      [2, true],
    ]);
    for (const node of [a, c])
      expect(node.calls.map((call) => call.request.key.toString())).toEqual(['p/', key]);
    await single.return(undefined);
  });

  it("passes a moved slot's changes on in the order they were applied, across its groups", async () => {
    const client = newClient();
    meta.groups = new Map([
      [1, { servers: [a.address], slots: allSlots.slice(0, slotCount / 2) }],
      [2, { servers: [c.address], slots: allSlots.slice(slotCount / 2) }],
    ]);
    const slot = slotOfKey(Buffer.from('k'), slotCount);
    const ownsK = (since: number) => ({ slotCount, slots: [{ slot, sinceConfigVersion: since }] });
    let leave = (): void => {};
    a.script = [
      (call) => {
        // Group 1 wrote k's slot since version 1, and changes k at revision 10.
        call.write(resp({ created: true, revision: 9, ...ownsK(1) }));
        call.write(resp({ revision: 10, events: [put('k', 'old', 10)] }));
        leave = () => {
          const left = WireWatchEvent.fromPartial({
            type: WatchEventType.WATCH_SLOT_LEFT,
            revision: 11,
            slot,
            configVersion: 4,
            sinceConfigVersion: 1,
          });
          call.write(resp({ revision: 11, events: [left] }));
        };
      },
    ];
    c.script = [
      (call) => {
        // Group 2 writes it since version 5 (it came later), and has changed k already.
        call.write(resp({ groupId: 2, created: true, revision: 2, ...ownsK(5) }));
        call.write(resp({ groupId: 2, revision: 3, events: [put('k', 'new', 3)] }));
      },
    ];
    const watch = client.watch('k');
    const it = watch[Symbol.asyncIterator]();
    const first = await next(it, 3);
    expect(watch.startedEveryGroup()).toBe(true);
    // Group 2's change waits for the end of group 1's period, whatever came first.
    expect(revisions(first)).toEqual([10]);
    expect(first.at(-1)).toMatchObject({ group: 1, revision: 10 });
    leave();
    const rest = await next(it, 2);
    expect(rest.map((batch) => [batch.group, batch.slotMarks.length, revisions([batch])])).toEqual([
      [1, 1, []],
      [2, 0, [3]],
    ]);
    await it.return(undefined);
  });

  it('reads the topology again when a slot leaves a group, and watches a new group from its first revision', async () => {
    const client = newClient();
    let leave = (): void => {};
    a.script = [
      (call) => {
        created(call, 4);
        leave = () => {
          const left = WireWatchEvent.fromPartial({
            type: WatchEventType.WATCH_SLOT_LEFT,
            revision: 5,
            slot: 0,
            configVersion: 3,
          });
          call.write(resp({ revision: 5, events: [left] }));
        };
      },
    ];
    const watch = client.watch('k');
    const it = watch[Symbol.asyncIterator]();
    expect(await next(it, 1)).toMatchObject([{ group: 1, created: true }]);
    expect(watch.startedEveryGroup()).toBe(true);
    // Group 3 is created and given a slot.
    meta.groups.set(3, { servers: [c.address], slots: [] });
    meta.version = 2;
    leave();
    const [marked, joined] = await next(it, 2);
    expect(marked).toMatchObject({ group: 1, revision: 5, slotMarks: [{ type: 'slot-left' }] });
    expect(joined).toMatchObject({ group: 3, created: true, revision: 0 });
    expect(c.calls.map((call) => [call.request.groupId, call.request.startRevision])).toEqual([
      [3, 1],
    ]);
    expect(watch.startedEveryGroup()).toBe(true);
    await it.return(undefined);
  });

  it('ends the watch of a group gone from the topology without failing, and its periods with it', async () => {
    const client = newClient();
    const slot = slotOfKey(Buffer.from('k'), slotCount);
    const ownsK = (since: number) => ({ slotCount, slots: [{ slot, sinceConfigVersion: since }] });
    meta.groups.set(3, { servers: [c.address], slots: [] });
    c.script = [
      (call) => {
        // Group 3 held k's slot before group 1; its end was never seen, and it is removed.
        call.write(resp({ groupId: 3, created: true, ...ownsK(1) }));
        meta.groups.delete(3);
        meta.version = 2;
        fail(call, grpc.status.FAILED_PRECONDITION, 'this node serves no group');
      },
    ];
    a.script = [
      (call) => {
        call.write(resp({ created: true, revision: 6, ...ownsK(5) }));
        call.write(resp({ revision: 7, events: [put('k', 'v', 7)] }));
      },
    ];
    // Group 1's change waits for group 3's period: it comes once group 3 is known to be gone.
    const batches = await next(client.watch('k')[Symbol.asyncIterator](), 3);
    expect(batches.filter((batch) => batch.events.length > 0)).toMatchObject([
      { group: 1, revision: 7 },
    ]);
    expect(c.calls).toHaveLength(1);
  });

  it('pauses the streams while the consumer is behind, and then delivers everything once, in order', async () => {
    const client = newClient();
    const total = 2000;
    const value = 'v'.repeat(1024);
    let written = 0;
    let blocked = false;
    a.script = [
      async (call) => {
        const cancelled = once(call, 'cancelled');
        created(call, 0);
        for (let r = 1; r <= total && !call.cancelled; r++) {
          if (!call.write(resp({ revision: r, events: [put('k', value, r)] }))) {
            blocked = true;
            await Promise.race([once(call, 'drain'), cancelled]);
            blocked = false;
          }
          written = r;
        }
      },
    ];
    const queuedBatchesMax = 4;
    const watch = client.watch('k', { queuedBatchesMax });
    const it = watch[Symbol.asyncIterator]();
    expect(await next(it, 1)).toMatchObject([{ created: true }]);
    // Paused, the client stops reading: its queue stays full and the server stays held back.
    // (Without the pause the queue would grow past the bound, or the server write everything.)
    await waitFor(() => blocked && watch.queuedBatches >= queuedBatchesMax, {
      what: 'the fake node to be held back while the queue is full',
    });
    expect(written).toBeLessThan(total);
    expect(watch.queuedBatches).toBe(queuedBatchesMax);
    let queuedMost = 0;
    const seen: number[] = [];
    while (seen.length < total) {
      queuedMost = Math.max(queuedMost, watch.queuedBatches);
      seen.push(...revisions(await next(it, 1)));
    }
    expect(queuedMost).toBeLessThanOrEqual(queuedBatchesMax);
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    await it.return(undefined);
  });

  it('ends cleanly when its signal is aborted, cancelling the stream', async () => {
    const client = newClient();
    const controller = new AbortController();
    const seen: WatchBatch[] = [];
    const watching = (async () => {
      for await (const batch of client.watch('k', { signal: controller.signal })) seen.push(batch);
    })();
    await waitFor(() => seen.length === 1, { what: 'the watch to start' });
    controller.abort();
    await watching;
    await waitFor(() => a.calls[0].cancelled, { what: 'the stream to be cancelled' });
    expect(seen).toMatchObject([{ created: true }]);

    // A signal aborted already: nothing is asked.
    const calls = a.calls.length;
    for await (const batch of client.watch('k', { signal: AbortSignal.abort() })) seen.push(batch);
    expect(seen).toHaveLength(1);
    expect(a.calls).toHaveLength(calls);
  });

  it('ends cleanly when the client is closed', async () => {
    const client = newClient();
    const seen: WatchBatch[] = [];
    const watching = (async () => {
      for await (const batch of client.watch('k')) seen.push(batch);
    })();
    await waitFor(() => seen.length === 1, { what: 'the watch to start' });
    client.close();
    await watching;
    await waitFor(() => a.calls[0].cancelled, { what: 'the stream to be cancelled' });
  });

  it('refuses options that cannot make a watch', () => {
    const client = newClient();
    expect(() => client.watch('a', { prefix: true, rangeEnd: 'b' })).toThrow(
      'a watch takes a range end or prefix: true, not both',
    );
    expect(() => client.watch('')).toThrow('a watch needs a key');
    expect(() => client.watch('b', { rangeEnd: 'a' })).toThrow(
      'the range end of a watch must come after its key',
    );
    expect(() => client.watch('a', { startRevision: -1 })).toThrow(
      'startRevision must be a non-negative integer, got -1',
    );
    expect(() => client.watch('a', { startRevisions: { 2: 1.5 } })).toThrow(
      'startRevisions[2] must be a non-negative integer, got 1.5',
    );
    expect(() => client.watch('a', { queuedBatchesMax: 0 })).toThrow(InvalidArgumentError);
  });
});
