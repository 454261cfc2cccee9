// Shared pieces of the end-to-end tests: a cluster of real processes on free ports, a bare
// generated gRPC client, and a Prometheus text check (promtool when installed, else a parser).
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ClientOpType,
  ERaftKvClient,
  grpcChannelOptions,
  ReadConsistency,
  ClientOperationReq,
  type ClientOperationResp,
  ClusterConfigChangeReq,
  type ClusterConfigChangeResp,
  KvOpPair,
  type StatusResp,
} from '@eraftkv/protocol';
import type { EraftKvClient } from '@eraftkv/client';
import { LocalCluster, planCluster, waitUntil } from '../local-cluster';

/** Faster timing than the defaults, so that elections in tests take under a second. */
export const fastTiming = ['--tick-ms', '50', '--log-level', 'info'];

export async function startTestCluster(options: {
  kvGroups?: number;
  nodes?: number;
  extraArgs?: string[];
  /** Flags of one node (its TLS certificate...). */
  nodeArgs?: (name: string, group: number, id: number) => readonly string[];
  /** The data dir (default: a new temp dir, removed by cleanup). */
  dir?: string;
  /** Runs once the cluster is planned, before any node starts (to build its data dirs). */
  beforeStart?: (cluster: LocalCluster) => Promise<void>;
}): Promise<{ cluster: LocalCluster; dir: string; cleanup: () => Promise<void> }> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'eraftkv-e2e-')));
  const layout = await planCluster({
    dataDir: dir,
    metaNodes: options.nodes ?? 3,
    kvGroups: options.kvGroups ?? 1,
    kvNodesPerGroup: options.nodes ?? 3,
    ports: 'free',
    extraArgs: options.extraArgs ?? fastTiming,
    nodeArgs: options.nodeArgs,
  });
  const cluster = new LocalCluster(layout);
  await cluster.writeManifest();
  await options.beforeStart?.(cluster);
  await cluster.startAll();
  return {
    cluster,
    dir,
    cleanup: async () => {
      await cluster.stopAll(5000).catch(() => cluster.killAll());
      // TEST_KEEP_DIRS=1 keeps the data dirs and node logs of every test cluster.
      if (process.env.TEST_KEEP_DIRS === '1') console.log(`kept ${dir}`);
      else await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A bare generated client per address (no client library), closed by closeAll. */
export class BareClients {
  private readonly clients = new Map<string, ERaftKvClient>();

  /** `credentials`: what every call is made with (default plaintext). */
  constructor(
    private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {}

  get(address: string): ERaftKvClient {
    let c = this.clients.get(address);
    if (c === undefined) {
      c = new ERaftKvClient(address, this.credentials, {
        ...grpcChannelOptions(),
        // Tests restart nodes often: find them again sooner.
        'grpc.max_reconnect_backoff_ms': 500,
      });
      this.clients.set(address, c);
    }
    return c;
  }

  rw(
    address: string,
    req: Partial<ClientOperationReq>,
    timeoutMs = 3000,
  ): Promise<ClientOperationResp> {
    const client = this.get(address);
    const full = ClientOperationReq.fromPartial({
      readConsistency: ReadConsistency.LINEARIZABLE,
      ...req,
    });
    return new Promise((resolve, reject) =>
      client.processRwOperation(
        full,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, resp) => (err ? reject(err) : resolve(resp)),
      ),
    );
  }

  config(
    address: string,
    req: Partial<ClusterConfigChangeReq>,
    timeoutMs = 10_000,
  ): Promise<ClusterConfigChangeResp> {
    const client = this.get(address);
    const full = ClusterConfigChangeReq.fromPartial(req);
    return new Promise((resolve, reject) =>
      client.clusterConfigChange(
        full,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, resp) => (err ? reject(err) : resolve(resp)),
      ),
    );
  }

  status(address: string, timeoutMs = 2000): Promise<StatusResp> {
    const client = this.get(address);
    return new Promise((resolve, reject) =>
      client.status(
        { withDigest: false, withSlots: false, checkIndex: 0 },
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, resp) => (err ? reject(err) : resolve(resp)),
      ),
    );
  }

  closeAll(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

export function op(type: ClientOpType, key: string, value = ''): KvOpPair {
  return KvOpPair.fromPartial({ opType: type, key: Buffer.from(key), value: Buffer.from(value) });
}

/** True when promtool is on the PATH. */
export function havePromtool(): Promise<boolean> {
  return new Promise((resolve) =>
    execFile('promtool', ['--version'], (err) => resolve(err === null)),
  );
}

/**
 * Checks Prometheus text format: with promtool (`promtool check metrics`) when installed, and
 * always with a strict parser. Returns the samples (name{labels} -> value).
 */
export async function checkMetricsText(text: string): Promise<Map<string, number>> {
  if (await havePromtool()) {
    const output = await new Promise<string>((resolve) => {
      const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) =>
        resolve(err ? `${stdout}${stderr}` : ''),
      );
      child.stdin?.end(text);
    });
    // A parse error fails, and so does any lint finding about our own metrics. prom-client's
    // default nodejs_* gauges are named *_total, which promtool's linter dislikes: tolerated.
    const problems = output
      .split('\n')
      .filter((line) => line.trim() !== '' && !/^nodejs_\w+ /.test(line));
    if (problems.length > 0)
      throw new Error(`promtool check metrics failed:\n${problems.join('\n')}`);
  }
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type))
        throw new Error(`bad TYPE line: ${line}`);
      typed.add(name);
      continue;
    }
    if (line.startsWith('#')) continue;
    // Prometheus parses values with Go's ParseFloat, which takes NaN in any case; prom-client
    // writes an empty event-loop-lag summary as "Nan".
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|[Nn]a[Nn]|\+Inf|-Inf)$/.exec(
      line,
    );
    if (m === null) throw new Error(`not a Prometheus sample line: ${line}`);
    const base = m[1].replace(/_(bucket|sum|count|total)$/, '');
    if (
      !typed.has(m[1]) &&
      !typed.has(base) &&
      !typed.has(m[1].replace(/_(bucket|sum|count)$/, ''))
    ) {
      throw new Error(`sample ${m[1]} has no TYPE line`);
    }
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return samples;
}

/** The value of the first sample of `name` (any labels). */
export function sample(samples: Map<string, number>, name: string): number | undefined {
  for (const [key, value] of samples) if (key === name || key.startsWith(`${name}{`)) return value;
  return undefined;
}

/** The status (with a state digest) of every replica at `addresses`, once all are at one applied index. */
export function sameAppliedIndex(
  client: EraftKvClient,
  addresses: readonly string[],
  what: string,
): Promise<StatusResp[]> {
  return waitUntil(
    async () => {
      const s = await Promise.all(addresses.map((a) => client.status(a, { withDigest: true })));
      return new Set(s.map((x) => x.stateDigestIndex)).size === 1 ? s : undefined;
    },
    20_000,
    what,
  );
}

/** How a script run to its end went. */
export interface ScriptRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node <script> <args>` to its end (or `timeoutMs`); never rejects. */
export function runScript(
  script: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<ScriptRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [script, ...args],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({
          code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1,
          stdout,
          stderr,
        }),
    );
  });
}

/** The summary.json and report.txt of the one run a fault suite wrote below `out`. */
export async function suiteResults<S>(out: string): Promise<{ summary: S; report: string }> {
  const dirs = await readdir(out);
  if (dirs.length !== 1) throw new Error(`expected one run in ${out}, found ${dirs.join(', ')}`);
  const summary = JSON.parse(await readFile(join(out, dirs[0], 'summary.json'), 'utf8')) as S;
  const report = await readFile(join(out, dirs[0], 'report.txt'), 'utf8');
  return { summary, report };
}
