// The endpoints of one server process, the same for the meta and the kv binaries: the gRPC host
// (the ERaftKv service and grpc.health.v1) and the optional HTTP endpoint (/metrics, /health).
// Both are bound first, before the data dir is opened, so that a group of nodes on port 0 can learn
// each other's addresses before any of them bootstraps. Until the server hands over its handlers
// every call is answered UNAVAILABLE, except Identify, which the booting Raft node answers (a new
// group's members ask each other who they are before bootstrapping).
//
//   const host = await NodeHost.bind({ kind: 'kv', listen, metricsListen, ... });
//   host.boot(raft);              // Identify is answered while the RaftServer opens
//   host.serve(handlers);         // every RPC from now on
//   await host.shutdown(graceMs); // refuse new calls, let calls in flight finish
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { ERaftKvService, type ERaftKvServer } from '@eraftkv/protocol';
import {
  peerServiceHandlers,
  startHttpEndpoint,
  type HealthReport,
  type HttpEndpoint,
  type NodeKind,
  type PeerInbox,
} from '@eraftkv/raft-server';
import { startGrpcHost, type GrpcHost } from './grpc-host';
import { splitHostPort } from './peers';
import type { NodeTls } from './tls';

export interface NodeHostOptions {
  readonly kind: NodeKind;
  /** host:port for gRPC (port 0 picks a free one). */
  readonly listen: string;
  /** host:port for /metrics and /health; '' for no HTTP endpoint. */
  readonly metricsListen: string;
  /** Serve /debug/pprof/profile on the HTTP endpoint (--enable-pprof). */
  readonly enablePprof?: boolean;
  readonly messageBytesMax: number;
  readonly registry: Registry;
  /** Whether this node can serve correctly, and why not (/health, grpc.health.v1). */
  readonly health: () => HealthReport;
  /** TLS for the gRPC port and peer authentication; null or absent: plaintext. */
  readonly tls?: NodeTls | null;
}

type UnaryHandler = (
  call: grpc.ServerUnaryCall<unknown, unknown>,
  callback: grpc.sendUnaryData<unknown>,
) => void;
type StreamHandler = (call: grpc.ServerDuplexStream<unknown, unknown>) => void;

function unavailable(host: NodeHost | null): string {
  return host === null ? 'the server is starting' : host.unavailableReason();
}

export class NodeHost {
  private handlers: ERaftKvServer | null = null;
  private identify: UnaryHandler | null = null;
  private stopping = false;

  private constructor(
    private readonly options: NodeHostOptions,
    private readonly grpcHost: GrpcHost,
    private readonly http: HttpEndpoint | null,
  ) {}

  /** Binds the gRPC host and the HTTP endpoint; fails naming the flag whose address is taken. */
  static async bind(o: NodeHostOptions): Promise<NodeHost> {
    splitHostPort(o.listen, '--listen');
    const metrics =
      o.metricsListen === '' ? null : splitHostPort(o.metricsListen, '--metrics-listen');
    let self: NodeHost | null = null;
    const dispatch: grpc.UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(ERaftKvService)) {
      const key = name as keyof ERaftKvServer;
      if (method.requestStream || method.responseStream) {
        dispatch[key] = ((call) => {
          const handler = self?.current(key) as StreamHandler | undefined;
          if (handler === undefined) {
            call.emit('error', { code: grpc.status.UNAVAILABLE, details: unavailable(self) });
          } else handler(call);
        }) satisfies StreamHandler;
      } else {
        dispatch[key] = ((call, callback) => {
          const handler = self?.current(key) as UnaryHandler | undefined;
          if (handler === undefined) {
            callback({ code: grpc.status.UNAVAILABLE, details: unavailable(self) }, null);
          } else handler(call, callback);
        }) satisfies UnaryHandler;
      }
    }
    const grpcHost = await startGrpcHost({
      listen: o.listen,
      messageBytesMax: o.messageBytesMax,
      registry: o.registry,
      service: dispatch as ERaftKvServer,
      serving: () => self !== null && !self.stopping && o.health().healthy,
      credentials: o.tls?.serverCredentials(),
    });
    let http: HttpEndpoint | null = null;
    if (metrics !== null) {
      try {
        http = await startHttpEndpoint({
          ...metrics,
          registry: o.registry,
          health: o.health,
          enablePprof: o.enablePprof,
        });
      } catch (err) {
        grpcHost.forceShutdown();
        throw new Error(`--metrics-listen ${o.metricsListen}: ${(err as Error).message}`);
      }
    }
    self = new NodeHost(o, grpcHost, http);
    return self;
  }

  /** The gRPC address actually bound. */
  get address(): string {
    return this.grpcHost.address;
  }

  /** The HTTP endpoint's address ('' when there is none). */
  get metricsAddress(): string {
    return this.http?.address ?? '';
  }

  /** While the Raft node opens (and may wait for its --peers), it answers Identify. */
  boot(inbox: PeerInbox): void {
    this.identify = peerServiceHandlers(inbox, this.options.tls?.authenticatePeer)
      .identify as unknown as UnaryHandler;
  }

  /** From now on every RPC goes to `handlers`. */
  serve(handlers: ERaftKvServer): void {
    this.handlers = handlers;
    this.identify = null;
  }

  private current(name: keyof ERaftKvServer): UnaryHandler | StreamHandler | undefined {
    if (this.stopping) return undefined;
    if (this.handlers !== null) return this.handlers[name] as UnaryHandler | StreamHandler;
    return name === 'identify' ? (this.identify ?? undefined) : undefined;
  }

  /** Why a call is not served now. */
  unavailableReason(): string {
    return `the ${this.options.kind} server is ${this.stopping ? 'stopping' : 'starting'}`;
  }

  /** Refuses new calls and lets those in flight finish, for at most graceMs. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    await this.grpcHost.shutdown(graceMs);
  }

  /** Cuts every connection at once, as a crash would (tests). */
  forceShutdown(): void {
    this.stopping = true;
    this.grpcHost.forceShutdown();
  }

  /** Closes the HTTP endpoint (last, so that /health answers while the node stops). */
  async closeHttp(): Promise<void> {
    await this.http?.close();
  }
}
