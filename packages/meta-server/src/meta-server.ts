// One meta server process (or one node of an in-process test cluster): a RaftServer of group 0
// whose state machine is the topology, one gRPC host serving the ERaftKv service (peer RPCs,
// admin RPCs and ClusterConfigChange) and grpc.health.v1, and an optional HTTP endpoint for
// /metrics and /health. listen() binds first and start() starts Raft, so that a test can bind
// three nodes on port 0 and only then tell each the others' addresses.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ERaftKvServer } from '@eraftkv/protocol';
import {
  adminHandlers,
  unimplementedStream,
  formatPeers,
  splitHostPort,
  startGrpcHost,
  type GrpcHost,
} from '@eraftkv/server-kit';
import {
  directorySizeBytes,
  openNodeIdentity,
  peerServiceHandlers,
  RaftServer,
  RaftServerBoot,
  silentLogger,
  startHttpEndpoint,
  type HealthReport,
  type HttpEndpoint,
  type Logger,
  type RaftServerOptions,
} from '@eraftkv/raft-server';
import { type Membership } from '@eraftkv/raft';
import { MetaMetrics } from './meta-metrics';
import { clusterConfigChangeHandler } from './meta-service';
import { SlotMoveCoordinator } from './slot-move';
import { GrpcSourceGroupClient, type SourceGroupClient } from './source-group-client';
import {
  dedupWindowEntriesDefault,
  type CommandOutcome,
  type Topology,
  type TopologyCommand,
} from './topology';
import { encodeCommand } from './topology-command-codec';
import { TopologyStateMachine } from './topology-state-machine';
import { metaGroupId } from './topology-wire';

/** Raft settings a test (or an operator through flags) may tune. */
export type MetaRaftTuning = Partial<
  Pick<
    RaftServerOptions<CommandOutcome>,
    | 'tickMs'
    | 'electionTicks'
    | 'heartbeatTicks'
    | 'snapshotEntries'
    | 'compactionMarginEntries'
    | 'logMemoryBytesMax'
    | 'learnerCatchUpEntriesMax'
    | 'rpcTimeoutMs'
    | 'peerRoutes'
  >
>;

export interface MetaServerOptions {
  /** This node's id in the meta group (a positive integer). */
  readonly id: number;
  /** host:port for gRPC; port 0 picks a free port. */
  readonly listen: string;
  readonly dataDir: string;
  /** host:port for /metrics and /health; empty or absent: no HTTP endpoint. */
  readonly metricsListen?: string;
  /** Peers of another cluster id are refused (default "eraftkv"). */
  readonly clusterId?: string;
  readonly logger?: Logger;
  /** The prom-client registry (default: a new one per server, so several can share a process). */
  readonly registry?: Registry;
  /** Register prom-client's default process metrics (default true). */
  readonly defaultMetrics?: boolean;
  readonly raft?: MetaRaftTuning;
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
}

function unavailable(
  _call: unknown,
  callback: (err: grpc.ServiceError | Partial<grpc.StatusObject> | null) => void,
): void {
  callback({ code: grpc.status.UNAVAILABLE, details: 'the meta server is starting or stopping' });
}

export class MetaServer {
  readonly registry: Registry;
  private readonly logger: Logger;
  private grpcHost: GrpcHost | null = null;
  private http: HttpEndpoint | null = null;
  private raftServer: RaftServer<CommandOutcome> | null = null;
  private stateMachine: TopologyStateMachine | null = null;
  private slotMoves: SlotMoveCoordinator | null = null;
  private sources: SourceGroupClient | null = null;
  /** The handlers once started; until then every call is UNAVAILABLE. */
  private handlers: ERaftKvServer | null = null;
  /**
   * The Raft node while it starts: it answers Identify (a new group's members ask each other who
   * they are before bootstrapping) and reports health, before anything else is served.
   */
  private booting: RaftServerBoot | null = null;
  private bootHandlers: Pick<ERaftKvServer, 'identify'> | null = null;
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
    if (this.grpcHost === null) throw new Error('the meta server is not listening yet');
    return this.grpcHost.address;
  }

  /** The bound HTTP address, or '' without --metrics-listen. */
  get metricsAddress(): string {
    return this.http?.address ?? '';
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
    const o = this.options;
    if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const delegate = <K extends keyof ERaftKvServer>(name: K): ERaftKvServer[K] =>
      ((call: never, callback: never) => {
        const handlers: Partial<ERaftKvServer> | null = this.handlers ?? this.bootHandlers;
        const handler = handlers?.[name];
        if (handler === undefined || this.stopping) unavailable(call, callback);
        else (handler as (call: never, callback: never) => void)(call, callback);
      }) as ERaftKvServer[K];
    const service: ERaftKvServer = {
      requestVote: delegate('requestVote'),
      appendEntries: delegate('appendEntries'),
      appendEntriesStream: (call) => {
        const handlers = this.handlers;
        if (handlers === null || this.stopping) {
          call.emit('error', {
            code: grpc.status.UNAVAILABLE,
            details: 'the meta server is starting or stopping',
          });
        } else handlers.appendEntriesStream(call);
      },
      snapshot: delegate('snapshot'),
      timeoutNow: delegate('timeoutNow'),
      identify: delegate('identify'),
      processRwOperation: delegate('processRwOperation'),
      processRwOperationStream: unimplementedStream(
        'ProcessRWOperationStream (a kv server operation)',
      ),
      clusterConfigChange: delegate('clusterConfigChange'),
      memberChange: delegate('memberChange'),
      transferLeader: delegate('transferLeader'),
      status: delegate('status'),
    };
    this.grpcHost = await startGrpcHost({
      listen: o.listen,
      messageBytesMax: o.messageBytesMax ?? 16 * 1024 * 1024,
      registry: this.registry,
      service,
      serving: () => this.health().healthy,
    });
    if (o.metricsListen) {
      const { host, port } = splitHostPort(o.metricsListen, '--metrics-listen');
      try {
        this.http = await startHttpEndpoint({
          host,
          port,
          registry: this.registry,
          health: () => this.health(),
        });
      } catch (err) {
        this.grpcHost.forceShutdown();
        throw new Error(`cannot listen on ${o.metricsListen}: ${(err as Error).message}`);
      }
    }
    return { address: this.grpcHost.address, metricsAddress: this.metricsAddress };
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
    if (this.grpcHost === null) await this.listen();
    const o = this.options;
    const bootstrap = peers !== null && peers.length > 0 ? peers : null;
    if (bootstrap !== null && !bootstrap.some((m) => m.id === o.id)) {
      throw new RangeError(
        `--peers (${formatPeers(bootstrap)}) does not list this node (--id ${o.id})`,
      );
    }
    const clusterId = o.clusterId ?? 'eraftkv';
    // First of all: the data dir must be this node's (or new).
    const { identity } = await openNodeIdentity(o.dataDir, {
      clusterId,
      kind: 'meta',
      groupId: metaGroupId,
      nodeId: o.id,
    });
    const stateMachine = await TopologyStateMachine.open(join(o.dataDir, 'state'));
    const boot = new RaftServerBoot();
    this.booting = boot;
    this.bootHandlers = { identify: peerServiceHandlers(boot).identify };
    let raft: RaftServer<CommandOutcome>;
    try {
      raft = await RaftServer.open<CommandOutcome>({
        ...o.raft,
        id: o.id,
        groupId: metaGroupId,
        clusterId,
        dataDir: o.dataDir,
        incarnation: identity.incarnation,
        bootstrap,
        stateMachine,
        registry: this.registry,
        logger: this.logger,
        onFatal: (err) => o.onFatal?.(err),
        boot,
      });
    } catch (err) {
      // RaftServer closes the state machine only once open.
      await stateMachine.close();
      throw err;
    } finally {
      this.booting = null;
      this.bootHandlers = null;
    }
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
    this.sources =
      o.sourceGroups ??
      new GrpcSourceGroupClient({ deadlineMs, attemptMs: Math.min(1000, deadlineMs) });
    const propose = (command: TopologyCommand): Promise<CommandOutcome> =>
      this.proposeCommand(command);
    this.slotMoves = new SlotMoveCoordinator({
      propose,
      topology: () => stateMachine.topology,
      isLeader: () => raft.isLeader(),
      confirmLeadership: () => raft.readIndex(),
      sources: this.sources,
      logger: this.logger,
      nowMs: () => Date.now(),
      onSettled: (committed) => metrics.slotMoveSettled(committed),
    });
    this.handlers = {
      ...peerServiceHandlers(raft),
      ...adminHandlers(raft, {
        serverType: 'meta',
        version: o.version ?? '',
        configVersion: () => stateMachine.topology.configVersion,
        dbSizeBytes: () => directorySizeBytes(o.dataDir),
        logger: this.logger,
      }),
      clusterConfigChange: clusterConfigChangeHandler({
        raft,
        propose,
        topology: () => stateMachine.topology,
        slotMoves: this.slotMoves,
        dedupWindowEntries: o.dedupWindowEntries ?? dedupWindowEntriesDefault,
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
    };
    this.slotMoves.watch(o.slotMoveCheckIntervalMs ?? 1000);
    this.reportMembership(bootstrap);
  }

  private async proposeCommand(command: TopologyCommand): Promise<CommandOutcome> {
    const outcome = await this.raft.propose(encodeCommand(command));
    if (outcome === undefined) {
      throw new Error(`the ${command.kind} command was applied without an outcome`);
    }
    return outcome;
  }

  /** Warns when --peers disagrees with the membership the data dir holds (which wins). */
  private reportMembership(bootstrap: Membership | null): void {
    const stored = this.raft.membership();
    if (stored.length === 0) {
      this.logger.info(
        'empty data dir and no --peers: waiting for the meta leader to add this node (ServerJoin)',
      );
      return;
    }
    if (bootstrap === null) return;
    const key = (m: Membership): string =>
      [...m]
        .sort((a, b) => a.id - b.id)
        .map((x) => `${x.id}=${x.address}`)
        .join(',');
    if (key(stored) !== key(bootstrap)) {
      this.logger.warn(
        '--peers disagrees with the membership stored in the data dir; using the stored one',
        {
          peers: formatPeers(bootstrap),
          stored: formatPeers(stored),
        },
      );
    }
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
    await this.grpcHost?.shutdown(this.options.shutdownGraceMs ?? 5000);
    this.sources?.close();
    await (this.raftServer ?? this.booting)?.stop();
    await this.http?.close();
  }

  /** Stops at once, as a crash would (tests). */
  async abort(): Promise<void> {
    this.stopping = true;
    this.slotMoves?.stop();
    this.grpcHost?.forceShutdown();
    this.sources?.close();
    await (this.raftServer ?? this.booting)?.abort();
    await this.http?.close();
  }
}
