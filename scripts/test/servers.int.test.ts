// The meta and kv servers as real processes on 127.0.0.1 (3 meta + 3 kv), driven through a bare
// generated gRPC client, no client library: setup, routing, crashes, limits, exactly-once writes,
// slot ownership and metrics.
import * as grpc from '@grpc/grpc-js';
import {
  ChangeType,
  ClientOpType,
  ErrorCode,
  HandleServerType,
  slotOfKey,
  type ClientOperationResp,
} from '@eraftkv/protocol';
import { httpGet, waitUntil, type LocalCluster } from '../local-cluster';
import { BareClients, checkMetricsText, op, sample, startTestCluster } from './helpers';

jest.setTimeout(180_000);

describe('meta and kv servers as processes', () => {
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  const clients = new BareClients();
  let slotCount = 0;
  /** A slot left without an owner, and a key that lives in it. */
  let orphanSlot = 0;
  let orphanKey = '';
  const acknowledged = new Map<string, string>();
  /** Slots moved to group 2 (with their keys) by the slot move test. */
  const movedToGroup2 = new Set<number>();

  const kvAddresses = (group = 1): string[] =>
    cluster.layout.kv.get(group)!.map((n) => n.grpcAddress);

  /** Finds the leader of kv group `group` by asking every node's status. */
  async function kvLeader(group = 1): Promise<string> {
    return waitUntil(
      async () => {
        for (const address of kvAddresses(group)) {
          const name = cluster.allSpecs().find((s) => s.grpcAddress === address)!.name;
          if (!cluster.isRunning(name)) continue;
          const status = await clients.status(address).catch(() => null);
          if (status?.role === 'leader') return address;
        }
        return undefined;
      },
      15_000,
      'a kv leader',
    );
  }

  /** Sends a config change to the meta leader, following NOT_LEADER hints. */
  async function meta(req: Parameters<BareClients['config']>[1]) {
    let address = cluster.metaEndpoints()[0];
    return waitUntil(
      async () => {
        const resp = await clients.config(address, req).catch(() => null);
        if (resp === null) {
          address = cluster.metaEndpoints()[(cluster.metaEndpoints().indexOf(address) + 1) % 3];
          return undefined;
        }
        if (resp.errorCode === ErrorCode.NOT_LEADER || resp.errorCode === ErrorCode.NO_LEADER) {
          address =
            resp.leaderAddress ||
            cluster.metaEndpoints()[(cluster.metaEndpoints().indexOf(address) + 1) % 3];
          return undefined;
        }
        return resp;
      },
      20_000,
      `the meta leader to answer ${ChangeType[req.changeType ?? 0]}`,
    );
  }

  beforeAll(async () => {
    // Group 2 joins the topology only when a test adds it (the slot move below).
    ({ cluster, cleanup } = await startTestCluster({ kvGroups: 2 }));
  });
  afterAll(async () => {
    clients.closeAll();
    await cleanup();
  });

  it('initialises the cluster, adds group 1 and gives it every slot but one', async () => {
    const init = await meta({
      changeType: ChangeType.ClusterInit,
      slotCount: 64,
      clientId: 'test',
      commandId: 1,
    });
    expect(init.errorCode).toBe(ErrorCode.OK);
    expect(init.slotCount).toBe(64);
    slotCount = init.slotCount;
    const again = await meta({
      changeType: ChangeType.ClusterInit,
      slotCount: 64,
      clientId: 'test',
      commandId: 2,
    });
    expect(again.errorCode).toBe(ErrorCode.ALREADY_INITIALIZED);
    const join = await meta({
      changeType: ChangeType.ShardJoin,
      handleServerType: HandleServerType.DataServer,
      shardId: 1,
      shardGroup: {
        id: 1,
        slots: [],
        servers: kvAddresses().map((address, i) => ({ id: i + 1, address, serverStatus: 0 })),
        leaderId: 0,
      },
      clientId: 'test',
      commandId: 3,
    });
    expect(join.errorCode).toBe(ErrorCode.OK);
    orphanKey = Array.from({ length: 100 }, (_, i) => `orphan-${i}`).find(
      (k) => slotOfKey(Buffer.from(k), slotCount) === 0,
    )!;
    orphanSlot = 0;
    const move = await meta({
      changeType: ChangeType.SlotMove,
      shardId: 1,
      shardGroup: {
        id: 1,
        slots: Array.from({ length: slotCount - 1 }, (_, i) => ({
          id: i + 1,
          slotStatus: 0,
          statusModifyTime: 0,
          targetShardId: 0,
        })),
        servers: [],
        leaderId: 0,
      },
      clientId: 'test',
      commandId: 4,
    });
    expect(move.errorCode).toBe(ErrorCode.OK);
    const group = move.shardGroup.find((g) => g.id === 1)!;
    expect(group.slots.map((s) => s.id).sort((a, b) => a - b)).toEqual(
      Array.from({ length: slotCount - 1 }, (_, i) => i + 1),
    );
    expect(move.configVersion).toBeGreaterThan(join.configVersion);
    // The meta group itself is listed as group 0.
    expect(move.shardGroup[0].id).toBe(0);
    expect(move.shardGroup[0].servers.map((s) => s.address).sort()).toEqual(
      [...cluster.metaEndpoints()].sort(),
    );
  });

  it('serves puts and gets through the kv leader, and redirects from a follower', async () => {
    const leader = await kvLeader();
    const follower = kvAddresses().find((a) => a !== leader)!;
    const put = await waitUntil(
      async () => {
        const resp = await clients.rw(leader, {
          kvs: [op(ClientOpType.Put, 'hello', 'world')],
          clientId: 'c1',
          commandId: 1,
        });
        // The group may still be adopting the new config.
        return resp.errorCode === ErrorCode.WRONG_SHARD ? undefined : resp;
      },
      15_000,
      'group 1 to own its slots',
    );
    expect(put.errorCode).toBe(ErrorCode.OK);
    acknowledged.set('hello', 'world');
    const redirected = await clients.rw(follower, { kvs: [op(ClientOpType.Get, 'hello')] });
    expect(redirected.errorCode).toBe(ErrorCode.NOT_LEADER);
    expect(redirected.leaderAddress).toBe(leader);
    const got = await clients.rw(redirected.leaderAddress, {
      kvs: [op(ClientOpType.Get, 'hello')],
    });
    expect(got.errorCode).toBe(ErrorCode.OK);
    expect(got.ops[0].found).toBe(true);
    expect(got.ops[0].value.toString()).toBe('world');
    for (let i = 0; i < 50; i++) {
      // Keys of the slot left without an owner are refused (tested below).
      if (slotOfKey(Buffer.from(`k${i}`), slotCount) === orphanSlot) continue;
      const resp = await clients.rw(leader, {
        kvs: [op(ClientOpType.Put, `k${i}`, `v${i}`)],
        clientId: 'c1',
        commandId: 100 + i,
      });
      expect(resp.errorCode).toBe(ErrorCode.OK);
      acknowledged.set(`k${i}`, `v${i}`);
    }
  });

  it('answers WRONG_SHARD with the config version for a slot the group does not own', async () => {
    const leader = await kvLeader();
    const resp = await clients.rw(leader, { kvs: [op(ClientOpType.Put, orphanKey, 'x')] });
    expect(resp.errorCode).toBe(ErrorCode.WRONG_SHARD);
    expect(resp.configVersion).toBeGreaterThan(0);
    const read = await clients.rw(leader, { kvs: [op(ClientOpType.Get, orphanKey)] });
    expect(read.errorCode).toBe(ErrorCode.WRONG_SHARD);
  });

  it('refuses an oversized value with INVALID_ARGUMENT and keeps serving', async () => {
    const leader = await kvLeader();
    const err = await clients
      .rw(leader, {
        kvs: [op(ClientOpType.Put, 'big', 'x'.repeat(1024 * 1024 + 1))],
        clientId: 'c1',
        commandId: 999,
      })
      .then(
        () => null,
        (e: grpc.ServiceError) => e,
      );
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/value/i);
    const ok = await clients.rw(leader, { kvs: [op(ClientOpType.Get, 'hello')] });
    expect(ok.ops[0].value.toString()).toBe('world');
    const absent = await clients.rw(leader, { kvs: [op(ClientOpType.Get, 'big')] });
    expect(absent.ops[0].found).toBe(false);
  });

  it('serves many requests over one ProcessRWOperationStream, each answered by its request id', async () => {
    const leader = await kvLeader();
    const call = clients.get(leader).processRwOperationStream();
    const answers = new Map<number, ClientOperationResp>();
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (resp: ClientOperationResp) => {
        answers.set(resp.requestId, resp);
        if (answers.size === 41) resolve();
      });
      call.on('error', reject);
    });
    const base = { opTimestamp: 0, commandId: 0, readConsistency: 0, configVersion: 0 };
    const keys = Array.from({ length: 40 }, (_, i) => `stream-${i}`).filter(
      (k) => slotOfKey(Buffer.from(k), slotCount) !== orphanSlot,
    );
    keys.forEach((k, i) =>
      call.write({
        ...base,
        clientId: 'stream',
        commandId: i + 1,
        kvs: [op(ClientOpType.Put, k, `v-${k}`)],
        requestId: 1000 + i,
      }),
    );
    // One bad request among them fails alone, with the status a unary call would have had.
    call.write({ ...base, clientId: '', kvs: [], requestId: 7 });
    for (let i = keys.length; i < 40; i++)
      call.write({
        ...base,
        clientId: '',
        kvs: [op(ClientOpType.Get, 'hello')],
        requestId: 1000 + i,
      });
    await done;
    call.end();
    expect(answers.get(7)?.statusCode).toBe(grpc.status.INVALID_ARGUMENT);
    for (let i = 0; i < 40; i++) {
      const resp = answers.get(1000 + i);
      expect({ i, statusCode: resp?.statusCode, errorCode: resp?.errorCode }).toEqual({
        i,
        statusCode: 0,
        errorCode: ErrorCode.OK,
      });
    }
    for (const k of keys) {
      const read = await clients.rw(leader, { kvs: [op(ClientOpType.Get, k)] });
      expect(read.ops[0].value.toString()).toBe(`v-${k}`);
    }
  });

  it('applies a duplicate (client_id, command_id) once', async () => {
    const leader = await kvLeader();
    const first = await clients.rw(leader, {
      kvs: [op(ClientOpType.Put, 'dup', 'first')],
      clientId: 'dedup',
      commandId: 1,
    });
    expect(first.errorCode).toBe(ErrorCode.OK);
    const second = await clients.rw(leader, {
      kvs: [op(ClientOpType.Put, 'dup', 'second')],
      clientId: 'dedup',
      commandId: 2,
    });
    expect(second.errorCode).toBe(ErrorCode.OK);
    // A retry of command 1 (its answer was "lost") must not write 'first' again.
    const retry = await clients.rw(leader, {
      kvs: [op(ClientOpType.Put, 'dup', 'first')],
      clientId: 'dedup',
      commandId: 1,
    });
    expect(retry.errorCode).toBe(ErrorCode.OK);
    const read = await clients.rw(leader, { kvs: [op(ClientOpType.Get, 'dup')] });
    expect(read.ops[0].value.toString()).toBe('second');
    acknowledged.set('dup', 'second');
  });

  it('moves a slot that holds data to a second group with every key, and loses none', async () => {
    const join2 = await meta({
      changeType: ChangeType.ShardJoin,
      handleServerType: HandleServerType.DataServer,
      shardId: 2,
      shardGroup: {
        id: 2,
        slots: [],
        servers: kvAddresses(2).map((address, i) => ({ id: i + 1, address, serverStatus: 0 })),
        leaderId: 0,
      },
      clientId: 'test',
      commandId: 10,
    });
    expect(join2.errorCode).toBe(ErrorCode.OK);
    const busySlot = slotOfKey(Buffer.from('hello'), slotCount);
    movedToGroup2.add(busySlot);
    expect(
      [...acknowledged.keys()].some((k) => slotOfKey(Buffer.from(k), slotCount) === busySlot),
    ).toBe(true);
    const moved = await meta({
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: {
        id: 2,
        slots: [{ id: busySlot, slotStatus: 0, statusModifyTime: 0, targetShardId: 0 }],
        servers: [],
        leaderId: 0,
      },
      clientId: 'test',
      commandId: 11,
    });
    expect(moved.errorCode).toBe(ErrorCode.OK);
    expect(moved.shardGroup.find((g) => g.id === 2)!.slots.map((s) => s.id)).toEqual([busySlot]);
    expect(moved.shardGroup.find((g) => g.id === 1)!.slots.map((s) => s.id)).not.toContain(
      busySlot,
    );
    // Every acknowledged key is still there, served by the group that owns its slot now.
    const leaders = { 1: await kvLeader(1), 2: await kvLeader(2) };
    for (const [key, value] of acknowledged) {
      const owner = slotOfKey(Buffer.from(key), slotCount) === busySlot ? 2 : 1;
      const resp = await waitUntil(
        async () => {
          const r = await clients.rw(leaders[owner], { kvs: [op(ClientOpType.Get, key)] });
          return r.errorCode === ErrorCode.OK ? r : undefined;
        },
        10_000,
        `${key} to be readable from group ${owner} after the move`,
      );
      expect(resp.ops[0].found).toBe(true);
      expect(resp.ops[0].value.toString()).toBe(value);
    }
    // The source no longer serves the moved slot: SLOT_MIGRATING until it applies the committed
    // config (its next poll of the meta group), WRONG_SHARD from then on, never an answer.
    await waitUntil(
      async () => {
        const r = await clients.rw(leaders[1], { kvs: [op(ClientOpType.Get, 'hello')] });
        expect([ErrorCode.SLOT_MIGRATING, ErrorCode.WRONG_SHARD]).toContain(r.errorCode);
        return r.errorCode === ErrorCode.WRONG_SHARD;
      },
      10_000,
      'the source to learn that the slot moved',
    );
    // The orphan slot holds nothing: it moves too.
    const orphanMoved = await meta({
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: {
        id: 2,
        slots: [{ id: orphanSlot, slotStatus: 0, statusModifyTime: 0, targetShardId: 0 }],
        servers: [],
        leaderId: 0,
      },
      clientId: 'test',
      commandId: 12,
    });
    expect(orphanMoved.errorCode).toBe(ErrorCode.OK);
    expect(
      orphanMoved.shardGroup
        .find((g) => g.id === 2)!
        .slots.map((s) => s.id)
        .sort((x, y) => x - y),
    ).toEqual([orphanSlot, busySlot].sort((x, y) => x - y));
  });

  it('survives kill -9 of the kv leader: a new leader serves and every acknowledged write is there', async () => {
    const leader = await kvLeader();
    const victim = cluster.allSpecs().find((s) => s.grpcAddress === leader)!;
    await cluster.signal(victim.name, 'SIGKILL');
    const started = Date.now();
    const newLeader = await kvLeader();
    expect(newLeader).not.toBe(leader);
    expect(Date.now() - started).toBeLessThan(10_000);
    for (const [key, value] of acknowledged) {
      if (movedToGroup2.has(slotOfKey(Buffer.from(key), slotCount))) continue;
      const resp = await clients.rw(newLeader, { kvs: [op(ClientOpType.Get, key)] });
      expect(resp.errorCode).toBe(ErrorCode.OK);
      expect(resp.ops[0].value.toString()).toBe(value);
    }
    const after = await clients.rw(newLeader, {
      kvs: [op(ClientOpType.Put, 'after-kill', 'yes')],
      clientId: 'c2',
      commandId: 1,
    });
    expect(after.errorCode).toBe(ErrorCode.OK);
    // The killed node restarts from its data dir and catches up.
    await cluster.start(victim.name);
    await waitUntil(
      async () => {
        const r = await clients
          .rw(leader, { kvs: [op(ClientOpType.Get, 'after-kill')], readConsistency: 1 })
          .catch(() => null);
        return r?.errorCode === ErrorCode.OK && r.ops[0].found;
      },
      20_000,
      'the restarted node to catch up',
    );
  });

  it('serves Prometheus metrics on every process, with has_leader 1 everywhere', async () => {
    await waitUntil(
      async () => {
        for (const spec of cluster.allSpecs()) {
          const res = await httpGet(spec.metricsAddress, '/metrics');
          if (res === null || res.status !== 200) return false;
          const samples = await checkMetricsText(res.body);
          if (sample(samples, 'eraftkv_server_has_leader') !== 1) return false;
        }
        return true;
      },
      20_000,
      'every process to report has_leader 1',
    );
    for (const spec of cluster.allSpecs()) {
      const res = await httpGet(spec.metricsAddress, '/metrics');
      const samples = await checkMetricsText(res!.body);
      for (const name of [
        'eraftkv_server_is_leader',
        'eraftkv_server_term',
        'eraftkv_server_commit_index',
        'eraftkv_server_applied_index',
        'grpc_server_handled_total',
        'process_resident_memory_bytes',
      ]) {
        expect({ node: spec.name, name, present: sample(samples, name) !== undefined }).toEqual({
          node: spec.name,
          name,
          present: true,
        });
      }
      const health = await httpGet(spec.metricsAddress, '/health');
      expect({ node: spec.name, status: health?.status }).toEqual({ node: spec.name, status: 200 });
    }
    const leaders = await Promise.all(
      cluster
        .allSpecs()
        .map(async (spec) =>
          sample(
            await checkMetricsText((await httpGet(spec.metricsAddress, '/metrics'))!.body),
            'eraftkv_server_is_leader',
          ),
        ),
    );
    // One leader in the meta group and one in each kv group.
    expect(leaders.reduce((a, b) => (a ?? 0) + (b ?? 0), 0)).toBe(3);
    // The slot move of the test above: counted by the meta node that led it (keys, batches and
    // their duration; the orphan slot had no owner, so it moved without a batch); every kv node
    // counts the requests it answered SLOT_MIGRATING.
    const total = (samples: Map<string, number>, name: string): number =>
      [...samples]
        .filter(([key]) => key === name || key.startsWith(`${name}{`))
        .reduce((sum, [, value]) => sum + value, 0);
    const metaSamples = await Promise.all(
      cluster.layout.meta.map(async (spec) =>
        checkMetricsText((await httpGet(spec.metricsAddress, '/metrics'))!.body),
      ),
    );
    const metaTotal = (name: string): number =>
      metaSamples.reduce((sum, samples) => sum + total(samples, name), 0);
    expect(metaTotal('eraftkv_meta_keys_migrated_total')).toBeGreaterThan(0);
    expect(metaTotal('eraftkv_meta_bytes_migrated_total')).toBeGreaterThan(0);
    expect(metaTotal('eraftkv_meta_slot_move_batch_seconds_count')).toBeGreaterThanOrEqual(1);
    for (const spec of [...cluster.layout.kv.values()].flat()) {
      const samples = await checkMetricsText(
        (await httpGet(spec.metricsAddress, '/metrics'))!.body,
      );
      expect({
        node: spec.name,
        present: sample(samples, 'eraftkv_kv_slot_migrating_answers_total') !== undefined,
      }).toEqual({ node: spec.name, present: true });
    }
  });
});
