// A cluster of RaftServers in this process, each behind a real gRPC server on 127.0.0.1 port 0,
// each with its own data dir, RocksDB and prom-client registry.
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERaftKvService, type ERaftKvServer } from '@eraftkv/protocol';
import {
  peerServiceHandlers,
  RaftServer,
  type Member,
  type PeerInbox,
  type RaftServerOptions,
  waitUntil,
} from '../../src';
import { RecordingStateMachine } from './test-state-machine';

export interface TestNode {
  readonly id: number;
  readonly address: string;
  readonly dataDir: string;
  server: RaftServer<number>;
  sm: RecordingStateMachine;
  readonly grpcServer: grpc.Server;
  running: boolean;
}

export type NodeOptions = Partial<
  Omit<RaftServerOptions<number>, 'id' | 'dataDir' | 'stateMachine' | 'bootstrap'>
>;

function unimplemented(_call: unknown, callback: grpc.sendUnaryData<never>): void {
  callback({ code: grpc.status.UNIMPLEMENTED, details: 'not served by this test node' }, null);
}

export class TestCluster {
  readonly nodes = new Map<number, TestNode>();
  private root = '';
  readonly groupId = 7;

  constructor(private readonly defaults: NodeOptions = {}) {}

  async init(): Promise<void> {
    this.root = await mkdtemp(join(tmpdir(), 'eraftkv-raft-'));
  }

  /** Binds a gRPC server for node `id`; its RaftServer is created by start(). */
  async bind(id: number): Promise<TestNode> {
    const holder: { inbox: PeerInbox | null } = { inbox: null };
    const inbox: PeerInbox = {
      get selfId() {
        return holder.inbox!.selfId;
      },
      get identity() {
        return holder.inbox!.identity;
      },
      stepRequest: (m) => holder.inbox!.stepRequest(m),
      stepOneWay: (m) => holder.inbox!.stepOneWay(m),
      receiveSnapshotBlock: (r) => holder.inbox!.receiveSnapshotBlock(r),
    };
    const grpcServer = new grpc.Server({ 'grpc.max_receive_message_length': 8 * 1024 * 1024 });
    const service: ERaftKvServer = {
      ...peerServiceHandlers(inbox),
      processRwOperation: unimplemented,
      processRwOperationStream: (call) => call.end(),
      clusterConfigChange: unimplemented,
      memberChange: unimplemented,
      transferLeader: unimplemented,
      status: unimplemented,
    };
    grpcServer.addService(ERaftKvService, service);
    const port = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const node = {
      id,
      address: `127.0.0.1:${port}`,
      dataDir: join(this.root, `node-${id}`),
      grpcServer,
      running: false,
      holder,
    } as unknown as TestNode & { holder: { inbox: PeerInbox | null } };
    this.nodes.set(id, node);
    return node;
  }

  /** Starts (or restarts) node `id` with a fresh RaftServer over its data dir. */
  async start(
    id: number,
    bootstrap: Member[] | null,
    options: NodeOptions = {},
  ): Promise<TestNode> {
    const node = this.nodes.get(id) as TestNode & { holder: { inbox: PeerInbox | null } };
    node.sm = await RecordingStateMachine.open(join(node.dataDir, 'state'));
    node.server = new RaftServer<number>({
      clusterId: 'test',
      groupId: this.groupId,
      tickMs: 20,
      ...this.defaults,
      ...options,
      id,
      dataDir: node.dataDir,
      bootstrap,
      stateMachine: node.sm,
    });
    node.holder.inbox = node.server;
    await node.server.start();
    node.running = true;
    return node;
  }

  /** Starts `count` nodes bootstrapped as one group. */
  async startGroup(count: number, options: NodeOptions = {}): Promise<TestNode[]> {
    const nodes: TestNode[] = [];
    for (let id = 1; id <= count; id++) nodes.push(await this.bind(id));
    const members = nodes.map((n) => ({ id: n.id, address: n.address, learner: false }));
    for (const n of nodes) await this.start(n.id, members, options);
    return nodes;
  }

  /** Stops a node's RaftServer (graceful: the Ready in progress completes). */
  async stop(id: number): Promise<void> {
    const node = this.nodes.get(id)!;
    if (!node.running) return;
    node.running = false;
    await node.server.stop();
  }

  running(): TestNode[] {
    return [...this.nodes.values()].filter((n) => n.running);
  }

  leader(): TestNode | undefined {
    return this.running().find((n) => n.server.isLeader());
  }

  async waitForLeader(timeoutMs = 10_000): Promise<TestNode> {
    return waitFor(
      () => {
        const leaders = this.running().filter((n) => n.server.isLeader());
        return leaders.length === 1 ? leaders[0] : undefined;
      },
      timeoutMs,
      'a single leader',
    );
  }

  async close(): Promise<void> {
    for (const n of this.nodes.values()) {
      if (n.running) await n.server.stop().catch(() => undefined);
      n.grpcServer.forceShutdown();
    }
    if (this.root !== '') await rm(this.root, { recursive: true, force: true });
  }
}

/** Polls a condition with a deadline (raft-core's waitUntil). */
export const waitFor = waitUntil;
