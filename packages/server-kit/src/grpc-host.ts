// The gRPC server every eraftkv process runs: the ERaftKv service (peer RPCs and the server's
// own), the standard grpc.health.v1 service, a maximum message size, keepalive and idle limits on
// connections, and grpc_server_handled_total{grpc_method, grpc_code} counted for every call, as
// go-grpc-prometheus counts them for etcd.
//
// Requests are decoded by @eraftkv/protocol's request decoders, which never throw: a request that
// does not decode, or that carries an enum value its type does not declare, reaches the per-call
// wrapper below as an InvalidRequest and is answered INVALID_ARGUMENT naming the message type and
// the field (grpc-js itself would answer INTERNAL "Error deserializing request"). Handlers only
// ever see requests that decoded. (ProcessRWOperationStream's decoder leaves enum values to its
// handler, which answers each request's problems in that request's response.)
import * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import {
  eraftKvRequestDecoders,
  eraftKvServiceDefinition,
  HealthCheckResponse_ServingStatus,
  healthRequestDecoders,
  HealthService,
  InvalidRequest,
  type ERaftKvServer,
  type HealthServer,
  type RequestDecoder,
} from '@eraftkv/protocol';

const codeNames: Record<number, string> = {
  [grpc.status.OK]: 'OK',
  [grpc.status.CANCELLED]: 'Canceled',
  [grpc.status.UNKNOWN]: 'Unknown',
  [grpc.status.INVALID_ARGUMENT]: 'InvalidArgument',
  [grpc.status.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [grpc.status.NOT_FOUND]: 'NotFound',
  [grpc.status.ALREADY_EXISTS]: 'AlreadyExists',
  [grpc.status.PERMISSION_DENIED]: 'PermissionDenied',
  [grpc.status.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [grpc.status.FAILED_PRECONDITION]: 'FailedPrecondition',
  [grpc.status.ABORTED]: 'Aborted',
  [grpc.status.OUT_OF_RANGE]: 'OutOfRange',
  [grpc.status.UNIMPLEMENTED]: 'Unimplemented',
  [grpc.status.INTERNAL]: 'Internal',
  [grpc.status.UNAVAILABLE]: 'Unavailable',
  [grpc.status.DATA_LOSS]: 'DataLoss',
  [grpc.status.UNAUTHENTICATED]: 'Unauthenticated',
};

/**
 * How long a connection may stay silent or idle. A peer that vanished without closing its TCP
 * connection (a crashed host, a cut cable, a client that connects and never speaks) stops
 * answering pings and is closed after keepaliveTimeMs + keepaliveTimeoutMs; a live client answers
 * pings whether or not it has calls, so keepalive never cuts it. A connection without calls for
 * connectionIdleMsMax is closed gracefully (GOAWAY): grpc-js and grpc-go clients reconnect on
 * their next call. Peers keep their append stream open, so their connections are never idle.
 */
export interface GrpcConnectionLimits {
  /** How often the server pings each connection (grpc.keepalive_time_ms). */
  readonly keepaliveTimeMs: number;
  /** How long a ping may go unanswered before the connection is closed. */
  readonly keepaliveTimeoutMs: number;
  /** How long a connection may carry no call before it is closed (grpc.max_connection_idle_ms). */
  readonly connectionIdleMsMax: number;
  /** Calls (HTTP/2 streams) open at once on one connection (grpc.max_concurrent_streams). */
  readonly streamsPerConnectionMax: number;
}

export const defaultGrpcConnectionLimits: GrpcConnectionLimits = {
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  connectionIdleMsMax: 15 * 60_000,
  streamsPerConnectionMax: 4096,
};

export interface GrpcHostOptions {
  /** host:port to listen on (port 0 picks a free one). */
  readonly listen: string;
  readonly messageBytesMax: number;
  readonly registry: Registry;
  readonly service: ERaftKvServer;
  /** Whether the node serves (grpc.health.v1 answers SERVING or NOT_SERVING). */
  readonly serving: () => boolean;
  /** Overrides of defaultGrpcConnectionLimits (tests use short ones). */
  readonly connectionLimits?: Partial<GrpcConnectionLimits>;
  /** TLS credentials (NodeTls.serverCredentials); default plaintext. */
  readonly credentials?: grpc.ServerCredentials;
}

export interface GrpcHost {
  /** host:port actually bound. */
  readonly address: string;
  /**
   * Stops accepting calls, lets the calls in flight finish (for at most `graceMs`), then closes
   * whatever is left.
   */
  shutdown(graceMs: number): Promise<void>;
  /** Closes every connection at once. */
  forceShutdown(): void;
}

type UnaryHandler = (
  call: grpc.ServerUnaryCall<unknown, unknown>,
  callback: grpc.sendUnaryData<unknown>,
) => void;
type ServerStreamHandler = (call: grpc.ServerWritableStream<unknown, unknown>) => void;
type StreamHandler = (call: grpc.ServerDuplexStream<unknown, unknown>) => void;

interface MethodDefinition {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** Counts a completed call with its status code. */
type CountCall = (code: grpc.status) => void;

function invalidArgument(req: InvalidRequest): Partial<grpc.StatusObject> {
  return { code: grpc.status.INVALID_ARGUMENT, details: req.message };
}

/**
 * A stream's requests reach its handler through `push` (grpc-js calls it for each decoded
 * message): the first InvalidRequest ends the stream with INVALID_ARGUMENT instead, and nothing
 * after it is read. Answers the handler already wrote are still sent before the status.
 */
function refuseInvalidMessages(call: grpc.ServerDuplexStream<unknown, unknown>): void {
  const push = call.push.bind(call);
  let refused = false;
  call.push = (chunk: unknown): boolean => {
    if (refused) return false;
    if (chunk instanceof InvalidRequest) {
      refused = true;
      call.emit('error', invalidArgument(chunk));
      return false;
    }
    return push(chunk);
  };
}

/**
 * Wraps each handler: an InvalidRequest is answered INVALID_ARGUMENT without reaching the
 * handler, and (with a `counter`) every completed call is counted with its status code.
 */
function guardCalls(
  definitions: Record<string, MethodDefinition>,
  service: grpc.UntypedServiceImplementation,
  counter: ((method: string, type: string) => CountCall) | null,
): grpc.UntypedServiceImplementation {
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const [name, definition] of Object.entries(definitions)) {
    const method = definition.path.split('/').pop() ?? name;
    if (definition.requestStream) {
      const handler = service[name] as StreamHandler;
      const countFor = counter?.(method, 'bidi_stream') ?? null;
      wrapped[name] = ((call: grpc.ServerDuplexStream<unknown, unknown>) => {
        refuseInvalidMessages(call);
        if (countFor !== null) {
          // A stream counts once, when it ends, with the status it ended with.
          let counted = false;
          const count = (code: grpc.status): void => {
            if (counted) return;
            counted = true;
            countFor(code);
          };
          call.on('finish', () => count(grpc.status.OK));
          call.on('error', (err: Partial<grpc.StatusObject>) =>
            count(err.code ?? grpc.status.UNKNOWN),
          );
          call.on('cancelled', () => count(grpc.status.CANCELLED));
        }
        handler(call);
      }) as StreamHandler;
      continue;
    }
    if (definition.responseStream) {
      const handler = service[name] as ServerStreamHandler;
      wrapped[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        if (call.request instanceof InvalidRequest)
          call.emit('error', invalidArgument(call.request));
        else handler(call);
      }) as ServerStreamHandler;
      continue;
    }
    const handler = service[name] as UnaryHandler;
    const countFor = counter?.(method, 'unary') ?? null;
    wrapped[name] = ((
      call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const done: grpc.sendUnaryData<unknown> =
        countFor === null
          ? callback
          : (err, value) => {
              countFor(err ? (err.code ?? grpc.status.UNKNOWN) : grpc.status.OK);
              callback(err, value);
            };
      if (call.request instanceof InvalidRequest) done(invalidArgument(call.request), null);
      else handler(call, done);
    }) as UnaryHandler;
  }
  return wrapped;
}

/** The service definition with request decoders that never throw (see the top of this file). */
function withDecoders<D extends Record<string, object>>(
  definition: D,
  decoders: { readonly [K in keyof D]: RequestDecoder<unknown> },
): grpc.ServiceDefinition {
  const out: Record<string, object> = {};
  for (const name of Object.keys(definition) as (keyof D & string)[]) {
    out[name] = { ...definition[name], requestDeserialize: decoders[name] };
  }
  return out as grpc.ServiceDefinition;
}

function healthService(serving: () => boolean): HealthServer {
  const status = (service: string): HealthCheckResponse_ServingStatus | null => {
    if (service !== '' && service !== 'eraftkv.ERaftKv') return null;
    return serving()
      ? HealthCheckResponse_ServingStatus.SERVING
      : HealthCheckResponse_ServingStatus.NOT_SERVING;
  };
  return {
    check: (call, callback) => {
      const s = status(call.request.service);
      if (s === null)
        callback({
          code: grpc.status.NOT_FOUND,
          details: `unknown service ${call.request.service}`,
        });
      else callback(null, { status: s });
    },
    watch: (call) => {
      let last: HealthCheckResponse_ServingStatus | undefined;
      const send = (): void => {
        const s = status(call.request.service) ?? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN;
        if (s !== last) {
          last = s;
          call.write({ status: s });
        }
      };
      send();
      const timer = setInterval(send, 1000);
      call.on('cancelled', () => clearInterval(timer));
      call.on('close', () => clearInterval(timer));
    },
  };
}

export async function startGrpcHost(options: GrpcHostOptions): Promise<GrpcHost> {
  const counter = new Counter({
    name: 'grpc_server_handled_total',
    help: 'Total number of RPCs completed on the server, regardless of success or failure.',
    labelNames: ['grpc_service', 'grpc_method', 'grpc_type', 'grpc_code'],
    registers: [options.registry],
  });
  const limits = { ...defaultGrpcConnectionLimits, ...options.connectionLimits };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0)
      throw new RangeError(
        `gRPC connection limit ${name} must be a positive integer, got ${value}`,
      );
  }
  const server = new grpc.Server({
    // Channelz bookkeeping costs CPU on every call and nothing here reads it.
    'grpc.enable_channelz': 0,
    'grpc.max_receive_message_length': options.messageBytesMax,
    'grpc.max_send_message_length': options.messageBytesMax,
    'grpc.keepalive_time_ms': limits.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': limits.keepaliveTimeoutMs,
    'grpc.max_connection_idle_ms': limits.connectionIdleMsMax,
    'grpc.max_concurrent_streams': limits.streamsPerConnectionMax,
  });
  const countFor =
    (method: string, type: string): CountCall =>
    (code) =>
      counter.inc({
        grpc_service: 'eraftkv.ERaftKv',
        grpc_method: method,
        grpc_type: type,
        grpc_code: codeNames[code] ?? String(code),
      });
  server.addService(
    withDecoders(eraftKvServiceDefinition, eraftKvRequestDecoders),
    guardCalls(eraftKvServiceDefinition, options.service, countFor),
  );
  server.addService(
    withDecoders(HealthService, healthRequestDecoders),
    guardCalls(HealthService, healthService(options.serving), null),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      options.listen,
      options.credentials ?? grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  ).catch((err: unknown) => {
    throw new Error(`cannot listen on ${options.listen}: ${(err as Error).message}`);
  });
  const host = options.listen.slice(0, options.listen.lastIndexOf(':'));
  return {
    address: `${host}:${port}`,
    shutdown: (graceMs) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
    forceShutdown: () => server.forceShutdown(),
  };
}
