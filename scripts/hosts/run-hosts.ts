// `npm run test:hosts -- [--duration 120] [--seed S] [--out ./hosts-results] [--keep-data]`
//
// eraftkv across hosts: six nodes (meta-1..3 and kv-1-1..3, kv group 1) in six Linux network
// namespaces, each with its own address on a private bridge and a DNS name (meta-1.eraftkv.test,
// resolved through a hosts file). Every node binds 0.0.0.0 and advertises its name; --peers and
// --meta name the others by name. The chaos workload runs from the root namespace and records a
// history while host-level faults follow one another:
//   isolate  a host's link down (partitioned from every host and from the clients), then up
//   cut      one meta host and one kv host cut from the other four (blackholed routes)
//   kill     a node killed with SIGKILL, restarted later
//   move     a node stopped, its host removed and added again at a new address under the same
//            name, the node restarted there: its peers must find it again without a restart
// Then everything heals and the run checks linearizability per key, that every acknowledged bulk
// write is found, and that the kv replicas hold the same state at the same index. Needs root and
// iproute2; removes every namespace, link and hosts file it made, also when it fails or is killed
// (the launching process sweeps up after it). Exit code 0 only when every check passes.
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import {
  initializeCluster,
  LocalCluster,
  nodeSpec,
  repositoryDir,
  waitUntil,
  type NodeSpec,
} from '../local-cluster';
import { ChaosRng } from '../chaos/chaos-rng';
import { OptionReader } from '../suite-options';
import { saveHistory } from '../chaos/history';
import { checkLinearizability, formatReport } from '../chaos/linearizability';
import { Workload } from '../chaos/workload';
import { HostNetwork, hostName, hostsUsable, sweep } from './host-network';

const faultKinds = ['isolate', 'cut', 'kill', 'move'] as const;
type FaultKind = (typeof faultKinds)[number];

interface HostsOptions {
  durationS: number;
  seed: number;
  out: string;
  keepData: boolean;
}

const usage = `usage: npm run test:hosts -- [options]   (as root, with iproute2)
  --duration S   seconds of faults (default 120)
  --seed S       the seed of the fault schedule and the workload (default: random, printed)
  --out DIR      where results go (default ./hosts-results)
  --keep-data    keep the nodes' data dir (its path is printed)`;

function parseArgs(argv: readonly string[]): HostsOptions {
  const o: HostsOptions = {
    durationS: 120,
    seed: Math.floor(Math.random() * 2 ** 31),
    out: join(repositoryDir, 'hosts-results'),
    keepData: false,
  };
  const read = new OptionReader(argv, usage);
  const value = (): string => read.value();
  const int = (min: number): number => read.int(min);
  for (let arg = read.next(); arg !== undefined; arg = read.next()) {
    switch (arg) {
      case '--duration':
        o.durationS = int(5);
        break;
      case '--seed':
        o.seed = int(0);
        break;
      case '--out':
        o.out = resolve(value());
        break;
      case '--keep-data':
        o.keepData = true;
        break;
      case '--help':
      case '-h':
        console.log(usage);
        process.exit(0);
        break;
      default:
        throw read.unknown(arg);
    }
  }
  return o;
}

/** Marks the harness itself and holds the run's prefix (not ERAFTKV_*: the nodes would read it). */
const innerMark = 'EKV_HOSTS_RUN';
/** The nodes' data dir, made by the launching process. */
const dataMark = 'EKV_HOSTS_DATA';

/**
 * The launching process: checks the machine, runs the harness in a private mount namespace (so
 * that its /etc/hosts is its own) and, whatever becomes of it, removes what it left behind.
 */
async function launch(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(usage);
    return 0;
  }
  const usable = hostsUsable();
  if (!usable.ok) {
    console.error(`test:hosts cannot run here: ${usable.reason}`);
    return 2;
  }
  const prefix = `ekv${process.pid}x`;
  // The nodes' data dir is made here, so that it is removed even when the harness dies.
  const dataDir = await mkdtemp(join(tmpdir(), 'eraftkv-hosts-'));
  const child = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', process.execPath, __filename, ...argv],
    { stdio: 'inherit', env: { ...process.env, [innerMark]: prefix, [dataMark]: dataDir } },
  );
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  process.on('SIGINT', forward('SIGINT'));
  process.on('SIGTERM', forward('SIGTERM'));
  const code = await new Promise<number>((ok) =>
    child.once('exit', (c, signal) => ok(c ?? (signal ? 1 : 0))),
  );
  const left = sweep(prefix);
  if (left.length > 0) console.log(`hosts: removed what the run left behind: ${left.join(', ')}`);
  if (!argv.includes('--keep-data')) await rm(dataDir, { recursive: true, force: true });
  return code;
}

interface Summary {
  seed: number;
  durationS: number;
  verdict: 'ok' | 'violation' | 'unknown' | 'replicas-differ' | 'moved-host-lost' | 'error';
  operations: { ok: number; fail: number; unknown: number; recorded: number };
  faults: Record<FaultKind, number>;
  moves: string[];
  replicas: { node: string; applied: number; digest: string }[];
  bulk: { keys: number; found: number };
  error: string | null;
}

const hostNodeArgs = [
  '--tick-ms',
  '50',
  '--snapshot-entries',
  '300',
  '--compaction-margin-entries',
  '50',
  '--log-level',
  'info',
];

/** The six nodes, each on its host, binding 0.0.0.0 and advertising its name. */
function plan(net: HostNetwork, dataDir: string): { meta: NodeSpec[]; kv: NodeSpec[] } {
  const metaPeers = [1, 2, 3].map((id) => `${id}=${hostName(`meta-${id}`)}:8088`).join(',');
  const kvPeers = [1, 2, 3].map((id) => `${id}=${hostName(`kv-1-${id}`)}:7088`).join(',');
  const meta = [1, 2, 3].map((id) =>
    nodeSpec({
      kind: 'meta',
      group: 0,
      id,
      grpcAddress: `${hostName(`meta-${id}`)}:8088`,
      listen: '0.0.0.0:8088',
      metricsAddress: `${hostName(`meta-${id}`)}:9188`,
      metricsListen: '0.0.0.0:9188',
      launcher: net.launcher(`meta-${id}`),
      dataRoot: dataDir,
      peers: metaPeers,
      extraArgs: hostNodeArgs,
    }),
  );
  const kv = [1, 2, 3].map((id) =>
    nodeSpec({
      kind: 'kv',
      group: 1,
      id,
      grpcAddress: `${hostName(`kv-1-${id}`)}:7088`,
      listen: '0.0.0.0:7088',
      metricsAddress: `${hostName(`kv-1-${id}`)}:9288`,
      metricsListen: '0.0.0.0:9288',
      launcher: net.launcher(`kv-1-${id}`),
      dataRoot: dataDir,
      peers: kvPeers,
      meta: meta.map((m) => m.grpcAddress),
      extraArgs: hostNodeArgs,
    }),
  );
  return { meta, kv };
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function harness(prefix: string, dataDir: string, o: HostsOptions): Promise<number> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(o.out, `${stamp}-seed${o.seed}`);
  await mkdir(resultsDir, { recursive: true });
  const lines: string[] = [];
  const started = Date.now();
  const log = (line: string): void => {
    const stamped = `${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s ${line}`;
    lines.push(stamped);
    process.stderr.write(`${stamped}\n`);
  };
  console.log(
    `hosts: seed ${o.seed}, ${o.durationS} s of ${faultKinds.join(', ')}, results in ${resultsDir}`,
  );
  console.log(
    `replay this schedule: npm run test:hosts -- --duration ${o.durationS} --seed ${o.seed}`,
  );
  // The harness's own /etc/hosts (this process runs in a mount namespace of its own).
  const harnessHosts = join(dataDir, 'hosts');
  writeFileSync(harnessHosts, '127.0.0.1 localhost\n');
  execFileSync('mount', ['--bind', harnessHosts, '/etc/hosts']);
  const net = new HostNetwork(prefix, `/proc/${process.ppid}/ns/mnt`, harnessHosts);
  const faults: Record<FaultKind, number> = { isolate: 0, cut: 0, kill: 0, move: 0 };
  const moves: string[] = [];
  let summary: Summary = {
    seed: o.seed,
    durationS: o.durationS,
    verdict: 'error',
    operations: { ok: 0, fail: 0, unknown: 0, recorded: 0 },
    faults,
    moves,
    replicas: [],
    bulk: { keys: 0, found: 0 },
    error: null,
  };
  let cluster: LocalCluster | null = null;
  let admin: EraftKvClient | null = null;
  let workload: Workload | null = null;
  try {
    net.createBridge();
    const hosts = ['meta-1', 'meta-2', 'meta-3', 'kv-1-1', 'kv-1-2', 'kv-1-3'];
    for (const h of hosts) log(`host ${h}: ${hostName(h)} at ${net.addHost(h)}`);
    const { meta, kv } = plan(net, dataDir);
    const local = new LocalCluster({ dataDir, meta, kv: new Map([[1, kv]]) });
    cluster = local;
    await local.writeManifest();
    await local.startAll();
    const client = new EraftKvClient({
      endpoints: local.metaEndpoints(),
      deadlineMs: 20_000,
    });
    admin = client;
    await initializeCluster(client, local, log);
    // Every node answers at its name, and its group records it there.
    for (const spec of [...meta, ...kv]) {
      const s = await waitUntil(
        () => client.status(spec.grpcAddress, { deadlineMs: 2000 }),
        30_000,
        `${spec.name} to answer at ${spec.grpcAddress}`,
        200,
      );
      if (s.address !== spec.grpcAddress)
        throw new Error(`${spec.name} is recorded at ${s.address}, not ${spec.grpcAddress}`);
    }
    log('every node answers at its name and is recorded at it');
    await waitUntil(
      async () => (await client.put('hosts-ready', 'yes').then(() => true)) || undefined,
      30_000,
      'the first write',
    );

    const work = new Workload({
      endpoints: local.metaEndpoints(),
      clients: 5,
      keys: 8,
      seed: o.seed,
      thinkMsMax: 5,
      deadlineMs: 4000,
      bulkKeys: 500,
    });
    workload = work;
    work.start();
    log('workload started');
    const rng = new ChaosRng(o.seed);
    const until = Date.now() + o.durationS * 1000;
    // Each round runs every kind once, in an order the seed picks; the last round is finished.
    let round: FaultKind[] = [];
    while (Date.now() < until || round.length > 0) {
      if (round.length === 0) round = rng.sample(faultKinds, faultKinds.length);
      const kind = round.shift()!;
      faults[kind]++;
      const holdMs = rng.between(3000, 7000);
      switch (kind) {
        case 'isolate': {
          const host = rng.pick(hosts);
          log(`isolate ${host}: link down for ${holdMs} ms`);
          net.setLinkUp(host, false);
          await pause(holdMs);
          net.setLinkUp(host, true);
          log(`isolate ${host}: link up`);
          break;
        }
        case 'cut': {
          const a = [rng.pick(hosts.slice(0, 3)), rng.pick(hosts.slice(3))];
          const b = hosts.filter((h) => !a.includes(h));
          log(`cut ${a.join(' + ')} from ${b.join(', ')} for ${holdMs} ms`);
          net.cut(a, b);
          await pause(holdMs);
          net.healCuts();
          log('cut healed');
          break;
        }
        case 'kill': {
          const spec = rng.pick([...meta, ...kv]);
          log(`kill -9 ${spec.name}, restart in ${holdMs} ms`);
          await local.signal(spec.name, 'SIGKILL');
          await pause(holdMs);
          await local.start(spec.name);
          break;
        }
        case 'move': {
          const spec = rng.pick([...meta, ...kv]);
          const before = net.address(spec.name);
          await local.signal(spec.name, 'SIGKILL');
          const after = net.move(spec.name);
          log(`move ${spec.name}: host re-added, ${hostName(spec.name)} now ${before} -> ${after}`);
          await local.start(spec.name);
          const caughtUp = await caughtUpAfterMove(client, spec, [...meta, ...kv]);
          moves.push(`${spec.name} ${before} -> ${after}: ${caughtUp}`);
          log(`move ${spec.name}: ${caughtUp}`);
          break;
        }
      }
      await pause(rng.between(1000, 3000));
    }
    log('healing: every node up, every link up, no cut');
    net.healCuts();
    for (const h of hosts) net.setLinkUp(h, true);
    for (const spec of [...meta, ...kv])
      if (!local.isRunning(spec.name)) await local.start(spec.name);
    await waitUntil(
      async () => (await client.put('hosts-healed', 'yes').then(() => true)) || undefined,
      60_000,
      'a write after healing',
    );
    await pause(2000);
    await work.stop();
    const finals = await work.finalReads();
    for (const f of finals) if (f.error !== null) log(`final read of ${f.key} failed: ${f.error}`);
    const bulkScan = await work.finalScan();
    if (bulkScan.error !== null) log(`final scan of the bulk keys failed: ${bulkScan.error}`);
    const replicas = await waitUntil(
      async () => {
        const statuses = await Promise.all(
          kv.map((m) => client.status(m.grpcAddress, { withDigest: true, deadlineMs: 3000 })),
        );
        if (new Set(statuses.map((s) => s.stateDigestIndex)).size !== 1) return undefined;
        return statuses.map((s, i) => ({
          node: kv[i].name,
          applied: s.stateDigestIndex,
          digest: s.stateDigest,
        }));
      },
      60_000,
      'every kv replica to apply the same index',
      200,
    );
    const history = work.history();
    await saveHistory(join(resultsDir, 'history.jsonl'), history);
    const check = checkLinearizability(history);
    const c = work.counts;
    const unread = bulkScan.error !== null || finals.some((f) => f.error !== null);
    const lostMove = moves.some((m) => !m.includes('caught up'));
    summary = {
      ...summary,
      verdict:
        check.result === 'violation'
          ? 'violation'
          : new Set(replicas.map((r) => r.digest)).size !== 1
            ? 'replicas-differ'
            : lostMove
              ? 'moved-host-lost'
              : check.result === 'unknown' || unread || bulkScan.found !== work.bulkKeys.length
                ? 'unknown'
                : 'ok',
      operations: { ok: c.ok, fail: c.fail, unknown: c.unknown, recorded: history.length },
      replicas,
      bulk: { keys: work.bulkKeys.length, found: bulkScan.found },
    };
    const report = [
      `eraftkv hosts run: seed ${o.seed}, ${o.durationS} s, 6 hosts`,
      `verdict: ${summary.verdict}`,
      '',
      `operations: ${c.ok} ok, ${c.fail} failed (refused), ${c.unknown} unknown outcome; ${history.length} recorded`,
      `  client errors: ${[...c.errors].map(([k, n]) => `${k} x${n}`).join(', ') || 'none'}`,
      `faults: ${Object.entries(faults)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
      ...moves.map((m) => `  moved ${m}`),
      '',
      `linearizability (${check.keys} keys, ${check.operations} operations): ${check.result}`,
      formatReport(check),
      '',
      'kv replicas:',
      ...replicas.map((r) => `  ${r.node}: applied ${r.applied}, state ${r.digest.slice(0, 16)}`),
      `bulk keys: ${bulkScan.found} of ${work.bulkKeys.length} found by the final scan`,
      '',
      'log:',
      ...lines.map((l) => `  ${l}`),
    ].join('\n');
    await writeFile(join(resultsDir, 'report.txt'), `${report}\n`);
  } catch (err) {
    summary = { ...summary, verdict: 'error', error: (err as Error).stack ?? String(err) };
    await writeFile(
      join(resultsDir, 'report.txt'),
      `hosts run failed: ${summary.error}\n\n${lines.join('\n')}\n`,
    );
  } finally {
    await workload?.stop().catch(() => undefined);
    workload?.close();
    admin?.close();
    if (cluster !== null) {
      await cluster.stopAll(5000).catch(() => cluster?.killAll());
      if (summary.verdict !== 'ok') {
        for (const spec of cluster.allSpecs())
          await copyFile(cluster.logPath(spec.name), join(resultsDir, `${spec.name}.log`)).catch(
            () => undefined,
          );
      }
    }
    const removed = net.close();
    log(`cleaned up: ${removed.length} namespaces, links and hosts files removed`);
    if (o.keepData) console.log(`node data kept in ${dataDir}`);
  }
  await writeFile(join(resultsDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  console.log(
    `hosts verdict: ${summary.verdict} | ${summary.operations.ok} ok, ${summary.operations.fail} fail, ` +
      `${summary.operations.unknown} unknown | faults ${Object.entries(faults)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
  );
  if (summary.error !== null) console.log(summary.error);
  console.log(`report: ${join(resultsDir, 'report.txt')}`);
  return summary.verdict === 'ok' ? 0 : 1;
}

/**
 * After a move: the node, restarted at its new address, must be dialled by its peers again (its
 * applied index reaches what the group had committed when it came back), with no peer restarted.
 */
async function caughtUpAfterMove(
  client: EraftKvClient,
  moved: NodeSpec,
  all: readonly NodeSpec[],
): Promise<string> {
  const startedAt = Date.now();
  const peers = all.filter((s) => s.group === moved.group && s.name !== moved.name);
  try {
    const target = await waitUntil(
      async () => {
        for (const p of peers) {
          const s = await client.status(p.grpcAddress, { deadlineMs: 1000 }).catch(() => null);
          if (s !== null && s.role === 'leader') return s.commitIndex;
        }
        return undefined;
      },
      30_000,
      `a leader of ${moved.group === 0 ? 'the meta group' : `kv group ${moved.group}`}`,
      200,
    );
    await waitUntil(
      async () => {
        const s = await client.status(moved.grpcAddress, { deadlineMs: 1000 });
        return s.appliedIndex >= target || undefined;
      },
      60_000,
      `${moved.name} to apply index ${target} at its new address`,
      200,
    );
    return `caught up to index ${target} in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`;
  } catch (err) {
    return `NOT FOUND AGAIN: ${(err as Error).message}`;
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const prefix = process.env[innerMark];
  const dataDir = process.env[dataMark];
  if (prefix === undefined || dataDir === undefined) return launch(argv);
  return harness(prefix, dataDir, parseArgs(argv));
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`test:hosts failed: ${(err as Error).message}`);
    process.exit(2);
  },
);
