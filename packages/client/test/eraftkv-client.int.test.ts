// EraftKvClient against scripted fake servers on 127.0.0.1 (real gRPC): routing, redirects,
// topology refresh, retries that keep their request id, deadlines and typed errors. The real
// servers are exercised end to end in scripts/test.
import * as grpc from '@grpc/grpc-js';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { closedAddress, startFakeERaftKv, type StartedServer } from '@eraftkv/test-support';
import {
  ClientOpType,
  ErrorCode,
  MemberChangeType,
  slotOfKey,
  type ClientOperationReq,
  type ClientOperationResp,
  type ERaftKvServer,
  type KvOpPair,
} from '@eraftkv/protocol';
import {
  ClusterError,
  EraftKvClient,
  InvalidArgumentError,
  TimeoutError,
  UnavailableError,
  WrongShardError,
} from '../src';
import { slotCount, startMeta, type FakeMeta } from './fake-meta';

interface FakeKv {
  address: string;
  server: StartedServer | null;
  calls: ClientOperationReq[];
  /** Scripted answer for the next calls; null = behave as a leader holding `data`. */
  script: ((req: ClientOperationReq) => ClientOperationResp | grpc.ServiceError | null)[];
  data: Map<string, Buffer>;
  applied: Map<string, ClientOperationResp>;
  /** The group's members as this fake leader keeps them (MemberChange). */
  members: { id: number; address: string; learner: boolean; incarnation: number }[];
  memberCalls: number;
  /** The next MemberChange takes effect but its answer is lost. */
  loseNextMemberAnswer: boolean;
  /** The most pairs one Scan answer carries (the server's --scan-limit-max). */
  scanLimitMax: number;
}

function resp(fields: Partial<ClientOperationResp>): ClientOperationResp {
  return {
    ops: [],
    errorCode: ErrorCode.OK,
    leaderAddress: '',
    configVersion: 1,
    errorMessage: '',
    leaderId: 0,
    groupId: 1,
    requestId: 0,
    statusCode: 0,
    revision: 0,
    ...fields,
  };
}

function answerOp(op: KvOpPair, data: Map<string, Buffer>, scanLimitMax = Infinity): KvOpPair {
  const key = op.key.toString('latin1');
  switch (op.opType) {
    case ClientOpType.Put:
      data.set(key, op.value);
      return { ...op, success: true };
    case ClientOpType.Get: {
      const value = data.get(key);
      return { ...op, success: true, found: value !== undefined, value: value ?? Buffer.alloc(0) };
    }
    case ClientOpType.Del:
      return { ...op, success: true, deleted: data.delete(key) ? 1 : 0 };
    case ClientOpType.Scan: {
      const end = op.endKey.length === 0 ? null : op.endKey.toString('latin1');
      const keys = [...data.keys()].filter((k) => k >= key && (end === null || k < end)).sort();
      // Like a real server, at most its own bound whatever the request asks for.
      const limit = Math.min(op.limit, scanLimitMax);
      const kvs = keys
        .slice(0, limit)
        .map((k) => ({ key: Buffer.from(k, 'latin1'), value: data.get(k)! }));
      return { ...op, success: true, kvs, more: keys.length > limit };
    }
    default:
      return op;
  }
}

async function startKv(): Promise<FakeKv> {
  const fake: FakeKv = {
    address: '',
    server: null,
    calls: [],
    script: [],
    data: new Map(),
    applied: new Map(),
    members: [],
    memberCalls: 0,
    loseNextMemberAnswer: false,
    scanLimitMax: Infinity,
  };
  /** One request, as the fake leader answers it: a scripted answer or the fake data. */
  const answer = (req: ClientOperationReq): ClientOperationResp | grpc.ServiceError => {
    fake.calls.push(req);
    const scripted = fake.script.shift()?.(req) ?? null;
    if (scripted !== null) return scripted;
    const id = `${req.clientId}/${req.commandId}`;
    const previous = req.clientId !== '' ? fake.applied.get(id) : undefined;
    if (previous !== undefined) return previous;
    const result = resp({ ops: req.kvs.map((op) => answerOp(op, fake.data, fake.scanLimitMax)) });
    if (req.clientId !== '') fake.applied.set(id, result);
    return result;
  };
  const impl: Partial<ERaftKvServer> = {
    processRwOperation: (call, callback) => {
      const result = answer(call.request);
      if ('code' in result) callback(result);
      else callback(null, result);
    },
    processRwOperationStream: (call) => {
      call.on('data', (req: ClientOperationReq) => {
        const result = answer(req);
        if ('code' in result) {
          call.write(
            resp({
              requestId: req.requestId,
              statusCode: result.code ?? grpc.status.UNKNOWN,
              errorMessage: result.details,
            }),
          );
        } else {
          call.write({ ...result, requestId: req.requestId, statusCode: 0 });
        }
      });
      call.on('end', () => call.end());
    },
    memberChange: (call, callback) => {
      const req = call.request;
      fake.memberCalls++;
      const i = fake.members.findIndex((m) => m.id === req.nodeId);
      let errorCode = ErrorCode.OK;
      if (req.changeType === MemberChangeType.REMOVE) {
        if (i < 0) errorCode = ErrorCode.NODE_NOT_FOUND;
        else fake.members.splice(i, 1);
      } else if (req.changeType === MemberChangeType.ADD_LEARNER) {
        if (i >= 0) errorCode = ErrorCode.NODE_EXISTS;
        else
          fake.members.push({
            id: req.nodeId,
            address: req.address,
            learner: true,
            incarnation: 0,
          });
      }
      if (fake.loseNextMemberAnswer) {
        fake.loseNextMemberAnswer = false;
        callback({ code: grpc.status.UNAVAILABLE, details: 'connection reset' });
        return;
      }
      callback(null, {
        errorCode,
        leaderAddress: fake.address,
        errorMessage: errorCode === ErrorCode.OK ? '' : 'refused by the fake',
        membership: { members: fake.members.map((m) => ({ ...m })) },
      });
    },
  };
  fake.server = await startFakeERaftKv(impl, { what: 'the fake kv node' });
  fake.address = fake.server.address;
  return fake;
}

describe('EraftKvClient', () => {
  let meta: FakeMeta;
  let follower: FakeKv;
  let leader: FakeKv;
  let other: FakeKv;
  const clients: EraftKvClient[] = [];
  const newClient = (deadlineMs = 3000): EraftKvClient => {
    const c = new EraftKvClient({ endpoints: [meta.address], deadlineMs, attemptTimeoutMs: 500 });
    clients.push(c);
    return c;
  };
  const allSlots = Array.from({ length: slotCount }, (_, i) => i);

  beforeAll(async () => {
    [meta, follower, leader, other] = await Promise.all([
      startMeta(),
      startKv(),
      startKv(),
      startKv(),
    ]);
  });
  beforeEach(() => {
    meta.groups = new Map([[1, { servers: [follower.address, leader.address], slots: allSlots }]]);
    meta.version = 1;
    for (const kv of [follower, leader, other]) {
      kv.calls = [];
      kv.script = [];
      kv.data.clear();
      kv.applied.clear();
      kv.members = [];
      kv.memberCalls = 0;
      kv.loseNextMemberAnswer = false;
      kv.scanLimitMax = Infinity;
    }
    // The follower redirects every request to the leader.
    follower.script = Array.from(
      { length: 100 },
      () => () => resp({ errorCode: ErrorCode.NOT_LEADER, leaderAddress: leader.address }),
    );
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    for (const s of [meta, follower, leader, other]) await s.server?.close();
  });

  it('follows a NOT_LEADER hint to the leader and then goes there directly', async () => {
    const client = newClient();
    await client.put('hello', 'world');
    expect(follower.calls).toHaveLength(1);
    expect(leader.calls).toHaveLength(1);
    expect((await client.get('hello'))?.toString()).toBe('world');
    expect(follower.calls).toHaveLength(1);
    expect(await client.get('missing')).toBeUndefined();
    await client.put('empty', '');
    expect((await client.get('empty'))?.length).toBe(0);
    expect(await client.del('hello')).toBe(true);
    expect(await client.del('hello')).toBe(false);
  });

  it("returns the group and the revision of a write's answer", async () => {
    const client = newClient();
    leader.script = [() => resp({ groupId: 1, revision: 42 })];
    expect(await client.put('r', 'v')).toEqual({ group: 1, revision: 42 });
    leader.script = [
      (req) =>
        resp({
          groupId: 1,
          revision: 43,
          ops: req.kvs.map((op) => ({ ...op, success: true, deleted: 1 })),
        }),
    ];
    const { results, header } = await client.batchWithHeader([{ type: 'del', key: 'r' }]);
    expect(results).toEqual([{ type: 'del', deleted: true }]);
    expect(header).toEqual({ group: 1, revision: 43 });
  });

  it('retries a write whose answer was lost with the same request id, so it applies once', async () => {
    const client = newClient();
    await client.put('warm-up', 'x');
    const before = leader.calls.length;
    // The leader applies the write but the answer is lost (UNAVAILABLE), once.
    leader.script = [
      (req) => {
        answerOp(req.kvs[0], leader.data);
        leader.applied.set(`${req.clientId}/${req.commandId}`, resp({ ops: req.kvs }));
        return {
          code: grpc.status.UNAVAILABLE,
          details: 'connection reset',
          message: 'reset',
          name: 'Error',
          metadata: new grpc.Metadata(),
        };
      },
    ];
    await client.put('counter', 'once');
    const attempts = leader.calls
      .slice(before)
      .filter((r) => r.kvs[0]?.key.toString() === 'counter');
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(new Set(attempts.map((r) => `${r.clientId}/${r.commandId}`)).size).toBe(1);
    expect(attempts[0].clientId).toBe(client.clientId);
  });

  it('retries a request on SLOT_MIGRATING at the same server until the move is done', async () => {
    const client = newClient();
    await client.put('moving', 'v1');
    const before = leader.calls.length;
    const migrating = (): ReturnType<typeof resp> =>
      resp({ errorCode: ErrorCode.SLOT_MIGRATING, configVersion: 1 });
    leader.script = [migrating, migrating];
    await client.put('moving', 'v2');
    const attempts = leader.calls
      .slice(before)
      .filter((r) => r.kvs[0]?.key.toString() === 'moving');
    expect(attempts).toHaveLength(3);
    expect(new Set(attempts.map((r) => `${r.clientId}/${r.commandId}`)).size).toBe(1);
    expect(leader.data.get('moving')?.toString()).toBe('v2');
  });

  it('refreshes the topology on WRONG_SHARD and routes to the new owner', async () => {
    const client = newClient();
    await client.put('k', 'v1');
    const queries = meta.queries;
    // The slots move to group 2 (served by `other`); the old leader says WRONG_SHARD.
    meta.groups = new Map([
      [1, { servers: [follower.address, leader.address], slots: [] }],
      [2, { servers: [other.address], slots: allSlots }],
    ]);
    meta.version = 2;
    leader.script = [() => resp({ errorCode: ErrorCode.WRONG_SHARD, configVersion: 2 })];
    await client.put('k', 'v2');
    expect(meta.queries).toBeGreaterThan(queries);
    expect(other.data.get('k')?.toString()).toBe('v2');
  });

  it('merges a scan over every group in key order and honours the limit', async () => {
    const half = allSlots.length / 2;
    meta.groups = new Map([
      [1, { servers: [leader.address], slots: allSlots.slice(0, half) }],
      [2, { servers: [other.address], slots: allSlots.slice(half) }],
    ]);
    const client = newClient();
    const keys = Array.from({ length: 20 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
    for (const k of keys) {
      const owner = slotOfKey(Buffer.from(k), slotCount) < half ? leader : other;
      owner.data.set(k, Buffer.from(`v-${k}`));
    }
    expect(leader.data.size).toBeGreaterThan(0);
    expect(other.data.size).toBeGreaterThan(0);
    const all = await client.scan('key-', 'key-99', { limit: 100 });
    expect(all.kvs.map((kv) => kv.key.toString())).toEqual(keys);
    expect(all.more).toBe(false);
    const first = await client.scan('key-', undefined, { limit: 5 });
    expect(first.kvs.map((kv) => kv.key.toString())).toEqual(keys.slice(0, 5));
    expect(first.more).toBe(true);
  });

  /** A key whose slot is in the lower half of the slots, and one in the upper half. */
  function keysOfBothHalves(): [string, string] {
    const half = allSlots.length / 2;
    const a = Array.from({ length: 50 }, (_, i) => `a${i}`).find(
      (k) => slotOfKey(Buffer.from(k), slotCount) < half,
    )!;
    const b = Array.from({ length: 50 }, (_, i) => `b${i}`).find(
      (k) => slotOfKey(Buffer.from(k), slotCount) >= half,
    )!;
    return [a, b];
  }

  /** Two groups holding key-00..key-19 between them. */
  function twoGroupsWithKeys(): string[] {
    const half = allSlots.length / 2;
    meta.groups = new Map([
      [1, { servers: [leader.address], slots: allSlots.slice(0, half) }],
      [2, { servers: [other.address], slots: allSlots.slice(half) }],
    ]);
    const keys = Array.from({ length: 20 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
    for (const k of keys) {
      const owner = slotOfKey(Buffer.from(k), slotCount) < half ? leader : other;
      owner.data.set(k, Buffer.from(`v-${k}`));
    }
    return keys;
  }

  it("pages a scan through each server's per-answer bound up to the limit, in key order", async () => {
    const keys = twoGroupsWithKeys();
    leader.scanLimitMax = 3;
    other.scanLimitMax = 2;
    const client = newClient();
    const all = await client.scan('key-', 'key-99', { limit: 100 });
    expect(all.kvs.map((kv) => kv.key.toString())).toEqual(keys);
    expect(all.more).toBe(false);
    // Each group was asked again from its last key + 0x00.
    const starts = leader.calls.map((c) => c.kvs[0].key.toString('latin1'));
    expect(starts[0]).toBe('key-');
    expect(starts.slice(1).every((k) => k.endsWith('\u0000'))).toBe(true);
    expect(starts.length).toBeGreaterThan(2);

    const some = await client.scan('key-', undefined, { limit: 7 });
    expect(some.kvs.map((kv) => kv.key.toString())).toEqual(keys.slice(0, 7));
    expect(some.more).toBe(true);
    const exact = await client.scan('key-', undefined, { limit: 20 });
    expect(exact.kvs).toHaveLength(20);
    expect(exact.more).toBe(false);
  });

  it('goes on after a WRONG_SHARD in the middle of a paged scan, losing and repeating nothing', async () => {
    const keys = twoGroupsWithKeys();
    leader.scanLimitMax = 3;
    other.scanLimitMax = 3;
    const client = newClient();
    await client.scan('key-', undefined, { limit: 1 });
    meta.version = 2;
    // The second page of group 1 answers WRONG_SHARD once (the topology moved).
    leader.script = [
      () => null,
      () => resp({ errorCode: ErrorCode.WRONG_SHARD, configVersion: 2 }),
    ];
    const all = await client.scan('key-', undefined, { limit: 100 });
    expect(all.kvs.map((kv) => kv.key.toString())).toEqual(keys);
    expect(all.more).toBe(false);
    expect(leader.script).toHaveLength(0);
    expect(meta.queries).toBeGreaterThan(1);
  });

  it('waits for a group that has not applied the config yet, however many times it refuses, then serves', async () => {
    const keys = twoGroupsWithKeys();
    const client = newClient(10_000);
    // Just after the cluster is initialised, a group may answer before its first config arrives:
    // WRONG_SHARD at config version 0, more times than a scan used to retry.
    const notYet = (): (() => ClientOperationResp) => () =>
      resp({ errorCode: ErrorCode.WRONG_SHARD, configVersion: 0 });
    leader.script = Array.from({ length: 15 }, notYet);
    const all = await client.scan('key-', undefined, { limit: 100 });
    expect(all.kvs.map((kv) => kv.key.toString())).toEqual(keys);
    expect(leader.script).toHaveLength(0);
    const [a] = keysOfBothHalves();
    leader.script = Array.from({ length: 15 }, notYet);
    await client.put(a, 'v');
    expect(leader.script).toHaveLength(0);
    expect(leader.data.get(a)?.toString()).toBe('v');
  });

  it('gives a scan up at its deadline, naming both config versions, when a group never catches up', async () => {
    twoGroupsWithKeys();
    const client = newClient(1500);
    leader.script = Array.from(
      { length: 1000 },
      () => () => resp({ errorCode: ErrorCode.WRONG_SHARD, configVersion: 0 }),
    );
    const err = await client.scan('key-', undefined, { limit: 100 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongShardError);
    expect((err as Error).message).toContain('config version 0 refused it, the meta group is at 1');
    // Paced: far fewer attempts than an unpaced loop makes in 1.5 s.
    expect(leader.script.length).toBeGreaterThan(900);
    // A write meets the same deadline, with the same words.
    const [a] = keysOfBothHalves();
    const put = await client.put(a, 'v').catch((e: unknown) => e);
    expect(put).toBeInstanceOf(WrongShardError);
    expect((put as Error).message).toMatch(
      /^the request met a topology in motion until its deadline \(last: a group at config version 0 refused it, the meta group is at 1\)/,
    );
    expect(leader.data.has(a)).toBe(false);
  });

  it('makes no attempt after a WRONG_SHARD with less than 100 ms left, and says why at the deadline', async () => {
    twoGroupsWithKeys();
    const client = newClient();
    const [a] = keysOfBothHalves();
    await client.get(a); // the connection to the group is up before the timed call
    leader.script = Array.from(
      { length: 100 },
      () => () => resp({ errorCode: ErrorCode.WRONG_SHARD, configVersion: 0 }),
    );
    const put = await client.put(a, 'v', { deadlineMs: 90 }).catch((e: unknown) => e);
    // One attempt: after its refusal, any pause leaves under 100 ms, so the client waits the
    // deadline out rather than send an attempt the deadline would cut (a TimeoutError).
    expect(leader.script).toHaveLength(99);
    expect(put).toBeInstanceOf(WrongShardError);
    expect((put as Error).message).toContain('config version 0 refused it, the meta group is at 1');
  });

  it('refuses a batch whose keys belong to different groups', async () => {
    const half = allSlots.length / 2;
    meta.groups = new Map([
      [1, { servers: [leader.address], slots: allSlots.slice(0, half) }],
      [2, { servers: [other.address], slots: allSlots.slice(half) }],
    ]);
    const client = newClient();
    const [a, b] = keysOfBothHalves();
    await expect(
      client.batch([
        { type: 'put', key: a, value: '1' },
        { type: 'put', key: b, value: '2' },
      ]),
    ).rejects.toThrow(InvalidArgumentError);
    const results = await client.batch([
      { type: 'put', key: a, value: '1' },
      { type: 'get', key: a },
      { type: 'del', key: a },
    ]);
    expect(results[1]).toEqual({ type: 'get', value: Buffer.from('1') });
    expect(results[2]).toEqual({ type: 'del', deleted: true });
  });

  it('reports a write whose keys moved apart while it was retried as of unknown outcome', async () => {
    const half = allSlots.length / 2;
    const [a, b] = keysOfBothHalves();
    const client = newClient();
    await client.get(a);
    // The batch reaches group 1, whose answer is lost (it may have applied the batch); then the
    // second key's slots move to group 2 and group 1 says WRONG_SHARD.
    leader.script = [
      (req) => {
        answerOp(req.kvs[0], leader.data);
        return {
          code: grpc.status.UNAVAILABLE,
          details: 'connection reset',
          metadata: new grpc.Metadata(),
          name: 'Error',
          message: 'connection reset',
        };
      },
      () => {
        meta.groups = new Map([
          [1, { servers: [leader.address], slots: allSlots.slice(0, half) }],
          [2, { servers: [other.address], slots: allSlots.slice(half) }],
        ]);
        meta.version = 2;
        return resp({ errorCode: ErrorCode.WRONG_SHARD, configVersion: 2 });
      },
    ];
    const batch = client.batch([
      { type: 'put', key: a, value: '1' },
      { type: 'put', key: b, value: '2' },
    ]);
    await expect(batch).rejects.toThrow(WrongShardError);
    await expect(batch).rejects.toThrow(/outcome is unknown/);
    expect(leader.data.get(a)?.toString()).toBe('1');
  });

  it('passes INVALID_ARGUMENT through at once, without retrying', async () => {
    const client = newClient();
    await client.put('x', 'y');
    const before = leader.calls.length;
    leader.script = [
      () => ({
        code: grpc.status.INVALID_ARGUMENT,
        details: 'value is 2097152 bytes, the limit is 1048576',
        message: 'bad',
        name: 'Error',
        metadata: new grpc.Metadata(),
      }),
    ];
    await expect(client.put('x', 'too big')).rejects.toThrow(/the limit is 1048576/);
    expect(leader.calls.length - before).toBe(1);
  });

  it('takes a membership change whose answer was lost as done when the retry finds it in effect', async () => {
    meta.groups = new Map([[1, { servers: [leader.address], slots: allSlots }]]);
    leader.members = [1, 2, 3].map((id) => ({
      id,
      address: `127.0.0.1:${id}`,
      learner: false,
      incarnation: 0,
    }));
    const client = newClient();
    leader.loseNextMemberAnswer = true;
    const afterRemove = await client.removeMember(1, 3);
    expect(afterRemove.map((m) => m.id)).toEqual([1, 2]);
    expect(leader.memberCalls).toBe(2);
    leader.loseNextMemberAnswer = true;
    const afterAdd = await client.addMember(1, 4, '127.0.0.1:4', true);
    expect(afterAdd.find((m) => m.id === 4)).toEqual({
      id: 4,
      address: '127.0.0.1:4',
      learner: true,
      incarnation: 0,
    });
    // Without a lost answer the same refusals are errors: the change was not the caller's.
    await expect(client.removeMember(1, 3)).rejects.toMatchObject({
      code: ErrorCode.NODE_NOT_FOUND,
    });
    await expect(client.addMember(1, 4, '127.0.0.1:4', true)).rejects.toMatchObject({
      code: ErrorCode.NODE_EXISTS,
    });
    // A lost answer does not turn a different member at that id into success.
    leader.loseNextMemberAnswer = true;
    await expect(client.addMember(1, 4, '127.0.0.1:9', true)).rejects.toMatchObject({
      code: ErrorCode.NODE_EXISTS,
    });
  });

  it('surfaces cluster refusals as ClusterError with the code', async () => {
    const client = newClient();
    await expect(client.addGroup(1, ['127.0.0.1:1'])).rejects.toMatchObject({
      code: ErrorCode.GROUP_EXISTS,
    });
    await expect(client.addGroup(1, ['127.0.0.1:1'])).rejects.toThrow(ClusterError);
  });

  it('gives up with UnavailableError when no endpoint answers, within the deadline', async () => {
    const client = new EraftKvClient({
      endpoints: [await closedAddress()],
      deadlineMs: 800,
      attemptTimeoutMs: 200,
    });
    clients.push(client);
    const started = Date.now();
    const err = await client.get('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/check that the cluster is running/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('gives up at once, naming them, when every meta endpoint refuses the connection', async () => {
    const endpoints = await Promise.all([closedAddress(), closedAddress(), closedAddress()]);
    const client = new EraftKvClient({ endpoints, deadlineMs: 10_000, attemptTimeoutMs: 2000 });
    clients.push(client);
    const started = Date.now();
    const err = await client.get('x').catch((e: unknown) => e);
    // Two rounds over three refusing endpoints, with backoff: well under a second, not 10 s.
    expect(Date.now() - started).toBeLessThan(4000);
    expect(err).toBeInstanceOf(UnavailableError);
    const message = (err as Error).message;
    expect(message).toMatch(/every meta endpoint refused the connection/);
    for (const e of endpoints) expect(message).toContain(e);
    expect(message).toMatch(/check that the cluster is running/);
  });

  it('gives up at once when every member of a kv group refuses the connection', async () => {
    const servers = await Promise.all([closedAddress(), closedAddress()]);
    meta.groups = new Map([[1, { servers, slots: allSlots }]]);
    const client = newClient(10_000);
    const started = Date.now();
    const err = await client.put('x', 'y').catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/every member of group 1 refused the connection/);
    for (const s of servers) expect((err as Error).message).toContain(s);
  });

  it('reads the topology again when every member it names refuses: the members were replaced', async () => {
    const gone = await Promise.all([closedAddress(), closedAddress()]);
    meta.groups = new Map([[1, { servers: gone, slots: allSlots }]]);
    meta.version++;
    const client = newClient(10_000);
    await client.get('warm-up').catch(() => undefined); // caches the topology of dead members
    // The group's members were replaced; the meta group knows, the client's cache does not.
    meta.groups = new Map([[1, { servers: [leader.address], slots: allSlots }]]);
    meta.version++;
    await client.put('replaced', 'members');
    expect((await client.get('replaced'))?.toString()).toBe('members');
  });

  it('keeps trying while some endpoint does not refuse: one that answers, or one that hangs', async () => {
    // A refusing endpoint next to a working one: the call succeeds through the working one.
    const client = new EraftKvClient({
      endpoints: [await closedAddress(), meta.address],
      deadlineMs: 3000,
      attemptTimeoutMs: 500,
    });
    clients.push(client);
    await client.put('through-the-live-one', 'v');
    expect(leader.calls.length).toBeGreaterThan(0);
    // A refusing endpoint next to one that accepts TCP but never answers: the second may still
    // answer, so the call waits for its deadline.
    const sockets: Socket[] = [];
    const mute = createServer((socket) => sockets.push(socket));
    await new Promise<void>((ok) => mute.listen(0, '127.0.0.1', ok));
    const muted = new EraftKvClient({
      endpoints: [await closedAddress(), `127.0.0.1:${(mute.address() as AddressInfo).port}`],
      deadlineMs: 1000,
      attemptTimeoutMs: 200,
    });
    clients.push(muted);
    try {
      const started = Date.now();
      const err = await muted.get('x').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    } finally {
      for (const s of sockets) s.destroy();
      mute.close();
    }
  });

  it('retries refused connections until the deadline when refusedRoundsMax is 0', async () => {
    const client = new EraftKvClient({
      endpoints: [await closedAddress()],
      deadlineMs: 800,
      attemptTimeoutMs: 200,
      refusedRoundsMax: 0,
    });
    clients.push(client);
    const started = Date.now();
    const err = await client.get('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(750);
  });

  it('reports a server that accepts connections but never speaks HTTP/2 as unavailable', async () => {
    // The TCP connection opens but never becomes a gRPC channel: calls time out waiting for a
    // connection, never leave this process, and nothing answered.
    const sockets: Socket[] = [];
    const mute = createServer((socket) => sockets.push(socket));
    await new Promise<void>((ok) => mute.listen(0, '127.0.0.1', ok));
    const client = new EraftKvClient({
      endpoints: [`127.0.0.1:${(mute.address() as AddressInfo).port}`],
      deadlineMs: 800,
      attemptTimeoutMs: 200,
    });
    clients.push(client);
    try {
      const err = await client.get('x').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toMatch(/check that the cluster is running/);
    } finally {
      for (const s of sockets) s.destroy();
      mute.close();
    }
  });

  it('times out with TimeoutError when the leader never answers usefully', async () => {
    const client = newClient(600);
    await client.put('t', '1');
    leader.script = Array.from(
      { length: 1000 },
      () => () => resp({ errorCode: ErrorCode.NO_LEADER }),
    );
    const err = await client.put('t', '2').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toMatch(/may or may not have been applied/);
  });

  it('rejects malformed options before sending anything', () => {
    expect(() => new EraftKvClient({ endpoints: [] })).toThrow(InvalidArgumentError);
    expect(() => new EraftKvClient({ endpoints: ['not an address'] })).toThrow(/host:port/);
    expect(() => new EraftKvClient({ endpoints: ['a:1'], refusedRoundsMax: -1 })).toThrow(
      /refusedRoundsMax/,
    );
  });
});
