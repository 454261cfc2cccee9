// One gRPC channel per server address, shared by every call to it, with short reconnect backoff.
// Its channels use @eraftkv/protocol's grpcChannelOptions, the one set every eraftkv process uses.
import * as grpc from '@grpc/grpc-js';
import {
  defaultMessageBytesMax,
  ERaftKvWireClient,
  type ERaftKvClient,
  grpcChannelOptions,
  HealthClient,
  type ClientOperationReq,
  type ClientOperationResp,
} from '@eraftkv/protocol';

export type UnaryCall<Req, Resp> = (
  req: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (err: grpc.ServiceError | null, resp: Resp) => void,
) => grpc.ClientUnaryCall;

/** An error shaped like the ones grpc-js hands to unary callbacks. */
export function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata: new grpc.Metadata(),
  });
}

interface PendingRequest {
  readonly resolve: (resp: ClientOperationResp) => void;
  readonly reject: (err: grpc.ServiceError) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Data requests to one server over one ProcessRWOperationStream: many in flight at once, each
 * matched to its answer by request id. Far cheaper per request than a unary call (no HTTP/2
 * stream, headers and trailers per request). When the stream breaks, every request in flight
 * fails as UNAVAILABLE (the client retries them with the same request ids, so writes still apply
 * once) and the next request opens a new stream.
 */
class RequestStream {
  private call: grpc.ClientDuplexStream<ClientOperationReq, ClientOperationResp> | null = null;
  private readonly pending = new Map<number, PendingRequest>();
  private nextId = 0;
  /** The server does not offer the stream (it answered UNIMPLEMENTED): use unary calls. */
  unsupported = false;

  constructor(private readonly client: ERaftKvClient) {}

  send(req: ClientOperationReq, timeoutMs: number): Promise<ClientOperationResp> {
    const call = this.open();
    const id = (this.nextId = this.nextId >= Number.MAX_SAFE_INTEGER ? 1 : this.nextId + 1);
    return new Promise<ClientOperationResp>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.pending.delete(id);
          reject(
            serviceError(grpc.status.DEADLINE_EXCEEDED, 'no answer on the request stream in time'),
          );
        },
        Math.max(1, timeoutMs),
      );
      this.pending.set(id, { resolve, reject, timer });
      call.write({ ...req, requestId: id });
    });
  }

  private open(): grpc.ClientDuplexStream<ClientOperationReq, ClientOperationResp> {
    if (this.call !== null) return this.call;
    const call = this.client.processRwOperationStream();
    call.on('data', (resp: ClientOperationResp) => {
      const request = this.pending.get(resp.requestId);
      if (request === undefined) return; // timed out already
      this.pending.delete(resp.requestId);
      clearTimeout(request.timer);
      if (resp.statusCode !== 0) request.reject(serviceError(resp.statusCode, resp.errorMessage));
      else request.resolve(resp);
    });
    call.on('error', (err: grpc.ServiceError) => this.broken(call, err));
    call.on('end', () =>
      this.broken(
        call,
        serviceError(grpc.status.UNAVAILABLE, 'the server closed the request stream'),
      ),
    );
    this.call = call;
    return call;
  }

  private broken(
    call: grpc.ClientDuplexStream<ClientOperationReq, ClientOperationResp>,
    err: grpc.ServiceError,
  ): void {
    if (this.call === call) this.call = null;
    if (err.code === grpc.status.UNIMPLEMENTED) this.unsupported = true;
    const failure =
      err.code === grpc.status.UNIMPLEMENTED || err.code === grpc.status.CANCELLED
        ? err
        : serviceError(
            grpc.status.UNAVAILABLE,
            `the request stream broke: ${err.details || err.message}`,
          );
    for (const [id, request] of this.pending) {
      clearTimeout(request.timer);
      this.pending.delete(id);
      request.reject(failure);
    }
  }

  close(): void {
    const call = this.call;
    this.call = null;
    call?.cancel();
  }
}

export class Connections {
  private readonly clients = new Map<string, ERaftKvClient>();
  private readonly streams = new Map<string, RequestStream>();
  private readonly healthClients = new Map<string, HealthClient>();
  private readonly options: grpc.ChannelOptions;
  private isClosed = false;
  private readonly closing = new AbortController();

  constructor(
    messageBytesMax = defaultMessageBytesMax,
    private readonly credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {
    this.options = grpcChannelOptions(messageBytesMax);
  }

  /** close() was called: calls through a LeaderCaller over this pool are refused. */
  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Aborted by close(). A closed channel lets the calls already on it go on, so a stream that
   * outlives single calls (a watch) ends on this.
   */
  get closeSignal(): AbortSignal {
    return this.closing.signal;
  }

  client(address: string): ERaftKvClient {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ERaftKvWireClient(address, this.credentials, this.options);
      this.clients.set(address, client);
    }
    return client;
  }

  health(address: string): HealthClient {
    let client = this.healthClients.get(address);
    if (client === undefined) {
      client = new HealthClient(address, this.credentials, this.options);
      this.healthClients.set(address, client);
    }
    return client;
  }

  /**
   * Whether the last attempt to connect to `address` failed (its channel is in
   * TRANSIENT_FAILURE: the connection was refused, or the host could not be reached). A call that
   * then failed UNAVAILABLE never left this process.
   */
  cannotConnect(address: string): boolean {
    const client = this.clients.get(address);
    return (
      client !== undefined &&
      client.getChannel().getConnectivityState(false) === grpc.connectivityState.TRANSIENT_FAILURE
    );
  }

  /**
   * Whether the channel to `address` has a connection (READY). A call that failed
   * DEADLINE_EXCEEDED while it had none was still waiting for a connection: it never left this
   * process.
   */
  connected(address: string): boolean {
    const client = this.clients.get(address);
    return (
      client !== undefined &&
      client.getChannel().getConnectivityState(false) === grpc.connectivityState.READY
    );
  }

  /** Closes the channels to every address but `addresses` (the servers a caller still uses). */
  closeExcept(addresses: readonly string[]): void {
    for (const [address, client] of this.clients) {
      if (addresses.includes(address)) continue;
      this.streams.get(address)?.close();
      this.streams.delete(address);
      client.close();
      this.clients.delete(address);
    }
    for (const [address, client] of this.healthClients) {
      if (addresses.includes(address)) continue;
      client.close();
      this.healthClients.delete(address);
    }
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

  /**
   * A data request to `address`: over its request stream, or as a unary call when the server
   * offers no stream.
   */
  async processRw(
    address: string,
    req: ClientOperationReq,
    timeoutMs: number,
  ): Promise<ClientOperationResp> {
    let stream = this.streams.get(address);
    if (stream === undefined) {
      stream = new RequestStream(this.client(address));
      this.streams.set(address, stream);
    }
    if (!stream.unsupported) {
      try {
        return await stream.send(req, timeoutMs);
      } catch (err) {
        if ((err as grpc.ServiceError).code !== grpc.status.UNIMPLEMENTED) throw err;
      }
    }
    return this.unary(address, (c) => c.processRwOperation.bind(c), req, timeoutMs);
  }

  close(): void {
    this.isClosed = true;
    this.closing.abort();
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
    for (const c of this.clients.values()) c.close();
    for (const c of this.healthClients.values()) c.close();
    this.clients.clear();
    this.healthClients.clear();
  }
}
