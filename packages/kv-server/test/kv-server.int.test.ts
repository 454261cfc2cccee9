// Three KvServers in this process over real gRPC on 127.0.0.1 (port 0) with real RocksDB, a
// fake meta group whose topology the test controls, and a bare generated ERaftKvClient.
import * as grpc from '@grpc/grpc-js';
import { rm } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import {
  ChangeType,
  ClusterConfigChangeReq,
  ErrorCode,
  HandleServerType,
  ReadConsistency,
  SlotStatus,
  StatusReq,
  type ClientOperationResp,
  type ERaftKvClient,
  type StatusResp,
} from '@eraftkv/protocol';
import { KvServer } from '../src';
import { configChange, waitFor } from '@eraftkv/test-support';
import {
  del,
  FakeMeta,
  get,
  keyInSlot,
  kvClient,
  processRw,
  put,
  request,
  scan,
  tempDir,
} from './common';

jest.setTimeout(120_000);

const slotCount = 16;
const groupOneSlots = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const groupTwoSlots = [12, 13, 14, 15];

type Topology = Map<number, [number, SlotStatus][]>;

function topologyOf(slots: Record<number, number[]>, migrating: number[] = []): Topology {
  const t: Topology = new Map();
  for (const [group, ids] of Object.entries(slots)) {
    t.set(
      Number(group),
      ids.map((id) => [id, migrating.includes(id) ? SlotStatus.Migrating : SlotStatus.Running]),
    );
  }
  return t;
}

function httpStatus(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function status(client: ERaftKvClient): Promise<StatusResp> {
  return new Promise((resolve, reject) =>
    client.status(StatusReq.fromPartial({}), (err, resp) => (err ? reject(err) : resolve(resp))),
  );
}

describe('KvServer: a group of three with a fake meta group', () => {
  let root = '';
  const meta = new FakeMeta();
  const servers: KvServer[] = [];
  const stopped = new Set<KvServer>();
  const clients = new Map<string, ERaftKvClient>();
  /** Every write acknowledged so far: key (hex) -> value. */
  const acked = new Map<string, string>();

  const clientOf = (server: KvServer): ERaftKvClient => {
    let client = clients.get(server.address);
    if (client === undefined) {
      client = kvClient(server.address);
      clients.set(server.address, client);
    }
    return client;
  };
  const running = (): KvServer[] => servers.filter((s) => !stopped.has(s));

  const setTopology = (t: Topology): number =>
    meta.setTopology(
      slotCount,
      [...t.entries()].map(([id, slots]) => ({ id, slots })),
    );

  async function leader(): Promise<KvServer> {
    return waitFor(
      () => {
        const leaders = running().filter((s) => s.raft.isLeader());
        return leaders.length === 1 ? leaders[0] : undefined;
      },
      { timeoutMs: 15_000, what: 'one leader' },
    );
  }

  async function follower(): Promise<KvServer> {
    const l = await leader();
    const f = running().find((s) => s !== l);
    if (f === undefined) throw new Error('no follower');
    return f;
  }

  /** Every running member has applied at least config `version`. */
  async function configApplied(version: number): Promise<void> {
    await waitFor(() => running().every((s) => s.stateMachine.configVersion() >= version), {
      timeoutMs: 15_000,
      what: `every member to apply config version ${version}`,
    });
  }

  /** Puts through the leader and records the acknowledged write. */
  async function putAcked(key: Buffer, value: string): Promise<ClientOperationResp> {
    const resp = await processRw(clientOf(await leader()), request([put(key, value)]));
    expect(resp.errorCode).toBe(ErrorCode.OK);
    acked.set(key.toString('hex'), value);
    return resp;
  }

  const makeServer = (id: number, listen: string): KvServer =>
    new KvServer({
      id,
      groupId: 1,
      listen,
      metaAddresses: [meta.address],
      dataDir: join(root, `kv-1-${id}`),
      metricsListen: id === 1 ? '127.0.0.1:0' : '',
      // Small snapshots, so that a member that was away catches up by snapshot.
      raft: { tickMs: 20, snapshotEntries: 200 },
      configPollMs: 50,
      shutdownGraceMs: 2000,
      version: 'test',
    });

  beforeAll(async () => {
    root = await tempDir('int');
    await meta.start();
    setTopology(topologyOf({ 1: groupOneSlots, 2: groupTwoSlots }));
    for (let id = 1; id <= 3; id++) servers.push(makeServer(id, '127.0.0.1:0'));
    for (const s of servers) await s.listen();
    const peers = servers.map((s, i) => ({
      id: i + 1,
      address: s.address,
      learner: false,
      incarnation: 0,
    }));
    await Promise.all(servers.map((s) => s.start(peers)));
  });

  afterAll(async () => {
    for (const client of clients.values()) client.close();
    for (const s of servers) await s.stop().catch(() => undefined);
    await meta.stop();
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  it('elects a leader and every member applies the config read from the meta group', async () => {
    await leader();
    await configApplied(1);
    for (const s of servers) {
      expect(s.stateMachine.appliedConfig()?.slots.map((slot) => slot.id)).toEqual(groupOneSlots);
    }
  });

  it("records the group's servers in the meta group's record", async () => {
    const expected = servers.map((s, i) => `${i + 1}=${s.address}`).join(',');
    await waitFor(
      () =>
        (meta.group(1)?.servers ?? [])
          .map((s) => `${s.id}=${s.address}`)
          .sort()
          .join(',') === expected,
      { timeoutMs: 15_000, what: 'the meta record to list the three servers' },
    );
    // The config that follows carries them too.
    await waitFor(
      () => running().every((s) => s.stateMachine.appliedConfig()?.servers.length === 3),
      { timeoutMs: 15_000, what: 'the servers in the applied config' },
    );
  });

  it('puts, gets and deletes through the leader', async () => {
    const l = await leader();
    const key = keyInSlot(0, slotCount, 'basic');
    const resp = await putAcked(key, 'hello');
    expect(resp.groupId).toBe(1);
    expect(resp.leaderAddress).toBe(l.address);
    expect(resp.leaderId).toBe(l.raft.selfId);
    expect(resp.configVersion).toBeGreaterThanOrEqual(1);

    const empty = keyInSlot(1, slotCount, 'empty');
    await putAcked(empty, '');
    const gone = keyInSlot(2, slotCount, 'gone');
    await putAcked(gone, 'soon deleted');
    const deleted = await processRw(clientOf(l), request([del(gone)]));
    expect(deleted.ops[0].deleted).toBe(1);
    acked.delete(gone.toString('hex'));
    // Each write has a revision of its own, higher than the one before.
    expect(resp.revision).toBeGreaterThan(0);
    expect(deleted.revision).toBeGreaterThan(resp.revision);

    const read = await processRw(clientOf(l), request([get(key), get(empty), get(gone)]));
    expect(read.errorCode).toBe(ErrorCode.OK);
    // A read sees at least every write acknowledged before it.
    expect(read.revision).toBeGreaterThanOrEqual(deleted.revision);
    expect(read.ops.map((op) => [op.found, op.value.toString()])).toEqual([
      [true, 'hello'],
      [true, ''],
      [false, ''],
    ]);
    const scanned = await processRw(clientOf(l), request([scan('basic-', 'basic.', 10)]));
    expect(scanned.ops[0].kvs.map((kv) => kv.value.toString())).toEqual(['hello']);
  });

  it("answers NOT_LEADER with the leader's address on a follower", async () => {
    const l = await leader();
    const f = await follower();
    const read = await processRw(clientOf(f), request([get('anything')]));
    expect(read.errorCode).toBe(ErrorCode.NOT_LEADER);
    expect(read.leaderAddress).toBe(l.address);
    expect(read.leaderId).toBe(l.raft.selfId);
    const write = await processRw(clientOf(f), request([put(keyInSlot(0, slotCount), 'x')]));
    expect(write.errorCode).toBe(ErrorCode.NOT_LEADER);
    expect(write.leaderAddress).toBe(l.address);
  });

  it('serves a serializable read on a follower from its applied state', async () => {
    const key = keyInSlot(4, slotCount, 'serializable');
    await putAcked(key, 'replicated');
    const f = await follower();
    const resp = await waitFor(
      async () => {
        const r = await processRw(
          clientOf(f),
          request([get(key)], { readConsistency: ReadConsistency.SERIALIZABLE }),
        );
        return r.ops[0]?.found ? r : undefined;
      },
      { timeoutMs: 10_000, what: 'the follower to apply the write' },
    );
    expect(resp.errorCode).toBe(ErrorCode.OK);
    expect(resp.ops[0].value.toString()).toBe('replicated');
  });

  it('answers WRONG_SHARD with the config version for a slot it does not own, applying nothing', async () => {
    const l = await leader();
    const owned = keyInSlot(5, slotCount, 'atomic');
    const foreign = keyInSlot(13, slotCount, 'foreign');
    const resp = await processRw(clientOf(l), request([put(owned, 'x'), put(foreign, 'y')]));
    expect(resp.errorCode).toBe(ErrorCode.WRONG_SHARD);
    expect(resp.configVersion).toBe(l.stateMachine.configVersion());
    expect(resp.configVersion).toBeGreaterThanOrEqual(1);
    expect(resp.errorMessage).toContain('slot 13');
    const read = await processRw(clientOf(l), request([get(owned)]));
    expect(read.ops[0].found).toBe(false);
    const foreignRead = await processRw(clientOf(l), request([get(foreign)]));
    expect(foreignRead.errorCode).toBe(ErrorCode.WRONG_SHARD);
  });

  it('refuses an oversized value with INVALID_ARGUMENT and keeps serving', async () => {
    const l = await leader();
    const key = keyInSlot(6, slotCount, 'big');
    const err = await processRw(
      clientOf(l),
      request([put(key, Buffer.alloc(1024 * 1024 + 1))]),
    ).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toContain(
      'kvs[0].value is 1048577 bytes (Put); the limit is 1048576 (--value-bytes-max)',
    );
    await putAcked(key, 'small');
    const read = await processRw(clientOf(l), request([get(key)]));
    expect(read.ops[0].value.toString()).toBe('small');
  });

  it('applies a duplicate (client_id, command_id) once', async () => {
    const l = await leader();
    const key = keyInSlot(7, slotCount, 'dedup');
    const ids = { clientId: 'int-client', commandId: 1 };
    const first = await processRw(clientOf(l), request([put(key, 'first')], ids));
    expect(first.errorCode).toBe(ErrorCode.OK);
    await putAcked(key, 'second');
    const retry = await processRw(clientOf(l), request([put(key, 'first')], ids));
    expect(retry.errorCode).toBe(ErrorCode.OK);
    expect(retry.ops).toEqual(first.ops);
    // The retry answers the revision of the first apply.
    expect(retry.revision).toBe(first.revision);
    const read = await processRw(clientOf(l), request([get(key)]));
    expect(read.ops[0].value.toString()).toBe('second');
  });

  it('hands slots over: SLOT_NOT_EMPTY for a slot with data, success for an empty one', async () => {
    const l = await leader();
    const full = 3;
    const key = keyInSlot(full, slotCount, 'handover');
    await putAcked(key, 'stays');
    const holding = await l.stateMachine.slotsHoldingKeys(groupOneSlots, slotCount);
    const empty = groupOneSlots.find((s) => !holding.includes(s));
    if (empty === undefined) throw new Error('every slot of group 1 holds data');

    // Step 1 at the meta group: the slot is Migrating. Step 2: the hand-over request.
    const handOver = (version: number): ClusterConfigChangeReq =>
      ClusterConfigChangeReq.fromPartial({
        changeType: ChangeType.SlotMove,
        handleServerType: HandleServerType.DataServer,
        shardId: 1,
        configVersion: version,
        slotCount,
        shardGroup: meta.group(1),
      });
    const begin = setTopology(topologyOf({ 1: groupOneSlots, 2: groupTwoSlots }, [full]));
    const onFollower = await configChange(clientOf(await follower()), handOver(begin));
    expect(onFollower.success).toBe(false);
    expect(onFollower.errorCode).toBe(ErrorCode.NOT_LEADER);
    expect(onFollower.leaderAddress).toBe(l.address);

    const refused = await configChange(clientOf(l), handOver(begin));
    expect(refused.success).toBe(false);
    expect(refused.errorCode).toBe(ErrorCode.SLOT_NOT_EMPTY);
    expect(refused.errorMessage).toContain(`slot ${full} `);
    expect(refused.shardGroup[0]?.slots.map((s) => s.id)).toEqual([full]);
    expect(refused.configVersion).toBeGreaterThanOrEqual(begin);
    // Frozen meanwhile: neither read nor written.
    const frozen = await processRw(clientOf(l), request([get(key)]));
    expect(frozen.errorCode).toBe(ErrorCode.SLOT_MIGRATING);

    // Step 3: the meta group rolls the move back; the key is served again.
    const rollback = setTopology(topologyOf({ 1: groupOneSlots, 2: groupTwoSlots }));
    await configApplied(rollback);
    const back = await processRw(clientOf(await leader()), request([get(key)]));
    expect(back.errorCode).toBe(ErrorCode.OK);
    expect(back.ops[0].value.toString()).toBe('stays');

    // An empty slot hands over; a retry of the same step is answered the same way.
    const beginEmpty = setTopology(topologyOf({ 1: groupOneSlots, 2: groupTwoSlots }, [empty]));
    const accepted = await configChange(clientOf(l), handOver(beginEmpty));
    expect(accepted.errorMessage).toBe('');
    expect(accepted.success).toBe(true);
    expect(accepted.errorCode).toBe(ErrorCode.OK);
    expect(accepted.configVersion).toBeGreaterThanOrEqual(beginEmpty);
    expect((await configChange(clientOf(l), handOver(beginEmpty))).success).toBe(true);

    // Finish: the slot now belongs to group 2.
    const finish = setTopology(
      topologyOf({
        1: groupOneSlots.filter((s) => s !== empty),
        2: [...groupTwoSlots, empty],
      }),
    );
    await configApplied(finish);
    const moved = await processRw(
      clientOf(await leader()),
      request([put(keyInSlot(empty, slotCount, 'moved'), 'x')]),
    );
    expect(moved.errorCode).toBe(ErrorCode.WRONG_SHARD);
    expect(moved.configVersion).toBeGreaterThanOrEqual(finish);
  });

  it('serves /health, /metrics and the Status RPC', async () => {
    const first = servers[0];
    const health = await waitFor(
      async () => {
        const h = await httpStatus(`http://${first.metricsAddress}/health`);
        return h.status === 200 ? h : undefined;
      },
      { timeoutMs: 10_000, what: '/health to answer 200' },
    );
    expect(JSON.parse(health.body)).toMatchObject({ health: 'true' });
    const metrics = await httpStatus(`http://${first.metricsAddress}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('eraftkv_server_is_leader');
    expect(metrics.body).toContain('grpc_server_handled_total{');
    expect(metrics.body).toContain('process_resident_memory_bytes');
    const s = await status(clientOf(first));
    expect(s.serverType).toBe('kv');
    expect(s.groupId).toBe(1);
    expect(s.configVersion).toBe(first.stateMachine.configVersion());
  });

  it('after the leader stops, a new leader serves every acknowledged write', async () => {
    const old = await leader();
    const owned = (old.stateMachine.appliedConfig()?.slots ?? [])
      .filter((s) => s.status === 'Running')
      .map((s) => s.id);
    const writes: Promise<ClientOperationResp>[] = [];
    for (let i = 0; i < 40; i++) {
      writes.push(
        putAcked(keyInSlot(owned[i % owned.length], slotCount, `failover-${i}`), `v${i}`),
      );
    }
    await Promise.all(writes);
    await old.stop();
    stopped.add(old);

    const next = await leader();
    expect(next).not.toBe(old);
    const keys = [...acked.keys()];
    expect(keys.length).toBeGreaterThan(40);
    for (let i = 0; i < keys.length; i += 100) {
      const batch = keys.slice(i, i + 100);
      const resp = await waitFor(
        async () => {
          const r = await processRw(
            clientOf(next),
            request(batch.map((k) => get(Buffer.from(k, 'hex')))),
          );
          return r.errorCode === ErrorCode.OK ? r : undefined;
        },
        { timeoutMs: 10_000, what: 'the new leader to answer' },
      );
      expect(resp.ops.map((op) => [op.key.toString('hex'), op.found, op.value.toString()])).toEqual(
        batch.map((k) => [k, true, acked.get(k)]),
      );
    }
    // And it takes writes.
    await putAcked(keyInSlot(0, slotCount, 'after'), 'ok');
  });

  it('restarts a stopped member on its data dir; it catches up by snapshot and keeps its data', async () => {
    const away = servers.find((s) => stopped.has(s));
    if (away === undefined) throw new Error('no stopped member');
    const lastIndexBefore = away.raft.status().lastIndex;
    // Enough entries that the leader compacts its log past what the stopped member has.
    const owned = ((await leader()).stateMachine.appliedConfig()?.slots ?? [])
      .filter((s) => s.status === 'Running')
      .map((s) => s.id);
    for (let round = 0; round < 24; round++) {
      const writes: Promise<ClientOperationResp>[] = [];
      for (let i = 0; i < 64; i++) {
        const n = round * 64 + i;
        writes.push(
          putAcked(keyInSlot(owned[n % owned.length], slotCount, `catch-up-${n}`), `c${n}`),
        );
      }
      await Promise.all(writes);
    }
    // The leader's log no longer holds what the member lacks: only a snapshot can bring it back.
    await waitFor(async () => (await leader()).raft.status().firstIndex > lastIndexBefore + 1, {
      timeoutMs: 30_000,
      what: 'the leader to compact its log',
    });
    const index = servers.indexOf(away);
    const restarted = makeServer(index + 1, away.address);
    servers[index] = restarted;
    stopped.delete(away);
    await restarted.listen();
    await restarted.start(
      servers.map((s, i) => ({ id: i + 1, address: s.address, learner: false, incarnation: 0 })),
    );
    const l = await leader();
    await waitFor(() => restarted.raft.status().applied >= l.raft.status().commit, {
      timeoutMs: 30_000,
      what: 'the restarted member to catch up',
    });
    const keys = [...acked.keys()];
    for (let i = 0; i < keys.length; i += 100) {
      const batch = keys.slice(i, i + 100);
      const resp = await processRw(
        clientOf(restarted),
        request(
          batch.map((k) => get(Buffer.from(k, 'hex'))),
          { readConsistency: ReadConsistency.SERIALIZABLE },
        ),
      );
      expect(resp.errorCode).toBe(ErrorCode.OK);
      expect(resp.ops.map((op) => op.value.toString())).toEqual(batch.map((k) => acked.get(k)));
    }
  });
});
