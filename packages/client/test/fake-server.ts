// What the client's tests build their fake servers from: an ERaftKv service whose every method
// but the scripted ones answers UNIMPLEMENTED, bound to 127.0.0.1 on a free port, and an address
// that refuses connections.
import * as grpc from '@grpc/grpc-js';
import { createServer, type AddressInfo } from 'node:net';
import { ERaftKvService, type ERaftKvServer } from '@eraftkv/protocol';

export function unimplemented(_call: unknown, callback: grpc.sendUnaryData<never>): void {
  callback({ code: grpc.status.UNIMPLEMENTED, details: 'not in this fake' }, null);
}

/** Serves `methods` (the rest answer UNIMPLEMENTED) on 127.0.0.1; resolves to host:port. */
export async function serveFake(
  server: grpc.Server,
  methods: Partial<ERaftKvServer>,
): Promise<string> {
  const impl: ERaftKvServer = {
    processRwOperation: unimplemented,
    processRwOperationStream: (call) => call.end(),
    requestVote: unimplemented,
    appendEntries: unimplemented,
    appendEntriesStream: (call) => call.end(),
    snapshot: unimplemented,
    timeoutNow: unimplemented,
    identify: unimplemented,
    clusterConfigChange: unimplemented,
    memberChange: unimplemented,
    transferLeader: unimplemented,
    status: unimplemented,
    ...methods,
  };
  server.addService(ERaftKvService, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return `127.0.0.1:${port}`;
}

/** host:port of a port nothing listens on (bound, then closed): connections to it are refused. */
export async function deadAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}
