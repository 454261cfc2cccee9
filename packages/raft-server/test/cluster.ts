// A cluster of RaftServers in this process, each behind a real gRPC server on 127.0.0.1 port 0,
// each with its own data dir, RocksDB and prom-client registry.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeERaftKv, waitFor, type StartedServer } from '@eraftkv/test-support';
import {
  DeferredPeerInbox,
  openNodeIdentity,
  peerServiceHandlers,
  RaftServer,
  RaftServerBoot,
  type PeerInbox,
  type RaftServerOptions,
} from '../src';
import { type Member } from '@eraftkv/raft';
import { RecordingStateMachine } from './test-state-machine';

export interface TestNode {
  readonly id: number;
  readonly address: string;
  readonly dataDir: string;
  server: RaftServer<number>;
  sm: RecordingStateMachine;
  readonly grpcServer: StartedServer;
  running: boolean;
}

export type NodeOptions = Partial<
  Omit<
    RaftServerOptions<number>,
    'id' | 'dataDir' | 'stateMachine' | 'bootstrap' | 'incarnation' | 'boot'
  >
>;

export class TestCluster {
  readonly nodes = new Map<number, TestNode>();
  private root = '';
  readonly groupId = 7;
  /** Cut links, as "from->to": a node refuses every request from a peer it is cut from. */
  private readonly cuts = new Set<string>();

  constructor(private readonly defaults: NodeOptions = {}) {}

  async init(): Promise<void> {
    this.root = await mkdtemp(join(tmpdir(), 'eraftkv-raft-'));
  }

  /** Binds a gRPC server for node `id`; its RaftServer is opened by start(). */
  async bind(id: number): Promise<TestNode> {
    const inbox = new DeferredPeerInbox();
    const grpcServer = await startFakeERaftKv(peerServiceHandlers(inbox), {
      what: 'this test node',
      serverOptions: { 'grpc.max_receive_message_length': 8 * 1024 * 1024 },
    });
    const node = {
      id,
      address: grpcServer.address,
      dataDir: join(this.root, `node-${id}`),
      grpcServer,
      running: false,
      inbox,
    } as unknown as TestNode & { inbox: DeferredPeerInbox };
    this.nodes.set(id, node);
    return node;
  }

  /** Starts (or restarts) node `id` with a fresh RaftServer over its data dir. */
  async start(
    id: number,
    bootstrap: Member[] | null,
    options: NodeOptions = {},
  ): Promise<TestNode> {
    const node = this.nodes.get(id) as TestNode & { inbox: DeferredPeerInbox };
    const clusterId = 'test';
    const { identity } = await openNodeIdentity(node.dataDir, {
      clusterId,
      kind: 'kv',
      groupId: this.groupId,
      nodeId: id,
    });
    node.sm = await RecordingStateMachine.open(join(node.dataDir, 'state'));
    // The boot answers for the node while it opens (Identify during bootstrap discovery).
    const boot = new RaftServerBoot();
    node.inbox.target = this.filtered(id, boot);
    try {
      node.server = await RaftServer.open<number>({
        clusterId,
        groupId: this.groupId,
        tickMs: 20,
        ...this.defaults,
        ...options,
        id,
        dataDir: node.dataDir,
        incarnation: identity.incarnation,
        bootstrap,
        stateMachine: node.sm,
        boot,
      });
    } catch (err) {
      // RaftServer closes the state machine only once open.
      await node.sm.close();
      throw err;
    }
    node.running = true;
    return node;
  }

  /** Cuts node `id` off from every other node, both ways (a partition). */
  isolate(id: number): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cuts.add(`${id}->${other}`);
      this.cuts.add(`${other}->${id}`);
    }
  }

  /** Restores every link. */
  heal(): void {
    this.cuts.clear();
  }

  /** `inbox`, refusing the requests of peers cut from node `id`. */
  private filtered(id: number, inbox: PeerInbox): PeerInbox {
    const cuts = this.cuts;
    return {
      get selfId() {
        return inbox.selfId;
      },
      get identity() {
        return inbox.identity;
      },
      receive: (input) => {
        const from = input.kind === 'snapshot-block' ? input.block.leaderId : input.message.from;
        if (cuts.has(`${from}->${id}`))
          return Promise.reject(new Error(`node ${id} is cut off from node ${from}`));
        return inbox.receive(input);
      },
      identify: (req) => inbox.identify(req),
      incarnationOf: (other) => inbox.incarnationOf(other),
      refused: (reason, from, detail) => inbox.refused(reason, from, detail),
    };
  }

  /** Starts `count` nodes bootstrapped as one group. */
  async startGroup(count: number, options: NodeOptions = {}): Promise<TestNode[]> {
    const nodes: TestNode[] = [];
    for (let id = 1; id <= count; id++) nodes.push(await this.bind(id));
    const members = nodes.map((n) => ({
      id: n.id,
      address: n.address,
      learner: false,
      incarnation: 0,
    }));
    // Together: each new member waits for the others to answer before it bootstraps.
    await Promise.all(nodes.map((n) => this.start(n.id, members, options)));
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
      { timeoutMs, what: 'a single leader' },
    );
  }

  async close(): Promise<void> {
    for (const n of this.nodes.values()) {
      if (n.running) await n.server.stop().catch(() => undefined);
      await n.grpcServer.close();
    }
    if (this.root !== '') await rm(this.root, { recursive: true, force: true });
  }
}
