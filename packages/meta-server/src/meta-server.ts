// One meta server process (or one node of an in-process test cluster): a RaftServer of group 0
// whose state machine is the topology, the node's endpoints (gRPC: peer RPCs, admin RPCs and
// ClusterConfigChange, grpc.health.v1; HTTP: /metrics and /health) and the slot-move
// coordinator. It is assembled from server-kit exactly as the kv server is (NodeHost, then
// openRaftNode, then the handlers): listen() binds first and start() opens the data dir, so that
// a test can bind three nodes on port 0 and only then tell each the others' addresses.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ERaftKvServer } from '@eraftkv/protocol';
import {
  AccessControl,
  adminHandlers,
  anonymous,
  NodeHost,
  NodeTls,
  openRaftNode,
  unimplementedStream,
  type NodeTlsFlags,
  type RaftTuning,
} from '@eraftkv/server-kit';
import {
  directorySizeBytes,
  peerServiceHandlers,
  RaftServerBoot,
  silentLogger,
  type HealthReport,
  type Logger,
  type RaftServer,
} from '@eraftkv/raft-server';
import { type Membership } from '@eraftkv/raft';
import { MetaMetrics } from './meta-metrics';
import { authHandler } from './auth-service';
import { clusterConfigChangeHandler } from './meta-service';
import { SlotMoveCoordinator } from './slot-move';
import { GrpcSourceGroupClient, type SourceGroupClient } from './source-group-client';
import { GrpcTargetGroupClient, type TargetGroupClient } from './target-group-client';
import {
  dedupWindowEntriesDefault,
  type CommandOutcome,
  type Topology,
  type TopologyCommand,
} from './topology';
import { encodeCommand } from './topology-command-codec';
import { TopologyStateMachine } from './topology-state-machine';
import { metaGroupId } from './topology-wire';

export interface MetaServerOptions {
  /** This node's id in the meta group (a positive integer). */
  readonly id: number;
  /** host:port for gRPC; port 0 picks a free port. */
  readonly listen: string;
  readonly dataDir: string;
  /** host:port for /metrics and /health; empty or absent: no HTTP endpoint. */
  readonly metricsListen?: string;
  /** Serve /debug/pprof/profile on the HTTP endpoint (--enable-pprof). */
  readonly enablePprof?: boolean;
  /** Peers of another cluster id are refused (default "eraftkv"). */
  readonly clusterId?: string;
  readonly logger?: Logger;
  /** The prom-client registry (default: a new one per server, so several can share a process). */
  readonly registry?: Registry;
  /** Register prom-client's default process metrics (default true). */
  readonly defaultMetrics?: boolean;
  /** Raft settings (the common node flags; --peer-route as peerRoutes). */
  readonly raft?: RaftTuning;
  /** How long stop() lets calls in flight finish (default 5000 ms). */
  readonly shutdownGraceMs?: number;
  /** What ClusterInit records as the dedup window (default 10,000 requests). */
  readonly dedupWindowEntries?: number;
  /** How long step 2 of a slot move waits for a source group (default 5000 ms). */
  readonly slotMoveDeadlineMs?: number;
  /** How often the leader looks for moves left Migrating (default 1000 ms). */
  readonly slotMoveCheckIntervalMs?: number;
  /** The largest gRPC message (default 16 MiB). */
  readonly messageBytesMax?: number;
  /** Reported by the Status RPC. */
  readonly version?: string;
  /** Called once if Raft fails in a way that leaves the node's state unknown. */
  readonly onFatal?: (err: Error) => void;
  /** Replaces the gRPC client that asks source groups (tests). */
  readonly sourceGroups?: SourceGroupClient;
  /** Replaces the network to target groups (tests). */
  readonly targetGroups?: TargetGroupClient;
  /** How long a slot move's copy of one batch into its target may take (default 10 minutes). */
  readonly slotImportDeadlineMs?: number;
  /** The most slots a move freezes and copies at once (default 64). */
  readonly slotMoveBatchSlots?: number;
  /** TLS (the --cert-file ... flags); absent: plaintext. */
  readonly tls?: NodeTlsFlags;
}

export class MetaServer {
  readonly registry: Registry;
  private readonly logger: Logger;
  private host: NodeHost | null = null;
  private tls: NodeTls | null = null;
  private raftServer: RaftServer<CommandOutcome> | null = null;
  private stateMachine: TopologyStateMachine | null = null;
  private slotMoves: SlotMoveCoordinator | null = null;
  private sources: SourceGroupClient | null = null;
  private targets: TargetGroupClient | null = null;
  /**
   * The Raft node while it starts: it answers Identify (a new group's members ask each other who
   * they are before bootstrapping) and reports health, before anything else is served.
   */
  private booting: RaftServerBoot | null = null;
  private stopping = false;

  constructor(private readonly options: MetaServerOptions) {
    this.registry = options.registry ?? new Registry();
    this.logger = (options.logger ?? silentLogger).child({ group: metaGroupId, node: options.id });
    if (!Number.isSafeInteger(options.id) || options.id < 1) {
      throw new RangeError(`the node id must be a positive integer, got ${options.id}`);
    }
  }

  /** The bound gRPC address (after listen()). */
  get address(): string {
    if (this.host === null) throw new Error('the meta server is not listening yet');
    return this.host.address;
  }

  /** The bound HTTP address, or '' without --metrics-listen. */
  get metricsAddress(): string {
    return this.host?.metricsAddress ?? '';
  }

  /** The Raft node (after start()); for status and tests. */
  get raft(): RaftServer<CommandOutcome> {
    if (this.raftServer === null) throw new Error('the meta server is not started');
    return this.raftServer;
  }

  /** The topology this node has applied (after start()). */
  get topology(): Topology {
    if (this.stateMachine === null) throw new Error('the meta server is not started');
    return this.stateMachine.topology;
  }

  /** Binds the gRPC host (and the HTTP endpoint); calls are UNAVAILABLE until start(). */
  async listen(): Promise<{ address: string; metricsAddress: string }> {
    if (this.host !== null) throw new Error('the meta server is already listening');
    const o = this.options;
    if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.tls = o.tls === undefined ? null : NodeTls.fromFlags(o.tls, this.logger);
    this.host = await NodeHost.bind({
      tls: this.tls,
      kind: 'meta',
      listen: o.listen,
      metricsListen: o.metricsListen ?? '',
      enablePprof: o.enablePprof,
      messageBytesMax: o.messageBytesMax ?? 16 * 1024 * 1024,
      registry: this.registry,
      health: () => this.health(),
    });
    return { address: this.host.address, metricsAddress: this.host.metricsAddress };
  }

  /**
   * Opens the data dir and starts Raft. `peers` bootstraps an empty data dir (this node must be
   * one of them); afterwards the stored membership wins and a disagreeing `peers` is only
   * reported. Empty or null `peers` on an empty data dir: wait for the leader to add this node.
   */
  async start(peers: Membership | null): Promise<void> {
    if (this.raftServer !== null || this.stopping) {
      throw new Error('a meta server starts once; create a new one to start again');
    }
    if (this.host === null) await this.listen();
    const host = this.host as NodeHost;
    const o = this.options;
    const boot = new RaftServerBoot();
    this.booting = boot;
    let opened: { raft: RaftServer<CommandOutcome>; stateMachine: TopologyStateMachine };
    try {
      opened = await openRaftNode<CommandOutcome, TopologyStateMachine>({
        kind: 'meta',
        clusterId: o.clusterId ?? 'eraftkv',
        groupId: metaGroupId,
        id: o.id,
        dataDir: o.dataDir,
        peers: peers ?? [],
        raft: { ...o.raft, peerCredentials: this.tls?.peerCredentials() },
        host,
        boot,
        registry: this.registry,
        logger: this.logger,
        onFatal: (err) => o.onFatal?.(err),
        openStateMachine: () =>
          TopologyStateMachine.open(join(o.dataDir, 'state'), { verify: true }),
      });
    } finally {
      this.booting = null;
    }
    const { raft, stateMachine } = opened;
    this.stateMachine = stateMachine;
    this.raftServer = raft;

    const metrics = new MetaMetrics(
      this.registry,
      { groupId: metaGroupId, nodeId: o.id },
      {
        configVersion: () => stateMachine.topology.configVersion,
        slotCount: () => stateMachine.topology.slotCount,
      },
    );
    const deadlineMs = o.slotMoveDeadlineMs ?? 5000;
    let importProblemLoggedAt = 0;
    this.sources =
      o.sourceGroups ??
      new GrpcSourceGroupClient({
        deadlineMs,
        attemptMs: Math.min(1000, deadlineMs),
        credentials: this.tls?.peerCredentials(),
      });
    this.targets =
      o.targetGroups ??
      new GrpcTargetGroupClient({
        deadlineMs: o.slotImportDeadlineMs ?? 10 * 60_000,
        callMs: 20_000,
        credentials: this.tls?.peerCredentials(),
        onProblem: (batch, problem) => {
          // At most one line per 10 s: a target that keeps refusing is asked every 200 ms.
          const now = Date.now();
          if (now - importProblemLoggedAt < 10_000) return;
          importProblemLoggedAt = now;
          this.logger.warn('a slot import was refused; asking again until its deadline', {
            source: batch.source,
            target: batch.target,
            version: batch.version,
            error: problem,
          });
        },
      });
    const propose = (command: TopologyCommand): Promise<CommandOutcome> =>
      this.proposeCommand(command);
    this.slotMoves = new SlotMoveCoordinator({
      propose,
      topology: () => stateMachine.topology,
      isLeader: () => raft.isLeader(),
      confirmLeadership: () => raft.readIndex(),
      sources: this.sources,
      targets: this.targets,
      slotsPerBatch: o.slotMoveBatchSlots,
      logger: this.logger,
      nowMs: () => Date.now(),
      onSettled: (committed, _slots, seconds) => metrics.slotMoveSettled(committed, seconds),
      onCopied: (slots, keys, bytes) => metrics.slotsCopied(slots, keys, bytes),
    });
    const tls = this.tls;
    const access = new AccessControl(() => stateMachine.topology.auth, tls?.callerOf ?? anonymous);
    host.serve({
      ...peerServiceHandlers(raft, tls?.authenticatePeer),
      ...adminHandlers(raft, {
        serverType: 'meta',
        version: o.version ?? '',
        configVersion: () => stateMachine.topology.configVersion,
        dbSizeBytes: () => directorySizeBytes(o.dataDir),
        access,
        logger: this.logger,
      }),
      clusterConfigChange: clusterConfigChangeHandler({
        raft,
        propose,
        topology: () => stateMachine.topology,
        slotMoves: this.slotMoves,
        dedupWindowEntries: o.dedupWindowEntries ?? dedupWindowEntriesDefault,
        access,
        logger: this.logger,
      }),
      auth: authHandler({
        raft,
        propose,
        topology: () => stateMachine.topology,
        access,
        authUnsupported: () => {
          if (tls === null) return 'this meta server runs without TLS (--cert-file)';
          if (!tls.verifiesClients)
            return 'this meta server does not verify client certificates (--client-cert-auth), so it cannot tell users apart';
          if (!tls.verifiesPeers)
            return 'this meta server has no peer certificates (--peer-cert-file), so it cannot tell cluster members apart';
          return null;
        },
        logger: this.logger,
      }),
      processRwOperation: (_call, callback) =>
        callback({
          code: grpc.status.UNIMPLEMENTED,
          details: 'this is a meta server; send data operations to a kv server',
        }),
      processRwOperationStream: unimplementedStream(
        'ProcessRWOperationStream (a kv server operation)',
      ),
      slotExport: (_call, callback) =>
        callback({
          code: grpc.status.UNIMPLEMENTED,
          details: 'this is a meta server; a slot move exports from a kv server',
        }),
      slotImport: (_call, callback) =>
        callback({
          code: grpc.status.UNIMPLEMENTED,
          details: 'this is a meta server; a slot move imports into a kv server',
        }),
      backup: unimplementedStream('Backup (a kv server operation)'),
      watch: unimplementedStream('Watch (a kv server operation)'),
      lease: (_call, callback) =>
        callback({
          code: grpc.status.UNIMPLEMENTED,
          details: 'this is a meta server; leases belong to kv groups (ask their servers)',
        }),
      leaseKeepAlive: unimplementedStream('LeaseKeepAlive (a kv server operation)'),
      hashKv: (_call, callback) =>
        callback({
          code: grpc.status.UNIMPLEMENTED,
          details: 'this is a meta server; HashKv checks a kv group (ask its servers)',
        }),
    } satisfies ERaftKvServer);
    this.slotMoves.watch(o.slotMoveCheckIntervalMs ?? 1000);
  }

  private async proposeCommand(command: TopologyCommand): Promise<CommandOutcome> {
    const outcome = await this.raft.propose(encodeCommand(command));
    if (outcome === undefined) {
      throw new Error(`the ${command.kind} command was applied without an outcome`);
    }
    return outcome;
  }

  health(): HealthReport {
    const raft = this.raftServer ?? this.booting;
    if (raft === null) return { healthy: false, reason: 'starting' };
    return raft.health();
  }

  /**
   * Graceful stop: refuse new calls, let the calls in flight finish (at most shutdownGraceMs),
   * stop Raft (it finishes the Ready in progress and closes the state), close the HTTP endpoint.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.slotMoves?.stop();
    await this.host?.shutdown(this.options.shutdownGraceMs ?? 5000);
    this.sources?.close();
    this.targets?.close();
    await (this.raftServer ?? this.booting)?.stop();
    await this.host?.closeHttp();
    this.tls?.close();
  }

  /** Reads the TLS files again now (SIGHUP); no-op without TLS. */
  reloadTls(): void {
    this.tls?.reload();
  }

  /** Stops at once, as a crash would (tests). */
  async abort(): Promise<void> {
    this.stopping = true;
    this.slotMoves?.stop();
    this.host?.forceShutdown();
    this.sources?.close();
    this.targets?.close();
    await (this.raftServer ?? this.booting)?.abort();
    await this.host?.closeHttp();
    this.tls?.close();
  }
}
