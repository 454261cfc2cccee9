// Shared helpers for the meta server's tests: temp dirs, in-process meta groups on 127.0.0.1
// port 0, and a bare generated ERaftKvClient.
import { waitFor } from '@eraftkv/test-support';
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ERaftKvClient,
  grpcChannelOptions,
  type ClusterConfigChangeResp,
  type ShardGroup,
} from '@eraftkv/protocol';
import { MetaServer, type MetaServerOptions } from '../src';

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
}

/** Fast Raft timing for tests: elections within a few hundred ms. */
export const fastRaft = { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 } as const;

/** A bare client of the ERaftKv service. */
export function connect(address: string): ERaftKvClient {
  return new ERaftKvClient(address, grpc.credentials.createInsecure(), {
    ...grpcChannelOptions(),
    // Tests restart nodes often: find them again sooner.
    'grpc.max_reconnect_backoff_ms': 500,
  });
}

/** The gRPC status code of a failed call (throws if the call succeeded). */
export async function statusOf(call: Promise<unknown>): Promise<grpc.status> {
  try {
    await call;
  } catch (err) {
    return (err as grpc.ServiceError).code;
  }
  throw new Error('the call succeeded, but it was expected to fail');
}

/** One kv group of a response, by id. */
export function groupOf(resp: ClusterConfigChangeResp, id: number): ShardGroup | undefined {
  return resp.shardGroup.find((g) => g.id === id);
}

/** Slot ids a group owns in a response. */
export function slotIdsOf(resp: ClusterConfigChangeResp, id: number): number[] {
  return (groupOf(resp, id)?.slots ?? []).map((s) => s.id);
}

/** A meta group running in this process, each node with its own data dir and registry. */
export class MetaGroup {
  readonly servers = new Map<number, MetaServer>();
  private readonly clients: ERaftKvClient[] = [];
  root = '';

  constructor(private readonly defaults: Partial<MetaServerOptions> = {}) {}

  async init(): Promise<void> {
    this.root = await makeTempDir('eraftkv-meta-test-');
  }

  dataDir(id: number): string {
    return join(this.root, `meta-${id}`);
  }

  /** Binds a node on port 0 (not started). */
  async bind(id: number, options: Partial<MetaServerOptions> = {}): Promise<MetaServer> {
    const server = new MetaServer({
      id,
      listen: '127.0.0.1:0',
      dataDir: this.dataDir(id),
      defaultMetrics: false,
      shutdownGraceMs: 1000,
      slotMoveCheckIntervalMs: 100,
      ...this.defaults,
      ...options,
      raft: { ...fastRaft, ...this.defaults.raft, ...options.raft },
    });
    await server.listen();
    this.servers.set(id, server);
    return server;
  }

  /** Binds and starts `count` nodes as one new group. */
  async start(count: number): Promise<MetaServer[]> {
    const servers: MetaServer[] = [];
    for (let id = 1; id <= count; id++) servers.push(await this.bind(id));
    const members = servers.map((s, i) => ({
      id: i + 1,
      address: s.address,
      learner: false,
      incarnation: 0,
    }));
    await Promise.all(servers.map((s) => s.start(members)));
    return servers;
  }

  running(): MetaServer[] {
    return [...this.servers.values()].filter((s) => {
      try {
        return !s.raft.status().stopped;
      } catch {
        return false;
      }
    });
  }

  async waitForLeader(timeoutMs = 10_000): Promise<MetaServer> {
    return waitFor(
      () => {
        const leaders = this.running().filter((s) => s.raft.isLeader());
        return leaders.length === 1 ? leaders[0] : undefined;
      },
      { timeoutMs, what: 'one meta leader' },
    );
  }

  client(server: MetaServer): ERaftKvClient {
    const c = connect(server.address);
    this.clients.push(c);
    return c;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.close();
    for (const s of this.servers.values()) await s.stop().catch(() => undefined);
    await removeDir(this.root);
  }
}
