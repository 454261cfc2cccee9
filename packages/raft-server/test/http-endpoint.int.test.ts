import { Registry } from 'prom-client';
import { profileSeconds, startHttpEndpoint, type HttpEndpoint } from '../src';

jest.setTimeout(30_000);

describe('HTTP endpoint', () => {
  const endpoints: HttpEndpoint[] = [];
  let withPprof: HttpEndpoint;
  let without: HttpEndpoint;
  beforeAll(async () => {
    const options = {
      host: '127.0.0.1',
      port: 0,
      registry: new Registry(),
      health: () => ({ healthy: true, reason: 'test' }),
    };
    withPprof = await startHttpEndpoint({ ...options, enablePprof: true });
    without = await startHttpEndpoint(options);
    endpoints.push(withPprof, without);
  });
  afterAll(async () => {
    for (const e of endpoints) await e.close();
  });

  it('takes a CPU profile of the next seconds with --enable-pprof', async () => {
    const res = await fetch(`http://${withPprof.address}/debug/pprof/profile?seconds=1`);
    expect(res.status).toBe(200);
    const profile = (await res.json()) as { nodes: unknown[]; startTime: number; endTime: number };
    expect(profile.nodes.length).toBeGreaterThan(0);
    // V8 reports microseconds: the profile spans about the second asked for.
    expect(profile.endTime - profile.startTime).toBeGreaterThanOrEqual(900_000);
  });

  it('refuses a bad duration and a second profile at the same time', async () => {
    const bad = await fetch(`http://${withPprof.address}/debug/pprof/profile?seconds=0`);
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/seconds must be an integer from 1 to 300, got "0"/);
    const first = fetch(`http://${withPprof.address}/debug/pprof/profile?seconds=1`);
    // The first request is being served once the endpoint refuses a second one.
    let second: Response | null = null;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      second = await fetch(`http://${withPprof.address}/debug/pprof/profile?seconds=1`);
      if (second.status === 409) break;
      await second.text();
    }
    expect(second?.status).toBe(409);
    // A heap snapshot waits its turn too.
    expect((await fetch(`http://${withPprof.address}/debug/pprof/heap`)).status).toBe(409);
    expect((await first).status).toBe(200);
  });

  it('takes a heap snapshot with --enable-pprof', async () => {
    const res = await fetch(`http://${withPprof.address}/debug/pprof/heap`);
    expect(res.status).toBe(200);
    const snapshot = (await res.json()) as { snapshot: { node_count: number } };
    expect(snapshot.snapshot.node_count).toBeGreaterThan(1000);
  });

  it('does not serve profiles without --enable-pprof', async () => {
    const res = await fetch(`http://${without.address}/debug/pprof/profile?seconds=1`);
    expect(res.status).toBe(404);
    expect((await fetch(`http://${without.address}/debug/pprof/heap`)).status).toBe(404);
  });

  it('parses ?seconds=', () => {
    expect(profileSeconds('')).toBe(30);
    expect(profileSeconds('seconds=5')).toBe(5);
    expect(profileSeconds('seconds=301')).toMatch(/from 1 to 300/);
    expect(profileSeconds('seconds=abc')).toMatch(/got "abc"/);
  });
});
