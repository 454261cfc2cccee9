// The gRPC server every eraftkv process runs: the ERaftKv service (peer RPCs and the server's
// own), the standard grpc.health.v1 service, a maximum message size, and
// grpc_server_handled_total{grpc_method, grpc_code} counted for every call, as go-grpc-prometheus
// counts them for etcd.
import * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import {
  ERaftKvService,
  HealthCheckResponse_ServingStatus,
  HealthService,
  type ERaftKvServer,
  type HealthServer,
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

export interface GrpcHostOptions {
  /** host:port to listen on (port 0 picks a free one). */
  readonly listen: string;
  readonly messageBytesMax: number;
  readonly registry: Registry;
  readonly service: ERaftKvServer;
  /** Whether the node serves (grpc.health.v1 answers SERVING or NOT_SERVING). */
  readonly serving: () => boolean;
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
type StreamHandler = (call: grpc.ServerDuplexStream<unknown, unknown>) => void;

/** Wraps each unary handler so that every completed call is counted with its status code. */
function countCalls(service: ERaftKvServer, counter: Counter): grpc.UntypedServiceImplementation {
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const [name, definition] of Object.entries(ERaftKvService)) {
    const method = definition.path.split('/').pop() ?? name;
    if (definition.requestStream) {
      // A stream counts once, when it ends, with the status it ended with.
      const handler = service[name as keyof ERaftKvServer] as unknown as StreamHandler;
      const labels = {
        grpc_service: 'eraftkv.ERaftKv',
        grpc_method: method,
        grpc_type: 'bidi_stream',
      };
      wrapped[name] = ((call: grpc.ServerDuplexStream<unknown, unknown>) => {
        let counted = false;
        const count = (code: grpc.status): void => {
          if (counted) return;
          counted = true;
          counter.inc({ ...labels, grpc_code: codeNames[code] ?? String(code) });
        };
        call.on('finish', () => count(grpc.status.OK));
        call.on('error', (err: Partial<grpc.StatusObject>) =>
          count(err.code ?? grpc.status.UNKNOWN),
        );
        call.on('cancelled', () => count(grpc.status.CANCELLED));
        handler(call);
      }) as StreamHandler;
      continue;
    }
    const handler = service[name as keyof ERaftKvServer] as unknown as UnaryHandler;
    const labels = { grpc_service: 'eraftkv.ERaftKv', grpc_method: method, grpc_type: 'unary' };
    wrapped[name] = ((
      call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      handler(call, (err, value) => {
        const code = err ? (err.code ?? grpc.status.UNKNOWN) : grpc.status.OK;
        counter.inc({ ...labels, grpc_code: codeNames[code] ?? String(code) });
        callback(err, value);
      });
    }) as UnaryHandler;
  }
  return wrapped;
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
  const server = new grpc.Server({
    // Channelz bookkeeping costs CPU on every call and nothing here reads it.
    'grpc.enable_channelz': 0,
    'grpc.max_receive_message_length': options.messageBytesMax,
    'grpc.max_send_message_length': options.messageBytesMax,
  });
  server.addService(ERaftKvService, countCalls(options.service, counter));
  server.addService(HealthService, healthService(options.serving));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(options.listen, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
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
