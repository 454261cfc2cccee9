// One kv server process (docs/servers-contract.md, "Common to both binaries"): a RaftServer of
// group --group over the data state machine, one gRPC host (peer RPCs, admin RPCs, the kv RPCs,
// grpc.health.v1), an optional HTTP endpoint for /metrics and /health, and the config watcher
// that follows the meta group. The binary and the tests drive it the same way:
//
//   const server = new KvServer(options);
//   await server.listen();        // binds gRPC (port 0 picks one): server.address
//   await server.start(peers);    // opens the data dir and joins (or bootstraps) the group
//   await server.stop();          // graceful: finish calls in flight, stop Raft, close endpoints
//
// Binding comes first so that a group of servers on port 0 can learn each other's addresses
// before any of them bootstraps.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ERaftKvServer } from '@eraftkv/protocol';
import {
  adminHandlers,
  formatPeers,
  groupCaller,
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
} from '@eraftkv/raft-server';
import { type Member } from '@eraftkv/raft';
import { ConfigWatcher } from './config-watcher';
import { DataStateMachine, type KvApplyResult } from './data-state-machine';
import { kvServiceHandlers } from './kv-service';
import { defaultKvLimits, type KvLimits } from './request-validation';

export interface KvServerOptions {
  readonly id: number;
  readonly groupId: number;
  /** host:port for gRPC; port 0 picks a free one. */
  readonly listen: string;
  /** The meta group's gRPC addresses. */
  readonly metaAddresses: readonly string[];
  readonly dataDir: string;
  /** host:port for /metrics and /health; empty or absent: no HTTP endpoint. */
  readonly metricsListen?: string;
  readonly clusterId?: string;
  readonly logger?: Logger;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  readonly snapshotEntries?: number;
  readonly compactionMarginEntries?: number;
  readonly logMemoryBytesMax?: number;
  readonly shutdownGraceMs?: number;
  readonly configPollMs?: number;
  readonly limits?: KvLimits;
  readonly dedupWindowEntries?: number;
  /** Peers to dial through other addresses than they advertise (--peer-route). */
  readonly peerRoutes?: ReadonlyMap<number, string>;
  /** Reported by the Status RPC. */
  readonly version?: string;
}

interface Running {
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  readonly watcher: ConfigWatcher;
  readonly http: HttpEndpoint | null;
  readonly service: ERaftKvServer;
}

type AnyUnaryHandler = (
  call: grpc.ServerUnaryCall<unknown, unknown>,
  callback: grpc.sendUnaryData<unknown>,
) => void;

export class KvServer {
  private host: GrpcHost | null = null;
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
  /** Called once if the RaftServer fails; the binary exits the process. */
  onFatal: (err: Error) => void = () => {};

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
    return this.started().http?.address ?? '';
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

  /** Binds the gRPC host; calls are answered UNAVAILABLE until start() completes. */
  async listen(): Promise<string> {
    if (this.host !== null) throw new Error('the kv server is already listening');
    splitHostPort(this.options.listen, '--listen');
    const dispatch: grpc.UntypedServiceImplementation = {};
    for (const name of [
      'requestVote',
      'appendEntries',
      'snapshot',
      'timeoutNow',
      'identify',
      'processRwOperation',
      'clusterConfigChange',
      'memberChange',
      'transferLeader',
      'status',
    ] as const satisfies readonly (keyof ERaftKvServer)[]) {
      dispatch[name] = ((call, callback) => {
        const running = this.running;
        if (running === null) {
          const booting = this.booting;
          if (name === 'identify' && booting !== null) {
            (peerServiceHandlers(booting).identify as unknown as AnyUnaryHandler)(call, callback);
            return;
          }
          callback({ code: grpc.status.UNAVAILABLE, details: 'the kv server is starting' }, null);
          return;
        }
        (running.service[name] as unknown as AnyUnaryHandler)(call, callback);
      }) satisfies AnyUnaryHandler;
    }
    for (const name of ['processRwOperationStream', 'appendEntriesStream'] as const) {
      const stream = (call: grpc.ServerDuplexStream<unknown, unknown>): void => {
        const running = this.running;
        if (running === null) {
          call.emit('error', {
            code: grpc.status.UNAVAILABLE,
            details: 'the kv server is starting',
          });
          return;
        }
        running.service[name](call);
      };
      dispatch[name] = stream;
    }
    // The limits of one message: a whole read response, or a log entry with room to spare. The
    // Gets that ride in a write request are not bounded by the response budget (the write is
    // applied before their size is known), hence the floor.
    const messageBytesMax = Math.max(
      this.limits.responseBytesMax * 2,
      this.limits.entryBytesMax + 2 * 1024 * 1024,
      64 * 1024 * 1024,
    );
    this.host = await startGrpcHost({
      listen: this.options.listen,
      messageBytesMax,
      registry: this.registry,
      service: dispatch as ERaftKvServer,
      serving: () => !this.stopping && this.health().healthy,
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
    const clusterId = o.clusterId ?? 'eraftkv';
    // First of all: the data dir must be this node's (or new).
    const { identity } = await openNodeIdentity(o.dataDir, {
      clusterId,
      kind: 'kv',
      groupId: o.groupId,
      nodeId: o.id,
    });
    collectDefaultMetrics({ register: this.registry });
    const stateMachine = await DataStateMachine.open({
      path: join(o.dataDir, 'state'),
      dedupWindowEntries: o.dedupWindowEntries ?? 100_000,
      logger: this.logger,
    });
    const boot = new RaftServerBoot();
    this.booting = boot;
    let raft: RaftServer<KvApplyResult>;
    try {
      raft = await RaftServer.open<KvApplyResult>({
        id: o.id,
        groupId: o.groupId,
        clusterId,
        dataDir: o.dataDir,
        incarnation: identity.incarnation,
        bootstrap: peers.length > 0 ? peers : null,
        stateMachine,
        tickMs: o.tickMs,
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        snapshotEntries: o.snapshotEntries,
        compactionMarginEntries: o.compactionMarginEntries,
        logMemoryBytesMax: o.logMemoryBytesMax,
        // An entry larger than the append budget travels alone in a message of at most the budget
        // plus 1 MiB: with the budget at the largest request, every request fits.
        appendBytesMax: this.limits.entryBytesMax,
        peerRoutes: o.peerRoutes,
        registry: this.registry,
        logger: this.logger,
        onFatal: (err) => this.onFatal(err),
        boot,
      });
    } catch (err) {
      await stateMachine.close().catch(() => undefined);
      throw err;
    } finally {
      this.booting = null;
    }
    this.warnIfPeersDisagree(peers, raft.membership());
    const watcher = new ConfigWatcher({
      groupId: o.groupId,
      raft,
      stateMachine,
      meta: groupCaller(),
      metaAddresses: o.metaAddresses,
      pollMs: o.configPollMs ?? 500,
      logger: this.logger.child({ component: 'config-watcher' }),
    });
    const service: ERaftKvServer = {
      ...peerServiceHandlers(raft),
      ...adminHandlers(raft, {
        serverType: 'kv',
        version: o.version ?? '',
        configVersion: () => stateMachine.configVersion(),
        dbSizeBytes: () => directorySizeBytes(o.dataDir),
        stateDigest: () => stateMachine.stateDigest(),
        logger: this.logger,
      }),
      ...kvServiceHandlers({
        groupId: o.groupId,
        raft,
        stateMachine,
        watcher,
        limits: this.limits,
        logger: this.logger,
      }),
    };
    let http: HttpEndpoint | null = null;
    if (o.metricsListen !== undefined && o.metricsListen !== '') {
      const { host, port } = splitHostPort(o.metricsListen, '--metrics-listen');
      try {
        http = await startHttpEndpoint({
          host,
          port,
          registry: this.registry,
          health: () => this.health(),
        });
      } catch (err) {
        await raft.stop();
        throw new Error(`cannot listen on ${o.metricsListen}: ${(err as Error).message}`);
      }
    }
    this.running = { raft, stateMachine, watcher, http, service };
    watcher.start();
    this.logger.info('kv server started', {
      listen: this.address,
      metrics: http?.address ?? '',
      meta: o.metaAddresses.join(','),
      members: formatPeers(raft.membership()),
    });
  }

  /** Whether this node can serve correctly (/health and grpc.health.v1), and why not. */
  health(): HealthReport {
    const corrupt = this.running?.stateMachine.corruption() ?? null;
    if (corrupt !== null) return { healthy: false, reason: corrupt };
    const raft = this.running?.raft ?? this.booting;
    if (raft === null) return { healthy: false, reason: 'starting' };
    return raft.health();
  }

  private warnIfPeersDisagree(peers: readonly Member[], stored: readonly Member[]): void {
    if (peers.length === 0) return;
    const given = formatPeers([...peers].sort((a, b) => a.id - b.id));
    const actual = formatPeers(stored);
    if (given !== actual) {
      this.logger.warn(
        '--peers disagrees with the membership stored in the data dir; the stored membership wins',
        {
          peers: given,
          stored: actual,
        },
      );
    }
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
    if (running !== null) await running.watcher.stop();
    if (this.host !== null) await this.host.shutdown(this.options.shutdownGraceMs ?? 5000);
    if (running !== null) {
      await running.raft.stop();
      if (running.http !== null) await running.http.close();
    }
    this.logger.info('kv server stopped');
  }

  /** Stops at once, as a crash would (tests): connections cut, the Ready in progress abandoned. */
  async abort(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.host?.forceShutdown();
    const running = this.running;
    if (running !== null) {
      await running.watcher.stop();
      await running.raft.abort();
      if (running.http !== null) await running.http.close();
    }
  }
}
