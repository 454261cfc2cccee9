// `npm start` (the built scripts/dist/start-cluster.js) as an operator uses it: it stays in the
// foreground until Ctrl-C even once every node it launched has died, and Ctrl-C then stops the
// nodes restarted by hand from cluster.json too; a second launcher on a running cluster, a port
// in use and a node that dies during start-up all end it at once, non-zero, saying why.
import { isNodeOfDataDir, pidFilePath, readPidFile } from '@eraftkv/server-kit';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repositoryDir, waitUntil, type ExitStatus } from '../local-cluster';

jest.setTimeout(240_000);

const launcherBin = join(repositoryDir, 'scripts/dist/start-cluster.js');

/** One run of the launcher, its stdout and stderr collected together. */
class Launcher {
  readonly child: ChildProcess;
  output = '';
  readonly exit: Promise<ExitStatus>;

  constructor(args: readonly string[]) {
    this.child = spawn(process.execPath, [launcherBin, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exit = new Promise((ok) =>
      this.child.once('close', (code, signal) => ok({ code, signal })),
    );
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Waits until the output matches `pattern`; fails at once if the launcher exits first. */
  async waitFor(pattern: RegExp, timeoutMs = 120_000): Promise<void> {
    let quit = false;
    await waitUntil(
      () => pattern.test(this.output) || (quit = this.exited),
      timeoutMs,
      `launcher output matching ${String(pattern)} (output so far:\n${this.output})`,
    );
    if (quit && !pattern.test(this.output))
      throw new Error(`the launcher exited before printing ${String(pattern)}:\n${this.output}`);
  }

  /** Waits for the launcher to exit, at most `timeoutMs`. */
  async ended(timeoutMs: number): Promise<ExitStatus> {
    await waitUntil(() => this.exited, timeoutMs, `the launcher to exit:\n${this.output}`);
    return this.exit;
  }
}

interface ManifestNode {
  name: string;
  grpc: string;
  metrics: string;
  dataDir: string;
  command: string[];
}

async function manifest(dir: string): Promise<ManifestNode[]> {
  return (
    JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as { nodes: ManifestNode[] }
  ).nodes;
}

/** Live processes whose command line mentions `dir` (nodes of a cluster under it). */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (cmdline.includes(dir) && state !== 'Z') pids.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}

describe('npm start (the local cluster launcher)', () => {
  let root: string;
  let dir: string;
  const launchers: Launcher[] = [];
  const byHand: ChildProcess[] = [];
  const blockers: Server[] = [];
  let first: Launcher;

  const launch = (args: readonly string[]): Launcher => {
    const l = new Launcher(args);
    launchers.push(l);
    return l;
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'eraftkv-launcher-'));
    dir = join(root, 'cluster');
  });
  afterAll(async () => {
    for (const l of launchers) l.child.kill('SIGKILL');
    for (const c of byHand) c.kill('SIGKILL');
    for (const s of blockers) s.close();
    // Nodes of a killed launcher stop by themselves; make sure, whatever happened above.
    for (const pid of processesUnder(root)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    await rm(root, { recursive: true, force: true });
  });

  it('starts a cluster, and a second launcher on it stops at once naming the data dirs and ports in use', async () => {
    first = launch(['--data-dir', dir, '--free-ports', '--nodes', '1']);
    await first.waitFor(/eraftkv is ready/);
    expect(first.output).toMatch(/export ERAFTKV_ENDPOINTS=127\.0\.0\.1:\d+/);
    const nodes = await manifest(dir);
    const pids = nodes.map((n) => readPidFile(n.dataDir));
    expect(pids.every((p) => p !== null)).toBe(true);

    const second = launch(['--data-dir', dir, '--nodes', '1']);
    const status = await second.ended(20_000);
    expect(status.code).toBe(1);
    nodes.forEach((n, i) => {
      expect(second.output).toContain(`data dir ${n.dataDir} is in use by process ${pids[i]}`);
      expect(second.output).toContain(`port ${n.grpc} (${n.name} gRPC) is in use`);
      expect(second.output).toContain(`port ${n.metrics} (${n.name} metrics) is in use`);
    });
    // It started nothing: the first cluster's nodes are the only ones, and still run.
    expect(first.exited).toBe(false);
    const byNumber = (a: number, b: number): number => a - b;
    expect(processesUnder(dir).sort(byNumber)).toEqual(
      [...pids.map(Number), first.child.pid!].sort(byNumber),
    );
  });

  it('stays in the foreground once every node it launched has died, and Ctrl-C stops the nodes restarted by hand', async () => {
    const nodes = await manifest(dir);
    for (const n of nodes) process.kill(readPidFile(n.dataDir)!, 'SIGKILL');
    for (const n of nodes) {
      await first.waitFor(
        new RegExp(`${n.name} exited \\(signal SIGKILL\\); its log: .*${n.name}\\.log`),
        30_000,
      );
    }
    // Restart every node by hand with its command line from cluster.json, as the README says.
    const restarted = nodes.map((n) => {
      const child = spawn(n.command[0], n.command.slice(1), { stdio: 'ignore' });
      byHand.push(child);
      return { node: n, child, exit: new Promise((ok) => child.once('exit', ok)) };
    });
    for (const { node, child } of restarted) {
      await waitUntil(
        () => readPidFile(node.dataDir) === child.pid,
        60_000,
        `${node.name} to run again`,
      );
      // The launcher notices, and (unlike before) is still there to say so.
      await first.waitFor(new RegExp(`${node.name} is running again \\(pid ${child.pid}`), 30_000);
    }
    expect(first.exited).toBe(false);

    first.child.kill('SIGINT');
    const status = await first.ended(60_000);
    expect(status).toEqual({ code: 0, signal: null });
    for (const { node, child, exit } of restarted) {
      expect(first.output).toContain(`stopping ${node.name} (pid ${child.pid}, started outside`);
      // Stopped before the launcher exited, and gracefully: exit 0, pid file removed.
      expect(isNodeOfDataDir(child.pid!, node.dataDir)).toBe(false);
      expect(await exit).toBe(0);
      expect(existsSync(pidFilePath(node.dataDir))).toBe(false);
    }
    expect(processesUnder(dir)).toEqual([]);
  });

  it('starts a cluster with mutual TLS (--tls) and says how eraftkv-ctl reaches it', async () => {
    const tlsDir = join(root, 'tls-cluster');
    const launcher = launch(['--data-dir', tlsDir, '--free-ports', '--nodes', '1', '--tls']);
    await launcher.waitFor(/eraftkv is ready \(mutual TLS\)/);
    const endpoints = /export ERAFTKV_ENDPOINTS=(\S+)/.exec(launcher.output)?.[1];
    const settings = /export (ERAFTKV_CACERT=\S+ ERAFTKV_CERT=\S+ ERAFTKV_KEY=\S+)/.exec(
      launcher.output,
    )?.[1];
    expect(endpoints).toBeDefined();
    expect(settings).toBeDefined();
    const env: Record<string, string> = { ...process.env, ERAFTKV_ENDPOINTS: endpoints! };
    for (const pair of settings!.split(' ')) {
      const [name, value] = pair.split('=');
      env[name] = value;
      expect(existsSync(value)).toBe(true);
    }
    const ctl = (args: string[], withEnv: Record<string, string>): Promise<string> =>
      new Promise((resolve) => {
        const child = spawn(
          process.execPath,
          [join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js'), ...args],
          { env: withEnv, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.once('close', (code) => resolve(`${code}: ${out}`));
      });
    // The welcome text's settings work as printed; without the client certificate, nothing does.
    expect(await ctl(['put', 'secure', 'yes'], env)).toBe('0: OK\n');
    expect(await ctl(['get', 'secure'], env)).toBe('0: yes\n');
    const withoutCert = { ...env };
    delete withoutCert.ERAFTKV_CERT;
    delete withoutCert.ERAFTKV_KEY;
    expect(await ctl(['--command-timeout', '2s', 'get', 'secure'], withoutCert)).toMatch(
      /^2: Error: .*certificate required/s,
    );
    // The auth tour as printed: root enables auth, app gets app/ and nothing else.
    const tour = launcher.output
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('npx eraftkv-ctl') && /auth enable|role|app\/hello/.test(l));
    expect(tour).toHaveLength(3);
    for (const line of tour) {
      for (const command of line.split(' && ')) {
        const args = command.replace(/^npx eraftkv-ctl /, '').split(' ');
        expect(await ctl(args, env)).toMatch(/^0: /);
      }
    }
    const appFlags = tour[2]
      .replace(/^npx eraftkv-ctl /, '')
      .split(' ')
      .slice(0, 4);
    expect(await ctl([...appFlags, 'get', 'app/hello'], env)).toBe('0: world\n');
    // The kv group takes the table up within about one poll of the meta group.
    const refusal = await waitUntil(
      async () => {
        const out = await ctl([...appFlags, 'put', 'secure', 'no'], env);
        return out.startsWith('0:') ? undefined : out;
      },
      20_000,
      'the kv group to refuse app a write outside app/',
    );
    expect(refusal).toMatch(/^1: Error: .*user "app" may not write key "secure"/s);
    expect(await ctl(['auth', 'status'], env)).toMatch(/Authentication Status: true/);
    expect(await ctl(['role', 'get', 'app'], env)).toBe(
      '0: Role app\nKV Read:\n\t[app/, app0) (prefix app/)\nKV Write:\n\t[app/, app0) (prefix app/)\n',
    );
    launcher.child.kill('SIGINT');
    expect((await launcher.ended(30_000)).code).toBe(0);
  });

  it('stops at once, naming it, when a port of the cluster is in use', async () => {
    const kv = (await manifest(dir)).find((n) => n.name === 'kv-1-1')!;
    const port = Number(kv.metrics.slice(kv.metrics.lastIndexOf(':') + 1));
    const blocker = createServer();
    blockers.push(blocker);
    await new Promise<void>((ok, fail) => {
      blocker.once('error', fail);
      blocker.listen(port, '127.0.0.1', ok);
    });
    const launcher = launch(['--data-dir', dir, '--nodes', '1']);
    const status = await launcher.ended(20_000);
    expect(status.code).toBe(1);
    expect(launcher.output).toContain(`port ${kv.metrics} (kv-1-1 metrics) is in use`);
    expect(launcher.output).not.toMatch(/is in use by process/);
    expect(processesUnder(dir)).toEqual([]);
    blocker.close();
  });

  it('stops the other nodes and shows the last lines of the log when a node exits during start-up', async () => {
    const broken = join(root, 'broken');
    await mkdir(broken);
    // kv-1-1's data dir is a file: that node cannot start.
    await writeFile(join(broken, 'kv-1-1'), 'not a directory\n');
    const launcher = launch(['--data-dir', broken, '--free-ports', '--nodes', '1']);
    const status = await launcher.ended(60_000);
    expect(status.code).toBe(1);
    expect(launcher.output).toMatch(
      /kv-1-1 exited during start-up \(code 1\); the last lines of .*kv-1-1\.log:\n {2}\| .*ENOTDIR/,
    );
    expect(launcher.output).toMatch(/stopped/);
    expect(processesUnder(broken)).toEqual([]);
  });
});
