// A local eraftkv cluster of real processes on 127.0.0.1: a meta group and kv groups, each node an
// ordinary `eraftkv-meta` / `eraftkv-kv` command with its own data dir and log file. Used by
// `npm start`, the end-to-end tests, the benchmark and the chaos runner.
//
// The exact command line of every process is written to <dataDir>/cluster.json, so an operator
// (or a test) can stop one node and start it again by hand with its data intact.
import { dataDirOwner, isNodeOfDataDir, splitHostPort } from '@eraftkv/server-kit';
import { waitUntil } from '@eraftkv/test-support';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, type WriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { ClusterError, type EraftKvClient } from '@eraftkv/client';
import { ErrorCode } from '@eraftkv/protocol';

/** The repository root (this file runs from scripts/ under jest and from scripts/dist when built). */
function repositoryRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, 'packages', 'raft'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the eraftkv repository above ${from}`);
    dir = parent;
  }
  return dir;
}

export const repositoryDir = repositoryRoot(__dirname);
const root = repositoryDir;
export const metaBin = join(root, 'packages/meta-server/bin/eraftkv-meta.js');
export const kvBin = join(root, 'packages/kv-server/bin/eraftkv-kv.js');

export type NodeKind = 'meta' | 'kv';

export interface NodeSpec {
  /** meta-<id> or kv-<group>-<id>. */
  readonly name: string;
  readonly kind: NodeKind;
  readonly group: number;
  readonly id: number;
  readonly grpcAddress: string;
  readonly metricsAddress: string;
  readonly dataDir: string;
  readonly args: readonly string[];
  /** A command that runs the node elsewhere (ip netns exec <host>), before node and its script. */
  readonly launcher?: readonly string[];
}

/** Builds the spec (and command line) of one node. */
export function nodeSpec(fields: {
  readonly kind: NodeKind;
  readonly group: number;
  readonly id: number;
  readonly grpcAddress: string;
  readonly metricsAddress: string;
  /** What to bind when it is not the advertised address (0.0.0.0:port); then both are passed. */
  readonly listen?: string;
  readonly metricsListen?: string;
  readonly launcher?: readonly string[];
  readonly dataRoot: string;
  /** The group's first members (id=host:port,...), or '' for a node that joins later. */
  readonly peers: string;
  /** kv only: the meta group's addresses. */
  readonly meta?: readonly string[];
  /** id=host:port of peers to dial through other addresses (proxies). */
  readonly peerRoute?: string;
  readonly extraArgs?: readonly string[];
}): NodeSpec {
  const name = fields.kind === 'meta' ? `meta-${fields.id}` : `kv-${fields.group}-${fields.id}`;
  const dataDir = join(fields.dataRoot, name);
  const args = [
    '--id',
    String(fields.id),
    ...(fields.kind === 'kv'
      ? ['--group', String(fields.group), '--meta', (fields.meta ?? []).join(',')]
      : []),
    ...(fields.listen === undefined
      ? ['--listen', fields.grpcAddress]
      : ['--listen', fields.listen, '--advertise', fields.grpcAddress]),
    '--peers',
    fields.peers,
    '--data-dir',
    dataDir,
    ...(fields.metricsListen === undefined
      ? ['--metrics-listen', fields.metricsAddress]
      : ['--metrics-listen', fields.metricsListen, '--metrics-advertise', fields.metricsAddress]),
    ...(fields.peerRoute ? ['--peer-route', fields.peerRoute] : []),
    ...(fields.extraArgs ?? []),
  ];
  return {
    name,
    kind: fields.kind,
    group: fields.group,
    id: fields.id,
    grpcAddress: fields.grpcAddress,
    metricsAddress: fields.metricsAddress,
    dataDir,
    args,
    launcher: fields.launcher,
  };
}

export interface ClusterLayout {
  readonly dataDir: string;
  readonly meta: readonly NodeSpec[];
  /** kv nodes by group id. */
  readonly kv: ReadonlyMap<number, readonly NodeSpec[]>;
}

/** Where one node listens. */
export interface NodeAddresses {
  readonly grpcAddress: string;
  readonly metricsAddress: string;
}

export interface LayoutOptions {
  readonly dataDir: string;
  readonly metaNodes: number;
  readonly kvGroups: number;
  readonly kvNodesPerGroup: number;
  /**
   * Where ports come from: 'fixed' uses DESIGN.md's defaults (meta 8088+, kv 7088+, metrics
   * 9188+ / 9288+, 10 apart per kv group); 'free' asks the OS for free ports (tests); a map gives
   * every node's addresses by name (those of an existing cluster.json).
   */
  readonly ports: 'fixed' | 'free' | ReadonlyMap<string, NodeAddresses>;
  /** Extra flags for every process (timing, log level...). */
  readonly extraArgs?: readonly string[];
  /** Flags of one node (its TLS certificate...), after extraArgs. */
  readonly nodeArgs?: (name: string, group: number, id: number) => readonly string[];
}

/** A server listening on host:port, or the error code (EADDRINUSE...) that refused it. */
function listenOn(host: string, port: number): Promise<import('node:net').Server | string> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.listen({ host, port }, () => resolve(s));
  });
}

/** The first port of the OS's ephemeral range (outgoing connections take their ports there). */
function ephemeralLow(): number {
  try {
    const low = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > 20_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * `count` free ports on 127.0.0.1 for test clusters, bound together, then released. They come from
 * below the ephemeral range, from a random start: a port taken from the ephemeral range can be
 * grabbed by any outgoing connection (a gRPC channel of this very cluster) between its release
 * and the node's own bind, and the node then exits with EADDRINUSE.
 */
export async function freePorts(count: number): Promise<number[]> {
  const low = 20_000;
  const span = ephemeralLow() - low;
  let next = low + Math.floor(Math.random() * span);
  const held: import('node:net').Server[] = [];
  try {
    for (let tried = 0; held.length < count; tried++) {
      if (tried >= span) throw new Error(`no ${count} free ports between ${low} and ${low + span}`);
      const s = await listenOn('127.0.0.1', next);
      if (typeof s !== 'string') held.push(s);
      next = next + 1 >= low + span ? low : next + 1;
    }
    return held.map((s) => (s.address() as import('node:net').AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((ok) => s.close(ok))));
  }
}

/** Plans every node of a cluster: names, addresses, data dirs and command lines. */
export async function planCluster(o: LayoutOptions): Promise<ClusterLayout> {
  const total = o.metaNodes + o.kvGroups * o.kvNodesPerGroup;
  const free = o.ports === 'free' ? await freePorts(total * 2) : [];
  let nextFree = 0;
  const ports = o.ports;
  const addresses = (name: string, grpcPort: number, metricsPort: number): NodeAddresses => {
    if (ports === 'fixed')
      return { grpcAddress: `127.0.0.1:${grpcPort}`, metricsAddress: `127.0.0.1:${metricsPort}` };
    if (ports === 'free') {
      const [grpc, metrics] = [free[nextFree++], free[nextFree++]];
      return { grpcAddress: `127.0.0.1:${grpc}`, metricsAddress: `127.0.0.1:${metrics}` };
    }
    const known = ports.get(name);
    if (known === undefined) throw new Error(`no addresses planned for node ${name}`);
    return known;
  };
  const extra = o.extraArgs ?? [];
  const metaAddresses: string[] = [];
  const metaPlans: { id: number; grpc: string; metrics: string }[] = [];
  for (let id = 1; id <= o.metaNodes; id++) {
    const a = addresses(`meta-${id}`, 8087 + id, 9187 + id);
    metaAddresses.push(a.grpcAddress);
    metaPlans.push({ id, grpc: a.grpcAddress, metrics: a.metricsAddress });
  }
  const metaPeers = metaPlans.map((p) => `${p.id}=${p.grpc}`).join(',');
  const meta: NodeSpec[] = metaPlans.map((p) =>
    nodeSpec({
      kind: 'meta',
      group: 0,
      id: p.id,
      grpcAddress: p.grpc,
      metricsAddress: p.metrics,
      dataRoot: o.dataDir,
      peers: metaPeers,
      extraArgs: [...extra, ...(o.nodeArgs?.(`meta-${p.id}`, 0, p.id) ?? [])],
    }),
  );
  const kv = new Map<number, NodeSpec[]>();
  for (let group = 1; group <= o.kvGroups; group++) {
    const plans: { id: number; grpc: string; metrics: string }[] = [];
    for (let id = 1; id <= o.kvNodesPerGroup; id++) {
      const offset = (group - 1) * 10 + id - 1;
      const a = addresses(`kv-${group}-${id}`, 7088 + offset, 9288 + offset);
      plans.push({ id, grpc: a.grpcAddress, metrics: a.metricsAddress });
    }
    const peers = plans.map((p) => `${p.id}=${p.grpc}`).join(',');
    kv.set(
      group,
      plans.map((p) =>
        nodeSpec({
          kind: 'kv',
          group,
          id: p.id,
          grpcAddress: p.grpc,
          metricsAddress: p.metrics,
          dataRoot: o.dataDir,
          peers,
          meta: metaAddresses,
          extraArgs: [...extra, ...(o.nodeArgs?.(`kv-${group}-${p.id}`, group, p.id) ?? [])],
        }),
      ),
    );
  }
  return { dataDir: o.dataDir, meta, kv };
}

/** How a process ended: its exit code, or the signal that ended it. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export function describeExit(status: ExitStatus): string {
  return status.signal !== null ? `signal ${status.signal}` : `code ${String(status.code)}`;
}

export interface RunningNode {
  readonly spec: NodeSpec;
  readonly process: ChildProcess;
  /** The exit code (-1 when a signal ended it) once the process has exited. */
  readonly exited: Promise<number | null>;
  /** Once the process has exited and its output has been read to the end: how it ended. */
  readonly ended: Promise<ExitStatus>;
  /** The last lines it wrote in this run (stdout and stderr, as in its log file), oldest first. */
  lastLines(): string[];
}

/** How many of a node's last output lines a RunningNode keeps (for start-up failures). */
const lastLinesMax = 20;

/** Runs and supervises the processes of a planned cluster. */
export class LocalCluster {
  private readonly running = new Map<string, RunningNode>();
  /** Nodes added after planning (new members joining a group). */
  private readonly extra: NodeSpec[] = [];
  /** Nodes that start with an empty --peers from now on (see startAsJoiner). */
  private readonly joining = new Map<string, NodeSpec>();
  private readonly logs = new Map<string, WriteStream>();

  constructor(readonly layout: ClusterLayout) {}

  allSpecs(): NodeSpec[] {
    return [...this.layout.meta, ...[...this.layout.kv.values()].flat(), ...this.extra].map(
      (s) => this.joining.get(s.name) ?? s,
    );
  }

  /**
   * From its next start on, node `name` starts with an empty --peers: as a new member that waits
   * to be added (the operator's path for a node whose data dir was lost: remove it from its group,
   * start it anew, add it again). Returns its new spec.
   */
  startAsJoiner(name: string): NodeSpec {
    const spec = this.spec(name);
    const args = [...spec.args];
    const at = args.indexOf('--peers');
    if (at >= 0) args[at + 1] = '';
    const joining = { ...spec, args };
    this.joining.set(name, joining);
    return joining;
  }

  /**
   * Plans one more kv node for `group` that starts with an empty --peers: it joins the running
   * group once a member add names it. Returns its spec (start it with start(spec.name)).
   */
  async planJoiningKvNode(
    group: number,
    id: number,
    extraArgs: readonly string[] = [],
  ): Promise<NodeSpec> {
    const [grpcPort, metricsPort] = await freePorts(2);
    const spec = nodeSpec({
      kind: 'kv',
      group,
      id,
      grpcAddress: `127.0.0.1:${grpcPort}`,
      metricsAddress: `127.0.0.1:${metricsPort}`,
      dataRoot: this.layout.dataDir,
      peers: '',
      meta: this.metaEndpoints(),
      extraArgs,
    });
    this.extra.push(spec);
    return spec;
  }

  /** Adds a node planned elsewhere (for example a spare member with its proxies ready). */
  addNode(spec: NodeSpec): void {
    if (this.allSpecs().some((s) => s.name === spec.name))
      throw new Error(`${spec.name} already exists`);
    this.extra.push(spec);
  }

  spec(name: string): NodeSpec {
    const spec = this.allSpecs().find((s) => s.name === name);
    if (spec === undefined) throw new Error(`no node named ${name}`);
    return spec;
  }

  metaEndpoints(): string[] {
    return this.layout.meta.map((m) => m.grpcAddress);
  }

  /** Writes cluster.json: every node's exact command line, to stop and restart one by hand. */
  async writeManifest(): Promise<void> {
    await mkdir(this.layout.dataDir, { recursive: true });
    const nodes = this.allSpecs().map((s) => ({
      name: s.name,
      kind: s.kind,
      group: s.group,
      id: s.id,
      grpc: s.grpcAddress,
      metrics: s.metricsAddress,
      dataDir: s.dataDir,
      command: [
        ...(s.launcher ?? []),
        process.execPath,
        s.kind === 'meta' ? metaBin : kvBin,
        ...s.args,
      ],
    }));
    await writeFile(
      join(this.layout.dataDir, 'cluster.json'),
      `${JSON.stringify({ nodes }, null, 2)}\n`,
    );
  }

  /** The log file of a node: <dataDir>/<name>.log. */
  logPath(name: string): string {
    return join(this.layout.dataDir, `${name}.log`);
  }

  /** Starts one node; its output goes to <dataDir>/<name>.log. */
  async start(name: string): Promise<RunningNode> {
    if (this.running.has(name)) throw new Error(`${name} is already running`);
    const spec = this.spec(name);
    await mkdir(this.layout.dataDir, { recursive: true });
    let log = this.logs.get(name);
    if (log === undefined) {
      log = createWriteStream(this.logPath(name), { flags: 'a' });
      this.logs.set(name, log);
    }
    // ERAFTKV_PROFILE_DIR=<dir> writes a V8 CPU profile of every node there when it stops.
    const profileDir = process.env.ERAFTKV_PROFILE_DIR;
    const profile = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
    const bin = spec.kind === 'meta' ? metaBin : kvBin;
    const env = { ...process.env };
    delete env.ERAFTKV_PROFILE_DIR; // not a node flag (ERAFTKV_<FLAG> variables are)
    const command = [...(spec.launcher ?? []), process.execPath, ...profile, bin, ...spec.args];
    const child = spawn(command[0], command.slice(1), {
      env,
      // The IPC channel lets a node notice when its launcher is gone (it then stops itself).
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const tail = new OutputTail(lastLinesMax);
    child.stdout?.on('data', (chunk: Buffer) => tail.add(chunk));
    child.stderr?.on('data', (chunk: Buffer) => tail.add(chunk));
    const exited = new Promise<number | null>((ok) =>
      child.once('exit', (code, signal) => ok(code ?? (signal ? -1 : null))),
    );
    // 'close' comes after 'exit', once stdout and stderr have been read to their end.
    const ended = new Promise<ExitStatus>((ok) =>
      child.once('close', (code, signal) => ok({ code, signal })),
    );
    const node: RunningNode = {
      spec,
      process: child,
      exited,
      ended,
      lastLines: () => tail.lines(),
    };
    this.running.set(name, node);
    void exited.then(() => {
      if (this.running.get(name) === node) this.running.delete(name);
    });
    return node;
  }

  async startAll(): Promise<void> {
    for (const spec of this.allSpecs()) await this.start(spec.name);
  }

  isRunning(name: string): boolean {
    return this.running.has(name);
  }

  runningNodes(): RunningNode[] {
    return [...this.running.values()];
  }

  /** Sends a signal to a node; with SIGKILL or SIGTERM waits until it has exited. */
  async signal(name: string, signal: NodeJS.Signals): Promise<number | null> {
    const node = this.running.get(name);
    if (node === undefined) return null;
    node.process.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM' || signal === 'SIGINT') return node.exited;
    return null;
  }

  /** Stops every node (SIGTERM, then SIGKILL after `graceMs`). */
  async stopAll(graceMs = 10_000): Promise<void> {
    const nodes = [...this.running.values()];
    for (const node of nodes) node.process.kill('SIGTERM');
    await Promise.all(
      nodes.map(async (node) => {
        const timer = setTimeout(() => node.process.kill('SIGKILL'), graceMs);
        await node.exited;
        clearTimeout(timer);
      }),
    );
    for (const log of this.logs.values()) log.end();
    this.logs.clear();
  }

  /** Kills every node at once (tests' afterAll safety net). */
  killAll(): void {
    for (const node of this.running.values()) node.process.kill('SIGKILL');
  }
}

export { waitUntil };

/** The last lines of a stream of output chunks. */
class OutputTail {
  private readonly complete: string[] = [];
  private partial = '';

  constructor(private readonly linesMax: number) {}

  add(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    this.complete.push(...parts.slice(-this.linesMax));
    if (this.complete.length > this.linesMax)
      this.complete.splice(0, this.complete.length - this.linesMax);
    // A line without an end that grows past 64 KiB is kept as it is, not without bound.
    if (this.partial.length > 65_536) this.partial = this.partial.slice(-65_536);
  }

  lines(): string[] {
    const all = this.partial === '' ? [...this.complete] : [...this.complete, this.partial];
    return all.slice(-this.linesMax);
  }
}

/** Whether something accepts TCP connections at host:port. */
export function acceptsConnections(address: string): Promise<boolean> {
  const { host, port } = splitHostPort(address, 'address');
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(2000);
    const done = (accepted: boolean): void => {
      socket.destroy();
      resolve(accepted);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/**
 * Whether this process can listen on host:port (bound, then closed at once): null when it can,
 * otherwise the error code (EADDRINUSE when something listens there already).
 */
export async function bindProblem(address: string): Promise<string | null> {
  const { host, port } = splitHostPort(address, 'address');
  const server = await listenOn(host, port);
  if (typeof server === 'string') return server;
  return new Promise((resolve) => server.close(() => resolve(null)));
}

/** The node names and addresses recorded in <dataDir>/cluster.json, or null when there is none. */
export async function readManifest(
  dataDir: string,
): Promise<{ nodes: (NodeAddresses & { name: string; kind: NodeKind; group: number })[] } | null> {
  const path = join(dataDir, 'cluster.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path} is not JSON: ${(err as Error).message}`);
  }
  const nodes = (parsed as { nodes?: unknown }).nodes;
  if (!Array.isArray(nodes)) throw new Error(`${path} has no "nodes" list`);
  return {
    nodes: nodes.map((n: unknown, i) => {
      const node = n as Record<string, unknown>;
      const { name, kind, group, grpc, metrics } = node;
      if (
        typeof name !== 'string' ||
        (kind !== 'meta' && kind !== 'kv') ||
        typeof group !== 'number' ||
        typeof grpc !== 'string' ||
        typeof metrics !== 'string'
      ) {
        throw new Error(`${path}: node ${i} lacks a name, kind, group, grpc or metrics field`);
      }
      return { name, kind, group, grpcAddress: grpc, metricsAddress: metrics };
    }),
  };
}

/** A node process found through its data dir's pid file. */
export interface NodeProcess {
  readonly spec: NodeSpec;
  readonly pid: number;
}

/** The live processes of `specs` according to their pid files (see server-kit's pid-file.ts). */
export function nodeProcesses(specs: readonly NodeSpec[]): NodeProcess[] {
  const found: NodeProcess[] = [];
  for (const spec of specs) {
    const pid = dataDirOwner(spec.dataDir);
    if (pid !== null) found.push({ spec, pid });
  }
  return found;
}

/**
 * Stops processes that are not children of this one (nodes restarted by hand): SIGTERM, then
 * SIGKILL for those still alive after `graceMs`; resolves once every one has exited (or has
 * outlived SIGKILL by 5 s, which `say` reports). Never rejects.
 */
export async function stopNodeProcesses(
  nodes: readonly NodeProcess[],
  graceMs: number,
  say: (line: string) => void = () => {},
): Promise<void> {
  await Promise.all(
    nodes.map(async ({ spec, pid }) => {
      say(`stopping ${spec.name} (pid ${pid}, started outside this launcher)`);
      const signal = (name: NodeJS.Signals): void => {
        try {
          process.kill(pid, name);
        } catch {
          // Gone already.
        }
      };
      signal('SIGTERM');
      // Checked by identity, not by pid alone: once the node has exited, its pid may be reused.
      const gone = (): boolean => !isNodeOfDataDir(pid, spec.dataDir);
      try {
        await waitUntil(gone, graceMs, `${spec.name} (pid ${pid}) to exit`, 50);
      } catch {
        say(`${spec.name} (pid ${pid}) did not stop within ${graceMs} ms: killing it`);
        if (!gone()) signal('SIGKILL');
        await waitUntil(gone, 5000, 'SIGKILL to take effect', 50).catch(() =>
          say(`${spec.name} (pid ${pid}) is still running after SIGKILL`),
        );
      }
    }),
  );
}

/** GET http://<address><path>: status and body, or null when nothing answers. */
export async function httpGet(
  address: string,
  path: string,
): Promise<{ status: number; body: string } | null> {
  try {
    const res = await fetch(`http://${address}${path}`, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return null;
  }
}

/**
 * The layout eraftkv-utl snapshot restore takes (--layout, as JSON) to build the data dirs of
 * `cluster` as cluster `clusterId`: every node's id, advertised address and data dir.
 */
export function restoreLayoutOf(cluster: LocalCluster, clusterId: string): Record<string, unknown> {
  const node = (s: NodeSpec): Record<string, unknown> => ({
    ...(s.kind === 'kv' ? { group: s.group } : {}),
    id: s.id,
    address: s.grpcAddress,
    'data-dir': s.dataDir,
  });
  return {
    'cluster-id': clusterId,
    meta: cluster.layout.meta.map(node),
    kv: [...cluster.layout.kv.values()].flat().map(node),
  };
}

/**
 * Brings a new cluster into service, as npm start does: waits until every node of the layout
 * accepts connections, initialises the cluster (1024 slots), registers every kv group of the
 * layout and gives group 1 every slot that has no owner. Steps a previous run already did are
 * skipped, so it is safe on a restarted cluster.
 */
export async function initializeCluster(
  client: EraftKvClient,
  cluster: LocalCluster,
  say: (line: string) => void = () => {},
  slotCount = 1024,
  /** Give group 1 every slot no group owns (not for a cluster restored with its slot map). */
  assignFreeSlots = true,
): Promise<void> {
  // The client gives up at once when every node refuses connections, which is what nodes still
  // starting do: wait for them to listen first.
  const specs = [...cluster.layout.meta, ...[...cluster.layout.kv.values()].flat()];
  let down: NodeSpec[] = [];
  await waitUntil(
    async () => {
      down = specs.filter((s) => !cluster.isRunning(s.name));
      if (down.length > 0) return true;
      const listening = await Promise.all(specs.map((s) => acceptsConnections(s.grpcAddress)));
      return listening.every((l) => l);
    },
    60_000,
    'every node to accept connections',
  );
  if (down.length > 0) {
    const logs = down.map((s) => cluster.logPath(s.name)).join(', ');
    throw new Error(`${down.map((s) => s.name).join(', ')} not running; see ${logs}`);
  }
  let view = await client.cluster().catch((err: unknown) => {
    if (err instanceof ClusterError && err.code === ErrorCode.NOT_INITIALIZED) return null;
    throw err;
  });
  if (view === null || view.slotCount === 0) {
    view = await client.initCluster(slotCount).catch(async (err: unknown) => {
      if (err instanceof ClusterError && err.code === ErrorCode.ALREADY_INITIALIZED)
        return client.cluster();
      throw err;
    });
    say(`cluster initialised with ${view.slotCount} slots`);
  }
  for (const [group, nodes] of cluster.layout.kv) {
    if (!view.groups.some((g) => g.id === group)) {
      view = await client.addGroup(
        group,
        nodes.map((n) => n.grpcAddress),
      );
      say(`kv group ${group} registered`);
    }
  }
  const assigned = new Set(view.groups.flatMap((g) => g.slots));
  const unassigned = Array.from({ length: view.slotCount }, (_, i) => i).filter(
    (s) => !assigned.has(s),
  );
  if (assignFreeSlots && unassigned.length > 0) {
    await client.moveSlots(1, unassigned);
    say(`group 1 owns ${unassigned.length} slots`);
  }
}
