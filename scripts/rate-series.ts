// `node scripts/dist/rate-series.js --metrics URL [--counter NAME] [--seconds N]`
//
// Samples a counter from a node's /metrics once a second and prints how much it grew in each
// second, then a verdict on stalls: the median rate, the slowest second, and every second below
// half the median. With the default counter (entries applied) on a kv node under a steady load,
// this is the per-second throughput of the group, which shows whether snapshots or compactions
// stall writes (docs/performance.md).
import { setTimeout as sleep } from 'node:timers/promises';

/** The sum of every sample of `counter` in Prometheus text (all label sets). */
export function counterValue(text: string, counter: string): number | null {
  let total: number | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith(`${counter}{`) || line.startsWith(`${counter} `)) {
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isFinite(value)) total = (total ?? 0) + value;
    }
  }
  return total;
}

export interface StallReport {
  readonly medianPerSecond: number;
  readonly slowestPerSecond: number;
  /** 1-based seconds whose rate was below half the median. */
  readonly stalledSeconds: readonly number[];
}

export function stallReport(perSecond: readonly number[]): StallReport {
  if (perSecond.length === 0)
    return { medianPerSecond: 0, slowestPerSecond: 0, stalledSeconds: [] };
  const sorted = [...perSecond].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  const stalled: number[] = [];
  perSecond.forEach((rate, i) => {
    if (rate < median / 2) stalled.push(i + 1);
  });
  return { medianPerSecond: median, slowestPerSecond: sorted[0], stalledSeconds: stalled };
}

async function sample(url: string, counter: string): Promise<number> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  const value = counterValue(await res.text(), counter);
  if (value === null) throw new Error(`${url} has no counter ${counter}`);
  return value;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  let url = '';
  let counter = 'eraftkv_server_proposals_applied_total';
  let seconds = 60;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = args[++i] ?? '';
    if (flag === '--metrics') url = value;
    else if (flag === '--counter') counter = value;
    else if (flag === '--seconds') seconds = Number(value);
    else {
      process.stderr.write(`unknown flag ${flag}\n`);
      return 2;
    }
  }
  if (url === '' || !Number.isInteger(seconds) || seconds < 1) {
    process.stderr.write(
      'usage: node scripts/dist/rate-series.js --metrics URL [--counter NAME] [--seconds N>=1]\n',
    );
    return 2;
  }
  const perSecond: number[] = [];
  let last = await sample(url, counter);
  let next = Date.now() + 1000;
  for (let s = 1; s <= seconds; s++) {
    await sleep(Math.max(0, next - Date.now()));
    next += 1000;
    const now = await sample(url, counter);
    perSecond.push(now - last);
    process.stdout.write(`${s} ${now - last}\n`);
    last = now;
  }
  const report = stallReport(perSecond);
  process.stdout.write(
    `median ${report.medianPerSecond}/s, slowest second ${report.slowestPerSecond}/s, ` +
      `seconds below half the median: ${report.stalledSeconds.length === 0 ? 'none' : report.stalledSeconds.join(',')}\n`,
  );
  return report.stalledSeconds.length === 0 ? 0 : 1;
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`rate-series: ${(err as Error).message}\n`);
      process.exitCode = 2;
    },
  );
}
