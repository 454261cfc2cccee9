// One kv server process (docs/servers-contract.md, "Common to both binaries"): a RaftServer of
// group --group over the data state machine, the node's endpoints (gRPC: peer RPCs, admin RPCs,
// the kv RPCs, grpc.health.v1; HTTP: /metrics and /health), and the config watcher that follows
// the meta group. It is assembled from server-kit exactly as the meta server is (NodeHost, then
// openRaftNode, then the handlers). The binary and the tests drive it the same way:
//
//   const server = new KvServer(options);
//   await server.listen();        // binds gRPC (port 0 picks one) and HTTP: server.address
//   await server.start(peers);    // opens the data dir and joins (or bootstraps) the group
//   await server.stop();          // graceful: finish calls in flight, stop Raft, close endpoints
//
// Binding comes first so that a group of servers on port 0 can learn each other's addresses
// before any of them bootstraps.
import { join } from 'node:path';
import { collectDefaultMetrics, Counter, Registry } from 'prom-client';
import type { ERaftKvServer } from '@eraftkv/protocol';
import {
  adminHandlers,
  advertisedAddressProblem,
  formatPeers,
  groupCaller,
  NodeHost,
  NodeTls,
  AccessControl,
  anonymous,
  type NodeTlsFlags,
  openRaftNode,
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
import { type Member } from '@eraftkv/raft';
import { ConfigWatcher } from './config-watcher';
import { ConsistencyChecker, hashKvHandler } from './consistency-check';
import { defaultWatchLimits, watchHandler, type WatchLimits } from './watch-service';
import { LeaseKeeper } from './lease-keeper';
import { leaseHandlers } from './lease-service';

/** The longest lease TTL granted when not told (one year). */
export const leaseTtlMaxSecondsDefault = 365 * 24 * 3600;
import { backupHandler } from './backup-service';
import { Connections } from '@eraftkv/client';
import { SlotImporter } from './slot-importer';
import { DataStateMachine, type KvApplyResult } from './data-state-machine';
import { kvServiceHandlers } from './kv-service';
import { defaultKvLimits, type KvLimits } from './request-validation';

export interface KvServerOptions {
  readonly id: number;
  readonly groupId: number;
  /** host:port for gRPC; port 0 picks a free one. */
  readonly listen: string;
  /** What peers and clients are told to dial (default: the bound address). */
  readonly advertise?: string;
  /** Where /metrics is reached from elsewhere (default: the bound HTTP address). */
  readonly metricsAdvertise?: string;
  /** The meta group's gRPC addresses. */
  readonly metaAddresses: readonly string[];
  readonly dataDir: string;
  /** host:port for /metrics and /health; empty or absent: no HTTP endpoint. */
  readonly metricsListen?: string;
  /** Serve /debug/pprof/profile on the HTTP endpoint (--enable-pprof). */
  readonly enablePprof?: boolean;
  readonly clusterId?: string;
  readonly logger?: Logger;
  /** Raft settings (the common node flags; --peer-route as peerRoutes). */
  readonly raft?: RaftTuning;
  readonly shutdownGraceMs?: number;
  readonly configPollMs?: number;
  /** Read the whole state once at start, refusing a damaged one (default true). */
  readonly verifyStateOnStart?: boolean;
  /** How often the leader checks that every replica holds the same state (0: never). */
  readonly consistencyCheckIntervalMs?: number;
  readonly limits?: KvLimits;
  readonly dedupWindowEntries?: number;
  /** Revisions of watch history kept (--watch-history-revisions). */
  readonly watchHistoryRevisions?: number;
  /** The longest TTL a lease is granted with (--lease-ttl-max-seconds). */
  readonly leaseTtlMaxSeconds?: number;
  /** Bounds of watch streams (--watch-stream-buffer-bytes, --watches-max, ...). */
  readonly watchLimits?: WatchLimits;
  /** Reported by the Status RPC. */
  readonly version?: string;
  /** Called once if Raft fails in a way that leaves the node's state unknown (the binary exits). */
  readonly onFatal?: (err: Error) => void;
  /** TLS (the --cert-file ... flags); absent: plaintext. */
  readonly tls?: NodeTlsFlags;
}

interface Running {
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  readonly watcher: ConfigWatcher;
  readonly importer: SlotImporter;
  readonly checker: ConsistencyChecker;
  readonly checkerConnections: Connections;
  readonly leaseKeeper: LeaseKeeper;
}

export class KvServer {
  private host: NodeHost | null = null;
  private tls: NodeTls | null = null;
  private running: Running | null = null;
  /**
   * The Raft node while it starts: it answers Identify (a new group's members ask each other who
   * they are before bootstrapping) before anything else is served.
   */
  private booting: RaftServerBoot | null = null;
  private stopping = false;
  private readonly logger: Logger;
  private readonly limits: KvLimits;
  /** One registry per server, so that several servers can share a test process. */
  private readonly registry = new Registry();
  private readonly slotMigratingAnswers = new Counter({
    name: 'eraftkv_kv_slot_migrating_answers_total',
    help: 'Client requests answered SLOT_MIGRATING: their slot was frozen by a move (clients retry them).',
    labelNames: ['group_id', 'node_id'],
    registers: [this.registry],
  });

  constructor(private readonly options: KvServerOptions) {
    this.logger = (options.logger ?? silentLogger).child({
      group: options.groupId,
      node: options.id,
    });
    this.limits = options.limits ?? defaultKvLimits;
  }

  /** The gRPC address actually bound (after listen()). */
  get address(): string {
    if (this.host === null) throw new Error('the kv server is not listening yet');
    return this.host.address;
  }

  /** The HTTP endpoint's address ('' when there is none). */
  get metricsAddress(): string {
    return this.host?.metricsAddress ?? '';
  }

  get raft(): RaftServer<KvApplyResult> {
    return this.started().raft;
  }

  get stateMachine(): DataStateMachine {
    return this.started().stateMachine;
  }

  private started(): Running {
    if (this.running === null) throw new Error('the kv server is not started');
    return this.running;
  }

  /** Binds the gRPC host and the HTTP endpoint; calls are UNAVAILABLE until start() completes. */
  async listen(): Promise<string> {
    if (this.host !== null) throw new Error('the kv server is already listening');
    // The limits of one message: a whole read response, or a log entry with room to spare. The
    // Gets that ride in a write request are not bounded by the response budget (the write is
    // applied before their size is known), hence the floor.
    const messageBytesMax = Math.max(
      this.limits.responseBytesMax * 2,
      this.limits.entryBytesMax + 2 * 1024 * 1024,
      64 * 1024 * 1024,
    );
    const tlsFlags = this.options.tls;
    this.tls = tlsFlags === undefined ? null : NodeTls.fromFlags(tlsFlags, this.logger);
    this.host = await NodeHost.bind({
      tls: this.tls,
      kind: 'kv',
      listen: this.options.listen,
      metricsListen: this.options.metricsListen ?? '',
      enablePprof: this.options.enablePprof,
      messageBytesMax,
      registry: this.registry,
      health: () => this.health(),
    });
    return this.host.address;
  }

  /**
   * Opens the data dir and starts the group member. `peers` bootstraps an empty data dir (empty:
   * join an existing group, waiting for its leader to add this node); on a data dir with a
   * membership, that membership wins and a disagreeing `peers` is logged as a warning.
   */
  async start(peers: readonly Member[]): Promise<void> {
    if (this.host === null) await this.listen();
    if (this.running !== null) throw new Error('the kv server is already started');
    const o = this.options;
    const host = this.host as NodeHost;
    collectDefaultMetrics({ register: this.registry });
    const boot = new RaftServerBoot();
    this.booting = boot;
    let opened: { raft: RaftServer<KvApplyResult>; stateMachine: DataStateMachine };
    try {
      opened = await openRaftNode<KvApplyResult, DataStateMachine>({
        kind: 'kv',
        clusterId: o.clusterId ?? 'eraftkv',
        groupId: o.groupId,
        id: o.id,
        dataDir: o.dataDir,
        peers,
        raft: {
          ...o.raft,
          peerCredentials: this.tls?.peerCredentials(),
          // An entry larger than the append budget travels alone in a message of at most the
          // budget plus 1 MiB: with the budget at the largest request, every request fits.
          appendBytesMax: this.limits.entryBytesMax,
        },
        host,
        boot,
        registry: this.registry,
        logger: this.logger,
        onFatal: (err) => o.onFatal?.(err),
        openStateMachine: () =>
          DataStateMachine.open({
            path: join(o.dataDir, 'state'),
            dedupWindowEntries: o.dedupWindowEntries ?? 100_000,
            watchHistoryRevisions: o.watchHistoryRevisions,
            groupId: o.groupId,
            logger: this.logger,
            verifyOnOpen: o.verifyStateOnStart ?? true,
          }),
      });
    } finally {
      this.booting = null;
    }
    const { raft, stateMachine } = opened;
    const watcher = new ConfigWatcher({
      groupId: o.groupId,
      raft,
      stateMachine,
      meta: groupCaller({ credentials: this.tls?.peerCredentials() }),
      metaAddresses: o.metaAddresses,
      pollMs: o.configPollMs ?? 500,
      logger: this.logger.child({ component: 'config-watcher' }),
    });
    const importer = new SlotImporter({
      groupId: o.groupId,
      raft,
      stateMachine,
      sources: groupCaller({ credentials: this.tls?.peerCredentials() }),
      catchUp: () => watcher.pollOnce(),
      entryBytesMax: this.limits.entryBytesMax,
      logger: this.logger.child({ component: 'slot-importer' }),
    });
    const metricLabels = { group_id: String(o.groupId), node_id: String(o.id) };
    this.slotMigratingAnswers.inc(metricLabels, 0);
    const access = new AccessControl(() => stateMachine.auth(), this.tls?.callerOf ?? anonymous);
    const leaseKeeper = new LeaseKeeper({
      raft,
      stateMachine,
      logger: this.logger.child({ component: 'leases' }),
    });
    const checkerConnections = new Connections(undefined, this.tls?.peerCredentials());
    const checker = new ConsistencyChecker({
      groupId: o.groupId,
      nodeId: o.id,
      raft,
      stateMachine,
      connections: checkerConnections,
      registry: this.registry,
      logger: this.logger.child({ component: 'consistency-check' }),
    });
    host.serve({
      ...peerServiceHandlers(raft, this.tls?.authenticatePeer),
      ...adminHandlers(raft, {
        access,
        serverType: 'kv',
        version: o.version ?? '',
        configVersion: () => stateMachine.configVersion(),
        dbSizeBytes: () => directorySizeBytes(o.dataDir),
        stateDigest: () => stateMachine.stateDigest(),
        slotsWithKeys: () => stateMachine.slotsWithKeysAt(),
        checkDigest: (index) => stateMachine.checkDigest(index),
        logger: this.logger,
      }),
      ...kvServiceHandlers({
        groupId: o.groupId,
        raft,
        stateMachine,
        watcher,
        importer,
        limits: this.limits,
        logger: this.logger,
        onSlotMigrating: () => this.slotMigratingAnswers.inc(metricLabels),
        authenticateMember: this.tls?.authenticateMember,
        access,
      }),
      hashKv: hashKvHandler(o.groupId, checker, access, this.logger),
      backup: backupHandler({
        groupId: o.groupId,
        raft,
        stateMachine,
        access,
        logger: this.logger,
      }),
      ...leaseHandlers({
        groupId: o.groupId,
        raft,
        stateMachine,
        keeper: leaseKeeper,
        access,
        ttlSecondsMax: o.leaseTtlMaxSeconds ?? leaseTtlMaxSecondsDefault,
        logger: this.logger,
      }),
      watch: watchHandler({
        groupId: o.groupId,
        stateMachine,
        limits: this.limits,
        watchLimits: o.watchLimits ?? defaultWatchLimits,
        access,
        watcher,
        registry: this.registry,
        metricLabels,
        logger: this.logger,
      }),
    } satisfies ERaftKvServer);
    this.running = {
      raft,
      stateMachine,
      watcher,
      importer,
      checker,
      checkerConnections,
      leaseKeeper,
    };
    leaseKeeper.start();
    watcher.start();
    checker.start(o.consistencyCheckIntervalMs ?? 0);
    this.logger.info('kv server started', {
      listen: this.address,
      advertise: o.advertise ?? this.address,
      metrics: host.metricsAddress,
      metricsAdvertise: o.metricsAdvertise ?? host.metricsAddress,
      meta: o.metaAddresses.join(','),
      members: formatPeers(raft.membership()),
    });
    const moved = advertisedAddressProblem(raft.membership(), o.id, o.advertise);
    if (moved !== null) this.logger.warn(moved);
  }

  /** Whether this node can serve correctly (/health and grpc.health.v1), and why not. */
  health(): HealthReport {
    const corrupt = this.running?.stateMachine.corruption() ?? null;
    if (corrupt !== null) return { healthy: false, reason: corrupt };
    const raft = this.running?.raft ?? this.booting;
    if (raft === null) return { healthy: false, reason: 'starting' };
    return raft.health();
  }

  /**
   * Graceful stop: stop following the meta group, stop accepting calls and let those in flight
   * finish (at most the shutdown grace), stop the RaftServer (it finishes the Ready in
   * progress), close the HTTP endpoint.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const running = this.running;
    await this.booting?.stop();
    if (running !== null) {
      running.importer.stop();
      running.checker.stop();
      running.leaseKeeper.stop();
      await running.watcher.stop();
    }
    await this.host?.shutdown(this.options.shutdownGraceMs ?? 5000);
    if (running !== null) await running.raft.stop();
    running?.checkerConnections.close();
    await this.host?.closeHttp();
    this.tls?.close();
    this.logger.info('kv server stopped');
  }

  /** Reads the TLS files again now (SIGHUP); no-op without TLS. */
  reloadTls(): void {
    this.tls?.reload();
  }

  /** Stops at once, as a crash would (tests): connections cut, the Ready in progress abandoned. */
  async abort(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.host?.forceShutdown();
    const running = this.running;
    if (running !== null) {
      running.importer.stop();
      running.checker.stop();
      running.leaseKeeper.stop();
      await running.watcher.stop();
      await running.raft.abort();
      running.checkerConnections.close();
    }
    await this.booting?.stop();
    await this.host?.closeHttp();
    this.tls?.close();
  }
}
