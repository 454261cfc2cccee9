// `npm run sim -- [--seeds N] [--nodes 3|5|7] [--seed S] [--first S] [--ticks T] [--trace]`
//
// Runs the seeded simulation of the Raft core (@eraftkv/raft/simulation). With --seeds it runs seeds first..first+N-1 with a
// progress line and prints every failing seed; with --seed it replays one seed exactly (add
// --trace to print its whole trace). Exits 1 if any seed found a violation.
import {
  runSimulation,
  simulationOptionsFor,
  simulationProfiles,
  type SimulationOptions,
  type SimulationProfile,
  type SimulationResult,
} from '@eraftkv/raft/simulation';

interface CliOptions {
  seeds: number;
  first: number;
  nodes: number[];
  seed: number | null;
  ticks: number | null;
  trace: boolean;
  churn: boolean;
  profile: SimulationProfile;
}

const usage = `usage: npm run sim -- [options]
  --seeds N      run N seeds (default 1000)
  --first S      the first seed of the range (default 1)
  --nodes N      cluster size: 3, 5 or 7; repeat or use 3,5 for several (default 3)
  --seed S       replay exactly one seed
  --profile P    ${Object.keys(simulationProfiles).join(', ')} or mixed (default mixed: every
                 other seed is a leader-storm run)
  --ticks T      ticks of the fault phase (default: the profile's)
  --no-churn     no membership changes
  --trace        print the whole trace (with --seed)`;

function parseArgs(argv: readonly string[]): CliOptions {
  const o: CliOptions = {
    seeds: 1000,
    first: 1,
    nodes: [],
    seed: null,
    ticks: null,
    trace: false,
    churn: true,
    profile: 'mixed',
  };
  const int = (name: string, value: string | undefined): number => {
    const n = Number(value);
    if (value === undefined || !Number.isSafeInteger(n) || n < 0) {
      throw new Error(`${name} needs a non-negative integer, got ${value ?? 'nothing'}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    switch (arg) {
      case '--seeds':
        o.seeds = int(arg, argv[++i]);
        break;
      case '--first':
        o.first = int(arg, argv[++i]);
        break;
      case '--seed':
        o.seed = int(arg, argv[++i]);
        break;
      case '--ticks':
        o.ticks = int(arg, argv[++i]);
        break;
      case '--nodes':
        for (const part of (argv[++i] ?? '').split(',')) {
          const n = int(arg, part);
          if (![3, 5, 7].includes(n)) throw new Error(`--nodes must be 3, 5 or 7, got ${n}`);
          o.nodes.push(n);
        }
        break;
      case '--profile': {
        const name = argv[++i] ?? '';
        if (name !== 'mixed' && !(name in simulationProfiles)) {
          throw new Error(`unknown profile ${name}`);
        }
        o.profile = name as SimulationProfile;
        break;
      }
      case '--trace':
        o.trace = true;
        break;
      case '--no-churn':
        o.churn = false;
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${usage}\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${arg}\n${usage}`);
    }
  }
  if (o.nodes.length === 0) o.nodes = [3];
  return o;
}

function describeResult(r: SimulationResult): string {
  return (
    `seed ${r.seed} nodes ${r.nodes} ticks ${r.ticks}: ${r.violation ?? 'ok'} ` +
    `(trace ${r.traceHash}, ${r.steps} steps, committed ${r.committedIndex}, ` +
    `${r.leaderChanges} leaders, ${r.snapshotsInstalled} snapshots, ` +
    `${r.membershipChanges} membership changes, ${r.readsServed} reads)`
  );
}

function main(): number {
  let o: CliOptions;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const optionsFor = (seed: number, nodes: number): SimulationOptions => {
    const options = simulationOptionsFor(seed, nodes, o.profile);
    return {
      ...options,
      ticks: o.ticks ?? options.ticks,
      churn: o.churn && options.churn,
    };
  };
  if (o.seed !== null) {
    let failed = false;
    for (const nodes of o.nodes) {
      const r = runSimulation({
        ...optionsFor(o.seed, nodes),
        hashTrace: true,
        trace: o.trace ? (line) => process.stdout.write(`${line}\n`) : undefined,
      });
      process.stdout.write(`${describeResult(r)}\n`);
      failed ||= r.violation !== null;
    }
    return failed ? 1 : 0;
  }
  const started = process.hrtime.bigint();
  const failures: SimulationResult[] = [];
  let done = 0;
  const total = o.seeds * o.nodes.length;
  const tty = process.stderr.isTTY;
  let lastPrint = 0n;
  for (const nodes of o.nodes) {
    for (let seed = o.first; seed < o.first + o.seeds; seed++) {
      const r = runSimulation(optionsFor(seed, nodes));
      done++;
      if (r.violation !== null) {
        failures.push(r);
        process.stderr.write(`${tty ? '\r\x1b[K' : ''}FAIL ${describeResult(r)}\n`);
        process.stderr.write(
          `  replay: npm run sim -- --seed ${seed} --nodes ${nodes} --profile ${o.profile} --trace\n`,
        );
      }
      const now = process.hrtime.bigint();
      if (now - lastPrint > 1_000_000_000n || done === total) {
        lastPrint = now;
        const seconds = Number(now - started) / 1e9;
        const line = `${done}/${total} runs, ${failures.length} failed, ${seconds.toFixed(0)} s, ${(done / seconds).toFixed(1)} runs/s`;
        process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
      }
    }
  }
  if (tty) process.stderr.write('\n');
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(
    `simulation: ${total} runs (${o.seeds} seeds x nodes ${o.nodes.join(',')}), ` +
      `${failures.length} violations, ${seconds.toFixed(1)} s\n`,
  );
  for (const f of failures) process.stdout.write(`  ${describeResult(f)}\n`);
  return failures.length > 0 ? 1 : 0;
}

process.exitCode = main();
