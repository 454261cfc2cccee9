// Watch and leases on a kv group of three KvServers in this process over real gRPC on 127.0.0.1
// (port 0) with real RocksDB and a fake meta group. Watch: events in revision order with the
// revisions the writes were answered with, replay from a revision, resumption without loss or
// repeat, compaction, progress notifications, bad requests, the per-stream and per-node bounds,
// and a watch on a member that stops. Leases: expiry deletes the keys (watchers see the
// deletes), keep-alives hold a lease, a leader killed during a lease's life does not expire
// it early, and a leader cut off from the group takes no keep-alive.
import * as grpc from '@grpc/grpc-js';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ErrorCode,
  LeaseAction,
  LeaseKeepAliveReq,
  LeaseReq,
  ReadConsistency,
  type LeaseKeepAliveResp,
  type LeaseResp,
  SlotStatus,
  WatchEventType,
  WatchReq,
  type ERaftKvClient,
  type KvOpPair,
  type WatchResp,
} from '@eraftkv/protocol';
import { createGrpcPeerRpc, type PeerRpc, type PeerTransportOptions } from '@eraftkv/raft-server';
import { waitFor } from '@eraftkv/test-support';
import { KvServer } from '../src';
import { b, del, FakeMeta, get, kvClient, processRw, put, request, tempDir } from './common';

jest.setTimeout(120_000);

const slotCount = 8;
const historyRevisions = 400;

/** One watch stream: every response it got, and how it ended. */
interface OpenWatch {
  readonly call: grpc.ClientReadableStream<WatchResp>;
  readonly responses: WatchResp[];
  /** Resolves with the status the stream ended with. */
  readonly ended: Promise<grpc.StatusObject>;
}

function openWatch(client: ERaftKvClient, fields: Partial<WatchReq>): OpenWatch {
  const call = client.watch(WatchReq.fromPartial(fields));
  const responses: WatchResp[] = [];
  call.on('data', (resp: WatchResp) => responses.push(resp));
  const ended = new Promise<grpc.StatusObject>((resolve) => {
    call.on('status', resolve);
  });
  // The status carries the error too; 'error' must be listened to or it throws.
  call.on('error', () => undefined);
  return { call, responses, ended };
}

/** The events of `responses` as "revision TYPE key=value". */
function eventsOf(responses: readonly WatchResp[]): string[] {
  return responses.flatMap((r) =>
    r.events.map(
      (e) =>
        `${e.revision} ${e.type === WatchEventType.WATCH_PUT ? 'PUT' : 'DELETE'} ${Buffer.from(e.key).toString()}=${Buffer.from(e.value).toString()}` +
        (e.hasPrev ? ` (was ${Buffer.from(e.prevValue).toString()})` : ''),
    ),
  );
}

describe('Watch on a kv group of three', () => {
  let root = '';
  const meta = new FakeMeta();
  const servers: KvServer[] = [];
  const stopped = new Set<KvServer>();
  const clients = new Map<string, ERaftKvClient>();
  const watches: OpenWatch[] = [];

  const clientOf = (server: KvServer): ERaftKvClient => {
    let client = clients.get(server.address);
    if (client === undefined) {
      client = kvClient(server.address);
      clients.set(server.address, client);
    }
    return client;
  };
  const running = (): KvServer[] => servers.filter((s) => !stopped.has(s));
  const watch = (server: KvServer, fields: Partial<WatchReq>): OpenWatch => {
    const w = openWatch(clientOf(server), fields);
    watches.push(w);
    return w;
  };

  async function leader(): Promise<KvServer> {
    return waitFor(
      () => {
        const leaders = running().filter((s) => s.raft.isLeader());
        return leaders.length === 1 ? leaders[0] : undefined;
      },
      { timeoutMs: 15_000, what: 'one leader' },
    );
  }

  /** Writes through the leader; returns the revision the write was answered with. */
  async function write(...ops: KvOpPair[]): Promise<number> {
    const resp = await processRw(clientOf(await leader()), request(ops));
    expect(resp.errorCode).toBe(ErrorCode.OK);
    return resp.revision;
  }

  const until = <T>(what: string, check: () => T | undefined | false): Promise<T> =>
    waitFor(check, { timeoutMs: 15_000, what });

  const makeServer = (id: number, listen: string): KvServer =>
    new KvServer({
      id,
      groupId: 1,
      listen,
      metaAddresses: [meta.address],
      dataDir: join(root, `kv-1-${id}`),
      raft: { tickMs: 20, createPeerRpc: cuttablePeerRpc },
      configPollMs: 50,
      shutdownGraceMs: 2000,
      watchHistoryRevisions: historyRevisions,
      watchLimits: { streamBufferBytes: 256 * 1024, watchesMax: 40, progressIntervalMs: 200 },
    });

  /** Members cut off from the others: every peer RPC to or from them fails. */
  const isolated = new Set<number>();
  const idOfAddress = (address: string): number =>
    servers.findIndex((s) => s.address === address) + 1;
  function cuttablePeerRpc(address: string, options: PeerTransportOptions): PeerRpc {
    const rpc = createGrpcPeerRpc(address, options);
    const cut = (): boolean => isolated.has(options.selfId) || isolated.has(idOfAddress(address));
    const guard =
      <A extends unknown[], R>(send: (...args: A) => Promise<R>) =>
      (...args: A): Promise<R> => {
        if (!cut()) return send(...args);
        const err = new Error('link cut (injected)') as grpc.ServiceError;
        err.code = grpc.status.UNAVAILABLE;
        return Promise.reject(err);
      };
    return {
      requestVote: guard(rpc.requestVote.bind(rpc)),
      appendEntries: guard(rpc.appendEntries.bind(rpc)),
      snapshot: guard(rpc.snapshot.bind(rpc)),
      timeoutNow: guard(rpc.timeoutNow.bind(rpc)),
      identify: guard(rpc.identify.bind(rpc)),
      close: () => rpc.close(),
    };
  }

  const lease = (server: KvServer, fields: Partial<LeaseReq>): Promise<LeaseResp> =>
    new Promise((resolve, reject) =>
      clientOf(server).lease(LeaseReq.fromPartial(fields), (err, resp) =>
        err ? reject(err) : resolve(resp),
      ),
    );

  /** Grants a lease of `ttlSeconds` through the leader. */
  async function grant(ttlSeconds: number): Promise<number> {
    const resp = await lease(await leader(), { action: LeaseAction.LEASE_GRANT, ttlSeconds });
    expect(resp.errorCode).toBe(ErrorCode.OK);
    return resp.leases[0].id;
  }

  /** One keep-alive of `id` through `server`'s LeaseKeepAlive stream: the TTL answered. */
  function keepAlive(server: KvServer, id: number): Promise<LeaseKeepAliveResp> {
    return new Promise((resolve, reject) => {
      const call = clientOf(server).leaseKeepAlive();
      call.on('data', (resp: LeaseKeepAliveResp) => {
        resolve(resp);
        call.end();
      });
      call.on('error', (err) => reject(err));
      call.write(LeaseKeepAliveReq.fromPartial({ id }));
    });
  }

  /** The value of `key` read through the leader (null: absent). */
  async function value(key: string): Promise<string | null> {
    const resp = await processRw(
      clientOf(await leader()),
      request([get(key)], { readConsistency: ReadConsistency.LINEARIZABLE }),
    );
    expect(resp.errorCode).toBe(ErrorCode.OK);
    return resp.ops[0].found ? Buffer.from(resp.ops[0].value).toString() : null;
  }

  beforeAll(async () => {
    root = await tempDir('watch');
    await meta.start();
    meta.setTopology(slotCount, [
      { id: 1, slots: [0, 1, 2, 3, 4, 5, 6, 7].map((id) => [id, SlotStatus.Running]) },
    ]);
    for (let id = 1; id <= 3; id++) servers.push(makeServer(id, '127.0.0.1:0'));
    for (const s of servers) await s.listen();
    const peers = servers.map((s, i) => ({
      id: i + 1,
      address: s.address,
      learner: false,
      incarnation: 0,
    }));
    await Promise.all(servers.map((s) => s.start(peers)));
    await leader();
    await until('the config applied everywhere', () =>
      servers.every((s) => s.stateMachine.configVersion() >= 1),
    );
  });

  afterEach(() => {
    for (const w of watches.splice(0)) w.call.cancel();
  });

  afterAll(async () => {
    for (const w of watches) w.call.cancel();
    for (const client of clients.values()) client.close();
    for (const s of servers) await s.stop().catch(() => undefined);
    await meta.stop();
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  it('sends the changes of a key from now, with the revisions the writes were answered with', async () => {
    const l = await leader();
    await write(put('other', 'x'));
    const w = watch(l, { key: b('k1'), prevKv: true });
    const created = await until('the created response', () => w.responses[0]);
    expect(created.created).toBe(true);
    expect(created.groupId).toBe(1);
    const r1 = await write(put('k1', 'a'));
    await write(put('k10', 'not this key'));
    const r2 = await write(put('k1', 'b'), put('other', 'y'));
    const r3 = await write(del('k1'));
    expect(created.revision).toBeLessThan(r1);
    await until('three events', () => eventsOf(w.responses).length >= 3);
    expect(eventsOf(w.responses)).toEqual([
      `${r1} PUT k1=a`,
      `${r2} PUT k1=b (was a)`,
      `${r3} DELETE k1= (was b)`,
    ]);
    // Each response says how far the watch has seen.
    const last = w.responses[w.responses.length - 1];
    expect(last.revision).toBeGreaterThanOrEqual(r3);
  });

  it('replays a prefix from a revision and goes on live, on a follower too', async () => {
    const revisions: number[] = [];
    for (let i = 0; i < 30; i++) revisions.push(await write(put(`p/${i % 7}`, String(i))));
    const l = await leader();
    const f = running().find((s) => s !== l) as KvServer;
    const expected = revisions.map((r, i) => `${r} PUT p/${i % 7}=${i}`);
    for (const server of [l, f]) {
      const w = watch(server, {
        key: b('p/'),
        rangeEnd: b('p0'),
        startRevision: revisions[0],
      });
      await until('the replay', () => eventsOf(w.responses).length >= 30);
      expect(eventsOf(w.responses)).toEqual(expected);
      expect(w.responses[0].created).toBe(true);
      expect(w.responses[0].revision).toBe(revisions[0] - 1);
    }
    const more = await write(put('p/x', 'live'));
    for (const w of watches)
      await until('the live event', () => eventsOf(w.responses).includes(`${more} PUT p/x=live`));
  });

  it('resumes from the last revision received, missing nothing and repeating nothing', async () => {
    const l = await leader();
    const first = await write(put('r/start', '0'));
    const all = watch(l, { key: b('r/'), rangeEnd: b('r0'), startRevision: first });
    const cut = watch(l, { key: b('r/'), rangeEnd: b('r0'), startRevision: first });
    const writes = Array.from({ length: 40 }, (_, i) => write(put(`r/${i % 5}`, String(i))));
    // Cut the second one somewhere in the middle of the writes.
    await until('some events', () => eventsOf(cut.responses).length >= 10);
    cut.call.cancel();
    await Promise.all(writes);
    await until('every event', () => eventsOf(all.responses).length >= 41);
    const received = cut.responses.filter((r) => !r.fragment);
    const resumeFrom = received[received.length - 1].revision + 1;
    const rest = watch(l, { key: b('r/'), rangeEnd: b('r0'), startRevision: resumeFrom });
    await until('the rest', () =>
      eventsOf([...cut.responses, ...rest.responses]).length >= 41 ? true : undefined,
    );
    expect(eventsOf([...cut.responses, ...rest.responses])).toEqual(eventsOf(all.responses));
  });

  it('answers a revision older than the history as compacted and ends the watch', async () => {
    for (let i = 0; i < historyRevisions + 20; i += 40)
      await Promise.all(Array.from({ length: 40 }, (_, j) => write(put(`c/${j}`, String(i)))));
    const w = watch(await leader(), { key: b('c/0'), startRevision: 1 });
    const status = await w.ended;
    expect(status.code).toBe(grpc.status.OK);
    expect(w.responses).toHaveLength(1);
    expect(w.responses[0].compactRevision).toBeGreaterThan(1);
    expect(w.responses[0].cancelReason).toMatch(/older than the history this group keeps/);
    // From the compact revision it starts.
    const ok = watch(await leader(), {
      key: b('c/0'),
      startRevision: w.responses[0].compactRevision,
    });
    await until('replayed events', () => eventsOf(ok.responses).length > 0);
  });

  it('sends progress notifications to an idle watch that asked for them', async () => {
    const w = watch(await leader(), { key: b('idle'), progressNotify: true });
    const revision = await write(put('busy', '1'));
    const progress = await until('a progress notification', () =>
      w.responses.find((r) => !r.created && r.events.length === 0 && r.revision >= revision),
    );
    expect(progress.compactRevision).toBe(0);
    expect(eventsOf(w.responses)).toEqual([]);
  });

  it('refuses malformed watches, naming the field', async () => {
    const l = await leader();
    const cases: [Partial<WatchReq>, grpc.status, RegExp][] = [
      [{ key: Buffer.alloc(0) }, grpc.status.INVALID_ARGUMENT, /key is empty/],
      [{ key: Buffer.alloc(5000, 1) }, grpc.status.INVALID_ARGUMENT, /key is 5000 bytes/],
      [{ key: b('b'), rangeEnd: b('a') }, grpc.status.INVALID_ARGUMENT, /range_end must be after/],
      [{ key: b('k'), groupId: 7 }, grpc.status.FAILED_PRECONDITION, /serves group 1/],
      [{ key: b('k'), startRevision: -1 }, grpc.status.INVALID_ARGUMENT, /start_revision/],
    ];
    for (const [fields, code, message] of cases) {
      const w = watch(l, fields);
      const status = await w.ended;
      expect([status.code, status.details]).toEqual([code, expect.stringMatching(message)]);
    }
  });

  it('cuts a watcher that does not read, with RESOURCE_EXHAUSTED, and it resumes from the history', async () => {
    const l = await leader();
    const from = (await write(put('slow/0', 'start'))) + 1;
    const w = watch(l, { key: b('slow/'), rangeEnd: b('slow0'), startRevision: from });
    await until('created', () => w.responses[0]);
    w.call.pause();
    const value = 'v'.repeat(32 * 1024);
    const revisions: number[] = [];
    for (let i = 0; i < 60; i++) revisions.push(await write(put(`slow/${i}`, value)));
    w.call.resume();
    const status = await w.ended;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toMatch(/--watch-stream-buffer-bytes/);
    const got = w.responses.filter((r) => !r.fragment);
    const resumeFrom = got[got.length - 1].revision + 1;
    const rest = watch(l, { key: b('slow/'), rangeEnd: b('slow0'), startRevision: resumeFrom });
    await until('the rest', () =>
      eventsOf([...w.responses, ...rest.responses]).length >= 60 ? true : undefined,
    );
    expect(
      [...w.responses, ...rest.responses].flatMap((r) => r.events.map((e) => e.revision)),
    ).toEqual(revisions);
  });

  it('refuses watches beyond --watches-max', async () => {
    const l = await leader();
    const open = Array.from({ length: 40 }, (_, i) => watch(l, { key: b(`many/${i}`) }));
    await until('40 watches created', () => open.every((w) => w.responses.length > 0));
    const refused = watch(l, { key: b('many/x') });
    const status = await refused.ended;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toMatch(/--watches-max/);
  });

  it('expires a lease that is not kept alive: its keys are deleted, and watchers see the deletes', async () => {
    const id = await grant(1);
    expect(Math.floor(id / 2 ** 32)).toBe(1);
    const w = watch(await leader(), { key: b('lease/'), rangeEnd: b('lease0') });
    await until('created', () => w.responses[0]);
    const put1 = await write({ ...put('lease/a', '1'), lease: id });
    await write({ ...put('lease/b', '2'), lease: id }, put('lease/c', 'no lease'));
    const ttl = await lease(await leader(), {
      action: LeaseAction.LEASE_TIME_TO_LIVE,
      id,
      keys: true,
    });
    expect(ttl.leases[0].grantedTtlSeconds).toBe(1);
    expect(ttl.leases[0].keys.map((k) => Buffer.from(k).toString())).toEqual([
      'lease/a',
      'lease/b',
    ]);
    await until('the deletes of the expired lease', () =>
      eventsOf(w.responses).some((e) => e.includes('DELETE lease/b')) ? true : undefined,
    );
    const events = eventsOf(w.responses);
    const deletes = events.filter((e) => e.includes('DELETE'));
    expect(deletes.map((e) => e.split(' ').slice(1).join(' '))).toEqual([
      'DELETE lease/a=',
      'DELETE lease/b=',
    ]);
    // Both deletes are the revoke's: one revision, after the puts.
    const revisions = new Set(deletes.map((e) => Number(e.split(' ')[0])));
    expect(revisions.size).toBe(1);
    expect([...revisions][0]).toBeGreaterThan(put1);
    expect([await value('lease/a'), await value('lease/b'), await value('lease/c')]).toEqual([
      null,
      null,
      'no lease',
    ]);
    const after = await lease(await leader(), { action: LeaseAction.LEASE_TIME_TO_LIVE, id });
    expect(after.leases[0].ttlSeconds).toBe(-1);
    const revoke = await lease(await leader(), { action: LeaseAction.LEASE_REVOKE, id });
    expect(revoke.errorCode).toBe(ErrorCode.LEASE_NOT_FOUND);
    // A put naming the gone lease is refused whole.
    const refused = await processRw(
      clientOf(await leader()),
      request([{ ...put('lease/d', '1'), lease: id }]),
    ).then(
      () => null,
      (err: grpc.ServiceError) => err,
    );
    expect([refused?.code, refused?.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      expect.stringMatching(/lease [0-9a-f]+ is not held/),
    ]);
  });

  it('keeps a lease alive, and a leader killed during its life does not expire it early', async () => {
    const ttlSeconds = 3;
    const id = await grant(ttlSeconds);
    await write({ ...put('held', 'v'), lease: id });
    // Kept alive past its TTL.
    const grantedAt = Date.now();
    let lastKeptAt = 0;
    while (Date.now() - grantedAt < ttlSeconds * 1000 + 1000) {
      const resp = await keepAlive(await leader(), id);
      expect(resp).toMatchObject({ id, ttlSeconds, errorCode: ErrorCode.OK });
      lastKeptAt = Date.now();
      await until('half a second', () => (Date.now() - lastKeptAt >= 500 ? true : undefined));
    }
    expect(await value('held')).toBe('v');
    // A follower takes no keep-alive.
    const l = await leader();
    const f = running().find((s) => s !== l) as KvServer;
    expect((await keepAlive(f, id)).errorCode).toBe(ErrorCode.NOT_LEADER);
    // The leader keeps it alive once more, then is killed.
    await keepAlive(l, id);
    lastKeptAt = Date.now();
    const index = servers.indexOf(l);
    stopped.add(l);
    await l.stop();
    // A new leader starts every TTL again: the lease lives at least its TTL after the last
    // keep-alive, whenever the new leader came.
    const newLeader = await leader();
    expect(newLeader).not.toBe(l);
    await until('most of the TTL after the last keep-alive', () =>
      Date.now() - lastKeptAt >= ttlSeconds * 1000 - 300 ? true : undefined,
    );
    expect(await value('held')).toBe('v');
    // Then, not kept alive, it expires.
    await waitFor(async () => ((await value('held')) === null ? true : undefined), {
      timeoutMs: 20_000,
      what: 'the lease to expire under the new leader',
    });
    expect(Date.now() - lastKeptAt).toBeGreaterThanOrEqual(ttlSeconds * 1000);
    // The killed member comes back on its data dir.
    const restarted = makeServer(index + 1, l.address);
    servers[index] = restarted;
    stopped.delete(l);
    await restarted.listen();
    await restarted.start(
      servers.map((s, i) => ({ id: i + 1, address: s.address, learner: false, incarnation: 0 })),
    );
    await until('the restarted member to catch up', () =>
      restarted.stateMachine.leaseTable().get(id) === undefined &&
      restarted.raft.status().applied >= newLeader.raft.status().commit
        ? true
        : undefined,
    );
  });

  it('takes no keep-alive at a leader cut off from its group, which another leader may expire', async () => {
    const ttlSeconds = 2;
    const id = await grant(ttlSeconds);
    await write({ ...put('cut/held', 'v'), lease: id });
    const l = await leader();
    expect((await keepAlive(l, id)).ttlSeconds).toBe(ttlSeconds);
    const lastKeptAt = Date.now();
    isolated.add(servers.indexOf(l) + 1);
    try {
      // Cut off, it still believes it leads until its check of the quorum fails; meanwhile the
      // others elect a leader whose clock starts the TTL at its election. An answer now would
      // promise the client a TTL from now, which the new leader does not keep.
      expect(l.raft.isLeader()).toBe(true);
      const resp = await keepAlive(l, id);
      // Once its check of the quorum fails it knows no leader.
      expect([ErrorCode.NOT_LEADER, ErrorCode.NO_LEADER]).toContain(resp.errorCode);
      expect(resp.ttlSeconds).toBe(0);
      const others = running().filter((s) => s !== l);
      await until('a leader among the others', () => others.find((s) => s.raft.isLeader()));
      await waitFor(async () => ((await value('cut/held')) === null ? true : undefined), {
        timeoutMs: 20_000,
        what: 'the lease to expire under the new leader',
      });
      expect(Date.now() - lastKeptAt).toBeGreaterThanOrEqual(ttlSeconds * 1000);
    } finally {
      isolated.clear();
    }
    await until('the cut member to catch up', () =>
      l.stateMachine.leaseTable().get(id) === undefined ? true : undefined,
    );
  });

  it('answers every keep-alive sent before the client ended its side of the stream', async () => {
    const id = await grant(60);
    const call = clientOf(await leader()).leaseKeepAlive();
    const answers: LeaseKeepAliveResp[] = [];
    call.on('data', (resp: LeaseKeepAliveResp) => answers.push(resp));
    const ended = new Promise<void>((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    call.write(LeaseKeepAliveReq.fromPartial({ id }));
    call.write(LeaseKeepAliveReq.fromPartial({ id }));
    call.end();
    await ended;
    expect(answers.map((a) => [a.errorCode, a.ttlSeconds])).toEqual([
      [ErrorCode.OK, 60],
      [ErrorCode.OK, 60],
    ]);
    expect((await lease(await leader(), { action: LeaseAction.LEASE_REVOKE, id })).errorCode).toBe(
      ErrorCode.OK,
    );
  });

  it('ends the watches of a member that stops; they resume elsewhere without a gap', async () => {
    const l = await leader();
    const f = running().find((s) => s !== l) as KvServer;
    const first = (await write(put('stop/start', '0'))) + 1;
    const w = watch(f, { key: b('stop/'), rangeEnd: b('stop0'), startRevision: first });
    const before = [await write(put('stop/a', '1')), await write(put('stop/b', '2'))];
    await until('two events', () => eventsOf(w.responses).length >= 2);
    stopped.add(f);
    await f.stop();
    const status = await w.ended;
    expect(status.code).not.toBe(grpc.status.OK);
    const after = [await write(put('stop/c', '3')), await write(put('stop/a', '4'))];
    const got = w.responses.filter((r) => !r.fragment);
    const rest = watch(await leader(), {
      key: b('stop/'),
      rangeEnd: b('stop0'),
      startRevision: got[got.length - 1].revision + 1,
    });
    await until('the rest', () =>
      eventsOf([...w.responses, ...rest.responses]).length >= 4 ? true : undefined,
    );
    expect(
      [...w.responses, ...rest.responses].flatMap((r) => r.events.map((e) => e.revision)),
    ).toEqual([...before, ...after]);
  });
});
