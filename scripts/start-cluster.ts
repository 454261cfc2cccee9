// `npm start`: the local cluster of DESIGN.md section 7. Starts a meta group of 3 and one kv group
// of 3 as separate processes on 127.0.0.1, initialises the cluster, registers group 1 with every
// slot, waits until every node is healthy, prints where everything listens and what to try next,
// and stays in the foreground until Ctrl-C (or SIGTERM), which stops every node of cluster.json:
// its own children, and nodes an operator restarted by hand (found through their pid files).
// Data lives in ./data; a second `npm start` reuses it, on the addresses in its cluster.json.
//
//   npm start [-- --fresh] [-- --kv-groups N] [-- --nodes N] [-- --data-dir DIR] [-- --free-ports]
//             [-- --tls]
//
// With --tls, a local CA and certificates for every node and for the users root and app are made under
// <data dir>/tls (kept and reused), every node runs with mutual TLS (client certificates required,
// Raft RPCs only from the peer certificate of the member they claim to come from), and the
// welcome text says which ERAFTKV_CACERT / ERAFTKV_CERT / ERAFTKV_KEY eraftkv-ctl needs.
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import { backupRecords, BackupRecordKind, type BackupHeader } from '@eraftkv/protocol';
import { rootUser } from '@eraftkv/server-kit';
import { clientTlsOf, createLocalTls, nodeTlsArgs, type LocalTls } from './tls-certs';
import {
  bindProblem,
  describeExit,
  httpGet,
  initializeCluster,
  LocalCluster,
  nodeProcesses,
  planCluster,
  readManifest,
  repositoryDir,
  restoreLayoutOf,
  stopNodeProcesses,
  waitUntil,
  type ExitStatus,
  type NodeAddresses,
  type RunningNode,
} from './local-cluster';

interface StartOptions {
  fresh: boolean;
  kvGroups: number;
  nodes: number;
  dataDir: string;
  freePorts: boolean;
  tls: boolean;
  /** A backup to build the cluster from (eraftkv-utl snapshot restore), before it starts. */
  restore: string | null;
}

const usage = `usage: npm start [-- options]
  --fresh          wipe the data dir first (default: reuse it)
  --kv-groups N    kv groups to run (default 1; group 1 gets every slot)
  --nodes N        nodes per group, meta included (default 3)
  --data-dir DIR   where data and logs go (default ./data)
  --free-ports     listen on ports the OS picks instead of 8088... (tests; a data dir that
                   holds a cluster.json always keeps the addresses recorded there)
  --tls            mutual TLS everywhere, with a local CA and certificates made under
                   <data dir>/tls (openssl); prints the eraftkv-ctl settings to use
  --restore FILE   build a new cluster from a backup (eraftkv-ctl snapshot save) with
                   eraftkv-utl snapshot restore, then start it: one kv group per group of the
                   backup, its slot map and keys; the data dir must hold no cluster (--fresh)`;

/** How long a node gets to stop after SIGTERM before it is killed. */
const stopGraceMs = 10_000;
/** How often the launcher looks for nodes restarted by hand (and keeps itself running). */
const watchIntervalMs = 1000;

function parseArgs(argv: readonly string[]): StartOptions {
  const o: StartOptions = {
    fresh: false,
    kvGroups: 1,
    nodes: 3,
    dataDir: join(repositoryDir, 'data'),
    freePorts: false,
    tls: false,
    restore: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const int = (): number => {
      const n = Number(argv[++i]);
      if (!Number.isSafeInteger(n) || n < 1 || n > 9)
        throw new Error(`${arg} needs a number from 1 to 9`);
      return n;
    };
    if (arg === '--fresh') o.fresh = true;
    else if (arg === '--kv-groups') o.kvGroups = int();
    else if (arg === '--nodes') o.nodes = int();
    else if (arg === '--data-dir') o.dataDir = resolve(argv[++i] ?? '.');
    else if (arg === '--free-ports') o.freePorts = true;
    else if (arg === '--tls') o.tls = true;
    else if (arg === '--restore') {
      const file = argv[++i];
      if (file === undefined) throw new Error(`--restore needs a backup file\n${usage}`);
      o.restore = resolve(file);
    } else if (arg === '--help' || arg === '-h') {
      console.log(usage);
      process.exit(0);
    } else throw new Error(`unknown option ${arg}\n${usage}`);
  }
  return o;
}

/** The names of the nodes of the layout o asks for (meta-1..., kv-1-1...). */
function nodeNames(o: StartOptions): { name: string; group: number; id: number }[] {
  const ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
  return [
    ...ids.map((id) => ({ name: `meta-${id}`, group: 0, id })),
    ...Array.from({ length: o.kvGroups }, (_, g) => g + 1).flatMap((group) =>
      ids.map((id) => ({ name: `kv-${group}-${id}`, group, id })),
    ),
  ];
}

/** Plans the cluster: a reused data dir keeps the layout and addresses of its cluster.json. */
async function plan(o: StartOptions, tls: LocalTls | null): Promise<LocalCluster> {
  const previous = await readManifest(o.dataDir);
  let ports: 'fixed' | 'free' | Map<string, NodeAddresses> = o.freePorts ? 'free' : 'fixed';
  if (previous !== null && o.restore !== null) {
    throw new Error(
      `${o.dataDir} holds a cluster; --restore builds a new one: add --fresh to wipe it first`,
    );
  }
  if (previous !== null) {
    const meta = previous.nodes.filter((n) => n.kind === 'meta').length;
    const groups = new Set(previous.nodes.filter((n) => n.kind === 'kv').map((n) => n.group)).size;
    if (meta !== o.nodes || groups !== o.kvGroups) {
      throw new Error(
        `${o.dataDir} holds a cluster of ${meta} meta nodes and ${groups} kv groups; ` +
          `run 'npm start -- --fresh' to start over with a different layout`,
      );
    }
    ports = new Map(previous.nodes.map((n) => [n.name, n]));
    console.log(`reusing the cluster in ${o.dataDir} (npm start -- --fresh starts over)`);
  }
  const layout = await planCluster({
    dataDir: o.dataDir,
    metaNodes: o.nodes,
    kvGroups: o.kvGroups,
    kvNodesPerGroup: o.nodes,
    ports,
    nodeArgs: tls === null ? undefined : (name) => nodeTlsArgs(tls, name),
  });
  return new LocalCluster(layout);
}

/**
 * Why the cluster cannot start here, checked before anything is spawned: a data dir held by a
 * live node (another npm start, or a node restarted by hand), a port something else listens on.
 */
async function startProblems(cluster: LocalCluster): Promise<string[]> {
  const problems = nodeProcesses(cluster.allSpecs()).map(
    ({ spec, pid }) => `data dir ${spec.dataDir} is in use by process ${pid} (an eraftkv node)`,
  );
  const ports = cluster.allSpecs().flatMap((s) => [
    { address: s.grpcAddress, what: `${s.name} gRPC` },
    { address: s.metricsAddress, what: `${s.name} metrics` },
  ]);
  const answers = await Promise.all(ports.map((p) => bindProblem(p.address)));
  answers.forEach((code, i) => {
    if (code === null) return;
    const { address, what } = ports[i];
    problems.push(
      code === 'EADDRINUSE'
        ? `port ${address} (${what}) is in use`
        : `port ${address} (${what}) cannot be bound: ${code}`,
    );
  });
  return problems;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.fresh) await rm(o.dataDir, { recursive: true, force: true });
  o.kvGroups = await groupsToRun(o);
  // Client certificates for the user root (the one that may enable auth and administer) and for
  // a user app (to try roles with); a user is the CN of its certificate.
  const tls = o.tls
    ? await createLocalTls(join(o.dataDir, 'tls'), nodeNames(o), [rootUser, 'app'])
    : null;
  const cluster = await plan(o, tls);
  const problems = await startProblems(cluster);
  if (problems.length > 0) {
    console.error(
      `npm start: cannot start the cluster in ${o.dataDir}:\n  ${problems.join('\n  ')}\n` +
        'Is another npm start (or a node of this cluster) running? Stop it first.',
    );
    process.exit(1);
  }

  let stopping = false;
  const watcher = watchRestartedNodes(cluster);
  const stop = async (code: number): Promise<void> => {
    if (stopping) {
      console.log(`still stopping (nodes get ${stopGraceMs / 1000} s, then are killed)...`);
      return;
    }
    stopping = true;
    clearInterval(watcher);
    console.log('\nstopping every node...');
    const own = new Set(cluster.runningNodes().map((n) => n.process.pid));
    const restarted = nodeProcesses(cluster.allSpecs()).filter((p) => !own.has(p.pid));
    await Promise.all([
      cluster.stopAll(stopGraceMs),
      stopNodeProcesses(restarted, stopGraceMs, (line) => console.log(line)),
    ]);
    console.log('stopped');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  await cluster.writeManifest();
  if (o.restore !== null) {
    const code = await restoreBackup(cluster, o.dataDir, o.restore);
    if (code !== 0) {
      console.error(
        `npm start: the cluster was not built from ${o.restore} (eraftkv-utl exited ${code})`,
      );
      process.exit(1);
    }
  }
  await cluster.startAll();
  const launched = cluster.runningNodes();
  const firstEnd = Promise.race(
    launched.map((node) => node.ended.then((status) => ({ node, status }))),
  );
  const client = new EraftKvClient({
    endpoints: cluster.metaEndpoints(),
    deadlineMs: 20_000,
    tls: tls === null ? undefined : await clientTlsOf(tls, rootUser),
  });
  const outcome = await Promise.race([
    bringUp(client, cluster, o.restore === null).then(
      () => ({ kind: 'up' as const }),
      (err: unknown) => ({ kind: 'failed' as const, err: err as Error }),
    ),
    firstEnd.then(({ node, status }) => ({ kind: 'exited' as const, node, status })),
  ]);
  client.close();
  if (stopping) return;
  switch (outcome.kind) {
    case 'up':
      break;
    case 'failed':
      console.error(`the cluster did not come up: ${outcome.err.message}`);
      console.error(`logs: ${o.dataDir}/*.log`);
      return stop(1);
    case 'exited':
      reportStartupExit(cluster, outcome.node, outcome.status);
      return stop(1);
  }
  for (const node of launched) {
    void node.ended.then((status) => {
      if (!stopping)
        console.error(
          `${node.spec.name} exited (${describeExit(status)}); its log: ${cluster.logPath(node.spec.name)}`,
        );
    });
  }
  printWelcome(cluster, tls);
}

/**
 * With --restore: the kv groups the backup has (numbered 1..N, as this launcher runs them), read
 * from its header; otherwise --kv-groups.
 */
async function groupsToRun(o: StartOptions): Promise<number> {
  if (o.restore === null) return o.kvGroups;
  const header = await readBackupHeader(o.restore);
  const ids = header.groups.map((g) => g.id).sort((a, b) => a - b);
  if (!ids.every((id, i) => id === i + 1))
    throw new Error(
      `${o.restore} holds kv groups ${ids.join(', ')}; npm start runs groups 1..N: restore it with eraftkv-utl snapshot restore and a layout instead`,
    );
  return ids.length;
}

async function readBackupHeader(path: string): Promise<BackupHeader> {
  for await (const [record] of backupRecords(path)) {
    if (record.kind === BackupRecordKind.Header) return record.header;
  }
  throw new Error(`${path}: no header`);
}

/**
 * Builds every data dir of `cluster` from the backup with eraftkv-utl snapshot restore (its
 * progress and summary on this terminal), as cluster "eraftkv", the id the nodes run with.
 */
async function restoreBackup(
  cluster: LocalCluster,
  dataDir: string,
  file: string,
): Promise<number | null> {
  const layoutPath = join(dataDir, 'restore-layout.json');
  await writeFile(layoutPath, `${JSON.stringify(restoreLayoutOf(cluster, 'eraftkv'), null, 2)}\n`);
  const child = spawn(
    process.execPath,
    [
      join(repositoryDir, 'packages/utl/bin/eraftkv-utl.js'),
      'snapshot',
      'restore',
      file,
      '--layout',
      layoutPath,
    ],
    { stdio: 'inherit' },
  );
  return new Promise((ok) => child.once('exit', (code) => ok(code)));
}

/** Initialises the cluster and waits until every node says it is healthy. */
async function bringUp(
  client: EraftKvClient,
  cluster: LocalCluster,
  assignFreeSlots: boolean,
): Promise<void> {
  await initializeCluster(client, cluster, (line) => console.log(line), 1024, assignFreeSlots);
  await waitUntil(
    async () => {
      const answers = await Promise.all(
        cluster.allSpecs().map((s) => httpGet(s.metricsAddress, '/health')),
      );
      return answers.every((a) => a?.status === 200);
    },
    60_000,
    'every node to report healthy',
  );
}

function reportStartupExit(cluster: LocalCluster, node: RunningNode, status: ExitStatus): void {
  const lines = node.lastLines();
  console.error(
    `${node.spec.name} exited during start-up (${describeExit(status)}); ` +
      (lines.length === 0
        ? `it wrote nothing (log: ${cluster.logPath(node.spec.name)})`
        : `the last lines of ${cluster.logPath(node.spec.name)}:\n${lines.map((l) => `  | ${l}`).join('\n')}`),
  );
}

/**
 * Says when a node of the cluster runs again outside this launcher (restarted by hand from
 * cluster.json) and when such a node exits. Its timer is also what keeps the launcher running
 * once none of its own children is left, until Ctrl-C.
 */
function watchRestartedNodes(cluster: LocalCluster): NodeJS.Timeout {
  const seen = new Map<string, number>();
  return setInterval(() => {
    const own = new Set(cluster.runningNodes().map((n) => n.process.pid));
    const now = new Map(
      nodeProcesses(cluster.allSpecs())
        .filter((p) => !own.has(p.pid))
        .map((p) => [p.spec.name, p.pid]),
    );
    for (const [name, pid] of now) {
      if (seen.get(name) !== pid)
        console.log(`${name} is running again (pid ${pid}, started by hand); Ctrl-C stops it too`);
    }
    for (const [name, pid] of seen) {
      if (now.get(name) !== pid) console.log(`${name} (pid ${pid}, started by hand) exited`);
    }
    seen.clear();
    for (const [name, pid] of now) seen.set(name, pid);
  }, watchIntervalMs);
}

function printWelcome(cluster: LocalCluster, tls: LocalTls | null): void {
  const rows = cluster
    .allSpecs()
    .map((s) => [s.name, s.grpcAddress, `http://${s.metricsAddress}/metrics`, s.dataDir]);
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length), 8));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log('');
  console.log(line(['NODE', 'GRPC', 'METRICS', 'DATA']));
  for (const r of rows) console.log(line(r));
  // eraftkv-ctl's default --endpoints are the meta ports of DESIGN.md (8088-8090).
  const endpoints = cluster.metaEndpoints();
  const usual = ['127.0.0.1:8088', '127.0.0.1:8089', '127.0.0.1:8090'];
  const exportEndpoints = endpoints.every((e) => usual.includes(e))
    ? ''
    : `\n  export ERAFTKV_ENDPOINTS=${endpoints.join(',')}`;
  const root = tls?.clients.get(rootUser);
  const app = tls?.clients.get('app');
  const exportTls =
    tls === null || root === undefined
      ? ''
      : `\n  # mutual TLS: eraftkv-ctl needs the CA and a client certificate (or --cacert --cert --key)` +
        `\n  export ERAFTKV_CACERT=${tls.caFile} ERAFTKV_CERT=${root.certFile} ERAFTKV_KEY=${root.keyFile}`;
  const authTour =
    tls === null || app === undefined
      ? ''
      : `\n  # users and roles (README "Securing a cluster"); the certificate above is the user root's:` +
        `\n  npx eraftkv-ctl user add root && npx eraftkv-ctl user grant-role root root && npx eraftkv-ctl auth enable` +
        `\n  npx eraftkv-ctl role add app && npx eraftkv-ctl role grant-permission app readwrite app/ --prefix && npx eraftkv-ctl user add app && npx eraftkv-ctl user grant-role app app` +
        `\n  npx eraftkv-ctl --cert ${app.certFile} --key ${app.keyFile} put app/hello world`;
  console.log(`
eraftkv is ready${tls === null ? '' : ' (mutual TLS)'}. In another terminal, try:
${exportEndpoints}${exportTls}
  npx eraftkv-ctl put hello world
  npx eraftkv-ctl get hello
  npx eraftkv-ctl group list -w table
  npx eraftkv-ctl member list --group 1 -w table
  npx eraftkv-ctl endpoint health --cluster
  npx eraftkv-ctl bench put --clients 64 --total 20000${authTour}

Every node's command line is in ${join(cluster.layout.dataDir, 'cluster.json')}; logs are next to it.
Press Ctrl-C to stop every node, restarted ones too (the data stays in ${cluster.layout.dataDir}).`);
}

main().catch((err: unknown) => {
  console.error(`npm start failed: ${(err as Error).message}`);
  process.exit(1);
});
