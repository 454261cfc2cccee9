// bench put|get: a closed-loop load generator with a progress bar and a latency summary.
import type { Argv } from 'yargs';
import { SingleBar } from 'cli-progress';
import { randomBytes } from 'node:crypto';
import { positiveInt, textArg, type Context, type Runner } from '../context';
import { exitCodes, UsageError } from '../exit-codes';
import { json, renderTable } from '../output';

export interface BenchSummary {
  readonly op: 'put' | 'get';
  readonly clients: number;
  readonly total: number;
  readonly ok: number;
  readonly errors: number;
  readonly seconds: number;
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly firstError: string | null;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function bench(ctx: Context, args: Record<string, unknown>): Promise<number> {
  const op = textArg(args.op, '<op>');
  if (op !== 'put' && op !== 'get') throw new UsageError(`bench measures put or get, not "${op}"`);
  const clients = positiveInt(args.clients, '--clients');
  const total = positiveInt(args.total, '--total');
  const valueSize = Number(args.valueSize);
  if (!Number.isSafeInteger(valueSize) || valueSize < 0)
    throw new UsageError('--value-size must be a non-negative integer');
  const keySpace = positiveInt(args.keySpace ?? total, '--key-space');
  const prefix = textArg(args.prefix, '--prefix');
  const client = ctx.client();
  const value = randomBytes(valueSize);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  let next = 0;
  const bar = new SingleBar({
    format: `bench ${op} [{bar}] {percentage}% {value}/{total} ops | {rate} ops/s | errors {errors}`,
    hideCursor: true,
    stream: process.stderr,
  });
  bar.start(total, 0, { rate: 0, errors: 0 });
  const started = process.hrtime.bigint();
  const seconds = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < total) {
        const i = next++;
        const key = `${prefix}${i % keySpace}`;
        const t0 = process.hrtime.bigint();
        try {
          if (op === 'put') await client.put(key, value);
          else await client.get(key);
          latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
        const done = latencies.length + errors;
        if (done % 50 === 0 || done === total)
          bar.update(done, { rate: Math.round(done / seconds()), errors });
      }
    }),
  );
  const elapsed = seconds();
  bar.update(total, { rate: Math.round(total / elapsed), errors });
  bar.stop();
  latencies.sort((a, b) => a - b);
  const summary: BenchSummary = {
    op,
    clients,
    total,
    ok: latencies.length,
    errors,
    seconds: Number(elapsed.toFixed(3)),
    opsPerSecond: Math.round(latencies.length / elapsed),
    p50Ms: Number(percentile(latencies, 50).toFixed(2)),
    p90Ms: Number(percentile(latencies, 90).toFixed(2)),
    p99Ms: Number(percentile(latencies, 99).toFixed(2)),
    maxMs: Number((latencies.at(-1) ?? 0).toFixed(2)),
    firstError,
  };
  if (ctx.writeOut === 'json') ctx.io.out(json(summary));
  else {
    const rows = [
      ['ops', `${summary.ok} ok, ${summary.errors} errors`],
      ['duration', `${summary.seconds} s`],
      ['throughput', `${summary.opsPerSecond} ops/s`],
      ['latency p50', `${summary.p50Ms} ms`],
      ['latency p90', `${summary.p90Ms} ms`],
      ['latency p99', `${summary.p99Ms} ms`],
      ['latency max', `${summary.maxMs} ms`],
    ];
    if (firstError !== null) rows.push(['first error', firstError]);
    if (ctx.writeOut === 'table')
      ctx.io.out(renderTable(['BENCH', `${op} x${clients} clients`], rows));
    else for (const [k, v] of rows) ctx.io.out(`${k}: ${v}\n`);
  }
  return errors > 0 ? exitCodes.error : exitCodes.success;
}

export function benchCommands(yargs: Argv, run: Runner): Argv {
  const builder = (y: Argv): Argv =>
    y
      .positional('op', { choices: ['put', 'get'], describe: 'what to measure' })
      .option('clients', { type: 'number', default: 16, describe: 'requests in flight at once' })
      .option('total', { type: 'number', default: 10000, describe: 'requests to make' })
      .option('value-size', { type: 'number', default: 256, describe: 'bytes per value (put)' })
      .option('key-space', { type: 'number', describe: 'distinct keys (default: --total)' })
      .option('prefix', { type: 'string', default: 'bench-', describe: 'key prefix' })
      .example('$0 bench put --clients 64 --total 100000', '')
      .example('$0 bench get --clients 64 --total 100000 -w json', '');
  return yargs
    .command(
      'bench <op>',
      'Measure put or get throughput and latency (progress on stderr)',
      builder,
      run(bench),
    )
    .command('run_bench <op>', false, builder, run(bench));
}
