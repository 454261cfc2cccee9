// Three MetaServers in this process on 127.0.0.1 port 0, driven through a bare generated
// ERaftKvClient exactly as any gRPC client would drive them.
import * as grpc from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { request as httpGet } from 'node:http';
import {
  ChangeType,
  ErrorCode,
  HandleServerType,
  MemberChangeType,
  ServerStatus,
  SlotStatus,
  StatusReq,
  type ERaftKvClient,
  type MemberChangeReq,
  type MemberChangeResp,
  type StatusResp,
  type TransferLeaderReq,
  type TransferLeaderResp,
} from '@eraftkv/protocol';
import { jsonLogger } from '@eraftkv/raft-server';
import { MetaServer } from '../src';
import { configChange, waitFor, type ConfigChangeFields as Fields } from '@eraftkv/test-support';
import { groupOf, MetaGroup, slotIdsOf, statusOf } from './common';

jest.setTimeout(60_000);

function fetchText(address: string, path: string): Promise<{ status: number; body: string }> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const req = httpGet({ host, port: Number(port), path }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function status(client: ERaftKvClient): Promise<StatusResp> {
  return new Promise((resolve, reject) =>
    client.status(StatusReq.fromPartial({}), (err, resp) => (err ? reject(err) : resolve(resp))),
  );
}

/** The error a call failed with (throws if it succeeded). */
async function refusal(call: Promise<unknown>): Promise<grpc.ServiceError> {
  return call.then(
    () => {
      throw new Error('the call succeeded, but it was expected to fail');
    },
    (err: grpc.ServiceError) => err,
  );
}

function memberChange(client: ERaftKvClient, req: MemberChangeReq): Promise<MemberChangeResp> {
  return new Promise((resolve, reject) =>
    client.memberChange(req, (err, resp) => (err ? reject(err) : resolve(resp))),
  );
}

function transferLeader(
  client: ERaftKvClient,
  req: TransferLeaderReq,
): Promise<TransferLeaderResp> {
  return new Promise((resolve, reject) =>
    client.transferLeader(req, (err, resp) => (err ? reject(err) : resolve(resp))),
  );
}

/** A unary ERaftKv call with hand-made request bytes. */
function rawUnary(client: grpc.Client, method: string, bytes: Uint8Array): Promise<Buffer> {
  const identity = (b: Buffer): Buffer => b;
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      `/eraftkv.ERaftKv/${method}`,
      identity,
      identity,
      Buffer.from(bytes),
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, value) => (err ? reject(err) : resolve(value as Buffer)),
    ),
  );
}

describe('MetaServer: a group of three over gRPC', () => {
  const group = new MetaGroup();
  let servers: MetaServer[] = [];
  let leaderClient: ERaftKvClient;
  let followerClient: ERaftKvClient;
  let leader: MetaServer;

  /** Sends to the leader, following one redirect if leadership moved meanwhile. */
  const toLeader = async (fields: Fields): Promise<Awaited<ReturnType<typeof configChange>>> => {
    const resp = await configChange(leaderClient, fields);
    if (resp.errorCode !== ErrorCode.NOT_LEADER && resp.errorCode !== ErrorCode.NO_LEADER)
      return resp;
    leader = await group.waitForLeader();
    leaderClient = group.client(leader);
    return configChange(leaderClient, fields);
  };

  beforeAll(async () => {
    await group.init();
    servers = await group.start(3);
    leader = await group.waitForLeader();
    leaderClient = group.client(leader);
    const follower = servers.find((s) => s !== leader);
    if (follower === undefined) throw new Error('no follower');
    followerClient = group.client(follower);
  });
  afterAll(() => group.close());

  it('answers a query before ClusterInit with the meta group only', async () => {
    const resp = await toLeader({ changeType: ChangeType.ShardsQuery });
    expect(resp.success).toBe(true);
    expect(resp.slotCount).toBe(0);
    expect(resp.shardGroup.map((g) => g.id)).toEqual([0]);
    expect(resp.shardGroup[0].servers.map((s) => s.address).sort()).toEqual(
      servers.map((s) => s.address).sort(),
    );
  });

  it('refuses a topology change before ClusterInit with NOT_INITIALIZED', async () => {
    const resp = await toLeader({
      changeType: ChangeType.ShardJoin,
      shardGroup: { id: 1, servers: [] },
    });
    expect(resp.success).toBe(false);
    expect(ErrorCode[resp.errorCode]).toBe('NOT_INITIALIZED');
  });

  it('initializes the cluster once', async () => {
    const resp = await toLeader({ changeType: ChangeType.ClusterInit, slotCount: 64 });
    expect(resp.success).toBe(true);
    expect(resp.slotCount).toBe(64);
    expect(resp.configVersion).toBe(1);
    const again = await toLeader({ changeType: ChangeType.ClusterInit });
    expect(ErrorCode[again.errorCode]).toBe('ALREADY_INITIALIZED');
    expect(again.slotCount).toBe(64);
  });

  it('adds a shard group and shows it in ShardsQuery, meta group first', async () => {
    const joined = await toLeader({
      changeType: ChangeType.ShardJoin,
      shardGroup: {
        id: 1,
        servers: [
          { id: 1, address: '127.0.0.1:7088' },
          { id: 2, address: '127.0.0.1:7089' },
        ],
      },
    });
    expect(joined.success).toBe(true);
    const query = await toLeader({ changeType: ChangeType.ShardsQuery });
    expect(query.shardGroup.map((g) => g.id)).toEqual([0, 1]);
    expect(query.shardGroup[0].leaderId).toBe(leader.raft.selfId);
    expect(groupOf(query, 1)?.servers.map((s) => [s.id, s.address])).toEqual([
      [1, '127.0.0.1:7088'],
      [2, '127.0.0.1:7089'],
    ]);
    expect(query.configVersion).toBe(joined.configVersion);
    expect(query.leaderAddress).toBe(leader.address);
  });

  it('numbers servers 1..n when a ShardJoin gives addresses only', async () => {
    const resp = await toLeader({
      changeType: ChangeType.ShardJoin,
      shardGroup: { id: 7, servers: [{ address: 'h1:1' }, { address: 'h2:1' }] },
    });
    expect(groupOf(resp, 7)?.servers.map((s) => s.id)).toEqual([1, 2]);
    expect((await toLeader({ changeType: ChangeType.ShardLeave, shardId: 7 })).success).toBe(true);
  });

  it('answers NOT_LEADER with the leader address from a follower', async () => {
    const resp = await configChange(followerClient, { changeType: ChangeType.ShardsQuery });
    expect(resp.success).toBe(false);
    expect(ErrorCode[resp.errorCode]).toBe('NOT_LEADER');
    expect(resp.leaderAddress).toBe(leader.address);
    expect(resp.leaderId).toBe(leader.raft.selfId);
    const change = await configChange(followerClient, {
      changeType: ChangeType.ShardJoin,
      shardGroup: { id: 9, servers: [] },
    });
    expect(ErrorCode[change.errorCode]).toBe('NOT_LEADER');
    expect(change.leaderAddress).toBe(leader.address);
  });

  it('serves a serializable query from a follower', async () => {
    const version = (await toLeader({ changeType: ChangeType.ShardsQuery })).configVersion;
    const resp = await waitFor(
      async () => {
        const r = await configChange(followerClient, {
          changeType: ChangeType.ShardsQuery,
          serializable: true,
        });
        return r.configVersion === version ? r : undefined;
      },
      { timeoutMs: 5000, what: 'the follower to apply the latest config' },
    );
    expect(resp.success).toBe(true);
    expect(groupOf(resp, 1)).toBeDefined();
  });

  it('applies a duplicate (client_id, command_id) once', async () => {
    const fields: Fields = {
      changeType: ChangeType.ShardJoin,
      shardGroup: { id: 2, servers: [{ id: 1, address: '127.0.0.1:7188' }] },
      clientId: 'int-test',
      commandId: 1,
    };
    const first = await toLeader(fields);
    const second = await toLeader(fields);
    expect(first.success).toBe(true);
    expect(second.success).toBe(true);
    expect(second.configVersion).toBe(first.configVersion);
    expect(second.shardGroup.filter((g) => g.id === 2)).toHaveLength(1);
    // Without a request id, the same change is applied again and refused.
    const third = await toLeader({ ...fields, clientId: '', commandId: 0 });
    expect(ErrorCode[third.errorCode]).toBe('GROUP_EXISTS');
  });

  it('gives slots without an owner to a group directly', async () => {
    const before = (await toLeader({ changeType: ChangeType.ShardsQuery })).configVersion;
    const resp = await toLeader({
      changeType: ChangeType.SlotMove,
      shardId: 1,
      shardGroup: { slots: [0, 1, 2, 3].map((id) => ({ id })) },
    });
    expect(resp.success).toBe(true);
    expect(resp.configVersion).toBe(before + 1);
    expect(slotIdsOf(resp, 1)).toEqual([0, 1, 2, 3]);
    expect(groupOf(resp, 1)?.slots.every((s) => s.slotStatus === SlotStatus.Running)).toBe(true);
    expect(groupOf(resp, 1)?.slots[0].statusModifyTime).toBeGreaterThan(0);
  });

  it('refuses ShardLeave while the group owns slots, and removes an empty group', async () => {
    const refused = await toLeader({ changeType: ChangeType.ShardLeave, shardId: 1 });
    expect(refused.success).toBe(false);
    expect(ErrorCode[refused.errorCode]).toBe('GROUP_HAS_SLOTS');
    expect(refused.errorMessage).toMatch(/4 slot\(s\)/);
    expect(groupOf(refused, 1)).toBeDefined();
    const missing = await toLeader({ changeType: ChangeType.ShardLeave, shardId: 42 });
    expect(ErrorCode[missing.errorCode]).toBe('GROUP_NOT_FOUND');
    const left = await toLeader({ changeType: ChangeType.ShardLeave, shardId: 2 });
    expect(left.success).toBe(true);
    expect(groupOf(left, 2)).toBeUndefined();
  });

  it('records and drops data servers of a group', async () => {
    const server = { id: 3, address: '127.0.0.1:7090' };
    const joined = await toLeader({
      changeType: ChangeType.ServerJoin,
      handleServerType: HandleServerType.DataServer,
      shardId: 1,
      server,
    });
    expect(groupOf(joined, 1)?.servers.map((s) => s.id)).toEqual([1, 2, 3]);
    const again = await toLeader({
      changeType: ChangeType.ServerJoin,
      handleServerType: HandleServerType.DataServer,
      shardId: 1,
      server,
    });
    expect(ErrorCode[again.errorCode]).toBe('NODE_EXISTS');
    const left = await toLeader({
      changeType: ChangeType.ServerLeave,
      handleServerType: HandleServerType.DataServer,
      shardId: 1,
      server: { id: 3 },
    });
    expect(groupOf(left, 1)?.servers.map((s) => s.id)).toEqual([1, 2]);
    const gone = await toLeader({
      changeType: ChangeType.ServerLeave,
      handleServerType: HandleServerType.DataServer,
      shardId: 1,
      server: { id: 3 },
    });
    expect(ErrorCode[gone.errorCode]).toBe('NODE_NOT_FOUND');
  });

  it('refuses malformed requests with INVALID_ARGUMENT', async () => {
    const cases: Fields[] = [
      { changeType: ChangeType.ClusterInit, slotCount: 70000 },
      { changeType: ChangeType.ShardJoin, shardGroup: { id: 0, servers: [] } },
      { changeType: ChangeType.ShardJoin },
      {
        changeType: ChangeType.ShardJoin,
        shardGroup: { id: 3, servers: [{ id: 1, address: 'no-port' }] },
      },
      { changeType: ChangeType.SlotMove, shardId: 1, shardGroup: { slots: [{ id: 64 }] } },
      { changeType: ChangeType.SlotMove, shardId: 1, shardGroup: { slots: [] } },
      { changeType: ChangeType.SlotMove, shardId: 0, shardGroup: { slots: [{ id: 1 }] } },
      {
        changeType: ChangeType.ServerJoin,
        handleServerType: HandleServerType.DataServer,
        shardId: 1,
      },
      { changeType: ChangeType.ShardsQuery, clientId: 'x'.repeat(300), commandId: 1 },
    ];
    for (const fields of cases) {
      expect(grpc.status[await statusOf(configChange(leaderClient, fields))]).toBe(
        'INVALID_ARGUMENT',
      );
    }
  });

  it('names the field at fault when it refuses a request', async () => {
    const cases: [Fields, RegExp][] = [
      [
        {
          changeType: ChangeType.ShardJoin,
          shardGroup: { id: 3, servers: [{ id: 1, address: 'no-port' }] },
        },
        /^shard_group\.servers\[0\]\.address "no-port" is not host:port/,
      ],
      [
        { changeType: ChangeType.ServerJoin, server: { id: 9, address: 'nonsense' } },
        /^server\.address "nonsense" is not host:port/,
      ],
      [
        { changeType: ChangeType.ServerJoin, server: { id: 9, address: 'h:70000' } },
        /^server\.address "h:70000" is not host:port/,
      ],
      [
        {
          changeType: ChangeType.SlotMove,
          shardId: 1,
          shardGroup: { slots: [{ id: 1 }, { id: 64 }] },
        },
        /^shard_group\.slots\[1\]\.id is 64, outside \[0, 64\)/,
      ],
      [
        {
          changeType: ChangeType.SlotMove,
          shardId: 1,
          shardGroup: { slots: [{ id: 1, slotStatus: 7 as SlotStatus }] },
        },
        /shard_group\.slots\[0\]\.slot_status is 7, which is not a SlotStatus/,
      ],
      [
        {
          changeType: ChangeType.ServerJoin,
          server: { id: 9, address: 'h:1', serverStatus: 5 as ServerStatus },
        },
        /server\.server_status is 5, which is not a ServerStatus/,
      ],
      [{ changeType: 9 as ChangeType }, /change_type is 9, which is not a ChangeType/],
      [
        { handleServerType: 3 as HandleServerType },
        /handle_server_type is 3, which is not a HandleServerType/,
      ],
    ];
    for (const [fields, message] of cases) {
      const err = await refusal(configChange(leaderClient, fields));
      expect([grpc.status[err.code], err.details]).toEqual([
        'INVALID_ARGUMENT',
        expect.stringMatching(message),
      ]);
    }
  });

  it('refuses enum varints beyond int32 and undecodable bytes, naming the field or the type', async () => {
    const raw = new grpc.Client(leader.address, grpc.credentials.createInsecure());
    try {
      // change_type = 2^32 + 4: truncated to 32 bits it would read as SlotMove.
      const wide = new BinaryWriter()
        .uint32(8)
        .uint64(2n ** 32n + 4n)
        .finish();
      const cases: [string, Uint8Array, RegExp][] = [
        ['ClusterConfigChange', wide, /ClusterConfigChangeReq: change_type is 4294967300/],
        [
          'ClusterConfigChange',
          Buffer.from([0x4a, 0x40]),
          /does not decode as eraftkv\.ClusterConfigChangeReq: premature EOF/,
        ],
        [
          'MemberChange',
          new BinaryWriter()
            .uint32(16)
            .uint64(2n ** 32n)
            .finish(),
          /MemberChangeReq: change_type is 4294967296, which is not a MemberChangeType/,
        ],
      ];
      for (const [method, bytes, message] of cases) {
        const err = await refusal(rawUnary(raw, method, bytes));
        expect([grpc.status[err.code], err.details]).toEqual([
          'INVALID_ARGUMENT',
          expect.stringMatching(message),
        ]);
      }
    } finally {
      raw.close();
    }
  });

  it('refuses MemberChange with a malformed address and TransferLeader to node 0, naming the field', async () => {
    for (const address of ['nonsense', 'a b:1', 'h:0', '']) {
      const err = await refusal(
        memberChange(leaderClient, {
          groupId: 0,
          changeType: MemberChangeType.ADD_LEARNER,
          nodeId: 9,
          address,
        }),
      );
      expect([grpc.status[err.code], err.details]).toEqual([
        'INVALID_ARGUMENT',
        `address "${address}" is not host:port (with a port in 1..65535)`,
      ]);
    }
    const other = await refusal(
      memberChange(leaderClient, {
        groupId: 5,
        changeType: MemberChangeType.REMOVE,
        nodeId: 2,
        address: '',
      }),
    );
    expect(other.details).toMatch(/^group_id is 5, but this node serves group 0/);
    const target = await refusal(transferLeader(leaderClient, { groupId: 0, targetId: 0 }));
    expect([grpc.status[target.code], target.details]).toEqual([
      'INVALID_ARGUMENT',
      'target_id must be an integer from 1 to 2^48-1, got 0',
    ]);
    expect(servers.every((s) => s.raft.membership().length === 3)).toBe(true);
  });

  it('lists the meta members with MembersQuery', async () => {
    const resp = await toLeader({ changeType: ChangeType.MembersQuery });
    expect(resp.success).toBe(true);
    expect(resp.shardGroup[0].id).toBe(0);
    expect(resp.shardGroup[0].servers.map((s) => s.id)).toEqual([1, 2, 3]);
    expect(resp.shardGroup[0].slots).toEqual([]);
  });

  it('adds a fourth meta node as a learner, promotes it, and removes it again', async () => {
    const fourth = await group.bind(4);
    await fourth.start(null);
    const before = (await toLeader({ changeType: ChangeType.ShardsQuery })).configVersion;
    const joined = await toLeader({
      changeType: ChangeType.ServerJoin,
      handleServerType: HandleServerType.MetaServer,
      server: { id: 4, address: fourth.address },
    });
    expect(joined.success).toBe(true);
    expect(joined.shardGroup[0].servers.map((s) => s.id)).toEqual([1, 2, 3, 4]);
    expect(joined.configVersion).toBeGreaterThan(before);
    expect(leader.raft.status().membership.find((m) => m.id === 4)).toBeDefined();
    await waitFor(() => leader.raft.status().membership.find((m) => m.id === 4 && !m.learner), {
      timeoutMs: 20_000,
      what: 'node 4 to be promoted to voter',
    });
    // It caught up through a snapshot or the log and holds the same topology.
    await waitFor(() => fourth.topology.configVersion === leader.topology.configVersion, {
      timeoutMs: 10_000,
      what: 'node 4 to apply the topology',
    });
    expect(fourth.topology.toRecords()).toEqual(leader.topology.toRecords());
    // The promotion is in effect once appended; until it commits, a change answers "pending".
    const exists = await waitFor(
      async () => {
        const resp = await toLeader({
          changeType: ChangeType.ServerJoin,
          server: { id: 4, address: fourth.address },
        });
        return resp.errorCode === ErrorCode.MEMBERSHIP_CHANGE_PENDING ? undefined : resp;
      },
      { timeoutMs: 10_000, what: 'the promotion of node 4 to commit' },
    );
    expect(ErrorCode[exists.errorCode]).toBe('NODE_EXISTS');

    const left = await toLeader({
      changeType: ChangeType.ServerLeave,
      handleServerType: HandleServerType.MetaServer,
      server: { id: 4 },
    });
    expect(left.success).toBe(true);
    expect(left.shardGroup[0].servers.map((s) => s.id)).toEqual([1, 2, 3]);
    const missing = await toLeader({ changeType: ChangeType.ServerLeave, server: { id: 4 } });
    expect(ErrorCode[missing.errorCode]).toBe('NODE_NOT_FOUND');
    await fourth.stop();
  });

  it('answers the Status RPC as a meta server with its config version', async () => {
    const s = await status(leaderClient);
    expect(s.serverType).toBe('meta');
    expect(s.groupId).toBe(0);
    expect(s.role).toBe('leader');
    expect(s.configVersion).toBe(leader.topology.configVersion);
  });

  it('refuses data operations as UNIMPLEMENTED', async () => {
    const code = await statusOf(
      new Promise((resolve, reject) =>
        leaderClient.processRwOperation(
          {
            opTimestamp: 0,
            clientId: '',
            commandId: 0,
            kvs: [],
            readConsistency: 0,
            configVersion: 0,
            requestId: 0,
          },
          (err, resp) => (err ? reject(err) : resolve(resp)),
        ),
      ),
    );
    expect(grpc.status[code]).toBe('UNIMPLEMENTED');
  });

  it('keeps its topology across a restart of a follower', async () => {
    const follower = servers.find((s) => s !== leader && !s.raft.status().stopped);
    if (follower === undefined) throw new Error('no follower');
    const id = follower.raft.selfId;
    const records = leader.topology.toRecords();
    await waitFor(() => follower.topology.configVersion === records.config.configVersion, {
      timeoutMs: 5000,
      what: 'follower caught up',
    });
    await follower.stop();
    group.servers.delete(id);
    const lines: string[] = [];
    const logger = jsonLogger('info', {}, (line) => lines.push(line));
    const restarted = await group.bind(id, { listen: follower.address, logger });
    // A --peers that disagrees with the stored membership is only reported: the data dir wins.
    await restarted.start([{ id, address: follower.address, learner: false, incarnation: 0 }]);
    expect(restarted.topology.toRecords()).toEqual(records);
    expect(restarted.raft.status().membership.map((m) => m.id)).toEqual([1, 2, 3]);
    const warning = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.level === 'warn' && String(l.msg).includes('disagrees with the membership'));
    expect(warning).toMatchObject({ peers: `${id}=${follower.address}` });
    // The one policy of both servers: the message names the flag, the data dir and both lists.
    const msg = String(warning?.msg);
    expect(msg).toContain(`--peers (${id}=${follower.address})`);
    expect(msg).toMatch(
      /stored in --data-dir \S+ \(1=[^,]+,2=[^,]+,3=[^)]+\); the stored membership wins/,
    );
  });
});

describe('MetaServer: /metrics and /health', () => {
  const group = new MetaGroup();
  afterAll(() => group.close());

  it('serves /health once it leads and /metrics with the meta gauges', async () => {
    await group.init();
    const server = await group.bind(1, { metricsListen: '127.0.0.1:0', defaultMetrics: true });
    await server.start([{ id: 1, address: server.address, learner: false, incarnation: 0 }]);
    await group.waitForLeader();
    const health = await waitFor(
      async () => {
        const r = await fetchText(server.metricsAddress, '/health');
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 5000, what: '/health to answer 200' },
    );
    expect(JSON.parse(health.body)).toMatchObject({ health: 'true' });
    const metrics = await fetchText(server.metricsAddress, '/metrics');
    expect(metrics.body).toMatch(/eraftkv_meta_config_version\{group_id="0",node_id="1"\} 0/);
    expect(metrics.body).toMatch(/eraftkv_server_is_leader\{[^}]*\} 1/);
    expect(metrics.body).toMatch(/process_cpu_user_seconds_total/);
  });
});

describe('MetaServer: linearizable queries', () => {
  const group = new MetaGroup();
  afterAll(() => group.close());

  it('does not answer a query from a leader cut off from its quorum', async () => {
    await group.init();
    const servers = await group.start(3);
    const leader = await group.waitForLeader();
    const client = group.client(leader);
    expect((await configChange(client, { changeType: ChangeType.ClusterInit })).success).toBe(true);
    await Promise.all(servers.filter((s) => s !== leader).map((s) => s.stop()));
    // The leader still believes it leads; only ReadIndex finds out that nobody follows.
    const resp = await configChange(client, { changeType: ChangeType.ShardsQuery });
    expect(resp.success).toBe(false);
    expect(['NOT_LEADER', 'NO_LEADER']).toContain(ErrorCode[resp.errorCode]);
    expect(resp.shardGroup).toEqual([]);
    // A serializable query still reads the local state.
    const local = await configChange(client, {
      changeType: ChangeType.ShardsQuery,
      serializable: true,
    });
    expect(local.success).toBe(true);
    expect(local.slotCount).toBe(1024);
  });
});
