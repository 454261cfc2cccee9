// The small HTTP endpoint every eraftkv process serves: GET /metrics (Prometheus text format)
// and GET /health (200 with {"health":"true"} when the node is healthy, 503 otherwise, as etcd).
// With --enable-pprof (etcd's flag) also GET /debug/pprof/profile?seconds=N: a V8 CPU profile of
// the next N seconds (default 30, at most 300), as a .cpuprofile JSON document that Chrome
// DevTools and scripts/profile-summary.ts read. One profile runs at a time. And GET
// /debug/pprof/heap: a V8 heap snapshot (.heapsnapshot JSON for Chrome DevTools; it pauses the
// process while it is taken, for about a second per 100 MB of heap).
import { createServer, type Server } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { getHeapSnapshot } from 'node:v8';
import { Session } from 'node:inspector';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HealthReport {
  readonly healthy: boolean;
  /** Why the node is (un)healthy, for operators. */
  readonly reason: string;
}

export interface HttpEndpointOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly registry: Registry;
  readonly health: () => HealthReport;
  /** Serve /debug/pprof/profile (off by default: a profile costs CPU while it runs). */
  readonly enablePprof?: boolean;
}

/** The longest CPU profile /debug/pprof/profile takes. */
export const profileSecondsMax = 300;

/** Seconds from a ?seconds= query: default 30, an integer from 1 to profileSecondsMax. */
export function profileSeconds(query: string): number | string {
  const raw = new URLSearchParams(query).get('seconds');
  if (raw === null || raw === '') return 30;
  const seconds = Number(raw);
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > profileSecondsMax) {
    return `seconds must be an integer from 1 to ${profileSecondsMax}, got ${JSON.stringify(raw)}`;
  }
  return seconds;
}

/** A V8 CPU profile of this process over the next `seconds`, as .cpuprofile JSON. */
async function cpuProfile(seconds: number): Promise<string> {
  const session = new Session();
  session.connect();
  const post = (method: string): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, (err, result) => (err ? reject(err) : resolve(result))),
    );
  try {
    await post('Profiler.enable');
    await post('Profiler.start');
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    return JSON.stringify(profile);
  } finally {
    session.disconnect();
  }
}

export interface HttpEndpoint {
  /** host:port actually bound. */
  readonly address: string;
  close(): Promise<void>;
}

export async function startHttpEndpoint(options: HttpEndpointOptions): Promise<HttpEndpoint> {
  let profiling = false;
  const server: Server = createServer((req, res) => {
    const [path, query = ''] = (req.url ?? '/').split('?', 2);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': options.registry.contentType }).end(text);
        },
        (err: unknown) => {
          res
            .writeHead(500, { 'content-type': 'text/plain' })
            .end(`metrics failed: ${String(err)}\n`);
        },
      );
      return;
    }
    if (path === '/health') {
      const report = options.health();
      res
        .writeHead(report.healthy ? 200 : 503, { 'content-type': 'application/json' })
        .end(`${JSON.stringify({ health: String(report.healthy), reason: report.reason })}\n`);
      return;
    }
    if (path === '/debug/pprof/heap' && options.enablePprof === true) {
      // One at a time, with the CPU profiles: a heap snapshot costs about the heap's size again.
      if (profiling) {
        res
          .writeHead(409, { 'content-type': 'text/plain' })
          .end('a profile or heap snapshot is already being taken; try again later\n');
        return;
      }
      profiling = true;
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-disposition': 'attachment; filename="eraftkv.heapsnapshot"',
      });
      pipeline(getHeapSnapshot(), res)
        .catch(() => res.destroy())
        .finally(() => {
          profiling = false;
        });
      return;
    }
    if (path === '/debug/pprof/profile' && options.enablePprof === true) {
      const seconds = profileSeconds(query);
      const text = { 'content-type': 'text/plain' };
      if (typeof seconds === 'string') {
        res.writeHead(400, text).end(`${seconds}\n`);
        return;
      }
      if (profiling) {
        res
          .writeHead(409, text)
          .end('a profile or heap snapshot is already being taken; try again later\n');
        return;
      }
      profiling = true;
      cpuProfile(seconds)
        .then(
          (profile) =>
            res
              .writeHead(200, {
                'content-type': 'application/json',
                'content-disposition': 'attachment; filename="eraftkv.cpuprofile"',
              })
              .end(profile),
          (err: unknown) => res.writeHead(500, text).end(`profile failed: ${String(err)}\n`),
        )
        .finally(() => {
          profiling = false;
        });
      return;
    }
    res
      .writeHead(404, { 'content-type': 'text/plain' })
      .end(
        options.enablePprof === true
          ? 'not found: try /metrics, /health, /debug/pprof/profile?seconds=N or /debug/pprof/heap\n'
          : 'not found: try /metrics or /health\n',
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    address: `${address}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
