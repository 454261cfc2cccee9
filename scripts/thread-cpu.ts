// `node scripts/dist/thread-cpu.js --seconds N PID...`
//
// The CPU time each process spent over the next N seconds, split by thread: the main thread (the
// event loop: JS, HTTP/2, N-API calls), RocksDB's own threads (compaction, flush) and every other
// thread (the libuv pool, which runs RocksDB writes and fsyncs, and V8's GC helpers), in user and
// system milliseconds. Read from /proc/<pid>/task/*/stat, so it counts time a thread ran, which
// the V8 profiler does not: it bills a function for the wall time between two samples, including
// time the thread waited for a CPU (docs/performance.md, round 2). Linux only.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** A thread's name and CPU time in clock ticks, from the text of /proc/<pid>/task/<tid>/stat. */
export function parseThreadStat(text: string): { name: string; user: number; system: number } {
  // The name is in parentheses and may itself hold spaces and parentheses: it ends at the last ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`not a /proc stat line: ${text.slice(0, 80)}`);
  const fields = text
    .slice(close + 2)
    .trim()
    .split(' ');
  // After the name: state (field 3), ..., utime (14), stime (15).
  const user = Number(fields[11]);
  const system = Number(fields[12]);
  if (!Number.isFinite(user) || !Number.isFinite(system))
    throw new Error(`no CPU times in /proc stat line: ${text.slice(0, 80)}`);
  return { name: text.slice(open + 1, close), user, system };
}

export type ThreadClass = 'main' | 'rocksdb' | 'other';

export function threadClass(pid: number, tid: number, name: string): ThreadClass {
  if (pid === tid) return 'main';
  if (name.startsWith('rocksdb:')) return 'rocksdb';
  return 'other';
}

type Times = Map<number, { cls: ThreadClass; user: number; system: number }>;

function sample(pid: number): Times {
  const out: Times = new Map();
  for (const entry of readdirSync(`/proc/${pid}/task`)) {
    const tid = Number(entry);
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/task/${entry}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    const { name, user, system } = parseThreadStat(text);
    out.set(tid, { cls: threadClass(pid, tid, name), user, system });
  }
  return out;
}

/** Milliseconds of user and system time per thread class between two samples. */
export function difference(
  before: Times,
  after: Times,
  msPerTick: number,
): Record<ThreadClass, { user: number; system: number }> {
  const out: Record<ThreadClass, { user: number; system: number }> = {
    main: { user: 0, system: 0 },
    rocksdb: { user: 0, system: 0 },
    other: { user: 0, system: 0 },
  };
  for (const [tid, now] of after) {
    const then = before.get(tid) ?? { user: 0, system: 0 };
    out[now.cls].user += (now.user - then.user) * msPerTick;
    out[now.cls].system += (now.system - then.system) * msPerTick;
  }
  return out;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let seconds = 5;
  const pids: number[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--seconds') seconds = Number(args[++i]);
    else if (args[i] === '--help' || args[i] === '-h') {
      console.log('usage: node scripts/dist/thread-cpu.js --seconds N PID...');
      return;
    } else pids.push(Number(args[i]));
  }
  if (!(seconds > 0) || pids.length === 0 || pids.some((p) => !Number.isSafeInteger(p) || p <= 0))
    throw new Error('usage: node scripts/dist/thread-cpu.js --seconds N PID... (N > 0, PIDs > 0)');
  // Clock ticks are 100 per second on every Linux this runs on (sysconf(_SC_CLK_TCK)).
  const msPerTick = 10;
  const before = new Map(pids.map((p) => [p, sample(p)]));
  await sleep(seconds * 1000);
  for (const pid of pids) {
    const d = difference(before.get(pid) ?? (new Map() as Times), sample(pid), msPerTick);
    const total = Object.values(d).reduce((sum, t) => sum + t.user + t.system, 0);
    const parts = (Object.keys(d) as ThreadClass[])
      .map((c) => `${c} ${d[c].user}+${d[c].system}`)
      .join('  ');
    console.log(`pid ${pid}: ${total} ms over ${seconds} s (user+system ms)  ${parts}`);
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
