// The client's leases against scripted fake kv nodes on 127.0.0.1 (real gRPC): each call goes to
// the leader of the group the lease belongs to (the id carries it) and follows NOT_LEADER; a
// revoke of a lease not held is a LeaseNotFoundError; a keep-alive sends every third of the TTL
// over one stream, opens it again on the leader after it breaks or is redirected, keeps only the
// newest answer for a reader that lags, and ends when the lease is gone or it is closed; a put
// with a lease carries it.
import * as grpc from '@grpc/grpc-js';
import {
  ClientOperationResp,
  ErrorCode,
  LeaseAction,
  LeaseResp,
  type ClientOperationReq,
  type LeaseKeepAliveReq,
  type LeaseKeepAliveResp,
  type LeaseReq,
} from '@eraftkv/protocol';
import {
  closedAddress,
  startFakeERaftKv,
  waitFor,
  type StartedServer,
} from '@eraftkv/test-support';
import {
  EraftKvClient,
  formatLeaseId,
  InvalidArgumentError,
  LeaseNotFoundError,
  leaseIdGroupFactor,
  UnavailableError,
  type LeaseKeepAliveResponse,
} from '../src';
import { keepAliveIntervalMs } from '../src/lease';
import { fastClient, keyInSlots, next, slotCount, startMeta, type FakeMeta } from './fake-meta';

type KeepAliveCall = grpc.ServerDuplexStream<LeaseKeepAliveReq, LeaseKeepAliveResp>;

/** What a fake node answers a Lease call: an answer's fields, or a gRPC status to fail with. */
type LeaseAnswer = Partial<LeaseResp> | { readonly code: grpc.status; readonly details: string };

interface FakeLeaseNode {
  address: string;
  server: StartedServer | null;
  leaseRequests: LeaseReq[];
  /** How the next Lease calls are answered, in order; past the script, `leaseDefault`. */
  leaseScript: ((req: LeaseReq) => LeaseAnswer)[];
  leaseDefault: (req: LeaseReq) => LeaseAnswer;
  keepAliveCalls: KeepAliveCall[];
  /** Every keep-alive received: the index of its stream, the lease, when. */
  keepAlives: { readonly stream: number; readonly id: number; readonly atMs: number }[];
  /** Answers keep-alive number `n` (0-based, over every stream of the node). */
  keepAlive: (call: KeepAliveCall, req: LeaseKeepAliveReq, n: number) => void;
  dataRequests: ClientOperationReq[];
}

const id1 = (n: number): number => 1 * leaseIdGroupFactor + n;
const id2 = (n: number): number => 2 * leaseIdGroupFactor + n;

function keepAliveAnswer(fields: Partial<LeaseKeepAliveResp>): LeaseKeepAliveResp {
  return {
    id: 0,
    ttlSeconds: 0,
    errorCode: ErrorCode.OK,
    errorMessage: '',
    leaderAddress: '',
    ...fields,
  };
}

/** Answers every keep-alive with TTL `ttlSeconds`. */
const answerTtl =
  (ttlSeconds: number) =>
  (call: KeepAliveCall, req: LeaseKeepAliveReq): void => {
    call.write(keepAliveAnswer({ id: req.id, ttlSeconds }));
  };

async function startLeaseNode(): Promise<FakeLeaseNode> {
  const node: FakeLeaseNode = {
    address: '',
    server: null,
    leaseRequests: [],
    leaseScript: [],
    leaseDefault: () => ({}),
    keepAliveCalls: [],
    keepAlives: [],
    keepAlive: answerTtl(60),
    dataRequests: [],
  };
  node.server = await startFakeERaftKv(
    {
      lease: (call, callback) => {
        node.leaseRequests.push(call.request);
        const answer = (node.leaseScript.shift() ?? node.leaseDefault)(call.request);
        if ('code' in answer) callback(answer, null);
        else callback(null, LeaseResp.fromPartial(answer));
      },
      leaseKeepAlive: (call) => {
        const stream = node.keepAliveCalls.push(call) - 1;
        call.on('data', (req: LeaseKeepAliveReq) => {
          node.keepAlives.push({ stream, id: req.id, atMs: Date.now() });
          node.keepAlive(call, req, node.keepAlives.length - 1);
        });
        call.on('end', () => call.end());
        call.on('error', () => {});
      },
      processRwOperation: (call, callback) => {
        node.dataRequests.push(call.request);
        callback(
          null,
          ClientOperationResp.fromPartial({
            ops: call.request.kvs.map((op) => ({ ...op, success: true })),
            groupId: 1,
            revision: 7,
          }),
        );
      },
    },
    { what: 'the fake kv node' },
  );
  node.address = node.server.address;
  return node;
}

describe('EraftKvClient leases', () => {
  let meta: FakeMeta;
  let a: FakeLeaseNode;
  let b: FakeLeaseNode;
  let c: FakeLeaseNode;
  const clients: EraftKvClient[] = [];
  const newClient = (): EraftKvClient => fastClient(meta, clients);
  const allSlots = Array.from({ length: slotCount }, (_, i) => i);
  const group1Slots = allSlots.slice(0, slotCount / 2);
  const group2Slots = allSlots.slice(slotCount / 2);

  beforeAll(async () => {
    [meta, a, b, c] = await Promise.all([
      startMeta(),
      startLeaseNode(),
      startLeaseNode(),
      startLeaseNode(),
    ]);
  });
  beforeEach(() => {
    // Group 1 on a and b (a is asked first), group 2 on c.
    meta.groups = new Map([
      [1, { servers: [a.address, b.address], slots: group1Slots }],
      [2, { servers: [c.address], slots: group2Slots }],
    ]);
    for (const node of [a, b, c]) {
      node.leaseRequests = [];
      node.leaseScript = [];
      node.leaseDefault = () => ({});
      node.keepAliveCalls = [];
      node.keepAlives = [];
      node.keepAlive = answerTtl(60);
      node.dataRequests = [];
    }
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    for (const s of [meta, a, b, c]) await s.server?.close();
  });

  /** Answers grants as a leader of `group` does: lease n of the group, at revision 10 + n. */
  const grants = (group: number): ((req: LeaseReq) => LeaseAnswer) => {
    let n = 0;
    return (req) => {
      n++;
      return {
        groupId: group,
        revision: 10 + n,
        leases: [
          {
            id: group * leaseIdGroupFactor + n,
            grantedTtlSeconds: req.ttlSeconds,
            ttlSeconds: req.ttlSeconds,
            keys: [],
          },
        ],
      };
    };
  };

  it('grants in the group asked for, the group of a key, or the lowest kv group', async () => {
    const client = newClient();
    a.leaseDefault = grants(1);
    c.leaseDefault = grants(2);
    expect(await client.leaseGrant(60, { group: 2 })).toEqual({
      id: id2(1),
      ttlSeconds: 60,
      group: 2,
      revision: 11,
    });
    expect(await client.leaseGrant(5, { key: keyInSlots(group2Slots) })).toMatchObject({
      id: id2(2),
      group: 2,
    });
    expect(await client.leaseGrant(7, { key: keyInSlots(group1Slots) })).toMatchObject({
      id: id1(1),
      group: 1,
    });
    expect(await client.leaseGrant(9)).toMatchObject({ id: id1(2), ttlSeconds: 9, group: 1 });
    expect(c.leaseRequests).toEqual([
      { action: LeaseAction.LEASE_GRANT, groupId: 2, id: 0, ttlSeconds: 60, keys: false },
      { action: LeaseAction.LEASE_GRANT, groupId: 2, id: 0, ttlSeconds: 5, keys: false },
    ]);
    expect(a.leaseRequests.map((r) => [r.groupId, r.ttlSeconds])).toEqual([
      [1, 7],
      [1, 9],
    ]);
    expect(b.leaseRequests).toHaveLength(0);
  });

  it('follows NOT_LEADER to the leader named, and goes there first afterwards', async () => {
    const client = newClient();
    a.leaseDefault = () => ({
      errorCode: ErrorCode.NOT_LEADER,
      leaderAddress: b.address,
      errorMessage: 'not the leader',
    });
    b.leaseDefault = grants(1);
    expect(await client.leaseGrant(60, { group: 1 })).toMatchObject({ id: id1(1), group: 1 });
    expect(await client.leaseGrant(60, { group: 1 })).toMatchObject({ id: id1(2), group: 1 });
    expect(a.leaseRequests).toHaveLength(1);
    expect(b.leaseRequests).toHaveLength(2);
  });

  it('refuses a TTL or group that cannot be, and passes on the cluster refusing a TTL', async () => {
    const client = newClient();
    await expect(client.leaseGrant(0)).rejects.toThrow(InvalidArgumentError);
    await expect(client.leaseGrant(1.5)).rejects.toThrow(
      'a lease TTL is a whole number of seconds >= 1, got 1.5',
    );
    await expect(client.leaseGrant(5, { group: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(client.leaseGrant(5, { group: 1, key: 'k' })).rejects.toThrow(
      'a lease is granted in a group or for a key, not both',
    );
    a.leaseDefault = () => ({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'ttl_seconds must be in [1, 86400] (--lease-ttl-max-seconds), got 100000',
    });
    await expect(client.leaseGrant(100_000)).rejects.toThrow(
      new InvalidArgumentError(
        'ttl_seconds must be in [1, 86400] (--lease-ttl-max-seconds), got 100000',
      ),
    );
    expect(a.leaseRequests).toHaveLength(1);
  });

  it('revokes at the leader of the group the id carries, and says when the lease is not held', async () => {
    const client = newClient();
    c.leaseScript = [
      () => ({ revision: 40 }),
      () => ({ errorCode: ErrorCode.LEASE_NOT_FOUND, errorMessage: 'not held', revision: 41 }),
    ];
    expect(await client.leaseRevoke(id2(3))).toEqual({ revision: 40 });
    const refused = client.leaseRevoke(id2(3));
    await expect(refused).rejects.toThrow(LeaseNotFoundError);
    await expect(refused).rejects.toMatchObject({
      id: id2(3),
      message: `lease ${formatLeaseId(id2(3))} not found (never granted, expired or revoked)`,
    });
    expect(formatLeaseId(id2(3))).toBe('0000000200000003');
    expect(c.leaseRequests.map((r) => [r.action, r.id])).toEqual([
      [LeaseAction.LEASE_REVOKE, id2(3)],
      [LeaseAction.LEASE_REVOKE, id2(3)],
    ]);
    expect(a.leaseRequests).toHaveLength(0);
    // Not lease ids: nothing is sent.
    for (const id of [0, 7, leaseIdGroupFactor, 2 * leaseIdGroupFactor, 1.5])
      await expect(client.leaseRevoke(id)).rejects.toThrow(InvalidArgumentError);
    expect(c.leaseRequests).toHaveLength(2);
  });

  it('counts a revoke whose first attempt may have applied as done when the retry finds no lease', async () => {
    const client = newClient();
    // The first attempt gets no answer in time; the retry finds the lease gone.
    c.leaseScript = [
      () => ({ code: grpc.status.UNAVAILABLE, details: 'the node is stopping' }),
      () => ({ errorCode: ErrorCode.LEASE_NOT_FOUND, revision: 42 }),
    ];
    expect(await client.leaseRevoke(id2(4))).toEqual({ revision: 42 });
    expect(c.leaseRequests).toHaveLength(2);
  });

  it('tells the time to live of a lease, its keys when asked, and -1 when it is not held', async () => {
    const client = newClient();
    c.leaseScript = [
      () => ({
        leases: [
          {
            id: id2(5),
            grantedTtlSeconds: 60,
            ttlSeconds: 52,
            keys: [Buffer.from('k1'), Buffer.from('k2')],
          },
        ],
      }),
      () => ({ leases: [{ id: id2(6), grantedTtlSeconds: 0, ttlSeconds: -1, keys: [] }] }),
    ];
    expect(await client.leaseTimeToLive(id2(5), { keys: true })).toEqual({
      id: id2(5),
      group: 2,
      ttlSeconds: 52,
      grantedTtlSeconds: 60,
      keys: [Buffer.from('k1'), Buffer.from('k2')],
    });
    expect(await client.leaseTimeToLive(id2(6))).toEqual({
      id: id2(6),
      group: 2,
      ttlSeconds: -1,
      grantedTtlSeconds: 0,
      keys: [],
    });
    expect(c.leaseRequests.map((r) => [r.action, r.id, r.keys])).toEqual([
      [LeaseAction.LEASE_TIME_TO_LIVE, id2(5), true],
      [LeaseAction.LEASE_TIME_TO_LIVE, id2(6), false],
    ]);
  });

  it('lists the leases of one group, or of every kv group in id order', async () => {
    const client = newClient();
    const lease = (id: number, ttl: number) => ({
      id,
      grantedTtlSeconds: 60,
      ttlSeconds: ttl,
      keys: [],
    });
    a.leaseDefault = () => ({ leases: [lease(id1(9), 50), lease(id1(2), 40)] });
    c.leaseDefault = () => ({ leases: [lease(id2(1), 30)] });
    expect(await client.leases()).toEqual([
      { id: id1(2), group: 1, ttlSeconds: 40, grantedTtlSeconds: 60 },
      { id: id1(9), group: 1, ttlSeconds: 50, grantedTtlSeconds: 60 },
      { id: id2(1), group: 2, ttlSeconds: 30, grantedTtlSeconds: 60 },
    ]);
    expect(await client.leases({ group: 2 })).toEqual([
      { id: id2(1), group: 2, ttlSeconds: 30, grantedTtlSeconds: 60 },
    ]);
    expect(a.leaseRequests.map((r) => [r.action, r.groupId])).toEqual([
      [LeaseAction.LEASE_LIST, 1],
    ]);
    expect(c.leaseRequests.map((r) => [r.action, r.groupId])).toEqual([
      [LeaseAction.LEASE_LIST, 2],
      [LeaseAction.LEASE_LIST, 2],
    ]);
  });

  it('keeps a lease alive once, and says when it is not held', async () => {
    const client = newClient();
    c.keepAlive = answerTtl(30);
    expect(await client.leaseKeepAliveOnce(id2(1))).toBe(30);
    c.keepAlive = answerTtl(0);
    await expect(client.leaseKeepAliveOnce(id2(1))).rejects.toThrow(LeaseNotFoundError);
    expect(c.keepAlives.map((k) => k.id)).toEqual([id2(1), id2(1)]);
    await waitFor(() => c.keepAliveCalls.every((call) => call.cancelled), {
      what: 'the keep-alive streams to be cancelled',
    });
  });

  it('sends a keep-alive at once and then every third of the TTL over one stream', async () => {
    const client = newClient();
    c.keepAlive = answerTtl(1);
    const keeper = client.leaseKeepAlive(id2(1));
    const it = keeper[Symbol.asyncIterator]();
    expect(await next(it, 1)).toEqual([{ id: id2(1), ttlSeconds: 1 }]);
    await waitFor(() => c.keepAlives.length >= 5, { what: 'five keep-alives' });
    keeper.close();
    expect(await it.next()).toEqual({ done: true, value: undefined });
    expect(await keeper.ended).toBeNull();
    const sent = c.keepAlives.slice(0, 5);
    expect(sent.map((k) => [k.stream, k.id])).toEqual(Array.from({ length: 5 }, () => [0, id2(1)]));
    // A third of a 1 s TTL apart: not sooner (no flood), and well before the lease would expire.
    for (let i = 1; i < sent.length; i++) {
      const gapMs = sent[i].atMs - sent[i - 1].atMs;
      expect(gapMs).toBeGreaterThanOrEqual(keepAliveIntervalMs(1) - 20);
      expect(gapMs).toBeLessThan(800);
    }
    await waitFor(() => c.keepAliveCalls[0].cancelled, { what: 'the stream to be cancelled' });
    const count = c.keepAlives.length;
    // Closed: nothing more is sent. An absence cannot be awaited: wait past two intervals.
    await new Promise((resolve) => setTimeout(resolve, 2 * keepAliveIntervalMs(1)));
    expect(c.keepAlives).toHaveLength(count);
    expect(keepAliveIntervalMs(60)).toBe(20_000);
  });

  it('opens the stream again after it breaks, on the next member, and follows NOT_LEADER', async () => {
    const client = newClient();
    // Group 1 on a, b and d. a answers twice, then its stream breaks; b (asked next) names a as
    // the leader again, rather than d, the next in turn; a answers.
    const d = await startLeaseNode();
    meta.groups.set(1, { servers: [a.address, b.address, d.address], slots: group1Slots });
    a.keepAlive = (call, req, n) => {
      if (n === 2) call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'stopping' });
      else answerTtl(1)(call, req);
    };
    const notLeader =
      (leader: FakeLeaseNode) =>
      (call: KeepAliveCall, req: LeaseKeepAliveReq): void => {
        call.write(
          keepAliveAnswer({
            id: req.id,
            errorCode: ErrorCode.NOT_LEADER,
            leaderAddress: leader.address,
          }),
        );
      };
    b.keepAlive = notLeader(a);
    const keeper = client.leaseKeepAlive(id1(1));
    const it = keeper[Symbol.asyncIterator]();
    try {
      await next(it, 3);
      expect(a.keepAliveCalls).toHaveLength(2);
      expect(b.keepAliveCalls).toHaveLength(1);
      expect(a.keepAlives.slice(0, 4).map((k) => k.stream)).toEqual([0, 0, 0, 1]);
      expect(b.keepAlives.map((k) => k.id)).toEqual([id1(1)]);
      await waitFor(() => b.keepAliveCalls[0].cancelled, { what: 'the redirected stream to end' });

      // The leader moves mid-stream: the next keep-alive goes to the one a names (b), not to
      // the next in turn (d).
      a.keepAlive = notLeader(b);
      b.keepAlive = answerTtl(1);
      await waitFor(() => b.keepAlives.length >= 2, { what: 'a keep-alive to reach b' });
      expect(b.keepAliveCalls).toHaveLength(2);
      expect((await next(it, 1))[0]).toEqual({ id: id1(1), ttlSeconds: 1 });
      expect(d.keepAliveCalls).toHaveLength(0);
    } finally {
      keeper.close();
      await d.server?.close();
    }
  });

  it('ends with LeaseNotFoundError once the server answers TTL 0, and sends nothing more', async () => {
    const client = newClient();
    c.keepAlive = (call, req, n) => answerTtl(n < 2 ? 1 : 0)(call, req);
    const keeper = client.leaseKeepAlive(id2(7));
    const answers: LeaseKeepAliveResponse[] = [];
    const keeping = (async () => {
      for await (const answer of keeper) answers.push(answer);
    })();
    await expect(keeping).rejects.toThrow(LeaseNotFoundError);
    await expect(keeping).rejects.toMatchObject({ id: id2(7) });
    expect(answers.length).toBeGreaterThanOrEqual(1);
    expect(await keeper.ended).toBeInstanceOf(LeaseNotFoundError);
    expect(c.keepAlives).toHaveLength(3);
    await waitFor(() => c.keepAliveCalls[0].cancelled, { what: 'the stream to be cancelled' });
    expect(c.keepAliveCalls).toHaveLength(1);
  });

  it('keeps only the newest answer for a reader that lags', async () => {
    const client = newClient();
    // TTL 2 first, then 1: a reader that took nothing meanwhile gets the 1 alone.
    c.keepAlive = (call, req, n) => answerTtl(n === 0 ? 2 : 1)(call, req);
    const keeper = client.leaseKeepAlive(id2(8));
    await waitFor(() => c.keepAlives.length >= 4, { what: 'four keep-alives' });
    const it = keeper[Symbol.asyncIterator]();
    expect((await next(it, 1))[0].ttlSeconds).toBe(1);
    expect(keeper.latest).toEqual({ id: id2(8), ttlSeconds: 1 });
    // The next one is a new answer, not an older one kept.
    const taken = c.keepAlives.length;
    await next(it, 1);
    expect(c.keepAlives.length).toBeGreaterThan(taken);
    await it.return(undefined);
    expect(await keeper.ended).toBeNull();
  });

  it('stops on its signal or when the client is closed, ending the iterable without an error', async () => {
    const client = newClient();
    const controller = new AbortController();
    const keeper = client.leaseKeepAlive(id2(9), { signal: controller.signal });
    await waitFor(() => keeper.latest, { what: 'the first answer' });
    controller.abort();
    expect(await keeper.ended).toBeNull();
    for await (const answer of keeper) throw new Error(`an answer after the end: ${answer.id}`);
    await waitFor(() => c.keepAliveCalls[0].cancelled, { what: 'the stream to be cancelled' });

    const closing = newClient();
    const other = closing.leaseKeepAlive(id2(9));
    await waitFor(() => other.latest, { what: 'the first answer' });
    closing.close();
    expect(await other.ended).toBeNull();
  });

  it('fails when no member of the group answers within the deadline', async () => {
    const client = newClient();
    meta.groups.set(2, { servers: [await closedAddress()], slots: group2Slots });
    const keeper = client.leaseKeepAlive(id2(1));
    expect(await keeper.ended).toBeInstanceOf(UnavailableError);
    await expect(keeper[Symbol.asyncIterator]().next()).rejects.toThrow(UnavailableError);
  });

  it('sends the lease of a put, and of each put of a batch', async () => {
    const client = newClient();
    const key = keyInSlots(group1Slots);
    expect(await client.put(key, 'v', { lease: id1(3) })).toEqual({ group: 1, revision: 7 });
    await client.put(key, 'w');
    await client.batch([
      { type: 'put', key, value: 'x', lease: id1(4) },
      { type: 'del', key },
    ]);
    expect(a.dataRequests.map((r) => r.kvs.map((op) => op.lease))).toEqual([
      [id1(3)],
      [0],
      [id1(4), 0],
    ]);
    await expect(client.put(key, 'v', { lease: 12 })).rejects.toThrow(InvalidArgumentError);
    expect(a.dataRequests).toHaveLength(3);
  });
});
