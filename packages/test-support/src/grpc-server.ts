// gRPC servers for tests: bound on 127.0.0.1 port 0, so tests never pick ports that collide.
import * as grpc from '@grpc/grpc-js';

export interface StartedServer {
  readonly server: grpc.Server;
  readonly port: number;
  /** 127.0.0.1:<port> */
  readonly address: string;
  /** Stops the server at once, ending the calls in progress (idempotent). */
  close(): Promise<void>;
}

/**
 * Starts a gRPC server on 127.0.0.1, port 0, with the services `register` adds to it.
 */
export async function startGrpcServer(
  register: (server: grpc.Server) => void,
  options: grpc.ServerOptions = {},
): Promise<StartedServer> {
  const server = new grpc.Server(options);
  register(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    close: () => {
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}

/** host:port of a port nothing listens on (bound, then closed): connections to it are refused. */
export async function closedAddress(): Promise<string> {
  const started = await startGrpcServer(() => {});
  await started.close();
  return started.address;
}
