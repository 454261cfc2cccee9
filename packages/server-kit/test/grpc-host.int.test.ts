// The gRPC host over real gRPC on 127.0.0.1: requests that do not decode, or carry undeclared
// enum values, are INVALID_ARGUMENT naming the message type and field (never INTERNAL, never seen
// by a handler), on unary calls and on streams; and connections that go silent are closed.
import * as grpc from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { ClientOperationReq, ClientOperationResp, ClientOpType, KvOpPair } from '@eraftkv/protocol';
import { startGrpcHost, type GrpcHost } from '../src';
import { eraftKvService, waitFor } from '@eraftkv/test-support';

const identity = (b: Buffer): Buffer => b;

/** A KvOpPair whose op_type is the raw varint `opType`. */
function rawPut(opType: bigint): Uint8Array {
  const op = new BinaryWriter()
    .uint32(8)
    .uint64(opType)
    .uint32(18)
    .bytes(Buffer.from('k'))
    .finish();
  return new BinaryWriter().uint32(34).bytes(op).finish();
}

function validRequest(requestId: number): Buffer {
  const req = ClientOperationReq.fromPartial({
    requestId,
    kvs: [KvOpPair.fromPartial({ opType: ClientOpType.Get, key: Buffer.from('k') })],
  });
  return Buffer.from(ClientOperationReq.encode(req).finish());
}

describe('startGrpcHost', () => {
  const registry = new Registry();
  /** Requests the handlers saw. */
  const seen: ClientOperationReq[] = [];
  let host: GrpcHost;
  let client: grpc.Client;
  const sockets: Socket[] = [];

  const service = eraftKvService({
    processRwOperation: (call, callback) => {
      seen.push(call.request);
      callback(null, ClientOperationResp.fromPartial({}));
    },
    processRwOperationStream: (call) => {
      call.on('data', (req: ClientOperationReq) => {
        seen.push(req);
        call.write(ClientOperationResp.fromPartial({ requestId: req.requestId }));
      });
      call.on('end', () => call.end());
    },
  });

  const unary = (path: string, bytes: Uint8Array): Promise<Buffer> =>
    new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        path,
        identity,
        identity,
        Buffer.from(bytes),
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (err, value) => (err ? reject(err) : resolve(value as Buffer)),
      ),
    );

  const refusal = async (path: string, bytes: Uint8Array): Promise<grpc.ServiceError> => {
    const err = await unary(path, bytes).then(
      () => {
        throw new Error(`${path} was answered`);
      },
      (e: grpc.ServiceError) => e,
    );
    return err;
  };

  beforeAll(async () => {
    host = await startGrpcHost({
      listen: '127.0.0.1:0',
      messageBytesMax: 1024 * 1024,
      registry,
      service,
      serving: () => true,
      connectionLimits: { keepaliveTimeMs: 300, keepaliveTimeoutMs: 300 },
    });
    client = new grpc.Client(host.address, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    for (const s of sockets) s.destroy();
    client.close();
    host.forceShutdown();
  });

  beforeEach(() => {
    seen.length = 0;
  });

  it('answers INVALID_ARGUMENT naming the type and the reason for bytes that do not decode', async () => {
    // Field 4 (kvs) announces 16 bytes; one follows.
    const err = await refusal('/eraftkv.ERaftKv/ProcessRWOperation', Buffer.from([0x22, 0x10, 1]));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe(
      'the request does not decode as eraftkv.ClientOperationReq: premature EOF',
    );
    expect(seen).toHaveLength(0);
    const status = await refusal('/eraftkv.ERaftKv/Status', Buffer.from([0xff]));
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.details).toMatch(/eraftkv\.StatusReq/);
    const health = await refusal('/grpc.health.v1.Health/Check', Buffer.from([0x0a, 0x05]));
    expect(health.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(health.details).toMatch(/grpc\.health\.v1\.HealthCheckRequest: premature EOF/);
  });

  it('refuses op_type 2^32 + 1 (which int32 decoding truncates to Put) naming the field', async () => {
    const err = await refusal('/eraftkv.ERaftKv/ProcessRWOperation', rawPut(2n ** 32n + 1n));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^eraftkv\.ClientOperationReq: kvs\[0\]\.op_type is 4294967297/);
    expect(seen).toHaveLength(0);
    // The same request with op_type 1 reaches the handler.
    await unary('/eraftkv.ERaftKv/ProcessRWOperation', rawPut(1n));
    expect(seen.map((r) => r.kvs[0].opType)).toEqual([ClientOpType.Put]);
  });

  it('counts refused calls as InvalidArgument', async () => {
    await refusal('/eraftkv.ERaftKv/ProcessRWOperation', Buffer.from([0x22, 0x10, 1]));
    const text = await registry.getSingleMetricAsString('grpc_server_handled_total');
    expect(text).toMatch(
      /grpc_server_handled_total\{grpc_service="eraftkv\.ERaftKv",grpc_method="ProcessRWOperation",grpc_type="unary",grpc_code="InvalidArgument"\} [1-9]/,
    );
  });

  it('ends a stream with INVALID_ARGUMENT at its first undecodable message, after earlier answers', async () => {
    const call = client.makeBidiStreamRequest(
      '/eraftkv.ERaftKv/ProcessRWOperationStream',
      identity,
      identity,
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
    );
    const answers: number[] = [];
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', (bytes: Buffer) => {
      answers.push(ClientOperationResp.decode(bytes).requestId);
      if (answers.length === 1) {
        // kvs (field 4) announces 16 bytes; one follows.
        call.write(Buffer.from([0x22, 0x10, 1]));
        call.write(validRequest(3));
      }
    });
    call.write(validRequest(1));
    const err = await ended;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe(
      'the request does not decode as eraftkv.ClientOperationReq: premature EOF',
    );
    expect(answers).toEqual([1]);
    // The handler saw the first request only: nothing after the refused one was read.
    expect(seen.map((r) => r.requestId)).toEqual([1]);
  });

  /** Waits (5 s at the most) for the server to close `socket`. */
  async function serverCloses(socket: Socket, what: string): Promise<void> {
    sockets.push(socket);
    let closed = false;
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    // Read (and ignore) what the server sends, so that its end of the connection is seen.
    socket.resume();
    await waitFor(() => closed, { timeoutMs: 5000, what: `the server to close ${what}` });
  }

  it('closes a TCP connection that never speaks within keepalive time + timeout', async () => {
    const port = Number(host.address.split(':')[1]);
    await serverCloses(connect(port, '127.0.0.1'), 'the silent connection');
  });

  it('closes a connection that sent the HTTP/2 preface and went silent', async () => {
    const port = Number(host.address.split(':')[1]);
    const socket = connect(port, '127.0.0.1', () => {
      // The client preface and an empty SETTINGS frame, then nothing: pings go unanswered.
      socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'));
      socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    });
    await serverCloses(socket, 'the silent HTTP/2 connection');
  });

  it('keeps a live client connected across many keepalive periods without calls', async () => {
    await unary('/eraftkv.ERaftKv/ProcessRWOperation', validRequest(7));
    const before = client.getChannel().getConnectivityState(false);
    expect(before).toBe(grpc.connectivityState.READY);
    // Five ping periods: the client's HTTP/2 layer answers the pings, so nothing is cut.
    await new Promise((resolve) => setTimeout(resolve, 5 * 600));
    expect(client.getChannel().getConnectivityState(false)).toBe(grpc.connectivityState.READY);
  });

  it('closes a connection idle past connectionIdleMsMax; the client reconnects on its next call', async () => {
    const idleHost = await startGrpcHost({
      listen: '127.0.0.1:0',
      messageBytesMax: 1024 * 1024,
      registry: new Registry(),
      service,
      serving: () => true,
      connectionLimits: { connectionIdleMsMax: 300 },
    });
    const idleClient = new grpc.Client(idleHost.address, grpc.credentials.createInsecure());
    try {
      const call = (): Promise<unknown> =>
        new Promise((resolve, reject) =>
          idleClient.makeUnaryRequest(
            '/eraftkv.ERaftKv/ProcessRWOperation',
            identity,
            identity,
            validRequest(8),
            new grpc.Metadata(),
            { deadline: Date.now() + 5000 },
            (err, value) => (err ? reject(err) : resolve(value)),
          ),
        );
      await call();
      await waitFor(
        () => idleClient.getChannel().getConnectivityState(false) !== grpc.connectivityState.READY,
        { timeoutMs: 5000, what: 'the server to close the idle connection' },
      );
      await call();
    } finally {
      idleClient.close();
      idleHost.forceShutdown();
    }
  });

  it('refuses connection limits that are not positive integers', async () => {
    await expect(
      startGrpcHost({
        listen: '127.0.0.1:0',
        messageBytesMax: 1024,
        registry: new Registry(),
        service,
        serving: () => true,
        connectionLimits: { keepaliveTimeoutMs: 0 },
      }),
    ).rejects.toThrow(/keepaliveTimeoutMs must be a positive integer, got 0/);
  });
});
