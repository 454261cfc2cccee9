// A real gRPC round trip of the generated ERaftKv code over 127.0.0.1, and the guarantee that a
// 64-bit field outside JavaScript's safe-integer range is refused rather than silently rounded.
import * as grpc from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { startFakeERaftKv, type StartedServer } from '@eraftkv/test-support';
import { ERaftKvClient, RequestVoteReq, RequestVoteResp } from '../src';

describe('ERaftKv over grpc-js', () => {
  let server: StartedServer;
  let address: string;
  const received: RequestVoteReq[] = [];

  beforeAll(async () => {
    server = await startFakeERaftKv({
      requestVote: (call, callback) => {
        received.push(call.request);
        const req = call.request;
        callback(null, {
          prevote: req.prevote,
          requestTerm: req.term,
          term: req.term,
          voteGranted: req.lastLogTerm >= 3,
          leaderId: 0,
          dropped: false,
        });
      },
    });
    address = server.address;
  });

  afterAll(async () => {
    await server.close();
  });

  it('answers a RequestVote from the generated client', async () => {
    const client = new ERaftKvClient(address, grpc.credentials.createInsecure());
    try {
      const request = RequestVoteReq.fromPartial({
        prevote: true,
        term: 7,
        candidateId: 2,
        lastLogIdx: 41,
        lastLogTerm: 6,
        groupId: 1,
        clusterId: 'test',
        toId: 3,
      });
      const response = await new Promise<RequestVoteResp>((resolve, reject) =>
        client.requestVote(request, (err, resp) => (err ? reject(err) : resolve(resp))),
      );
      expect(response).toEqual({
        prevote: true,
        requestTerm: 7,
        term: 7,
        voteGranted: true,
        leaderId: 0,
        dropped: false,
      });
      expect(received.at(-1)).toEqual(request);
    } finally {
      client.close();
    }
  });

  it('carries a safe 64-bit value (2^53 - 1) exactly', () => {
    const term = Number.MAX_SAFE_INTEGER;
    const bytes = RequestVoteReq.encode(RequestVoteReq.fromPartial({ term })).finish();
    expect(RequestVoteReq.decode(bytes).term).toBe(term);
  });

  it('refuses to decode 2^53 + 1, which a JavaScript number cannot hold', () => {
    const bytes = new BinaryWriter()
      .uint32((2 << 3) | 0) // field 2 (term), varint
      .int64(2n ** 53n + 1n)
      .finish();
    expect(() => RequestVoteReq.decode(bytes)).toThrow(/MAX_SAFE_INTEGER/);
  });

  it('rejects a request carrying 2^53 + 1 at the server, before the handler runs', async () => {
    const before = received.length;
    const bytes = Buffer.from(
      new BinaryWriter()
        .uint32((2 << 3) | 0)
        .int64(2n ** 53n + 1n)
        .finish(),
    );
    const raw = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        raw.makeUnaryRequest(
          '/eraftkv.ERaftKv/RequestVote',
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          (e) => resolve(e),
        ),
      );
      expect(err?.code).toBe(grpc.status.INTERNAL);
      expect(received.length).toBe(before);
    } finally {
      raw.close();
    }
  });
});
