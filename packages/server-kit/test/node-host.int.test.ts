// NodeHost over real gRPC and HTTP on 127.0.0.1: every call is UNAVAILABLE until the server hands
// over its handlers, except Identify while the node boots; then every RPC reaches the handlers;
// after shutdown the answer says the server is stopping. /health follows the server's report.
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import {
  ERaftKvClient,
  grpcChannelOptions,
  IdentifyResp,
  StatusReq,
  StatusResp,
  type IdentifyReq,
} from '@eraftkv/protocol';
import type { HealthReport, PeerInbox } from '@eraftkv/raft-server';
import { eraftKvService } from '@eraftkv/test-support';
import { NodeHost } from '../src';

function call<Req, Resp>(
  method: (
    req: Req,
    callback: (err: grpc.ServiceError | null, resp: Resp) => void,
  ) => grpc.ClientUnaryCall,
  req: Req,
): Promise<{ resp: Resp } | { code: grpc.status; details: string }> {
  return new Promise((resolve) => {
    method(req, (err, resp) =>
      resolve(err === null ? { resp } : { code: err.code, details: err.details }),
    );
  });
}

const identifyReq: IdentifyReq = {
  groupId: 1,
  clusterId: 'eraftkv',
  toId: 7,
  fromId: 2,
  fromIncarnation: 5,
};

/** A booting node that answers Identify as node 7 of group 1. */
const bootingInbox: PeerInbox = {
  selfId: 7,
  identity: { groupId: 1, clusterId: 'eraftkv', incarnation: 42 },
  receive: () => Promise.reject(new Error('not open yet')),
  identify: () => IdentifyResp.fromPartial({ nodeId: 7, groupId: 1, incarnation: 42 }),
  incarnationOf: () => undefined,
  refused: () => {},
};

/** Binds a NodeHost on 127.0.0.1 port 0 whose health is `health()`. */
function bind(
  kind: 'meta' | 'kv',
  metricsListen: string,
  health: () => HealthReport,
): Promise<NodeHost> {
  return NodeHost.bind({
    kind,
    listen: '127.0.0.1:0',
    metricsListen,
    messageBytesMax: 4 * 1024 * 1024,
    registry: new Registry(),
    health,
  });
}

describe('NodeHost', () => {
  let host: NodeHost;
  let client: ERaftKvClient;
  let health: HealthReport = { healthy: false, reason: 'starting' };

  beforeAll(async () => {
    host = await bind('kv', '127.0.0.1:0', () => health);
    client = new ERaftKvClient(
      host.address,
      grpc.credentials.createInsecure(),
      grpcChannelOptions(),
    );
  });

  afterAll(async () => {
    client.close();
    host.forceShutdown();
    await host.closeHttp();
  });

  it('answers UNAVAILABLE naming the server kind until it is booting or serving', async () => {
    const status = (req: StatusReq) => call(client.status.bind(client), req);
    expect(await status(StatusReq.fromPartial({}))).toEqual({
      code: grpc.status.UNAVAILABLE,
      details: 'the kv server is starting',
    });
    const identify = await call(client.identify.bind(client), identifyReq);
    expect(identify).toMatchObject({ code: grpc.status.UNAVAILABLE });
  });

  it('answers Identify through the booting node, and nothing else', async () => {
    host.boot(bootingInbox);
    const identify = await call(client.identify.bind(client), identifyReq);
    expect(identify).toMatchObject({ resp: { nodeId: 7, incarnation: 42 } });
    expect(await call(client.status.bind(client), StatusReq.fromPartial({}))).toMatchObject({
      code: grpc.status.UNAVAILABLE,
    });
  });

  it('reports the health the server gives on /health, and routes every RPC once serving', async () => {
    const before = await fetch(`http://${host.metricsAddress}/health`);
    expect(before.status).toBe(503);
    expect(await before.text()).toContain('starting');
    host.serve(
      eraftKvService(
        { status: (_call, callback) => callback(null, StatusResp.fromPartial({ nodeId: 7 })) },
        'the test handlers',
      ),
    );
    health = { healthy: true, reason: '' };
    expect(await call(client.status.bind(client), StatusReq.fromPartial({}))).toMatchObject({
      resp: { nodeId: 7 },
    });
    // Identify now goes to the handlers, which do not serve it.
    expect(await call(client.identify.bind(client), identifyReq)).toMatchObject({
      code: grpc.status.UNIMPLEMENTED,
    });
    expect((await fetch(`http://${host.metricsAddress}/health`)).status).toBe(200);
  });

  it('refuses a taken --metrics-listen naming the flag, and releases the gRPC port it bound', async () => {
    await expect(bind('meta', host.metricsAddress, () => health)).rejects.toThrow(
      `--metrics-listen ${host.metricsAddress}:`,
    );
  });

  it('says the server is stopping once shut down', async () => {
    const other = await bind('meta', '', () => health);
    expect(other.metricsAddress).toBe('');
    expect(other.unavailableReason()).toBe('the meta server is starting');
    await other.shutdown(100);
    expect(other.unavailableReason()).toBe('the meta server is stopping');
  });
});
