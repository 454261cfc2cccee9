// `npm start`: the local cluster of DESIGN.md section 7. Starts a meta group of 3 and one kv group
// of 3 as separate processes on 127.0.0.1, initialises the cluster, registers group 1 with every
// slot, waits until every node is healthy, prints where everything listens and what to try next,
// and on Ctrl-C stops every process. Data lives in ./data; a second `npm start` reuses it.
//
//   npm start [-- --fresh] [-- --kv-groups N] [-- --nodes N] [-- --data-dir DIR]
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import {
  httpGet,
  initializeCluster,
  LocalCluster,
  planCluster,
  repositoryDir,
  waitUntil,
} from './local-cluster';

interface StartOptions {
  fresh: boolean;
  kvGroups: number;
  nodes: number;
  dataDir: string;
}

const usage = `usage: npm start [-- options]
  --fresh          wipe the data dir first (default: reuse it)
  --kv-groups N    kv groups to run (default 1; group 1 gets every slot)
  --nodes N        nodes per group, meta included (default 3)
  --data-dir DIR   where data and logs go (default ./data)`;

function parseArgs(argv: readonly string[]): StartOptions {
  const o: StartOptions = {
    fresh: false,
    kvGroups: 1,
    nodes: 3,
    dataDir: join(repositoryDir, 'data'),
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
    else if (arg === '--help' || arg === '-h') {
      console.log(usage);
      process.exit(0);
    } else throw new Error(`unknown option ${arg}\n${usage}`);
  }
  return o;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.fresh) await rm(o.dataDir, { recursive: true, force: true });
  const manifest = join(o.dataDir, 'cluster.json');
  if (existsSync(manifest)) {
    const previous = JSON.parse(await readFile(manifest, 'utf8')) as {
      nodes: { kind: string; group: number }[];
    };
    const meta = previous.nodes.filter((n) => n.kind === 'meta').length;
    const groups = new Set(previous.nodes.filter((n) => n.kind === 'kv').map((n) => n.group)).size;
    if (meta !== o.nodes || groups !== o.kvGroups) {
      throw new Error(
        `${o.dataDir} holds a cluster of ${meta} meta nodes and ${groups} kv groups; ` +
          `run 'npm start -- --fresh' to start over with a different layout`,
      );
    }
    console.log(`reusing the cluster in ${o.dataDir} (npm start -- --fresh starts over)`);
  }
  const layout = await planCluster({
    dataDir: o.dataDir,
    metaNodes: o.nodes,
    kvGroups: o.kvGroups,
    kvNodesPerGroup: o.nodes,
    ports: 'fixed',
  });
  const cluster = new LocalCluster(layout);
  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping every node...');
    await cluster.stopAll();
    console.log('stopped');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  await cluster.writeManifest();
  await cluster.startAll();
  for (const node of cluster.runningNodes()) {
    void node.exited.then((code) => {
      if (!stopping)
        console.error(
          `${node.spec.name} exited (code ${code}); see ${join(o.dataDir, `${node.spec.name}.log`)}`,
        );
    });
  }
  const client = new EraftKvClient({ endpoints: cluster.metaEndpoints(), deadlineMs: 20_000 });
  try {
    await initializeCluster(client, cluster, (line) => console.log(line));
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
  } catch (err) {
    console.error(`the cluster did not come up: ${(err as Error).message}`);
    console.error(`logs: ${o.dataDir}/*.log`);
    client.close();
    await stop(1);
    return;
  }
  client.close();
  printWelcome(cluster);
}

function printWelcome(cluster: LocalCluster): void {
  const rows = cluster
    .allSpecs()
    .map((s) => [s.name, s.grpcAddress, `http://${s.metricsAddress}/metrics`, s.dataDir]);
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length), 8));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log('');
  console.log(line(['NODE', 'GRPC', 'METRICS', 'DATA']));
  for (const r of rows) console.log(line(r));
  console.log(`
eraftkv is ready. In another terminal, try:

  npx eraftkv-ctl put hello world
  npx eraftkv-ctl get hello
  npx eraftkv-ctl group list -w table
  npx eraftkv-ctl member list --group 1 -w table
  npx eraftkv-ctl endpoint health --cluster
  npx eraftkv-ctl bench put --clients 64 --total 20000

Every node's command line is in ${join(cluster.layout.dataDir, 'cluster.json')}; logs are next to it.
Press Ctrl-C to stop every node (the data stays in ${cluster.layout.dataDir}).`);
}

main().catch((err: unknown) => {
  console.error(`npm start failed: ${(err as Error).message}`);
  process.exit(1);
});
