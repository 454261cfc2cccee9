// Hosts as Linux network namespaces: every node of a run gets a namespace of its own with one
// interface (eth0) and its own IPv4 address on a private bridge in the root namespace, and a DNS
// name (<host>.eraftkv.test) that every namespace and the harness resolve through a hosts file.
// Faults are host-level: a host's link down, routes between two sets of hosts blackholed, a host
// removed and added again under its name at another address.
//
// The harness runs in a private mount namespace (so that its /etc/hosts can be its own); the
// namespaces, links and routes are made in the mount namespace of the process that launched it
// (`nsenter --mount=...`), where `ip netns` keeps them and where `ip netns list` shows them. Every
// name carries the run's prefix (ekv<pid>), so that sweep() removes exactly what a run made.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where ip netns exec finds a namespace's own /etc/hosts. */
const netnsEtc = '/etc/netns';

/** The DNS name of a host. */
export function hostName(host: string): string {
  return `${host}.eraftkv.test`;
}

/** Whether this machine can run hosts as namespaces, and if not why. */
export function hostsUsable(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'not Linux' };
  if (process.getuid?.() !== 0)
    return { ok: false, reason: 'needs root (ip netns, veth pairs, a bridge)' };
  for (const tool of ['ip', 'unshare', 'nsenter', 'mount']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return { ok: false, reason: `the command ${tool} is missing (iproute2, util-linux)` };
    }
  }
  const probe = `ekvprobe${process.pid}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync('ip', ['link', 'add', `${probe}b`, 'type', 'bridge'], { stdio: 'pipe' });
    execFileSync('ip', ['link', 'del', `${probe}b`], { stdio: 'pipe' });
    return { ok: true };
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    return {
      ok: false,
      reason: `ip netns or a bridge cannot be made here: ${stderr ?? (err as Error).message}`,
    };
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
    } catch {
      // It was never made.
    }
  }
}

interface Host {
  readonly name: string;
  /** The namespace (ip netns) name. */
  readonly netns: string;
  /** The root-namespace end of its veth pair (on the bridge); a new one after a move. */
  link: string;
  address: string;
}

export class HostNetwork {
  private readonly hosts = new Map<string, Host>();
  private readonly bridge: string;
  private subnet = '';
  private nextHostNumber = 11;
  private nextLink = 0;
  /** Blackholed routes: [namespace, address]. */
  private blackholes: [string, string][] = [];

  /**
   * @param prefix every name this run makes starts with it (ekv<pid>)
   * @param rootMount the mount namespace to run `ip` in (/proc/<pid>/ns/mnt), or null for ours
   * @param harnessHosts the file bind-mounted over the harness's /etc/hosts, or null
   */
  constructor(
    readonly prefix: string,
    private readonly rootMount: string | null,
    private readonly harnessHosts: string | null,
  ) {
    this.bridge = `${prefix}b`;
  }

  /** The command line that runs `argv` where the namespaces live. */
  command(argv: readonly string[]): string[] {
    return this.rootMount === null
      ? [...argv]
      : ['nsenter', `--mount=${this.rootMount}`, '--', ...argv];
  }

  private ip(...args: string[]): string {
    const [cmd, ...rest] = this.command(['ip', ...args]);
    try {
      return execFileSync(cmd, rest, { stdio: 'pipe' }).toString();
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
      throw new Error(`ip ${args.join(' ')} failed: ${stderr || (err as Error).message}`);
    }
  }

  /** Makes the bridge on a /24 no interface of this machine uses. */
  createBridge(): void {
    const used = this.ip('-4', '-o', 'addr', 'show');
    let third = -1;
    for (let i = 0; i < 256; i++) {
      if (!used.includes(` 10.213.${i}.`)) {
        third = i;
        break;
      }
    }
    if (third < 0) throw new Error('no free 10.213.x.0/24 for the hosts bridge');
    this.subnet = `10.213.${third}`;
    this.ip('link', 'add', this.bridge, 'type', 'bridge');
    this.ip('addr', 'add', `${this.subnet}.1/24`, 'dev', this.bridge);
    this.ip('link', 'set', this.bridge, 'up');
  }

  /** Adds a host: its namespace, a veth pair to the bridge, the next free address. */
  addHost(name: string): string {
    if (this.hosts.has(name)) throw new Error(`host ${name} exists`);
    const host: Host = {
      name,
      netns: `${this.prefix}-${name}`,
      link: `${this.prefix}v${this.nextLink++}`,
      address: `${this.subnet}.${this.nextHostNumber++}`,
    };
    if (this.nextHostNumber > 254) throw new Error('the hosts bridge has no address left');
    this.plug(host);
    this.hosts.set(name, host);
    this.writeHostsFiles();
    return host.address;
  }

  private plug(host: Host): void {
    const inner = `${this.prefix}p${host.link.slice(this.prefix.length + 1)}`;
    this.ip('netns', 'add', host.netns);
    this.ip('link', 'add', host.link, 'type', 'veth', 'peer', 'name', inner);
    this.ip('link', 'set', inner, 'netns', host.netns);
    this.ip('-n', host.netns, 'link', 'set', inner, 'name', 'eth0');
    this.ip('-n', host.netns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0');
    this.ip('-n', host.netns, 'link', 'set', 'lo', 'up');
    this.ip('-n', host.netns, 'link', 'set', 'eth0', 'up');
    this.ip('link', 'set', host.link, 'master', this.bridge);
    this.ip('link', 'set', host.link, 'up');
  }

  /** The hosts file every namespace and the harness read: one name per host. */
  private hostsText(): string {
    const lines = ['127.0.0.1 localhost', '::1 localhost'];
    for (const h of this.hosts.values()) lines.push(`${h.address} ${hostName(h.name)}`);
    return `${lines.join('\n')}\n`;
  }

  /**
   * Rewrites every hosts file in place (a bind mount keeps the inode it was made with, so the
   * file is truncated and written, never replaced).
   */
  private writeHostsFiles(): void {
    const text = this.hostsText();
    for (const h of this.hosts.values()) {
      const dir = join(netnsEtc, h.netns);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'hosts'), text);
    }
    if (this.harnessHosts !== null) writeFileSync(this.harnessHosts, text);
  }

  address(name: string): string {
    const host = this.hosts.get(name);
    if (host === undefined) throw new Error(`no host ${name}`);
    return host.address;
  }

  /** The command prefix that runs a program on host `name`. */
  launcher(name: string): string[] {
    const host = this.hosts.get(name);
    if (host === undefined) throw new Error(`no host ${name}`);
    return this.command(['ip', 'netns', 'exec', host.netns]);
  }

  /** A host's link down (it is cut from every other host and from the clients) or up again. */
  setLinkUp(name: string, up: boolean): void {
    const host = this.hosts.get(name);
    if (host === undefined) throw new Error(`no host ${name}`);
    this.ip('link', 'set', host.link, up ? 'up' : 'down');
  }

  /** No packet between a host of `a` and a host of `b`, either way (clients still reach both). */
  cut(a: readonly string[], b: readonly string[]): void {
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const x of from) {
        const nsx = this.hosts.get(x)?.netns;
        if (nsx === undefined) throw new Error(`no host ${x}`);
        for (const y of to) {
          const address = this.address(y);
          this.ip('-n', nsx, 'route', 'add', 'blackhole', `${address}/32`);
          this.blackholes.push([nsx, address]);
        }
      }
    }
  }

  /** Every cut healed. */
  healCuts(): void {
    for (const [ns, address] of this.blackholes) {
      try {
        this.ip('-n', ns, 'route', 'del', 'blackhole', `${address}/32`);
      } catch {
        // The namespace was replaced since (a moved host): its routes went with it.
      }
    }
    this.blackholes = [];
  }

  /**
   * Removes host `name` (its namespace and link) and adds it again under the same name at a new
   * address: what a rescheduled pod or a replaced machine looks like to its peers. The processes
   * in it must be stopped first. Returns the new address.
   */
  move(name: string): string {
    const host = this.hosts.get(name);
    if (host === undefined) throw new Error(`no host ${name}`);
    this.blackholes = this.blackholes.filter(([ns, a]) => ns !== host.netns && a !== host.address);
    this.ip('netns', 'del', host.netns);
    // The pair goes with the namespace, but not always at once: delete it, or find it gone.
    try {
      this.ip('link', 'del', host.link);
    } catch {
      // Already gone with its namespace.
    }
    host.link = `${this.prefix}v${this.nextLink++}`;
    host.address = `${this.subnet}.${this.nextHostNumber++}`;
    if (this.nextHostNumber > 254) throw new Error('the hosts bridge has no address left');
    this.plug(host);
    this.writeHostsFiles();
    return host.address;
  }

  /** Removes everything this run made; returns what it removed (for the report). */
  close(): string[] {
    return sweep(this.prefix, this.rootMount);
  }
}

/**
 * Removes every namespace, link and hosts file whose name starts with `prefix` (after a run, or
 * for a run that died): the namespaces' veth ends go with them, the bridge last.
 */
export function sweep(prefix: string, rootMount: string | null = null): string[] {
  const run = (argv: string[]): string => {
    const full = rootMount === null ? argv : ['nsenter', `--mount=${rootMount}`, '--', ...argv];
    try {
      return execFileSync(full[0], full.slice(1), { stdio: 'pipe' }).toString();
    } catch {
      return '';
    }
  };
  const removed: string[] = [];
  const namespaces = run(['ip', 'netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(`${prefix}-`));
  for (const ns of namespaces) {
    run(['ip', 'netns', 'del', ns]);
    removed.push(`namespace ${ns}`);
  }
  const links = run(['ip', '-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n.startsWith(prefix));
  // veth ends first, the bridge last.
  for (const link of links.sort((a, b) => (a.endsWith('b') ? 1 : 0) - (b.endsWith('b') ? 1 : 0))) {
    run(['ip', 'link', 'del', link]);
    removed.push(`link ${link}`);
  }
  if (existsSync(netnsEtc)) {
    for (const dir of readdirSync(netnsEtc).filter((d) => d.startsWith(`${prefix}-`))) {
      rmSync(join(netnsEtc, dir), { recursive: true, force: true });
      removed.push(`${netnsEtc}/${dir}`);
    }
  }
  return removed;
}
