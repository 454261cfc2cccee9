// A kv node whose state RocksDB is corrupted while it is stopped (bytes flipped in an .sst file),
// over real gRPC and HTTP on 127.0.0.1: reads answer DATA_LOSS saying that this replica's data is
// corrupt and where, and the node reports itself unhealthy on /health and grpc.health.v1.
import * as grpc from '@grpc/grpc-js';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import {
  ErrorCode,
  HealthCheckResponse_ServingStatus,
  HealthClient,
  SlotStatus,
  type ERaftKvClient,
} from '@eraftkv/protocol';
import { KvServer, type KvServerOptions } from '../src';
import { waitFor } from '@eraftkv/test-support';
import { FakeMeta, get, kvClient, processRw, put, request, scan, tempDir } from './common';

jest.setTimeout(60_000);

const slotCount = 16;

function httpGetText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpGet(url, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** Flips 64 bytes in the middle of the largest .sst file of `dir`. */
async function corruptLargestSst(dir: string): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sst'));
  if (files.length === 0) throw new Error(`no .sst file in ${dir}`);
  const contents = await Promise.all(files.map((f) => readFile(join(dir, f))));
  const sizes = contents.map((c) => c.length);
  const i = sizes.indexOf(Math.max(...sizes));
  const bytes = contents[i];
  const middle = Math.floor(bytes.length / 2);
  for (let j = 0; j < 64; j++) bytes[middle + j] ^= 0xff;
  await writeFile(join(dir, files[i]), bytes);
  return files[i];
}

describe('KvServer: a corrupt kv state', () => {
  let root = '';
  const meta = new FakeMeta();
  let server: KvServer | null = null;
  let client: ERaftKvClient | null = null;
  let health: HealthClient | null = null;
  let options: KvServerOptions;

  /** Starts the node on its data dir and waits until it leads with the config applied. */
  async function start(): Promise<KvServer> {
    const s = new KvServer(options);
    server = s;
    await s.listen();
    await s.start([{ id: 1, address: s.address, learner: false, incarnation: 0 }]);
    await waitFor(() => s.raft.isLeader() && s.stateMachine.configVersion() >= 1, {
      timeoutMs: 15_000,
      what: 'the node to lead with the config applied',
    });
    return s;
  }

  beforeAll(async () => {
    root = await tempDir('corrupt');
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
    options = {
      id: 1,
      groupId: 1,
      listen: '127.0.0.1:0',
      metaAddresses: [meta.address],
      dataDir: join(root, 'kv-1-1'),
      metricsListen: '127.0.0.1:0',
      raft: { tickMs: 20 },
      configPollMs: 50,
      shutdownGraceMs: 1000,
    };
  });

  afterAll(async () => {
    client?.close();
    health?.close();
    await server?.stop().catch(() => undefined);
    await meta.stop();
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  it('answers reads with DATA_LOSS naming the data dir, and reports itself unhealthy', async () => {
    let s = await start();
    // Keep the same address across restarts: the group's stored membership names it.
    options = { ...options, listen: s.address };
    const c = kvClient(s.address);
    for (let batch = 0; batch < 20; batch++) {
      const ops = Array.from({ length: 100 }, (_, i) => {
        const n = batch * 100 + i;
        return put(`key-${String(n).padStart(5, '0')}`, `value-${n}-`.repeat(20));
      });
      expect((await processRw(c, request(ops))).errorCode).toBe(ErrorCode.OK);
    }
    c.close();
    await s.stop();
    // Reopening replays RocksDB's write-ahead log into a table file.
    s = await start();
    await s.stop();
    const stateDir = join(options.dataDir, 'state');
    await corruptLargestSst(stateDir);

    // By default the node reads its whole state at start and refuses the damaged one.
    const refused = new KvServer(options);
    await refused.listen();
    await expect(
      refused.start([{ id: 1, address: refused.address, learner: false, incarnation: 0 }]),
    ).rejects.toThrow(`The kv state in ${stateDir} is damaged: this replica cannot start`);
    await refused.abort();

    // Without that check (--verify-state-on-start=false) the damage is found by the first read.
    options = { ...options, verifyStateOnStart: false };
    s = await start();
    client = kvClient(s.address);
    const err = await processRw(client, request([scan('key-', '', 10_000)])).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    expect(err).not.toBeNull();
    expect(grpc.status[err!.code]).toBe('DATA_LOSS');
    expect(err!.details).toMatch(/^this replica's data is corrupt: /);
    expect(err!.details).toContain(`the RocksDB data in ${stateDir} is corrupt`);
    expect(err!.details).toMatch(/Corruption: /);

    // Every later read is refused the same way, even of a key in a sound block.
    const after = await processRw(client, request([get('key-00000')])).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    expect(after?.code).toBe(grpc.status.DATA_LOSS);

    const report = await httpGetText(`http://${s.metricsAddress}/health`);
    expect(report.status).toBe(503);
    const body = JSON.parse(report.body) as { health: string; reason: string };
    expect(body.health).toBe('false');
    expect(body.reason).toContain(`the RocksDB data in ${stateDir} is corrupt`);

    health = new HealthClient(s.address, grpc.credentials.createInsecure());
    const status = await new Promise<HealthCheckResponse_ServingStatus>((resolve, reject) =>
      health!.check({ service: '' }, (e, resp) => (e ? reject(e) : resolve(resp.status))),
    );
    expect(status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
  });
});
