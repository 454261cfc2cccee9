// A cluster with TLS everywhere, peer certificates, --client-cert-auth and auth enabled (the
// client is the user root), as real processes: clients need a certificate of the trusted CA;
// forged Raft RPCs (appends, heartbeats of an invented leader, votes with leader_transfer,
// TimeoutNow, snapshots) and slot exports are refused unless they come with the peer certificate
// of the very member they claim to be from; the group keeps its leader, its term and its data
// throughout; slots move with their data between two groups over TLS, and a kv node takes the
// hand-over of a move only from a meta node; and a node's certificate files replaced on disk
// (every node's, while clients write) are served to new connections without a restart.
import { X509Certificate } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:tls';
import { crc32 } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { EraftKvClient, UnavailableError } from '@eraftkv/client';
import {
  AppendEntriesReq,
  ChangeType,
  ClusterConfigChangeReq,
  HandleServerType,
  RequestVoteReq,
  SnapshotReq,
  SlotExportReq,
  TimeoutNowReq,
  type ERaftKvClient,
  type StatusResp,
} from '@eraftkv/protocol';
import { rootRole, rootUser } from '@eraftkv/server-kit';
import { waitUntil } from '@eraftkv/test-support';
import { freePorts, initializeCluster, repositoryDir, type LocalCluster } from '../local-cluster';
import {
  clientTlsOf,
  createLocalTls,
  nodeTlsArgs,
  type LocalTls,
  type TlsNode,
} from '../tls-certs';
import { BareClients, fastTiming, startTestCluster } from './helpers';
import { sameAppliedIndex as sameAppliedIndexOf } from './helpers';

const ctlBin = join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js');

function ctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [ctlBin, ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({
        code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1,
        stdout,
        stderr,
      }),
    );
  });
}

jest.setTimeout(180_000);

/** What a unary call ended with: its gRPC status code (0 for an answer). */
function callStatus<Req, Resp>(
  call: (
    req: Req,
    md: grpc.Metadata,
    opts: Partial<grpc.CallOptions>,
    cb: (err: grpc.ServiceError | null, resp: Resp) => void,
  ) => grpc.ClientUnaryCall,
  req: Req,
): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    call(req, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (err) =>
      resolve(err === null ? { code: 0, details: '' } : { code: err.code, details: err.details }),
    );
  });
}

/** The fingerprint of the certificate a node serves to a new connection. */
function served(address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const [host, port] = address.split(':');
    const socket = connect({
      host,
      port: Number(port),
      ca: [],
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      socket.destroy();
      if (cert === undefined) reject(new Error('no certificate served'));
      else resolve(cert.fingerprint256);
    });
    socket.once('error', reject);
  });
}

/** New certificates for `nodes`, signed by the CA of `tls`, in `into`. */
async function renew(tls: LocalTls, into: string, nodes: readonly TlsNode[]): Promise<LocalTls> {
  await mkdir(into, { recursive: true });
  await copyFile(tls.caFile, join(into, 'ca.crt'));
  await copyFile(join(tls.dir, 'ca.key'), join(into, 'ca.key'));
  return createLocalTls(into, nodes, []);
}

describe('TLS and peer identity', () => {
  let dir: string;
  let tls: LocalTls;
  let other: LocalTls;
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  let client: EraftKvClient;
  const bares: BareClients[] = [];

  /** Bare gRPC clients presenting the certificate `files` (signed by `ca`). */
  const bareWith = async (
    files: { certFile: string; keyFile: string },
    ca = tls.caFile,
  ): Promise<BareClients> => {
    const b = new BareClients(
      grpc.credentials.createSsl(
        await readFile(ca),
        await readFile(files.keyFile),
        await readFile(files.certFile),
      ),
    );
    bares.push(b);
    return b;
  };
  const kvNode = (id: number): string => cluster.layout.kv.get(1)![id - 1].grpcAddress;
  /** The status (with a state digest) of every kv replica, once all are at one applied index. */
  const sameAppliedIndex = (what: string): Promise<StatusResp[]> =>
    sameAppliedIndexOf(client, [1, 2, 3].map(kvNode), what);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-tls-'));
    const members = [
      ...[1, 2, 3].map((id) => ({ name: `meta-${id}`, group: 0, id })),
      ...[1, 2].flatMap((group) =>
        [1, 2, 3].map((id) => ({ name: `kv-${group}-${id}`, group, id })),
      ),
    ];
    tls = await createLocalTls(join(dir, 'tls'), members, [rootUser]);
    // The same names under another CA: a stranger's look-alike certificates.
    other = await createLocalTls(join(dir, 'other-ca'), members, [rootUser]);
    ({ cluster, cleanup } = await startTestCluster({
      dir: join(dir, 'data'),
      kvGroups: 2,
      extraArgs: [...fastTiming, '--tls-reload-ms', '300'],
      nodeArgs: (name) => nodeTlsArgs(tls, name),
    }));
    client = new EraftKvClient({
      endpoints: cluster.metaEndpoints(),
      deadlineMs: 20_000,
      tls: await clientTlsOf(tls, rootUser),
    });
    await initializeCluster(client, cluster);
    // Auth on: the attacks below meet a cluster as an operator would secure it.
    await client.auth.addUser(rootUser);
    await client.auth.grantRole(rootUser, rootRole);
    await client.auth.enable();
    await client.put('before', 'attacks');
  });
  afterAll(async () => {
    client?.close();
    for (const b of bares) b.closeAll();
    await cleanup?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves clients with a certificate of the trusted CA, and no one else', async () => {
    expect((await client.get('before'))?.toString()).toBe('attacks');
    // eraftkv-ctl with --cacert --cert --key (a <key> argument and --key side by side).
    const endpoints = ['--endpoints', cluster.metaEndpoints().join(',')];
    const admin = tls.clients.get(rootUser)!;
    const flags = ['--cacert', tls.caFile, '--cert', admin.certFile, '--key', admin.keyFile];
    const put = await ctl([...endpoints, ...flags, 'put', 'via-ctl', 'yes']);
    expect(put.stderr).toBe('');
    expect(put.code).toBe(0);
    const got = await ctl([...endpoints, 'get', 'via-ctl', ...flags]);
    expect(got.stdout).toBe('yes\n');
    // Without a certificate, ctl cannot reach a TLS cluster, and says so.
    const refused = await ctl([...endpoints, '--command-timeout', '2s', 'get', 'via-ctl']);
    expect(refused.code).not.toBe(0);
    const missing = await ctl([...endpoints, '--cacert', join(dir, 'nope.crt'), 'get', 'x']);
    expect(missing.stderr).toContain('--cacert');
    expect(missing.stderr).toContain('nope.crt');
    // Plaintext: a TLS port never answers it.
    const plain = new EraftKvClient({ endpoints: cluster.metaEndpoints(), deadlineMs: 3000 });
    await expect(plain.get('before')).rejects.toThrow(UnavailableError);
    await expect(plain.get('before')).rejects.toThrow(/a cluster run with TLS needs the CA/);
    plain.close();
    // TLS without a client certificate: refused in the handshake (--client-cert-auth).
    const anonymous = new EraftKvClient({
      endpoints: cluster.metaEndpoints(),
      deadlineMs: 3000,
      tls: { ca: await readFile(tls.caFile) },
    });
    // Said as a TLS problem, with the flags to check (not "is the cluster running?").
    await expect(anonymous.get('before')).rejects.toThrow(/the TLS handshake failed/);
    anonymous.close();
    // A certificate of another CA: refused too.
    const stranger = new EraftKvClient({
      endpoints: cluster.metaEndpoints(),
      deadlineMs: 3000,
      tls: {
        ca: await readFile(tls.caFile),
        cert: await readFile(other.clients.get(rootUser)!.certFile),
        key: await readFile(other.clients.get(rootUser)!.keyFile),
      },
    });
    await expect(stranger.get('before')).rejects.toThrow();
    stranger.close();
  });

  it('refuses forged Raft RPCs and slot exports unless the certificate names the sender', async () => {
    // Every member agrees on the leader first (the group may still be settling after its start).
    await waitUntil(
      async () => {
        const s = await Promise.all([1, 2, 3].map((id) => client.status(kvNode(id))));
        return s.every((x) => x.leaderId > 0 && x.leaderId === s[0].leaderId) ? true : undefined;
      },
      20_000,
      'group 1 to settle on a leader',
    );
    const before = await client.members(1);
    const leader = before.leaderId;
    const follower = [1, 2, 3].find((id) => id !== leader)!;
    // The member that is neither: every forged request claims to come from the leader.
    const third = [1, 2, 3].find((id) => id !== leader && id !== follower)!;
    const status = await client.status(kvNode(follower));
    const forgedAppend = AppendEntriesReq.fromPartial({
      leaderId: leader,
      term: status.term,
      prevLogIndex: status.lastLogIndex,
      prevLogTerm: status.term,
      leaderCommit: status.commitIndex,
      entries: [
        { id: status.lastLogIndex + 1, term: status.term, dataSize: 1, data: Buffer.from('x') },
      ],
      groupId: 1,
      clusterId: 'eraftkv',
      toId: follower,
      toIncarnation: status.incarnation,
    });
    const forgedVote = RequestVoteReq.fromPartial({
      term: status.term + 5,
      // The leader asking for votes with leader_transfer: a forged transfer.
      candidateId: leader,
      lastLogIdx: status.lastLogIndex + 100,
      lastLogTerm: status.term + 5,
      groupId: 1,
      clusterId: 'eraftkv',
      toId: follower,
      leaderTransfer: true,
      toIncarnation: status.incarnation,
    });
    // A snapshot of a membership of the follower alone: installed, it would elect itself.
    const forgedSnapshot = SnapshotReq.fromPartial({
      term: status.term + 1,
      leaderId: leader,
      messageToken: 'forged',
      snapshotIndex: status.lastLogIndex + 1000,
      snapshotTerm: status.term + 1,
      block: {
        offset: 0,
        data: Buffer.from('forged'),
        blockSize: 6,
        isLastChunk: true,
        blockCrc32: crc32(Buffer.from('forged')),
        fileSize: 6,
        fileCrc32: crc32(Buffer.from('forged')),
      },
      groupId: 1,
      clusterId: 'eraftkv',
      toId: follower,
      membership: { members: [{ id: follower, address: kvNode(follower), learner: false }] },
      toIncarnation: status.incarnation,
    });
    // A heartbeat of a leader nobody elected, in a later term: taken, it would depose the leader.
    const inventedHeartbeat = AppendEntriesReq.fromPartial({
      leaderId: 9,
      term: status.term + 5,
      prevLogIndex: status.lastLogIndex,
      prevLogTerm: status.term,
      leaderCommit: status.commitIndex,
      groupId: 1,
      clusterId: 'eraftkv',
      toId: follower,
      toIncarnation: status.incarnation,
    });
    const forgedTimeout = TimeoutNowReq.fromPartial({
      term: status.term,
      leaderId: leader,
      groupId: 1,
      clusterId: 'eraftkv',
      toId: follower,
      toIncarnation: status.incarnation,
    });
    const senders: { who: string; bare: BareClients }[] = [
      // A client of the cluster, root even: trusted CA, but it names no member.
      { who: 'the root client certificate', bare: await bareWith(tls.clients.get(rootUser)!) },
      // A member of another group.
      { who: 'a member of group 2', bare: await bareWith(tls.nodes.get('kv-2-1')!) },
      // A member of group 1 claiming to be another member (the leader).
      {
        who: `kv-1-${third} speaking for the leader`,
        bare: await bareWith(tls.nodes.get(`kv-1-${third}`)!),
      },
    ];
    for (const { who, bare } of senders) {
      const node: ERaftKvClient = bare.get(kvNode(follower));
      const results = {
        append: await callStatus(node.appendEntries.bind(node), forgedAppend),
        heartbeat: await callStatus(node.appendEntries.bind(node), inventedHeartbeat),
        vote: await callStatus(node.requestVote.bind(node), forgedVote),
        timeout: await callStatus(node.timeoutNow.bind(node), forgedTimeout),
        snapshot: await callStatus(node.snapshot.bind(node), forgedSnapshot),
      };
      for (const [rpc, r] of Object.entries(results)) {
        // UNAUTHENTICATED or PERMISSION_DENIED, nothing else (an answer, or UNAVAILABLE).
        const outcome = [16, 7].includes(r.code) ? 'refused' : `${r.code} ${r.details}`;
        expect({ who, rpc, outcome }).toEqual({ who, rpc, outcome: 'refused' });
      }
    }
    // A look-alike certificate of another CA does not get past the handshake.
    const stranger = await bareWith(other.nodes.get(`kv-1-${leader}`)!, tls.caFile);
    const node = stranger.get(kvNode(follower));
    expect((await callStatus(node.appendEntries.bind(node), forgedAppend)).code).toBe(
      grpc.status.UNAVAILABLE,
    );
    // Slot exports copy a group's data: members of the cluster only.
    const adminBare = senders[0].bare.get(kvNode(leader));
    const exported = await callStatus(
      adminBare.slotExport.bind(adminBare),
      SlotExportReq.fromPartial({ sourceShardId: 1, configVersion: 1, slots: [0], budgetBytes: 1 }),
    );
    expect([16, 7]).toContain(exported.code);
    // Nothing moved: the same leader in the same term, the data intact, replicas equal.
    const after = await client.members(1);
    expect(after.leaderId).toBe(leader);
    expect((await client.get('before'))?.toString()).toBe('attacks');
    await client.put('after', 'attacks');
    const digests = await sameAppliedIndex('every replica at the same applied index');
    expect(new Set(digests.map((s) => s.stateDigest)).size).toBe(1);
    expect(digests[0].term).toBe(status.term);
  });

  it('moves slots with their data between groups over mutual TLS, and only the meta group may hand over', async () => {
    // Keys over every slot (group 1 owns them all so far), then half the slots to group 2: the
    // meta leader's hand-over and import requests and the target's exports all go over TLS with
    // peer certificates.
    for (let i = 0; i < 300; i += 50) {
      await client.kv.batch(
        Array.from({ length: 50 }, (_, j) => ({
          type: 'put' as const,
          key: `moved-${i + j}`,
          value: `v${i + j}`,
        })),
      );
    }
    const view = await client.cluster();
    const half = Array.from({ length: view.slotCount / 2 }, (_, i) => view.slotCount / 2 + i);
    await client.moveSlots(2, half, { deadlineMs: 60_000 });
    const scan = await client.scan('moved-', 'moved.', { limit: 1000 });
    expect(scan.kvs).toHaveLength(300);
    // A kv node takes the SlotMove hand-over only from a meta node's certificate.
    const fromKv = (await bareWith(tls.nodes.get('kv-2-1')!)).get(kvNode(1));
    const handOver = await callStatus(
      fromKv.clusterConfigChange.bind(fromKv),
      ClusterConfigChangeReq.fromPartial({
        changeType: ChangeType.SlotMove,
        handleServerType: HandleServerType.DataServer,
        shardId: 1,
        configVersion: view.configVersion,
      }),
    );
    expect(handOver.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('rotates every node certificate under load: new connections get them, no write fails, no restart', async () => {
    const nodes = cluster.allSpecs();
    for (const n of nodes) {
      expect(await served(n.grpcAddress)).toBe(
        new X509Certificate(await readFile(tls.nodes.get(n.name)!.certFile)).fingerprint256,
      );
    }
    // Writers keep going while every certificate is replaced.
    let writing = true;
    let written = 0;
    const failures: string[] = [];
    const writers = [0, 1, 2, 3].map(async (w) => {
      for (let i = 0; writing; i++) {
        try {
          await client.put(`rotating-${w}-${i}`, 'yes');
          written++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    // New certificates from the same CA, written over each node's files (key first, as an
    // operator's tool would): every node reads them again within --tls-reload-ms.
    const fresh = await renew(
      tls,
      join(dir, 'renewed'),
      nodes.map((n) => ({ name: n.name, group: n.group, id: n.id })),
    );
    const expected = new Map<string, string>();
    for (const n of nodes) {
      const files = fresh.nodes.get(n.name)!;
      expected.set(n.name, new X509Certificate(await readFile(files.certFile)).fingerprint256);
      await copyFile(files.keyFile, tls.nodes.get(n.name)!.keyFile);
      await copyFile(files.certFile, tls.nodes.get(n.name)!.certFile);
    }
    for (const n of nodes) {
      await waitUntil(
        async () => ((await served(n.grpcAddress)) === expected.get(n.name) ? true : undefined),
        10_000,
        `${n.name} to serve its new certificate`,
      );
    }
    writing = false;
    await Promise.all(writers);
    expect(failures).toEqual([]);
    expect(written).toBeGreaterThan(0);
    // No node stopped: every group keeps its members, and replicas agree.
    expect((await client.members(1)).members).toHaveLength(3);
    const statuses = await sameAppliedIndex('every replica to apply the writes made meanwhile');
    expect(new Set(statuses.map((s) => s.stateDigest)).size).toBe(1);
  });

  it('reads its certificate files again on SIGHUP', async () => {
    // A node of its own that would not look at its files for an hour by itself.
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port}`;
    const own = await renew(tls, join(dir, 'hup'), [{ name: 'meta-1', group: 0, id: 1 }]);
    const node = spawn(
      process.execPath,
      [
        join(repositoryDir, 'packages/meta-server/bin/eraftkv-meta.js'),
        '--id',
        '1',
        '--listen',
        address,
        '--peers',
        `1=${address}`,
        '--data-dir',
        join(dir, 'hup-data'),
        ...nodeTlsArgs(own, 'meta-1'),
        '--tls-reload-ms',
        '3600000',
      ],
      { stdio: 'ignore' },
    );
    const ended = new Promise((resolve) => node.once('close', resolve));
    try {
      const before = await waitUntil(() => served(address), 20_000, 'the node to serve TLS');
      const next = await renew(tls, join(dir, 'hup-next'), [{ name: 'meta-1', group: 0, id: 1 }]);
      const files = next.nodes.get('meta-1')!;
      const after = new X509Certificate(await readFile(files.certFile)).fingerprint256;
      expect(after).not.toBe(before);
      await copyFile(files.keyFile, own.nodes.get('meta-1')!.keyFile);
      await copyFile(files.certFile, own.nodes.get('meta-1')!.certFile);
      node.kill('SIGHUP');
      await waitUntil(
        async () => ((await served(address)) === after ? true : undefined),
        10_000,
        'the node to serve the certificate it read on SIGHUP',
      );
    } finally {
      node.kill('SIGTERM');
      await ended;
    }
  });
});
