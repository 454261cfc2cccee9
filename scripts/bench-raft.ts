// Measures a 3-node Raft group (@eraftkv/raft-server) on its own: three processes (one RaftServer each, real RocksDB,
// real gRPC on 127.0.0.1), N concurrent proposers of fixed-size entries on the leader. Prints
// proposals/s, latency percentiles, fsyncs/s on the leader and the average number of proposals
// that shared one sync (group commit), plus CPU per proposal of all three processes.
//
//   node scripts/dist/bench-raft.js [--proposers 64] [--entries 20000] [--entry-bytes 256]
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ERaftKvService, type ERaftKvServer } from '@eraftkv/protocol';
import {
  openRocksEngine,
  peerServiceHandlers,
  RaftServer,
  RaftServerBoot,
  DeferredPeerInbox,
  type StateMachine,
  type StorageEngine,
} from '@eraftkv/raft-server';
import { type Entry, type Member } from '@eraftkv/raft';

interface Options {
  proposers: number;
  entries: number;
  entryBytes: number;
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { proposers: 64, entries: 20_000, entryBytes: 256 };
  for (let i = 0; i < argv.length; i += 2) {
    const value = Number(argv[i + 1]);
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new Error(`${argv[i]} needs a positive integer`);
    if (argv[i] === '--proposers') o.proposers = value;
    else if (argv[i] === '--entries') o.entries = value;
    else if (argv[i] === '--entry-bytes') o.entryBytes = value;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return o;
}

/** A minimal state machine: the applied index, stored in RocksDB with every batch. */
class IndexStateMachine implements StateMachine<number> {
  constructor(private readonly engine: StorageEngine) {}
  async appliedIndex(): Promise<number> {
    const raw = await this.engine.get(Buffer.from('applied'));
    return raw === undefined ? 0 : Number(raw.toString());
  }
  async syncApplied(): Promise<number> {
    const applied = await this.appliedIndex();
    await this.engine.write(
      [{ type: 'put', key: Buffer.from('applied'), value: Buffer.from(String(applied)) }],
      { sync: true },
    );
    return applied;
  }
  async apply(entries: readonly Entry[]): Promise<(number | undefined)[]> {
    const last = entries[entries.length - 1].index;
    await this.engine.write(
      [{ type: 'put', key: Buffer.from('applied'), value: Buffer.from(String(last)) }],
      {
        sync: false,
      },
    );
    return entries.map((e) => e.index);
  }
  async writeSnapshot(): Promise<number> {
    return Promise.reject(new Error('the benchmark takes no snapshots'));
  }
  async restoreSnapshot(): Promise<void> {
    return Promise.reject(new Error('the benchmark takes no snapshots'));
  }
  close(): Promise<void> {
    return this.engine.close();
  }
}

type ToChild =
  | { kind: 'start'; id: number; members: Member[]; dir: string }
  | { kind: 'mark' }
  | { kind: 'run'; options: Options }
  | { kind: 'stop' };
type FromChild =
  | { kind: 'bound'; address: string }
  | { kind: 'leader'; isLeader: boolean }
  | {
      kind: 'result';
      seconds: number;
      latenciesMs: number[];
      syncs: number;
      syncSeconds: number;
      proposals: number;
    }
  | { kind: 'cpu'; micros: number; systemMicros: number };

async function child(): Promise<void> {
  let server: RaftServer<number> | null = null;
  let cpuMark = process.cpuUsage();
  const inbox = new DeferredPeerInbox();
  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': 8 << 20,
    'grpc.enable_channelz': 0,
  });
  const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>): void =>
    callback({ code: grpc.status.UNIMPLEMENTED }, null);
  const service: ERaftKvServer = {
    ...peerServiceHandlers(inbox),
    processRwOperation: unimplemented,
    processRwOperationStream: (call) => call.end(),
    clusterConfigChange: unimplemented,
    memberChange: unimplemented,
    transferLeader: unimplemented,
    status: unimplemented,
    slotExport: unimplemented,
    slotImport: unimplemented,
    auth: unimplemented,
    hashKv: unimplemented,
    backup: (call) => call.end(),
    watch: (call) => call.end(),
    lease: unimplemented,
    leaseKeepAlive: (call) => call.end(),
  };
  grpcServer.addService(ERaftKvService, service);
  const port = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const send = (m: FromChild): void => {
    process.send?.(m);
  };
  send({ kind: 'bound', address: `127.0.0.1:${port}` });
  process.on('message', (msg: ToChild) => {
    void (async () => {
      if (msg.kind === 'start') {
        const engine = await openRocksEngine(join(msg.dir, 'state'));
        const boot = new RaftServerBoot();
        inbox.target = boot;
        server = await RaftServer.open<number>({
          id: msg.id,
          groupId: 1,
          clusterId: 'bench',
          dataDir: msg.dir,
          incarnation: msg.id,
          bootstrap: msg.members,
          stateMachine: new IndexStateMachine(engine),
          snapshotEntries: 1e12,
          boot,
        });
        const timer = setInterval(() => {
          if (server?.isLeader()) {
            clearInterval(timer);
            send({ kind: 'leader', isLeader: true });
          }
        }, 20);
      } else if (msg.kind === 'mark') {
        cpuMark = process.cpuUsage();
      } else if (msg.kind === 'run' && server !== null) {
        const s = server;
        const { proposers, entries, entryBytes } = msg.options;
        const payload = Buffer.alloc(entryBytes, 0x61);
        const latenciesMs: number[] = [];
        const syncsBefore = await fsyncCount(s);
        const syncSecondsBefore = await fsyncSeconds(s);
        let next = 0;
        const started = process.hrtime.bigint();
        await Promise.all(
          Array.from({ length: proposers }, async () => {
            while (next < entries) {
              next++;
              const t0 = process.hrtime.bigint();
              await s.propose(payload);
              latenciesMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
            }
          }),
        );
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        send({
          kind: 'result',
          seconds,
          latenciesMs,
          syncs: (await fsyncCount(s)) - syncsBefore,
          syncSeconds: (await fsyncSeconds(s)) - syncSecondsBefore,
          proposals: entries,
        });
      } else if (msg.kind === 'stop') {
        const usage = process.cpuUsage(cpuMark);
        send({ kind: 'cpu', micros: usage.user + usage.system, systemMicros: usage.system });
        await server?.stop();
        grpcServer.forceShutdown();
        process.exit(0);
      }
    })();
  });
}

async function fsyncSeconds(server: RaftServer<number>): Promise<number> {
  const metric = await server.registry
    .getSingleMetric('eraftkv_disk_log_fsync_duration_seconds')
    ?.get();
  return (
    metric?.values.find(
      (v) =>
        (v as { metricName?: string }).metricName === 'eraftkv_disk_log_fsync_duration_seconds_sum',
    )?.value ?? 0
  );
}

async function fsyncCount(server: RaftServer<number>): Promise<number> {
  const metric = await server.registry
    .getSingleMetric('eraftkv_disk_log_fsync_duration_seconds')
    ?.get();
  return (
    metric?.values.find(
      (v) =>
        (v as { metricName?: string }).metricName ===
        'eraftkv_disk_log_fsync_duration_seconds_count',
    )?.value ?? 0
  );
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function parent(options: Options): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'eraftkv-bench-raft-'));
  const children: ChildProcess[] = [];
  const messages = new Map<ChildProcess, FromChild[]>();
  const waiters: (() => void)[] = [];
  const next = async (c: ChildProcess, kind: FromChild['kind']): Promise<FromChild> => {
    for (;;) {
      const queue = messages.get(c)!;
      const i = queue.findIndex((m) => m.kind === kind);
      if (i >= 0) return queue.splice(i, 1)[0];
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  try {
    for (let id = 1; id <= 3; id++) {
      const c = fork(__filename, ['--child'], {
        stdio: 'inherit',
        execArgv: process.env.ERAFTKV_BENCH_PROFILE_DIR
          ? ['--cpu-prof', '--cpu-prof-dir', process.env.ERAFTKV_BENCH_PROFILE_DIR]
          : [],
      });
      children.push(c);
      messages.set(c, []);
      c.on('message', (m: FromChild) => {
        messages.get(c)!.push(m);
        for (const w of waiters.splice(0)) w();
      });
    }
    const addresses = await Promise.all(
      children.map(async (c) => ((await next(c, 'bound')) as { address: string }).address),
    );
    const members: Member[] = addresses.map((address, i) => ({
      id: i + 1,
      address,
      learner: false,
      incarnation: 0,
    }));
    children.forEach((c, i) =>
      c.send({
        kind: 'start',
        id: i + 1,
        members,
        dir: join(dir, `node-${i + 1}`),
      } satisfies ToChild),
    );
    const leader = await Promise.race(children.map(async (c) => (await next(c, 'leader'), c)));
    for (const c of children) c.send({ kind: 'mark' } satisfies ToChild);
    leader.send({ kind: 'run', options } satisfies ToChild);
    const result = (await next(leader, 'result')) as Extract<FromChild, { kind: 'result' }>;
    for (const c of children) c.send({ kind: 'stop' } satisfies ToChild);
    const usage = await Promise.all(
      children.map(async (c) => (await next(c, 'cpu')) as Extract<FromChild, { kind: 'cpu' }>),
    );
    const cpu = usage.map((u) => u.micros);
    // Let the children exit on their own (a CPU profile is written at exit), bounded.
    await Promise.race([
      Promise.all(
        children.map((c) =>
          c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)),
        ),
      ),
      new Promise((r) => setTimeout(r, 10_000).unref()),
    ]);
    const sorted = result.latenciesMs.sort((a, b) => a - b);
    const rate = result.proposals / result.seconds;
    console.log(
      JSON.stringify(
        {
          proposers: options.proposers,
          entryBytes: options.entryBytes,
          proposals: result.proposals,
          seconds: Number(result.seconds.toFixed(2)),
          proposalsPerSecond: Math.round(rate),
          p50Ms: Number(percentile(sorted, 50).toFixed(2)),
          p99Ms: Number(percentile(sorted, 99).toFixed(2)),
          leaderFsyncsPerSecond: Math.round(result.syncs / result.seconds),
          proposalsPerFsync: Number((result.proposals / Math.max(1, result.syncs)).toFixed(1)),
          leaderFsyncMeanMs: Number(
            ((result.syncSeconds / Math.max(1, result.syncs)) * 1000).toFixed(2),
          ),
          cpuMicrosPerProposalAllNodes: Math.round(
            cpu.reduce((a, b) => a + b, 0) / result.proposals,
          ),
          cpuMicrosPerProposalByNode: cpu.map(
            (c, i) =>
              `node ${i + 1}${children[i] === leader ? ' (leader)' : ''}: ${Math.round(c / result.proposals)} (system ${Math.round(usage[i].systemMicros / result.proposals)})`,
          ),
        },
        null,
        2,
      ),
    );
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--child')) void child();
else
  void parent(parseOptions(process.argv.slice(2))).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
