// The slot-move coordinator against fake source groups: tiny gRPC servers on 127.0.0.1 port 0
// that implement only ClusterConfigChange and answer as each test tells them (success,
// SLOT_NOT_EMPTY, NOT_LEADER with a hint, an empty answer, or nothing at all).
import * as grpc from '@grpc/grpc-js';
import {
  ChangeType,
  ClusterConfigChangeResp,
  ErrorCode,
  HandleServerType,
  SlotImportResp,
  SlotStatus,
  type ClusterConfigChangeReq,
  type ERaftKvClient,
  type SlotImportReq,
} from '@eraftkv/protocol';
import { encodeCommand, type MetaServer } from '../src';
import {
  closedAddress,
  configChange,
  startFakeERaftKv,
  waitFor,
  type StartedServer,
} from '@eraftkv/test-support';
import { groupOf, MetaGroup, slotIdsOf } from './common';

jest.setTimeout(60_000);

type Answer = Partial<ClusterConfigChangeResp> | 'hang';

const emptyImport = (): Partial<SlotImportResp> => ({ done: true, keys: 0, bytes: 0 });

/**
 * A fake kv node: records every ClusterConfigChange and answers with `answer(req)`; records
 * every SlotImport and answers with `importAnswer(req)` (UNIMPLEMENTED while it is null).
 */
class FakeKvNode {
  readonly received: ClusterConfigChangeReq[] = [];
  readonly imports: SlotImportReq[] = [];
  answer: (req: ClusterConfigChangeReq) => Answer = () => ({ success: true });
  /** By default an import of empty slots: begun (what was left from before dropped), nothing to copy. */
  importAnswer: ((req: SlotImportReq) => Partial<SlotImportResp>) | null = emptyImport;
  private server: StartedServer | null = null;
  address = '';

  async start(): Promise<this> {
    this.server = await startFakeERaftKv(
      {
        clusterConfigChange: (call, callback) => {
          this.received.push(call.request);
          const a = this.answer(call.request);
          // 'hang' never answers: the caller's deadline (or a stop) has to end the call.
          if (a !== 'hang') callback(null, ClusterConfigChangeResp.fromPartial(a));
        },
        slotImport: (call, callback) => {
          this.imports.push(call.request);
          const a = this.importAnswer?.(call.request);
          if (a === undefined)
            callback({ code: grpc.status.UNIMPLEMENTED, details: 'no imports here' });
          else callback(null, SlotImportResp.fromPartial(a));
        },
      },
      { what: 'a fake kv node' },
    );
    this.address = this.server.address;
    return this;
  }

  async stop(): Promise<void> {
    await this.server?.close();
  }
}

const slots = (...ids: number[]): { slots: { id: number }[] } => ({
  slots: ids.map((id) => ({ id })),
});

describe('SlotMove between kv groups (one meta node, fake source groups)', () => {
  // Batches of two slots: the last test moves four in two batches.
  const meta = new MetaGroup({ slotMoveDeadlineMs: 1500, slotMoveBatchSlots: 2 });
  const fakes: FakeKvNode[] = [];
  let client: ERaftKvClient;
  let server: MetaServer;
  let source: FakeKvNode;
  let target: FakeKvNode;
  let unreachable = '';

  const fake = async (): Promise<FakeKvNode> => {
    const f = await new FakeKvNode().start();
    fakes.push(f);
    return f;
  };

  const version = async (): Promise<number> =>
    (await configChange(client, { changeType: ChangeType.ShardsQuery })).configVersion;

  beforeAll(async () => {
    await meta.init();
    [server] = await meta.start(1);
    await meta.waitForLeader();
    client = meta.client(server);
    source = await fake();
    target = await fake();
    unreachable = await closedAddress();
    const ok = (r: ClusterConfigChangeResp): void => {
      if (!r.success) throw new Error(`setup failed: ${r.errorMessage}`);
    };
    ok(await configChange(client, { changeType: ChangeType.ClusterInit, slotCount: 16 }));
    ok(
      await configChange(client, {
        changeType: ChangeType.ShardJoin,
        shardGroup: { id: 1, servers: [{ id: 1, address: source.address }] },
      }),
    );
    ok(
      await configChange(client, {
        changeType: ChangeType.ShardJoin,
        shardGroup: { id: 2, servers: [{ id: 1, address: target.address }] },
      }),
    );
    ok(
      await configChange(client, {
        changeType: ChangeType.ShardJoin,
        shardGroup: { id: 4, servers: [{ id: 1, address: unreachable }] },
      }),
    );
    ok(
      await configChange(client, {
        changeType: ChangeType.SlotMove,
        shardId: 1,
        shardGroup: slots(0, 1, 2, 3, 4, 5, 6, 7),
      }),
    );
    ok(
      await configChange(client, {
        changeType: ChangeType.SlotMove,
        shardId: 4,
        shardGroup: slots(12),
      }),
    );
  });

  afterAll(async () => {
    await meta.close();
    for (const f of fakes) await f.stop();
  });

  beforeEach(() => {
    source.received.length = 0;
    source.answer = () => ({ success: true });
    target.imports.length = 0;
    target.importAnswer = emptyImport;
  });

  it('commits when the source group says its slots are empty', async () => {
    const before = await version();
    const resp = await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(0, 1),
    });
    expect(resp.errorMessage).toBe('');
    expect(resp.success).toBe(true);
    // Begin and finish: two changes.
    expect(resp.configVersion).toBe(before + 2);
    expect(slotIdsOf(resp, 2)).toEqual([0, 1]);
    expect(slotIdsOf(resp, 1)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(groupOf(resp, 2)?.slots.every((s) => s.slotStatus === SlotStatus.Running)).toBe(true);

    // Step 2 handed the source its record at the begin version, with the slots frozen.
    expect(source.received).toHaveLength(1);
    const req = source.received[0];
    expect(req.changeType).toBe(ChangeType.SlotMove);
    expect(req.handleServerType).toBe(HandleServerType.DataServer);
    expect(req.shardId).toBe(1);
    expect(req.configVersion).toBe(before + 1);
    expect(req.slotCount).toBe(16);
    expect(req.shardGroup?.id).toBe(1);
    expect(req.shardGroup?.servers.map((s) => s.address)).toEqual([source.address]);
    const status = new Map(req.shardGroup?.slots.map((s) => [s.id, s.slotStatus]));
    expect(status.get(0)).toBe(SlotStatus.Migrating);
    expect(status.get(1)).toBe(SlotStatus.Migrating);
    expect(status.get(2)).toBe(SlotStatus.Running);
    // Step 3 ran all the same: the target's begin clears what an earlier move may have left.
    expect(target.imports).toHaveLength(1);
    expect(target.imports[0]).toMatchObject({ targetShardId: 2, sourceShardId: 1 });
  });

  it('has the target import slots that hold data, then commits', async () => {
    source.answer = () => ({
      success: false,
      errorCode: ErrorCode.SLOT_NOT_EMPTY,
      errorMessage: 'slot 3 holds keys',
    });
    // The target answers twice that it is not done yet, then that it is.
    target.importAnswer = () => ({ done: target.imports.length >= 3, keys: 42, bytes: 100 });
    const before = await version();
    const resp = await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(2, 3),
    });
    expect(resp.errorMessage).toBe('');
    expect(resp.success).toBe(true);
    expect(slotIdsOf(resp, 2)).toEqual(expect.arrayContaining([2, 3]) as number[]);
    expect(target.imports).toHaveLength(3);
    const req = target.imports[0];
    expect(req).toMatchObject({ targetShardId: 2, sourceShardId: 1, configVersion: before + 1 });
    expect(req.slots).toEqual([2, 3]);
    expect(req.sourceAddresses).toEqual([source.address]);
    // Moved back for the tests below.
    source.answer = () => ({ success: true });
    const back = await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 1,
      shardGroup: slots(2, 3),
    });
    expect(back.success).toBe(true);
  });

  it('rolls back when slots hold data and the target cannot import them', async () => {
    target.importAnswer = null;
    source.answer = () => ({
      success: false,
      errorCode: ErrorCode.SLOT_NOT_EMPTY,
      errorMessage: 'slot 3 holds keys',
    });
    const before = await version();
    const resp = await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(2, 3),
    });
    expect(resp.success).toBe(false);
    expect(ErrorCode[resp.errorCode]).toBe('REJECTED');
    expect(resp.errorMessage).toMatch(/rolled back: group 2 cannot import: .*no imports here/);
    expect(resp.configVersion).toBe(before + 2);
    expect(slotIdsOf(resp, 1)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(groupOf(resp, 1)?.slots.every((s) => s.slotStatus === SlotStatus.Running)).toBe(true);
    expect(server.topology.migratingSlots()).toEqual([]);
  });

  it('does not take an empty (default-valued) answer for success', async () => {
    source.answer = () => ({});
    const resp = await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(4),
    });
    expect(ErrorCode[resp.errorCode]).toBe('REJECTED');
    expect(slotIdsOf(resp, 1)).toContain(4);
  });

  it('follows a NOT_LEADER hint to the source group leader', async () => {
    const follower = await fake();
    const leader = await fake();
    follower.answer = () => ({ errorCode: ErrorCode.NOT_LEADER, leaderAddress: leader.address });
    await configChange(client, {
      changeType: ChangeType.ShardJoin,
      shardGroup: {
        id: 3,
        servers: [
          { id: 1, address: follower.address },
          { id: 2, address: leader.address },
        ],
      },
    });
    await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 3,
      shardGroup: slots(8),
    });
    const resp = await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(8),
    });
    expect(resp.success).toBe(true);
    expect(slotIdsOf(resp, 2)).toContain(8);
    expect(follower.received).toHaveLength(1);
    expect(leader.received).toHaveLength(1);
  });

  it('rolls back with REJECTED when the source group is unreachable', async () => {
    const started = Date.now();
    const before = await version();
    const resp = await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(12),
    });
    expect(resp.success).toBe(false);
    expect(ErrorCode[resp.errorCode]).toBe('REJECTED');
    expect(resp.errorMessage).toMatch(/rolled back: source group 4 was unreachable/);
    expect(slotIdsOf(resp, 4)).toEqual([12]);
    expect(resp.configVersion).toBe(before + 2);
    // Within the configured deadline (1.5 s), plus the two proposals.
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('applies a retried request once: the source is not asked again', async () => {
    const request = { clientId: 'slot-move-test', commandId: 1 };
    const fields = {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(5),
      ...request,
    };
    const first = await configChange(client, fields);
    expect(first.success).toBe(true);
    const second = await configChange(client, fields);
    expect(second.success).toBe(true);
    expect(second.configVersion).toBe(first.configVersion);
    expect(source.received).toHaveLength(1);
  });

  it('resumes a move left Migrating without any request', async () => {
    // As a meta leader that died after step 1 would leave it: begin committed, no finish.
    const begin = await server.raft.propose(
      encodeCommand({
        kind: 'slot-move-begin',
        target: 2,
        slots: [6],
        nowMs: Date.now(),
        request: null,
      }),
    );
    expect(begin?.moving).toHaveLength(1);
    await waitFor(
      () =>
        server.topology.slot(6).owner === 2 &&
        server.topology.slot(6).status === SlotStatus.Running,
      { timeoutMs: 10_000, what: 'the leader to resume and commit the move of slot 6' },
    );
    expect(source.received.map((r) => r.shardId)).toEqual([1]);
  });

  it('moves a request in batches, each frozen and committed in turn', async () => {
    const request = { clientId: 'slot-move-test', commandId: 2 };
    const fields = {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(7, 2, 4, 3),
      ...request,
    };
    const before = await version();
    const resp = await configChange(client, fields);
    expect(resp.errorMessage).toBe('');
    expect(resp.success).toBe(true);
    expect(slotIdsOf(resp, 2)).toEqual(expect.arrayContaining([2, 3, 4, 7]) as number[]);
    expect(slotIdsOf(resp, 1)).toEqual([]);
    // Two batches ([2, 3], [4, 7]): two freezes, each at its own begin version.
    expect(source.received.map((r) => r.configVersion)).toEqual([before + 1, before + 3]);
    const frozen = source.received.map((r) =>
      (r.shardGroup?.slots ?? [])
        .filter((x) => x.slotStatus === SlotStatus.Migrating)
        .map((x) => x.id),
    );
    expect(frozen).toEqual([
      [2, 3],
      [4, 7],
    ]);
    expect(resp.configVersion).toBe(before + 4);
    // A retry of the request changes nothing and asks no source again.
    const again = await configChange(client, fields);
    expect(again.success).toBe(true);
    expect(source.received).toHaveLength(2);
  });
});

describe('SlotMove resumed by a new meta leader', () => {
  const meta = new MetaGroup({ slotMoveDeadlineMs: 3000 });
  let source: FakeKvNode;
  let target: FakeKvNode;

  beforeAll(async () => {
    source = await new FakeKvNode().start();
    target = await new FakeKvNode().start();
    await meta.init();
    await meta.start(3);
  });
  afterAll(async () => {
    await meta.close();
    await source.stop();
    await target.stop();
  });

  it('finishes a move whose leader crashed during step 2', async () => {
    const leader = await meta.waitForLeader();
    const client = meta.client(leader);
    await configChange(client, { changeType: ChangeType.ClusterInit, slotCount: 8 });
    await configChange(client, {
      changeType: ChangeType.ShardJoin,
      shardGroup: { id: 1, servers: [{ id: 1, address: source.address }] },
    });
    await configChange(client, {
      changeType: ChangeType.ShardJoin,
      shardGroup: { id: 2, servers: [{ id: 1, address: target.address }] },
    });
    await configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 1,
      shardGroup: slots(0, 1),
    });

    // The first leader's question is never answered; the next one's is.
    source.answer = () => (source.received.length === 1 ? 'hang' : { success: true });
    const pending = configChange(client, {
      changeType: ChangeType.SlotMove,
      shardId: 2,
      shardGroup: slots(0, 1),
    }).catch((err: Error) => err);
    await waitFor(() => source.received.length === 1, {
      timeoutMs: 10_000,
      what: 'step 2 to reach the source',
    });
    await leader.abort();
    expect(await pending).toBeInstanceOf(Error);

    const next = await meta.waitForLeader();
    expect(next).not.toBe(leader);
    await waitFor(() => next.topology.slot(0).owner === 2 && next.topology.slot(1).owner === 2, {
      timeoutMs: 15_000,
      what: 'the new leader to resume and commit the move',
    });
    expect(next.topology.migratingSlots()).toEqual([]);
    expect(source.received.length).toBeGreaterThanOrEqual(2);
    // Every step 2 carried the frozen slots.
    for (const req of source.received) {
      const frozen = req.shardGroup?.slots
        .filter((s) => s.slotStatus === SlotStatus.Migrating)
        .map((s) => s.id);
      expect(frozen).toEqual([0, 1]);
    }
  });
});
