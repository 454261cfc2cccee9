// eraftkv across hosts (npm run test:hosts, short): six nodes in six network namespaces with their
// own addresses and DNS names, a checked workload from the root namespace under host isolation,
// cuts, kills and moves (a host re-added at a new address under its name), then the history must
// be linearizable and the replicas equal. Every namespace, link and hosts file the run made must be
// gone afterwards, also when the harness is killed in the middle. Needs root and iproute2: on a
// machine without them the tests are skipped, saying why.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repositoryDir, waitUntil } from '../local-cluster';
import { hostsUsable } from '../hosts/host-network';
import { runScript, suiteResults } from './helpers';

jest.setTimeout(300_000);

const script = join(repositoryDir, 'scripts/dist/hosts/run-hosts.js');
const usable = hostsUsable();
if (!usable.ok) console.log(`hosts tests skipped: ${usable.reason}`);
const hostsIt = usable.ok ? it : it.skip;

/** What a run may leave behind on this machine: namespaces, links and /etc/netns entries. */
function machineState(): { namespaces: string[]; links: string[]; netnsEtc: string[] } {
  const namespaces = execFileSync('ip', ['netns', 'list'])
    .toString()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[0])
    .sort();
  const links = execFileSync('ip', ['-o', 'link', 'show'])
    .toString()
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined)
    .sort();
  const netnsEtc = existsSync('/etc/netns') ? readdirSync('/etc/netns').sort() : [];
  return { namespaces, links, netnsEtc };
}

interface Summary {
  verdict: string;
  operations: { ok: number; recorded: number };
  faults: Record<string, number>;
  moves: string[];
  replicas: { node: string; digest: string }[];
  bulk: { keys: number; found: number };
}

describe('hosts as network namespaces (short run)', () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'eraftkv-hosts-results-'));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  hostsIt('stays linearizable through host faults and removes everything it made', async () => {
    const before = machineState();
    const seed = Number(process.env.ERAFTKV_HOSTS_SEED ?? Math.floor(Math.random() * 1_000_000));
    const result = await runScript(
      script,
      ['--duration', '30', '--seed', String(seed), '--out', out],
      280_000,
    );
    const { summary, report } = await suiteResults<Summary>(out);
    if (summary.verdict !== 'ok' || result.code !== 0)
      console.log(`hosts seed ${seed} failed; its report:\n${report.slice(-20_000)}`);
    expect({ seed, verdict: summary.verdict, code: result.code }).toEqual({
      seed,
      verdict: 'ok',
      code: 0,
    });
    expect(report).toMatch(/linearizability .*: ok/);
    // Every node was reached at its DNS name while it listened on 0.0.0.0.
    expect(result.stderr).toContain('every node answers at its name and is recorded at it');
    expect(summary.operations.ok).toBeGreaterThan(500);
    for (const kind of ['isolate', 'cut', 'kill', 'move'])
      expect({ kind, happened: (summary.faults[kind] ?? 0) > 0 }).toEqual({ kind, happened: true });
    // A moved host was found again at its new address by peers that were not restarted.
    expect(summary.moves.length).toBeGreaterThan(0);
    for (const m of summary.moves) expect(m).toMatch(/-> 10\.213\.\d+\.\d+: caught up to index/);
    expect(summary.replicas).toHaveLength(3);
    expect(new Set(summary.replicas.map((r) => r.digest)).size).toBe(1);
    expect(summary.bulk.found).toBe(summary.bulk.keys);
    expect(machineState()).toEqual(before);
  });

  hostsIt('leaves nothing behind when the harness is killed in the middle', async () => {
    const before = machineState();
    const launcher = spawn(process.execPath, [script, '--duration', '60', '--out', out], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    launcher.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    launcher.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((ok) => launcher.once('exit', (code) => ok(code)));
    try {
      const deadline = Date.now() + 120_000;
      while (!stderr.includes('workload started')) {
        if (Date.now() > deadline || launcher.exitCode !== null)
          throw new Error(`the run did not start its workload:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      // The hosts exist now: the harness made them. (A host fault that removes a host and adds
      // it again may strike as the workload starts: all six must be there within seconds.)
      const prefix = `ekv${launcher.pid}x`;
      const hosts = (): string[] => machineState().namespaces.filter((n) => n.startsWith(prefix));
      await waitUntil(() => hosts().length === 6 || undefined, 15_000, 'the six hosts').catch(
        () => undefined,
      );
      expect(hosts()).toHaveLength(6);
      // Kill the harness itself (the launcher's child), not the launcher.
      const harnessPid = Number(
        execFileSync('ps', ['-o', 'pid=', '--ppid', String(launcher.pid)])
          .toString()
          .trim()
          .split('\n')[0],
      );
      expect(harnessPid).toBeGreaterThan(0);
      process.kill(harnessPid, 'SIGKILL');
      expect(await exited).not.toBe(0);
      // The launcher swept up what the dead harness made.
      expect(stdout).toMatch(/removed what the run left behind: .*namespace ekv\d+x-meta-1/);
      expect(machineState()).toEqual(before);
      // The nodes notice that their launcher is gone and stop.
      await waitUntil(
        () => {
          try {
            execFileSync('pgrep', ['-f', `eraftkv-hosts-.*/${'meta-1'}`]);
            return undefined;
          } catch {
            return true;
          }
        },
        30_000,
        'the nodes of the killed run to stop',
        200,
      );
    } finally {
      launcher.kill('SIGKILL');
    }
  });
});
