// `node scripts/dist/profile-summary.js <dir or .cpuprofile files> [--top N]`
//
// Summarises V8 CPU profiles (as `ERAFTKV_PROFILE_DIR=<dir> npm start` writes them, one per node)
// into where a node's busy time goes: gRPC and HTTP/2, protobuf, the Raft core, the log store,
// the rest of the RaftServer runtime, the state machine and services, the RocksDB binding, garbage
// collection and everything else, plus the functions with the most self time. Idle time is left
// out of "busy". Used for docs/performance.md: the breakdown before and after a change.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly hitCount?: number;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  readonly timeDeltas?: readonly number[];
}

/** Categories in the order they are tried; the first that matches a frame takes its time. */
const categories: readonly [string, (fn: string, url: string) => boolean][] = [
  ['idle', (fn) => fn === '(idle)'],
  ['gc', (fn) => fn === '(garbage collector)'],
  ['rocksdb binding', (_fn, url) => /leveldown|level-rocksdb|abstract-level|rocksdb/.test(url)],
  ['grpc + http2', (_fn, url) => /@grpc\/grpc-js|internal\/http2|node:http2/.test(url)],
  ['protobuf', (_fn, url) => /@bufbuild\/protobuf|protocol\/dist\/generated/.test(url)],
  ['raft core', (_fn, url) => /packages\/raft\/dist/.test(url)],
  ['log store', (_fn, url) => /raft-server\/dist\/log-store/.test(url)],
  ['raft runtime', (_fn, url) => /raft-server\/dist|server-kit\/dist/.test(url)],
  ['state machine + service', (_fn, url) => /kv-server\/dist|meta-server\/dist/.test(url)],
  ['node internals', (_fn, url) => url.startsWith('node:') || /^internal\//.test(url)],
  ['program (native, unattributed)', (fn) => fn === '(program)'],
  ['other', () => true],
];

function categoryOf(fn: string, url: string): string {
  for (const [name, test] of categories) if (test(fn, url)) return name;
  return 'other';
}

/** Self time per node id in ms, from the samples and their time deltas. */
function selfTimes(profile: CpuProfile): Map<number, number> {
  const times = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0 && deltas.length === samples.length) {
    for (let i = 0; i < samples.length; i++) {
      // A sample's time is the gap to the next one.
      const ms = (i + 1 < deltas.length ? deltas[i + 1] : 0) / 1000;
      times.set(samples[i], (times.get(samples[i]) ?? 0) + ms);
    }
    return times;
  }
  const hits = profile.nodes.reduce((sum, n) => sum + (n.hitCount ?? 0), 0);
  const msPerHit = hits === 0 ? 0 : (profile.endTime - profile.startTime) / 1000 / hits;
  for (const n of profile.nodes) times.set(n.id, (n.hitCount ?? 0) * msPerHit);
  return times;
}

/**
 * The frame whose category a node's time counts in: native code without a script of its own (an
 * anonymous frame with no URL, such as the inside of a binding's native method) counts where it
 * was called from, so that the RocksDB binding's native work counts as the binding's.
 */
function attributedFrames(profile: CpuProfile): Map<number, ProfileNode> {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const out = new Map<number, ProfileNode>();
  for (const n of profile.nodes) {
    let frame = n;
    while (frame.callFrame.url === '' && frame.callFrame.functionName === '') {
      const up = parent.get(frame.id);
      const next = up === undefined ? undefined : byId.get(up);
      if (next === undefined) break;
      frame = next;
    }
    out.set(n.id, frame);
  }
  return out;
}

/** The breakdown of one profile, `name` heading it. */
export function summarise(name: string, profile: CpuProfile, top: number): string {
  const self = selfTimes(profile);
  const frames = attributedFrames(profile);
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const n of profile.nodes) {
    const ms = self.get(n.id) ?? 0;
    if (ms === 0) continue;
    const { functionName, url } = (frames.get(n.id) ?? n).callFrame;
    const category = categoryOf(functionName, url);
    byCategory.set(category, (byCategory.get(category) ?? 0) + ms);
    if (category === 'idle') continue;
    const where = url === '' ? '' : ` ${url.replace(/^.*\/(packages|node_modules)\//, '$1/')}`;
    const key = `${functionName || '(anonymous)'}${where}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + ms);
  }
  const total = [...byCategory.values()].reduce((a, b) => a + b, 0);
  const busy = total - (byCategory.get('idle') ?? 0);
  const pct = (ms: number): string => `${((100 * ms) / Math.max(busy, 1)).toFixed(1)}%`;
  const lines = [
    `${name}: ${(total / 1000).toFixed(1)} s profiled, ${(busy / 1000).toFixed(1)} s busy`,
    ...[...byCategory.entries()]
      .filter(([name]) => name !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .map(([name, ms]) => `  ${pct(ms).padStart(6)}  ${name}`),
    `  top ${top} functions by self time (share of busy):`,
    ...[...byFunction.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => `  ${pct(ms).padStart(6)}  ${name}`),
  ];
  return lines.join('\n');
}

function main(): number {
  const args = process.argv.slice(2);
  let top = 15;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--top') {
      top = Number(args[++i]);
      if (!Number.isInteger(top) || top < 1) {
        process.stderr.write(`--top must be a positive integer, got ${args[i]}\n`);
        return 2;
      }
    } else if (statSync(args[i], { throwIfNoEntry: false })?.isDirectory()) {
      for (const f of readdirSync(args[i]).sort()) {
        if (f.endsWith('.cpuprofile')) files.push(join(args[i], f));
      }
    } else files.push(args[i]);
  }
  if (files.length === 0) {
    process.stderr.write(
      'usage: node scripts/dist/profile-summary.js <dir or .cpuprofile files> [--top N]\n',
    );
    return 2;
  }
  for (const f of files) {
    const profile = JSON.parse(readFileSync(f, 'utf8')) as CpuProfile;
    process.stdout.write(`${summarise(basename(f), profile, top)}\n\n`);
  }
  return 0;
}

if (require.main === module) process.exitCode = main();
