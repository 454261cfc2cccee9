// One gRPC channel per server address, shared by every call to it, with short reconnect backoff.
import * as grpc from '@grpc/grpc-js';
import { ERaftKvClient, HealthClient } from '@eraftkv/protocol';

export type UnaryCall<Req, Resp> = (
  req: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (err: grpc.ServiceError | null, resp: Resp) => void,
) => grpc.ClientUnaryCall;

export class Connections {
  private readonly clients = new Map<string, ERaftKvClient>();
  private readonly healthClients = new Map<string, HealthClient>();
  private readonly options: grpc.ChannelOptions;

  constructor(messageBytesMax: number) {
    this.options = {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.min_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.max_send_message_length': messageBytesMax,
      'grpc.max_receive_message_length': messageBytesMax,
    };
  }

  client(address: string): ERaftKvClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ERaftKvClient(address, grpc.credentials.createInsecure(), this.options);
      this.clients.set(address, client);
    }
    return client;
  }

  health(address: string): HealthClient {
    let client = this.healthClients.get(address);
    if (client === undefined) {
      client = new HealthClient(address, grpc.credentials.createInsecure(), this.options);
      this.healthClients.set(address, client);
    }
    return client;
  }

  /**
   * One unary call to `address`, failing after `timeoutMs`. `method` picks the call from the
   * client, bound to it (for example `(c) => c.status.bind(c)`).
   */
  unary<Req, Resp>(
    address: string,
    method: (client: ERaftKvClient) => UnaryCall<Req, Resp>,
    req: Req,
    timeoutMs: number,
  ): Promise<Resp> {
    const client = this.client(address);
    return new Promise<Resp>((resolve, reject) => {
      method(client)(
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + Math.max(1, timeoutMs) },
        (err: grpc.ServiceError | null, resp: Resp) => (err ? reject(err) : resolve(resp)),
      );
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    for (const c of this.healthClients.values()) c.close();
    this.clients.clear();
    this.healthClients.clear();
  }
}
