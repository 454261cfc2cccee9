// The shared test helpers over real gRPC on 127.0.0.1: the fake ERaftKv server refuses every RPC
// it is not given with UNIMPLEMENTED (streams too) and serves the ones it is given; waitFor names
// what it waited for when time runs out.
import * as grpc from '@grpc/grpc-js';
import {
  ChangeType,
  ClusterConfigChangeResp,
  ERaftKvClient,
  ERaftKvService,
  type ClusterConfigChangeReq,
} from '@eraftkv/protocol';
import { closedAddress, configChange, startFakeERaftKv, waitFor, type StartedServer } from '../src';

describe('startFakeERaftKv', () => {
  let fake: StartedServer;
  let client: ERaftKvClient;
  const received: ClusterConfigChangeReq[] = [];

  beforeAll(async () => {
    fake = await startFakeERaftKv(
      {
        clusterConfigChange: (call, callback) => {
          received.push(call.request);
          callback(null, ClusterConfigChangeResp.fromPartial({ success: true, configVersion: 7 }));
        },
      },
      { what: 'the test fake' },
    );
    client = new ERaftKvClient(fake.address, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client.close();
    await fake.close();
  });

  it('listens on 127.0.0.1 at the port it reports', () => {
    expect(fake.port).toBeGreaterThan(0);
    expect(fake.address).toBe(`127.0.0.1:${fake.port}`);
  });

  it('serves the handlers it is given (configChange fills in the defaults)', async () => {
    const resp = await configChange(client, { changeType: ChangeType.ShardsQuery, shardId: 3 });
    expect(resp).toMatchObject({ success: true, configVersion: 7 });
    expect(received.at(-1)).toMatchObject({ changeType: ChangeType.ShardsQuery, shardId: 3 });
  });

  it('answers UNIMPLEMENTED, naming the method and the fake, for every other RPC', async () => {
    const raw = new grpc.Client(fake.address, grpc.credentials.createInsecure());
    const identity = (b: Buffer): Buffer => b;
    // Every method of the definition, as plain data (no RPC of the service streams one way
    // only today; the checks below cover those kinds too).
    const methods: { path: string; requestStream: boolean; responseStream: boolean }[] =
      Object.values(ERaftKvService).filter(
        (m) => m.path !== ERaftKvService.clusterConfigChange.path,
      );
    expect(methods.length).toBeGreaterThan(5);
    try {
      for (const m of methods) {
        const err = await new Promise<grpc.ServiceError | null>((resolve) => {
          if (m.responseStream) {
            const call = m.requestStream
              ? raw.makeBidiStreamRequest(m.path, identity, identity).end()
              : raw.makeServerStreamRequest(m.path, identity, identity, Buffer.alloc(0));
            call.on('data', () => {});
            call.on('error', (e: grpc.ServiceError) => resolve(e));
            call.on('end', () => resolve(null));
          } else if (m.requestStream) {
            raw.makeClientStreamRequest(m.path, identity, identity, (e) => resolve(e)).end();
          } else {
            raw.makeUnaryRequest(m.path, identity, identity, Buffer.alloc(0), (e) => resolve(e));
          }
        });
        expect({ path: m.path, code: err?.code }).toEqual({
          path: m.path,
          code: grpc.status.UNIMPLEMENTED,
        });
        expect(err?.details).toBe(`${m.path} is not served by the test fake`);
      }
    } finally {
      raw.close();
    }
  });
});

describe('closedAddress', () => {
  it('names a port that refuses connections', async () => {
    const address = await closedAddress();
    const client = new ERaftKvClient(address, grpc.credentials.createInsecure());
    try {
      const err = await configChange(client, {}, 2000).catch((e: grpc.ServiceError) => e);
      expect((err as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      client.close();
    }
  });
});

describe('waitFor', () => {
  it('resolves with the first value the condition returns', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? `after ${calls}` : undefined), {
      what: 'three calls',
      intervalMs: 1,
    });
    expect(value).toBe('after 3');
  });

  it('names what it waited for, and the last error, when the deadline passes', async () => {
    const started = Date.now();
    await expect(
      waitFor(
        () => {
          throw new Error('not yet');
        },
        { timeoutMs: 50, intervalMs: 5, what: 'the impossible' },
      ),
    ).rejects.toThrow('timed out after 50 ms waiting for the impossible (last error: not yet)');
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
