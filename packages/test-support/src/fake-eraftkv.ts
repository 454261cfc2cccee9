// A fake ERaftKv server: the handlers a test gives, and UNIMPLEMENTED for every other RPC of the
// service, built from the service definition (a new RPC in protos/ needs no edit here).
import * as grpc from '@grpc/grpc-js';
import { ERaftKvService, type ERaftKvServer } from '@eraftkv/protocol';
import { startGrpcServer, type StartedServer } from './grpc-server';

/** A handler that refuses a method with UNIMPLEMENTED, of the kind its definition asks for. */
function unimplemented(
  method: { readonly path: string; readonly responseStream: boolean },
  what: string,
): grpc.UntypedHandleCall {
  const status = {
    code: grpc.status.UNIMPLEMENTED,
    details: `${method.path} is not served by ${what}`,
  };
  if (method.responseStream) {
    return (call: grpc.ServerWritableStream<unknown, unknown>) => {
      call.emit('error', status);
    };
  }
  return (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(status, null);
}

/**
 * The implementation of every ERaftKv RPC: `handlers` where given, otherwise an UNIMPLEMENTED
 * answer naming the method and `what` serves it.
 */
export function eraftKvService(
  handlers: Partial<ERaftKvServer>,
  what = 'this fake',
): ERaftKvServer {
  const service: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(ERaftKvService)) {
    service[name] = handlers[name] ?? unimplemented(method, what);
  }
  // A handler for every method of the definition: the shape of ERaftKvServer.
  return service as ERaftKvServer;
}

export interface FakeERaftKvOptions {
  /** Who answers, as UNIMPLEMENTED answers name it (default "this fake"). */
  readonly what?: string;
  readonly serverOptions?: grpc.ServerOptions;
  /** Further services on the same server (grpc.health.v1, say). */
  readonly register?: (server: grpc.Server) => void;
}

/** Starts a fake ERaftKv server on 127.0.0.1 port 0 (see eraftKvService). */
export function startFakeERaftKv(
  handlers: Partial<ERaftKvServer>,
  options: FakeERaftKvOptions = {},
): Promise<StartedServer> {
  return startGrpcServer((server) => {
    server.addService(ERaftKvService, eraftKvService(handlers, options.what));
    options.register?.(server);
  }, options.serverOptions);
}
