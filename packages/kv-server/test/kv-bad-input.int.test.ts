// A kv group of one over real gRPC on 127.0.0.1 fed hand-made bad input: requests that do not
// decode, enum values outside their declarations (including varints that int32 decoding would
// truncate), malformed addresses, and reads that would answer too much or too many at once.
import * as grpc from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ClientOperationReq,
  ClientOperationResp,
  ErrorCode,
  LeaseAction,
  MemberChangeType,
  SlotStatus,
  type ERaftKvClient,
  type LeaseKeepAliveResp,
  type LeaseResp,
  type MemberChangeResp,
} from '@eraftkv/protocol';
import { defaultKvLimits, KvServer, kvLimits } from '../src';
import { waitFor } from '@eraftkv/test-support';
import { FakeMeta, get, kvClient, processRw, put, request, scan, tempDir } from './common';

jest.setTimeout(60_000);

const slotCount = 16;
const responseBytesMax = 64 * 1024;

const identity = (b: Buffer): Buffer => b;

/** One KvOpPair with the raw varint `opType` (2^32 + 1 would be truncated to Put). */
function rawOp(opType: bigint, key: string, value: string): Uint8Array {
  return new BinaryWriter()
    .uint32(8)
    .uint64(opType)
    .uint32(18)
    .bytes(Buffer.from(key))
    .uint32(26)
    .bytes(Buffer.from(value))
    .finish();
}

async function refusal(call: Promise<unknown>): Promise<grpc.ServiceError> {
  return call.then(
    () => {
      throw new Error('the call succeeded, but it was expected to fail');
    },
    (err: grpc.ServiceError) => err,
  );
}

describe('KvServer: bad input and resource limits (a group of one)', () => {
  let root = '';
  const meta = new FakeMeta();
  let server: KvServer;
  let client: ERaftKvClient;
  let raw: grpc.Client;

  const rawUnary = (method: string, bytes: Uint8Array): Promise<Buffer> =>
    new Promise((resolve, reject) =>
      raw.makeUnaryRequest(
        `/eraftkv.ERaftKv/${method}`,
        identity,
        identity,
        Buffer.from(bytes),
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
        (err, value) => (err ? reject(err) : resolve(value as Buffer)),
      ),
    );

  beforeAll(async () => {
    root = await tempDir('bad-input');
    await meta.start();
    meta.setTopology(slotCount, [
      {
        id: 1,
        slots: Array.from({ length: slotCount }, (_, i): [number, SlotStatus] => [
          i,
          SlotStatus.Running,
        ]),
      },
    ]);
    server = new KvServer({
      id: 1,
      groupId: 1,
      listen: '127.0.0.1:0',
      metaAddresses: [meta.address],
      dataDir: join(root, 'kv-1-1'),
      raft: { tickMs: 20 },
      configPollMs: 50,
      shutdownGraceMs: 1000,
      limits: kvLimits({ ...defaultKvLimits, responseBytesMax, scanRequestsInFlightMax: 1 }),
    });
    await server.listen();
    await server.start([{ id: 1, address: server.address, learner: false, incarnation: 0 }]);
    await waitFor(() => server.raft.isLeader() && server.stateMachine.configVersion() >= 1, {
      timeoutMs: 15_000,
      what: 'the node to lead and apply the config',
    });
    client = kvClient(server.address);
    raw = new grpc.Client(server.address, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    raw?.close();
    await server?.stop().catch(() => undefined);
    await meta.stop();
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  it('answers INVALID_ARGUMENT naming the type for a request that does not decode', async () => {
    // kvs (field 4) announces 64 bytes; two follow.
    const err = await refusal(
      rawUnary('ProcessRWOperation', Buffer.from([0x22, 0x40, 0x08, 0x01])),
    );
    expect([grpc.status[err.code], err.details]).toEqual([
      'INVALID_ARGUMENT',
      'the request does not decode as eraftkv.ClientOperationReq: premature EOF',
    ]);
  });

  it('refuses op_type 2^32 + 1 naming kvs[i].op_type, and writes nothing', async () => {
    const bytes = new BinaryWriter()
      .uint32(34)
      .bytes(rawOp(1n, 'fine', 'v'))
      .uint32(34)
      .bytes(rawOp(2n ** 32n + 1n, 'wide', 'v'))
      .finish();
    // Truncated to 32 bits, the second op is a Put.
    expect(ClientOperationReq.decode(bytes).kvs[1].opType).toBe(1);
    const err = await refusal(rawUnary('ProcessRWOperation', bytes));
    expect(grpc.status[err.code]).toBe('INVALID_ARGUMENT');
    expect(err.details).toMatch(
      /^eraftkv\.ClientOperationReq: kvs\[1\]\.op_type is 4294967297, which is not a ClientOpType/,
    );
    const resp = await processRw(client, request([get('fine'), get('wide')]));
    expect(resp.ops.map((op) => op.found)).toEqual([false, false]);
  });

  it('refuses read_consistency beyond int32 naming the field', async () => {
    const bytes = new BinaryWriter()
      .uint32(34)
      .bytes(rawOp(2n, 'k', ''))
      .uint32(40)
      .uint64(2n ** 32n + 1n)
      .finish();
    const err = await refusal(rawUnary('ProcessRWOperation', bytes));
    expect([grpc.status[err.code], err.details]).toEqual([
      'INVALID_ARGUMENT',
      expect.stringMatching(/read_consistency is 4294967297, which is not a ReadConsistency/),
    ]);
  });

  it('ends ProcessRWOperationStream with INVALID_ARGUMENT at a message that does not decode', async () => {
    const call = raw.makeBidiStreamRequest(
      '/eraftkv.ERaftKv/ProcessRWOperationStream',
      identity,
      identity,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    const answered: number[] = [];
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', (bytes: Buffer) => {
      answered.push(ClientOperationResp.decode(bytes).requestId);
      if (answered.length === 1) call.write(Buffer.from([0x22, 0x40, 0x08]));
    });
    const first = request([get('k')], { requestId: 1 });
    call.write(Buffer.from(ClientOperationReq.encode(first).finish()));
    const err = await ended;
    expect([grpc.status[err.code], err.details]).toEqual([
      'INVALID_ARGUMENT',
      'the request does not decode as eraftkv.ClientOperationReq: premature EOF',
    ]);
    expect(answered).toEqual([1]);
  });

  it('answers an undeclared op_type on ProcessRWOperationStream in its own response, and goes on', async () => {
    const call = raw.makeBidiStreamRequest(
      '/eraftkv.ERaftKv/ProcessRWOperationStream',
      identity,
      identity,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    const answers = new Map<number, ClientOperationResp>();
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (bytes: Buffer) => {
        const resp = ClientOperationResp.decode(bytes);
        answers.set(resp.requestId, resp);
        if (answers.size === 2) call.end();
      });
      call.on('end', resolve);
      call.on('error', reject);
    });
    // request_id 5: a Put whose op_type is 2^32 + 1; request_id 6: a Get.
    const wide = new BinaryWriter()
      .uint32(34)
      .bytes(rawOp(2n ** 32n + 1n, 'stream-wide', 'v'))
      .uint32(56)
      .uint64(5)
      .finish();
    call.write(Buffer.from(wide));
    call.write(
      Buffer.from(ClientOperationReq.encode(request([get('k')], { requestId: 6 })).finish()),
    );
    await done;
    expect(answers.get(5)?.statusCode).toBe(grpc.status.INVALID_ARGUMENT);
    expect(answers.get(5)?.errorMessage).toMatch(/^kvs\[0\]\.op_type is 4294967297/);
    expect(answers.get(6)?.statusCode).toBe(0);
    const read = await processRw(client, request([get('stream-wide')]));
    expect(read.ops[0].found).toBe(false);
  });

  it('refuses MemberChange with a malformed address naming the field', async () => {
    const err = await refusal(
      new Promise<MemberChangeResp>((resolve, reject) =>
        client.memberChange(
          { groupId: 1, changeType: MemberChangeType.ADD_LEARNER, nodeId: 2, address: 'nonsense' },
          (e, resp) => (e ? reject(e) : resolve(resp)),
        ),
      ),
    );
    expect([grpc.status[err.code], err.details]).toEqual([
      'INVALID_ARGUMENT',
      'address "nonsense" is not host:port (with a port in 1..65535)',
    ]);
    expect(server.raft.membership().map((m) => m.id)).toEqual([1]);
  });

  it('refuses a Lease revoke or time-to-live whose id cannot be a lease id, naming the field', async () => {
    const lease = (action: LeaseAction, id: number): Promise<LeaseResp> =>
      new Promise((resolve, reject) =>
        client.lease({ action, groupId: 0, id, ttlSeconds: 0, keys: false }, (e, resp) =>
          e ? reject(e) : resolve(resp),
        ),
      );
    // Group 1 with n = 0, no group at all, group 3 with n = 0 (an int64 carries no fraction).
    for (const id of [2 ** 32, 7, 3 * 2 ** 32]) {
      for (const action of [LeaseAction.LEASE_REVOKE, LeaseAction.LEASE_TIME_TO_LIVE]) {
        const err = await refusal(lease(action, id));
        expect([grpc.status[err.code], err.details]).toEqual([
          'INVALID_ARGUMENT',
          `id: ${id} is not a lease id (a lease id is group * 2^32 + n, with group and n >= 1)`,
        ]);
      }
    }
    // A lease id of another group.
    const other = await refusal(lease(LeaseAction.LEASE_REVOKE, 3 * 2 ** 32 + 1));
    expect([grpc.status[other.code], other.details]).toEqual([
      'INVALID_ARGUMENT',
      'lease 0000000300000001 belongs to group 3, but this node serves group 1',
    ]);
    // A negative id is refused where the request is decoded.
    const negative = await refusal(lease(LeaseAction.LEASE_REVOKE, -(2 ** 32 + 1)));
    expect([grpc.status[negative.code], negative.details]).toEqual([
      'INVALID_ARGUMENT',
      'eraftkv.LeaseReq: id: must be in [0, 9007199254740991], got -4294967297',
    ]);
    // A well-formed id of this group that was never granted is answered as etcd does: TTL -1.
    const unknown = await lease(LeaseAction.LEASE_TIME_TO_LIVE, 2 ** 32 + 99);
    expect(unknown.errorCode).toBe(ErrorCode.OK);
    expect(unknown.leases.map((l) => [l.id, l.ttlSeconds])).toEqual([[2 ** 32 + 99, -1]]);
  });

  it('answers a keep-alive whose id cannot be a lease id as not found, naming the field, and goes on', async () => {
    const call = client.leaseKeepAlive();
    const answers: LeaseKeepAliveResp[] = [];
    call.on('data', (resp: LeaseKeepAliveResp) => answers.push(resp));
    const ended = new Promise<void>((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });
    // Group 1 with n = 0, no group at all, a lease id of group 3, then a well-formed id of
    // group 1 never granted.
    for (const id of [2 ** 32, 7, 3 * 2 ** 32 + 1, 2 ** 32 + 99]) call.write({ id });
    call.end();
    await ended;
    // Answers may come in another order: the refusals need no ReadIndex.
    answers.sort((a, b) => a.id - b.id);
    expect(
      answers.map((a) => [a.id, ErrorCode[a.errorCode], a.ttlSeconds, a.errorMessage]),
    ).toEqual([
      [
        7,
        'LEASE_NOT_FOUND',
        0,
        'id: 7 is not a lease id (a lease id is group * 2^32 + n, with group and n >= 1)',
      ],
      [
        2 ** 32,
        'LEASE_NOT_FOUND',
        0,
        `id: ${2 ** 32} is not a lease id (a lease id is group * 2^32 + n, with group and n >= 1)`,
      ],
      [2 ** 32 + 99, 'OK', 0, ''],
      [
        3 * 2 ** 32 + 1,
        'LEASE_NOT_FOUND',
        0,
        'lease 0000000300000001 belongs to group 3, but this node serves group 1',
      ],
    ]);
  });

  describe('with 2,000 keys of 100-byte values', () => {
    const keyOf = (i: number): string => `key-${String(i).padStart(5, '0')}`;

    beforeAll(async () => {
      for (let batch = 0; batch < 20; batch++) {
        const ops = Array.from({ length: 100 }, (_, i) =>
          put(keyOf(batch * 100 + i), 'v'.repeat(100)),
        );
        const resp = await processRw(client, request(ops));
        expect(resp.errorCode).toBe(ErrorCode.OK);
      }
    });

    it('bounds the answer to 128 full-range Scans by --response-bytes-max, marking where it stopped', async () => {
      const scans = Array.from({ length: 128 }, () => scan('key-', 'key.', 10_000));
      const resp = await processRw(client, request(scans));
      expect(resp.errorCode).toBe(ErrorCode.OK);
      const encoded = ClientOperationResp.encode(resp).finish().length;
      // The pairs fit the budget; what is left is a few bytes per op.
      expect(encoded).toBeLessThan(responseBytesMax + 128 * 32);
      const [first, ...rest] = resp.ops;
      // Each pair costs its key (9 bytes), its value (100) and 16 bytes of overhead.
      expect(first.kvs).toHaveLength(Math.floor(responseBytesMax / (9 + 100 + 16)));
      expect(first.kvs[0].key.toString()).toBe(keyOf(0));
      expect(first.more).toBe(true);
      expect(rest.every((op) => op.kvs.length === 0 && op.more)).toBe(true);
    });

    it('refuses Gets whose values exceed --response-bytes-max with RESOURCE_EXHAUSTED', async () => {
      const bigValue = 'b'.repeat(40 * 1024);
      const w = await processRw(client, request([put('big-1', bigValue), put('big-2', bigValue)]));
      expect(w.errorCode).toBe(ErrorCode.OK);
      const err = await refusal(processRw(client, request([get('big-1'), get('big-2')])));
      expect([grpc.status[err.code], err.details]).toEqual([
        'RESOURCE_EXHAUSTED',
        expect.stringMatching(/more than 65536 bytes \(--response-bytes-max\) at kvs\[1\]/),
      ]);
    });

    it('refuses scans beyond --scan-requests-in-flight-max with RESOURCE_EXHAUSTED, serving the rest', async () => {
      const call = client.processRwOperationStream();
      const answers: ClientOperationResp[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (resp: ClientOperationResp) => {
          answers.push(resp);
          if (answers.length === 6) call.end();
        });
        call.on('end', resolve);
        call.on('error', reject);
      });
      for (let i = 1; i <= 6; i++) call.write(request([scan('key-', '', 500)], { requestId: i }));
      await done;
      const busy = answers.filter(
        (a) => a.statusCode === (grpc.status.RESOURCE_EXHAUSTED as number),
      );
      const served = answers.filter((a) => a.statusCode === 0);
      expect(busy.length).toBeGreaterThan(0);
      expect(served.length).toBeGreaterThan(0);
      expect(busy[0].errorMessage).toMatch(/--scan-requests-in-flight-max/);
      expect(served.every((a) => a.ops[0].kvs.length === 500 && a.ops[0].more)).toBe(true);
      // Once the scans are done, another is served.
      const after = await processRw(client, request([scan('key-', '', 1)]));
      expect(after.ops[0].kvs).toHaveLength(1);
    });
  });
});
