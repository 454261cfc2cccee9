// The hardening acceptance tests, against a cluster of real processes: malformed and extreme
// messages sent over real gRPC to a real 3-node kv group are refused with clear errors, and the
// group still elects, serves and holds every acknowledged write (equal digests); a follower whose
// data dir is deleted under load is refused as the member it was (clear messages on both sides),
// no acknowledged write is lost, and the documented remove + add path brings it back through a
// snapshot; a data dir refuses to run as another node or kind.
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { EraftKvClient } from '@eraftkv/client';
import {
  AppendEntriesReq,
  MemberChangeType,
  RequestVoteReq,
  SnapshotReq,
  type StatusResp,
  TimeoutNowReq,
} from '@eraftkv/protocol';
import {
  httpGet,
  initializeCluster,
  kvBin,
  metaBin,
  repositoryDir,
  waitUntil,
  type LocalCluster,
  type NodeSpec,
} from '../local-cluster';
import { BareClients, startTestCluster } from './helpers';

jest.setTimeout(240_000);

const ctlBin = join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js');

function run(
  bin: string,
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, output: `${stdout}${stderr}` });
      },
    );
  });
}

/** The gRPC error a call failed with (the test fails if it succeeded). */
async function rejection(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded, but it was expected to fail');
}

/** Calls one unary method with raw request bytes. */
function rawUnary(address: string, method: string, bytes: Uint8Array): Promise<Buffer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const same = (b: Buffer): Buffer => b;
  return new Promise<Buffer>((resolve, reject) =>
    client.makeUnaryRequest(
      `/eraftkv.ERaftKv/${method}`,
      same,
      same,
      Buffer.from(bytes),
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err, value) => (err ? reject(err) : resolve(value as Buffer)),
    ),
  ).finally(() => client.close());
}

/** A protobuf varint. */
function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

describe('hardening: a real cluster against hostile input and lost data dirs', () => {
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  let client: EraftKvClient;
  const bare = new BareClients();
  const acked = new Map<string, string>();

  const kvSpecs = (): NodeSpec[] => cluster.allSpecs().filter((s) => s.kind === 'kv');
  const status = (spec: NodeSpec): Promise<StatusResp> => bare.status(spec.grpcAddress);
  const endpoints = (): string[] => cluster.metaEndpoints();

  async function leaderAndFollower(): Promise<{ leader: NodeSpec; follower: NodeSpec }> {
    return waitUntil(
      async () => {
        const running = kvSpecs().filter((s) => cluster.isRunning(s.name));
        const statuses = await Promise.all(running.map((s) => status(s).catch(() => null)));
        const leader = running.find((_, i) => statuses[i]?.role === 'leader');
        const follower = running.find(
          (s, i) => s !== leader && statuses[i]?.leaderId !== 0 && statuses[i]?.role === 'follower',
        );
        return leader !== undefined && follower !== undefined ? { leader, follower } : undefined;
      },
      20_000,
      'a kv leader and a follower that follows it',
    );
  }

  async function write(count: number, prefix: string): Promise<void> {
    for (let i = 0; i < count; i++) {
      const key = `${prefix}-${i}`;
      const value = `${prefix}-value-${i}`;
      await client.put(key, value);
      acked.set(key, value);
    }
  }

  /** Every acknowledged write is there, and every replica holds the same state. */
  async function expectEverythingKept(): Promise<void> {
    for (const [key, value] of acked) {
      const got = await client.get(key);
      expect({ key, value: got?.toString() }).toEqual({ key, value });
    }
    const members = (await client.members(1)).members;
    expect(members).toHaveLength(3);
    const replicas = await waitUntil(
      async () => {
        const statuses = await Promise.all(
          members.map((m) => client.status(m.address, { withDigest: true })),
        );
        const indexes = new Set(statuses.map((s) => s.stateDigestIndex));
        return indexes.size === 1 ? statuses : undefined;
      },
      30_000,
      'every replica to apply the same index',
    );
    expect(new Set(replicas.map((r) => r.stateDigest)).size).toBe(1);
  }

  beforeAll(async () => {
    ({ cluster, cleanup } = await startTestCluster({}));
    client = new EraftKvClient({ endpoints: cluster.metaEndpoints(), deadlineMs: 10_000 });
    await initializeCluster(client, cluster);
    await write(100, 'before');
  });
  afterAll(async () => {
    client?.close();
    bare.closeAll();
    await cleanup?.();
  });

  it('refuses malformed and extreme peer and client messages, and the group serves on', async () => {
    const { leader, follower } = await leaderAndFollower();
    const [l, f] = await Promise.all([status(leader), status(follower)]);
    const peer = bare.get(follower.grpcAddress);
    const addressing = {
      groupId: 1,
      clusterId: 'eraftkv',
      toId: f.nodeId,
      fromIncarnation: l.incarnation,
      toIncarnation: f.incarnation,
    };
    const vote = (fields: Partial<RequestVoteReq>): Promise<unknown> =>
      new Promise((resolve, reject) =>
        peer.requestVote(
          RequestVoteReq.fromPartial({
            ...addressing,
            candidateId: l.nodeId,
            term: f.term + 1,
            ...fields,
          }),
          (err, resp) => (err ? reject(err) : resolve(resp)),
        ),
      );
    // A term the log store cannot hold (the bug: two of three nodes crashed at every restart).
    for (const term of [2 ** 48, Number.MAX_SAFE_INTEGER]) {
      const err = await rejection(
        vote({ term, leaderTransfer: true, lastLogIdx: 2 ** 47, lastLogTerm: 2 ** 47 }),
      );
      expect([err.code, err.details]).toEqual([
        grpc.status.INVALID_ARGUMENT,
        `term must be an integer from 1 to 2^48-1, got ${term}`,
      ]);
    }
    // The largest storable term is taken by no node that follows a live leader.
    await expect(
      vote({
        term: 2 ** 48 - 1,
        leaderTransfer: true,
        lastLogIdx: 2 ** 48 - 1,
        lastLogTerm: 2 ** 48 - 1,
      }),
    ).resolves.toMatchObject({ dropped: true, voteGranted: false });
    // A request for another incarnation of the node.
    const wrong = await rejection(vote({ toIncarnation: f.incarnation + 1 }));
    expect(wrong.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(wrong.details).toContain(`reached incarnation ${f.incarnation}`);
    // An append whose entries do not follow its prev index.
    const append = await rejection(
      new Promise((resolve, reject) =>
        peer.appendEntries(
          AppendEntriesReq.fromPartial({
            ...addressing,
            leaderId: l.nodeId,
            term: l.term,
            prevLogIndex: 3,
            prevLogTerm: 1,
            entries: [{ id: 9, term: l.term, eType: 0, dataSize: 0, data: Buffer.alloc(0) }],
          }),
          (err, resp) => (err ? reject(err) : resolve(resp)),
        ),
      ),
    );
    expect([append.code, append.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'entries[0].id is 9, expected 4',
    ]);
    const timeoutNow = await rejection(
      new Promise((resolve, reject) =>
        peer.timeoutNow(
          TimeoutNowReq.fromPartial({ ...addressing, leaderId: l.nodeId, term: 2 ** 50 }),
          (err, resp) => (err ? reject(err) : resolve(resp)),
        ),
      ),
    );
    expect(timeoutNow.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(timeoutNow.details).toMatch(/^term must be/);
    const snapshot = await rejection(
      new Promise((resolve, reject) =>
        peer.snapshot(
          SnapshotReq.fromPartial({
            ...addressing,
            leaderId: l.nodeId,
            term: f.term,
            snapshotIndex: 2 ** 49,
            snapshotTerm: 1,
            block: { offset: 0, data: Buffer.alloc(0), isLastChunk: true },
          }),
          (err, resp) => (err ? reject(err) : resolve(resp)),
        ),
      ),
    );
    expect(snapshot.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(snapshot.details).toMatch(/^snapshot_index must be/);
    // Bytes that are no RequestVoteReq, and an op_type of 2^32 + 1 (once read as Put).
    const garbage = await rejection(
      rawUnary(follower.grpcAddress, 'RequestVote', Uint8Array.from([0xff, 0xff])),
    );
    expect(garbage.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(garbage.details).toContain('eraftkv.RequestVoteReq');
    const op = [0x08, ...varint(2n ** 32n + 1n), 0x12, 0x01, 0x6b];
    const hugeOpType = await rejection(
      rawUnary(leader.grpcAddress, 'ProcessRWOperation', Uint8Array.from([0x22, op.length, ...op])),
    );
    expect(hugeOpType.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(hugeOpType.details).toContain('op_type');
    // A malformed address in a membership change.
    const member = await rejection(
      new Promise((resolve, reject) =>
        bare.get(leader.grpcAddress).memberChange(
          {
            groupId: 1,
            changeType: MemberChangeType.ADD_LEARNER,
            nodeId: 9,
            address: 'nonsense',
          },
          (err, resp) => (err ? reject(err) : resolve(resp)),
        ),
      ),
    );
    expect(member.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(member.details).toMatch(/^address "nonsense" is not host:port/);

    // Every node still runs; the refusals were counted.
    for (const spec of cluster.allSpecs().filter((s) => s.group <= 1)) {
      expect({ node: spec.name, running: cluster.isRunning(spec.name) }).toEqual({
        node: spec.name,
        running: true,
      });
    }
    const metrics = (await httpGet(follower.metricsAddress, '/metrics'))?.body ?? '';
    expect(metrics).toMatch(
      /eraftkv_network_peer_received_refused_total\{[^}]*reason="invalid"[^}]*\} [5-9]/,
    );
    expect(metrics).toMatch(
      /eraftkv_network_peer_received_refused_total\{[^}]*reason="term-jump"[^}]*\} 1/,
    );

    // The group elects without its leader, serves, and keeps every acknowledged write.
    await cluster.signal(leader.name, 'SIGKILL');
    await write(50, 'after-leader-killed');
    await cluster.start(leader.name);
    await write(50, 'after-restart');
    await expectEverythingKept();
  });

  it('refuses a follower whose data dir was deleted under load; remove + add brings it back', async () => {
    const { follower } = await leaderAndFollower();
    const f = await status(follower);
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        const key = `under-load-${written++}`;
        await client.put(key, key);
        acked.set(key, key);
      }
    })();
    await waitUntil(() => written > 50 || undefined, 20_000, 'writes under load');
    // The data dir goes away under the running process; then it is restarted as before.
    await rm(follower.dataDir, { recursive: true, force: true });
    await cluster.signal(follower.name, 'SIGKILL');
    const restarted = await cluster.start(follower.name);
    const ended = await restarted.ended;
    expect(ended.code).toBe(1);
    const said = restarted.lastLines().join('\n');
    expect(said).toContain(`group 1 already has a node ${f.nodeId}, incarnation ${f.incarnation}`);
    expect(said).toContain('this node lost its data');
    expect(said).toContain(`eraftkv-ctl member remove --group 1 ${f.nodeId}`);
    // The other side: its peers say who asked and why it is refused.
    await waitUntil(
      async () => {
        for (const peer of kvSpecs().filter((s) => s !== follower)) {
          const log = await readFile(join(cluster.layout.dataDir, `${peer.name}.log`), 'utf8');
          if (
            log.includes(
              'a node with a new data dir asks to join the group under the id of a member',
            )
          )
            return true;
        }
        return undefined;
      },
      10_000,
      'a peer to log that the node lost its data',
    );
    // The operator's path, with eraftkv-ctl.
    const removed = await run(ctlBin, [
      '--endpoints',
      endpoints().join(','),
      'member',
      'remove',
      '--group',
      '1',
      String(f.nodeId),
    ]);
    expect(removed.code).toBe(0);
    cluster.startAsJoiner(follower.name);
    await cluster.start(follower.name);
    const added = await run(ctlBin, [
      '--endpoints',
      endpoints().join(','),
      'member',
      'add',
      '--group',
      '1',
      String(f.nodeId),
      follower.grpcAddress,
      '--learner',
    ]);
    expect({ code: added.code, output: added.output }).toMatchObject({ code: 0 });
    writing = false;
    await writer;
    await waitUntil(
      async () =>
        (await httpGet(follower.metricsAddress, '/health'))?.status === 200 ? true : undefined,
      60_000,
      'the re-added node to be healthy',
    );
    const back = await status(follower);
    expect(back.incarnation).not.toBe(f.incarnation);
    await waitUntil(
      async () =>
        (await client.members(1)).members.some((m) => m.id === f.nodeId && !m.learner) || undefined,
      30_000,
      'the re-added node to be promoted',
    );
    // It came back through a snapshot.
    const metrics = (await httpGet(follower.metricsAddress, '/metrics'))?.body ?? '';
    expect(metrics).toMatch(/eraftkv_snapshot_install_duration_seconds_count\{[^}]*\} [1-9]/);
    await expectEverythingKept();
  });

  it('refuses to run a data dir as another node or kind, naming both', async () => {
    const { follower } = await leaderAndFollower();
    await cluster.signal(follower.name, 'SIGTERM');
    const asMeta = await run(metaBin, [
      '--id',
      String(follower.id),
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      follower.dataDir,
    ]);
    expect(asMeta.code).toBe(1);
    expect(asMeta.output).toContain(
      `data dir ${follower.dataDir} belongs to kv node ${follower.id} of group 1`,
    );
    expect(asMeta.output).toContain('it is a kv data dir, not meta (eraftkv-meta)');
    const asOtherGroup = await run(kvBin, [
      '--id',
      String(follower.id),
      '--group',
      '2',
      '--meta',
      endpoints().join(','),
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      follower.dataDir,
    ]);
    expect(asOtherGroup.code).toBe(1);
    expect(asOtherGroup.output).toContain("--group is 2, the data dir's is 1");
    await cluster.start(follower.name);
    await write(10, 'after-identity-checks');
    await expectEverythingKept();
  });
});
