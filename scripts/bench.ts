// `npm run bench [-- --quick] [--no-etcd] [--only put1,put16,put64,put256,get64]
//   [--systems eraftkv,eraftkv-client,etcd] [--tls]`
//
// eraftkv against etcd on the same machine, the way DESIGN.md section 11 measured etcd: a 3-node
// cluster of each, one Node.js gRPC load generator (this process, plain unary calls, no client
// library), 256-byte values over 100k keys, closed loop, requests sent to the leader. Workloads:
// put with 1, 16, 64 and 256 requests in flight, and linearizable get with 64. Reports ops/s, p50
// and p99 latency, and the servers' CPU time per operation (every process of the cluster, read
// from /proc). etcd runs only when the `etcd` binary is installed (apt-get install etcd-server).
// A third system, `eraftkv-client`, is the same eraftkv cluster driven through EraftKvClient, the
// way an application uses it: requests routed by slot and multiplexed over one
// ProcessRWOperationStream per server instead of one HTTP/2 stream per request.
// With --tls the eraftkv clusters run mutual TLS with peer certificates (a local CA made with
// openssl, as `npm start -- --tls`) and the load generator presents a client certificate; etcd
// stays plaintext. Results also go to bench-results/<time>.json.
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientCredentials, EraftKvClient } from '@eraftkv/client';
import {
  ClientOpType,
  ERaftKvClient,
  ErrorCode,
  ReadConsistency,
  type ClientOperationReq,
  type ClientOperationResp,
  KvOpPair,
} from '@eraftkv/protocol';
import {
  freePorts,
  initializeCluster,
  LocalCluster,
  planCluster,
  repositoryDir,
  waitUntil,
} from './local-cluster';
import { clientTlsOf, createLocalTls, nodeTlsArgs } from './tls-certs';

interface Workload {
  /** For --only. */
  readonly id: string;
  readonly name: string;
  readonly op: 'put' | 'get';
  readonly inFlight: number;
  readonly total: number;
}

const allWorkloads: readonly Workload[] = [
  { id: 'put1', name: 'put x1', op: 'put', inFlight: 1, total: 2000 },
  { id: 'put16', name: 'put x16', op: 'put', inFlight: 16, total: 10_000 },
  { id: 'put64', name: 'put x64', op: 'put', inFlight: 64, total: 20_000 },
  { id: 'put256', name: 'put x256', op: 'put', inFlight: 256, total: 20_000 },
  { id: 'get64', name: 'get x64 (linearizable)', op: 'get', inFlight: 64, total: 20_000 },
];

const keySpace = 100_000;
const valueBytes = 256;

interface Result {
  readonly system: string;
  readonly workload: string;
  readonly ops: number;
  readonly errors: number;
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly serverCpuMicrosPerOp: number;
}

/** What the load generator needs from a system: one request, and the server processes' pids. */
interface Target {
  readonly system: string;
  put(key: Buffer, value: Buffer): Promise<void>;
  get(key: Buffer): Promise<void>;
  pids(): number[];
  close(): Promise<void>;
}

/** CPU time (user + system) of a process so far, in microseconds, from /proc. */
function cpuMicros(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1e6) / 100;
  } catch {
    return 0;
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function runWorkload(target: Target, w: Workload): Promise<Result> {
  const value = randomBytes(valueBytes);
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const pids = target.pids();
  const cpuBefore = pids.reduce((sum, pid) => sum + cpuMicros(pid), 0);
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: w.inFlight }, async () => {
      while (next < w.total) {
        next++;
        const key = Buffer.from(`key-${Math.floor(Math.random() * keySpace)}`);
        const t0 = process.hrtime.bigint();
        try {
          if (w.op === 'put') await target.put(key, value);
          else await target.get(key);
          latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = pids.reduce((sum, pid) => sum + cpuMicros(pid), 0) - cpuBefore;
  latencies.sort((a, b) => a - b);
  return {
    system: target.system,
    workload: w.name,
    ops: latencies.length,
    errors,
    opsPerSecond: Math.round(latencies.length / seconds),
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
    serverCpuMicrosPerOp: Math.round(cpu / Math.max(1, latencies.length)),
  };
}

function unary<Req, Resp>(
  call: (
    req: Req,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: Resp) => void,
  ) => unknown,
  req: Req,
): Promise<Resp> {
  return new Promise((resolve, reject) =>
    call(req, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (e, r) =>
      e ? reject(e) : resolve(r),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// eraftkv
// ---------------------------------------------------------------------------------------------

function kvOp(type: ClientOpType, key: Buffer, value?: Buffer): KvOpPair {
  return KvOpPair.fromPartial({ opType: type, key, value: value ?? Buffer.alloc(0) });
}

/** eraftkv through plain unary ProcessRWOperation calls, or through the client library. */
async function startEraftkv(
  dir: string,
  via: 'unary' | 'client',
  withTls: boolean,
): Promise<Target> {
  const nodes = [
    ...[1, 2, 3].map((id) => ({ name: `meta-${id}`, group: 0, id })),
    ...[1, 2, 3].map((id) => ({ name: `kv-1-${id}`, group: 1, id })),
  ];
  const tls = withTls ? await createLocalTls(join(dir, 'tls'), nodes, ['bench']) : null;
  const layout = await planCluster({
    dataDir: dir,
    metaNodes: 3,
    kvGroups: 1,
    kvNodesPerGroup: 3,
    ports: 'free',
    extraArgs: ['--log-level', 'warn'],
    nodeArgs: tls === null ? undefined : (name) => nodeTlsArgs(tls, name),
  });
  const cluster = new LocalCluster(layout);
  await cluster.startAll();
  const clientTls = tls === null ? undefined : await clientTlsOf(tls, 'bench');
  const admin = new EraftKvClient({
    endpoints: cluster.metaEndpoints(),
    deadlineMs: 30_000,
    tls: clientTls,
  });
  await initializeCluster(admin, cluster);
  // Find the kv leader and talk to it directly, as the etcd measurement talks to etcd's leader.
  const { leaderId } = await waitUntil(
    async () => {
      const m = await admin.members(1);
      return m.leaderId > 0 ? m : undefined;
    },
    30_000,
    'a kv leader',
  );
  const pids = (): number[] =>
    cluster
      .runningNodes()
      .map((n) => n.process.pid ?? 0)
      .filter((pid) => pid > 0);
  if (via === 'client') {
    await waitUntil(
      () =>
        admin.put('warm', 'up').then(
          () => true,
          () => false,
        ),
      30_000,
      'the kv group to serve',
    );
    return {
      system: 'eraftkv-client',
      put: async (key, value) => {
        await admin.put(key, value);
      },
      get: async (key) => {
        await admin.get(key);
      },
      pids,
      close: async () => {
        admin.close();
        await cluster.stopAll();
      },
    };
  }
  admin.close();
  const leader = cluster.layout.kv.get(1)!.find((n) => n.id === leaderId)!;
  const client = new ERaftKvClient(leader.grpcAddress, clientCredentials(clientTls), {
    'grpc.enable_channelz': 0,
  });
  let commandId = 0;
  const call = async (req: ClientOperationReq): Promise<ClientOperationResp> => {
    const resp = await unary(client.processRwOperation.bind(client), req);
    if (resp.errorCode !== ErrorCode.OK) throw new Error(`error code ${resp.errorCode}`);
    return resp;
  };
  const base = { opTimestamp: 0, configVersion: 0, requestId: 0 };
  // Wait until the group serves its slots.
  await waitUntil(
    () =>
      call({
        ...base,
        clientId: 'bench',
        commandId: ++commandId,
        kvs: [kvOp(ClientOpType.Put, Buffer.from('warm'), Buffer.from('up'))],
        readConsistency: ReadConsistency.LINEARIZABLE,
      }).then(
        () => true,
        () => false,
      ),
    30_000,
    'the kv group to serve',
  );
  return {
    system: 'eraftkv',
    put: async (key, value) => {
      await call({
        ...base,
        clientId: 'bench',
        commandId: ++commandId,
        kvs: [kvOp(ClientOpType.Put, key, value)],
        readConsistency: ReadConsistency.LINEARIZABLE,
      });
    },
    get: async (key) => {
      await call({
        ...base,
        clientId: '',
        commandId: 0,
        kvs: [kvOp(ClientOpType.Get, key)],
        readConsistency: ReadConsistency.LINEARIZABLE,
      });
    },
    pids,
    close: async () => {
      client.close();
      await cluster.stopAll();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

interface EtcdKv {
  put(
    req: { key: Buffer; value: Buffer },
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: object) => void,
  ): unknown;
  range(
    req: { key: Buffer; serializable: boolean },
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: object) => void,
  ): unknown;
  close(): void;
}

interface EtcdMaintenance {
  status(
    req: object,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: { header: { member_id: string }; leader: string }) => void,
  ): unknown;
  close(): void;
}

type ClientConstructor<T> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => T;

async function startEtcd(dir: string): Promise<Target> {
  const ports = await freePorts(6);
  const names = ['etcd-1', 'etcd-2', 'etcd-3'];
  const peerUrls = names.map((_, i) => `http://127.0.0.1:${ports[i]}`);
  const clientUrls = names.map((_, i) => `http://127.0.0.1:${ports[3 + i]}`);
  const cluster = names.map((n, i) => `${n}=${peerUrls[i]}`).join(',');
  const processes: ChildProcess[] = names.map((name, i) =>
    spawn(
      'etcd',
      [
        '--name',
        name,
        '--data-dir',
        join(dir, name),
        '--listen-peer-urls',
        peerUrls[i],
        '--initial-advertise-peer-urls',
        peerUrls[i],
        '--listen-client-urls',
        clientUrls[i],
        '--advertise-client-urls',
        clientUrls[i],
        '--initial-cluster',
        cluster,
        '--initial-cluster-state',
        'new',
        '--initial-cluster-token',
        'eraftkv-bench',
        '--log-level',
        'warn',
      ],
      { stdio: 'ignore' },
    ),
  );
  const definition = loadSync(join(repositoryDir, 'scripts/bench/etcd-kv.proto'), {
    longs: String,
    keepCase: true,
  });
  const pkg = grpc.loadPackageDefinition(definition).etcdserverpb as unknown as {
    KV: ClientConstructor<EtcdKv>;
    Maintenance: ClientConstructor<EtcdMaintenance>;
  };
  const addresses = clientUrls.map((u) => u.replace('http://', ''));
  // The leader: the member whose id is the leader id every member reports.
  const leaderAddress = await waitUntil(
    async () => {
      for (const address of addresses) {
        const m = new pkg.Maintenance(address, grpc.credentials.createInsecure());
        try {
          const s = await unary(m.status.bind(m), {});
          if (s.leader !== '0' && s.leader === s.header.member_id) return address;
        } catch {
          // not up yet
        } finally {
          m.close();
        }
      }
      return undefined;
    },
    30_000,
    'an etcd leader',
  );
  const kv = new pkg.KV(leaderAddress, grpc.credentials.createInsecure(), {
    'grpc.enable_channelz': 0,
  });
  return {
    system: 'etcd',
    put: async (key, value) => {
      await unary(kv.put.bind(kv), { key, value });
    },
    get: async (key) => {
      await unary(kv.range.bind(kv), { key, serializable: false });
    },
    pids: () => processes.map((p) => p.pid ?? 0).filter((pid) => pid > 0),
    close: async () => {
      kv.close();
      await Promise.all(
        processes.map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null) return resolve();
              p.once('exit', () => resolve());
              p.kill('SIGTERM');
            }),
        ),
      );
    },
  };
}

// ---------------------------------------------------------------------------------------------

function etcdInstalled(): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => existsSync(join(dir, 'etcd')));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const noEtcd = args.includes('--no-etcd');
  const tls = args.includes('--tls');
  const onlyIndex = args.indexOf('--only');
  const only = onlyIndex >= 0 ? (args[onlyIndex + 1] ?? '').split(',') : null;
  let workloads = allWorkloads.filter((w) => only === null || only.includes(w.id));
  if (quick)
    workloads = workloads.map((w) => ({ ...w, total: Math.max(500, Math.round(w.total / 5)) }));
  const systems: { name: string; start: (dir: string) => Promise<Target> }[] = [
    { name: 'eraftkv', start: (dir) => startEraftkv(dir, 'unary', tls) },
    { name: 'eraftkv-client', start: (dir) => startEraftkv(dir, 'client', tls) },
  ];
  if (!noEtcd && etcdInstalled()) systems.push({ name: 'etcd', start: startEtcd });
  else if (!noEtcd)
    console.log('etcd is not installed (apt-get install etcd-server): measuring eraftkv alone');
  const systemsIndex = args.indexOf('--systems');
  const chosen = systemsIndex >= 0 ? (args[systemsIndex + 1] ?? '').split(',') : null;
  const results: Result[] = [];
  for (const system of systems.filter((x) => chosen === null || chosen.includes(x.name))) {
    const dir = await mkdtemp(join(tmpdir(), `eraftkv-bench-${system.name}-`));
    console.log(`starting a 3-node ${system.name} cluster...`);
    const target = await system.start(dir);
    try {
      for (const w of workloads) {
        const r = await runWorkload(target, w);
        results.push(r);
        console.log(
          `${system.name.padEnd(14)} ${w.name.padEnd(24)} ${String(r.opsPerSecond).padStart(6)} ops/s  p50 ${r.p50Ms.toFixed(1).padStart(6)} ms  p99 ${r.p99Ms.toFixed(1).padStart(6)} ms  server CPU ${String(r.serverCpuMicrosPerOp).padStart(5)} µs/op${r.errors > 0 ? `  (${r.errors} errors)` : ''}`,
        );
      }
    } finally {
      await target.close();
      await rm(dir, { recursive: true, force: true });
    }
  }
  const out = join(repositoryDir, 'bench-results');
  await mkdir(out, { recursive: true });
  const file = join(out, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify({ workloads, results }, null, 2)}\n`);
  console.log(`results: ${file}`);
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
