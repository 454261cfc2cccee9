// LeaderCaller against scripted fake servers on 127.0.0.1 (real gRPC): following a moved leader,
// refused connections, two servers naming each other, per-attempt and per-call deadlines,
// WRONG_SHARD answers, and how a call that gave up says why.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { ClusterConfigChangeReq, ClusterConfigChangeResp, ErrorCode } from '@eraftkv/protocol';
import {
  Connections,
  LeaderCaller,
  TimeoutError,
  UnavailableError,
  type LeaderCallerOptions,
  type LeaderHint,
} from '../src';
import { closedAddress, startFakeERaftKv, type StartedServer } from '@eraftkv/test-support';

/** What a fake server does with a ClusterConfigChange: answer, or hang (null: never answers). */
type Behaviour = () => ClusterConfigChangeResp | null;

interface FakeServer {
  address: string;
  server: StartedServer | null;
  calls: number;
  behave: Behaviour;
}

const ok = (): ClusterConfigChangeResp =>
  ClusterConfigChangeResp.fromPartial({ success: true, errorCode: ErrorCode.OK });

const notLeader =
  (leaderAddress: () => string): Behaviour =>
  () =>
    ClusterConfigChangeResp.fromPartial({
      errorCode: ErrorCode.NOT_LEADER,
      leaderAddress: leaderAddress(),
    });

const hang: Behaviour = () => null;

async function startFake(): Promise<FakeServer> {
  const fake: FakeServer = { address: '', server: null, calls: 0, behave: ok };
  fake.server = await startFakeERaftKv(
    {
      clusterConfigChange: (_call, callback) => {
        fake.calls++;
        const resp = fake.behave();
        // A hanging call is cut by the client's deadline; close() drops it at the end.
        if (resp !== null) callback(null, resp);
      },
    },
    { what: 'the fake server' },
  );
  fake.address = fake.server.address;
  return fake;
}

const leaderHint: LeaderHint<ClusterConfigChangeResp> = (resp) =>
  resp.errorCode === ErrorCode.NOT_LEADER ? resp.leaderAddress : null;

const request = ClusterConfigChangeReq.fromPartial({});

describe('LeaderCaller', () => {
  let a: FakeServer;
  let b: FakeServer;
  let c: FakeServer;
  const callers: LeaderCaller[] = [];
  const newCaller = (options: LeaderCallerOptions = {}): LeaderCaller => {
    const caller = new LeaderCaller(new Connections(), {
      attemptTimeoutMs: 500,
      backoff: { baseMs: 20, maxMs: 100 },
      ...options,
    });
    callers.push(caller);
    return caller;
  };
  /** One ClusterConfigChange on the leader of group 1 among `servers`. */
  const callGroup = (
    caller: LeaderCaller,
    servers: readonly string[],
    deadlineMs: number,
    attemptTimeoutMs?: number,
  ): Promise<ClusterConfigChangeResp> =>
    caller.callLeader(
      1,
      servers,
      (client) => client.clusterConfigChange.bind(client),
      request,
      leaderHint,
      { deadline: Date.now() + deadlineMs, write: true, attemptTimeoutMs },
    );
  /** The rejection of `promise` (fails the test if it resolves). */
  const failure = async (promise: Promise<unknown>): Promise<Error> => {
    const outcome = await promise.then(
      () => null,
      (err: unknown) => err,
    );
    if (!(outcome instanceof Error)) throw new Error('the call was expected to fail');
    return outcome;
  };

  beforeAll(async () => {
    [a, b, c] = await Promise.all([startFake(), startFake(), startFake()]);
  });
  beforeEach(() => {
    for (const s of [a, b, c]) {
      s.calls = 0;
      s.behave = ok;
    }
  });
  afterAll(async () => {
    for (const caller of callers) caller.close();
    for (const s of [a, b, c]) await s.server?.close();
  });

  it('follows the leader when it moves: one redirect, then straight to the new leader', async () => {
    const caller = newCaller();
    const servers = [a.address, b.address, c.address];
    await callGroup(caller, servers, 3000);
    expect(caller.leader(1)).toBe(a.address);
    expect(a.calls).toBe(1);

    // Leadership moved from a to c; a knows.
    a.behave = notLeader(() => c.address);
    const resp = await callGroup(caller, servers, 3000);
    expect(resp.errorCode).toBe(ErrorCode.OK);
    expect([a.calls, b.calls, c.calls]).toEqual([2, 0, 1]);
    expect(caller.leader(1)).toBe(c.address);

    await callGroup(caller, servers, 3000);
    expect([a.calls, b.calls, c.calls]).toEqual([2, 0, 2]);
  });

  it('gives up with UnavailableError at once when every server refuses the connection', async () => {
    const servers = await Promise.all([closedAddress(), closedAddress()]);
    const caller = newCaller({ attemptTimeoutMs: 2000 });
    const started = Date.now();
    const err = await failure(callGroup(caller, servers, 20_000));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toMatch(/every member of group 1 refused the connection/);
    for (const s of servers) expect(err.message).toContain(s);
    // Two rounds over two refusing servers with backoff of at most 100 ms: far below the deadline.
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('with refusedRoundsMax 0, retries refused connections until the deadline, then UnavailableError', async () => {
    const caller = newCaller({ refusedRoundsMax: 0 });
    const started = Date.now();
    const err = await failure(callGroup(caller, [await closedAddress()], 600));
    expect(Date.now() - started).toBeGreaterThanOrEqual(590);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.message).toMatch(/no node of group 1 answered before the deadline/);
  });

  it('ends a hint loop (two servers naming each other) at the deadline without spinning', async () => {
    a.behave = notLeader(() => b.address);
    b.behave = notLeader(() => a.address);
    const caller = newCaller();
    const started = Date.now();
    const err = await failure(callGroup(caller, [a.address, b.address], 1000));
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);
    // Both servers answered: the request reached them, so its outcome is unknown.
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.message).toMatch(/is not the leader/);
    expect(err.message).toMatch(/may or may not have been applied/);
    // Backoff between the rounds of the loop: tens of calls in a second, not a call per
    // round trip (hundreds or more on loopback).
    expect(a.calls + b.calls).toBeGreaterThanOrEqual(4);
    expect(a.calls + b.calls).toBeLessThan(100);
  });

  it('cuts each attempt at the per-attempt timeout and tries the next server within the call', async () => {
    a.behave = hang;
    const caller = newCaller();
    const started = Date.now();
    const resp = await callGroup(caller, [a.address, b.address], 5000, 200);
    const elapsed = Date.now() - started;
    expect(resp.errorCode).toBe(ErrorCode.OK);
    // a hung until the per-attempt timeout; b answered. Under load a first connection to b can
    // itself fail or outlast 200 ms, which sends another round (a, then b): the call still
    // succeeds. Each round tries a first, so the answer came after at least one attempt at a was
    // cut at 200 ms, and well before the call's deadline.
    expect(a.calls).toBeGreaterThanOrEqual(1);
    expect(b.calls).toBeGreaterThanOrEqual(1);
    expect(b.calls).toBeLessThanOrEqual(a.calls);
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(2000);
    expect(caller.leader(1)).toBe(b.address);
  });

  it('ends with TimeoutError when connected servers never answer: several attempts, one deadline', async () => {
    a.behave = hang;
    b.behave = hang;
    const caller = newCaller();
    const started = Date.now();
    const err = await failure(callGroup(caller, [a.address, b.address], 900, 200));
    expect(Date.now() - started).toBeGreaterThanOrEqual(890);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(a.calls + b.calls).toBeGreaterThanOrEqual(3);
  });

  it('says unavailable when a server accepts TCP but never speaks HTTP/2 (nothing got the request)', async () => {
    const sockets: Socket[] = [];
    const mute: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    try {
      const caller = newCaller();
      const address = `127.0.0.1:${(mute.address() as AddressInfo).port}`;
      const err = await failure(callGroup(caller, [address], 600, 200));
      expect(err).toBeInstanceOf(UnavailableError);
      expect(err.message).toMatch(/no node of group 1 answered before the deadline/);
    } finally {
      for (const s of sockets) s.destroy();
      mute.close();
    }
  });

  it('hands a WRONG_SHARD answer back after refreshing the routing, without taking the server as leader', async () => {
    a.behave = () =>
      ClusterConfigChangeResp.fromPartial({ errorCode: ErrorCode.WRONG_SHARD, configVersion: 7 });
    const caller = newCaller();
    const refreshed: number[] = [];
    const resp = await caller.call({
      groupId: 1,
      servers: () => [a.address, b.address],
      send: (address, timeoutMs) =>
        caller.connections.unary(
          address,
          (client) => client.clusterConfigChange.bind(client),
          request,
          timeoutMs,
        ),
      judge: (r) =>
        r.errorCode === ErrorCode.WRONG_SHARD
          ? { kind: 'wrong-shard', configVersion: r.configVersion }
          : { kind: 'answer' },
      onWrongShard: (configVersion) => {
        refreshed.push(configVersion);
        return Promise.resolve();
      },
      deadline: Date.now() + 3000,
      write: false,
    });
    expect(resp.errorCode).toBe(ErrorCode.WRONG_SHARD);
    expect(refreshed).toEqual([7]);
    expect([a.calls, b.calls]).toEqual([1, 0]);
    expect(caller.leader(1)).toBeUndefined();
  });

  it('refuses calls once closed', async () => {
    const caller = newCaller();
    caller.close();
    const err = await failure(callGroup(caller, [a.address], 1000));
    expect(err).toBeInstanceOf(UnavailableError);
    expect(a.calls).toBe(0);
  });
});
