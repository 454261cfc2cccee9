// `node scripts/dist/bench-watch.js [--endpoints 127.0.0.1:8088] [--keys 1000] [--key-prefix key/]
//                                   [--duration 30] [--out FILE]`
//
// Watchers for the watch benchmark: one EraftKvClient holding a watch of each of --keys keys
// (key/000, key/001, ... as ../shared/bench/goload names them), counting the events delivered
// per second while a load generator writes those keys. Prints one line per second and, at the
// end, a JSON summary (events, events/s, this process's CPU and RSS); the servers' RSS and the
// put rate come from the load generator's run beside it (docs/watch.md, README "Benchmarks").
import { writeFile } from 'node:fs/promises';
import { EraftKvClient } from '@eraftkv/client';
import { OptionReader } from './suite-options';

const usage = `usage: node scripts/dist/bench-watch.js [options]
  --endpoints LIST  meta servers (default 127.0.0.1:8088,127.0.0.1:8089,127.0.0.1:8090)
  --keys N          keys watched, one watch each (default 1000)
  --key-prefix P    the keys are P000.. with as many digits as N-1 has (default key/)
  --duration S      seconds to count for after every watch started (default 30)
  --out FILE        also write the JSON summary there`;

async function main(): Promise<void> {
  const o = {
    endpoints: '127.0.0.1:8088,127.0.0.1:8089,127.0.0.1:8090',
    keys: 1000,
    prefix: 'key/',
    durationS: 30,
    out: '',
  };
  const read = new OptionReader(process.argv.slice(2), usage);
  for (let arg = read.next(); arg !== undefined; arg = read.next()) {
    switch (arg) {
      case '--endpoints':
        o.endpoints = read.value();
        break;
      case '--keys':
        o.keys = read.int(1);
        break;
      case '--key-prefix':
        o.prefix = read.value();
        break;
      case '--duration':
        o.durationS = read.int(1);
        break;
      case '--out':
        o.out = read.value();
        break;
      case '--help':
      case '-h':
        console.log(usage);
        return;
      default:
        throw read.unknown(arg);
    }
  }
  const width = String(o.keys - 1).length;
  const keys = Array.from(
    { length: o.keys },
    (_, i) => `${o.prefix}${String(i).padStart(width, '0')}`,
  );
  const client = new EraftKvClient({ endpoints: o.endpoints.split(','), deadlineMs: 30_000 });
  const stop = new AbortController();
  let events = 0;
  let started = 0;
  const failures: string[] = [];
  const loops = keys.map(async (key) => {
    const watch = client.watch(key, { signal: stop.signal });
    let counted = false;
    try {
      for await (const batch of watch) {
        if (!counted && watch.startedEveryGroup()) {
          counted = true;
          started++;
        }
        events += batch.events.length;
      }
    } catch (err) {
      if (!stop.signal.aborted) failures.push(`${key}: ${(err as Error).message}`);
    }
  });
  const openedAt = Date.now();
  while (started < keys.length && failures.length === 0 && Date.now() - openedAt < 120_000)
    await new Promise((r) => setTimeout(r, 100));
  console.log(`${started} watches started in ${Date.now() - openedAt} ms`);
  const cpu0 = process.cpuUsage();
  const events0 = events;
  const t0 = Date.now();
  let last = events;
  const perSecond: number[] = [];
  for (let s = 1; s <= o.durationS; s++) {
    await new Promise((r) => setTimeout(r, t0 + s * 1000 - Date.now()));
    perSecond.push(events - last);
    console.log(`${s}s: ${events - last} events/s`);
    last = events;
  }
  const seconds = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const summary = {
    watches: started,
    events: events - events0,
    eventsPerSecond: Math.round((events - events0) / seconds),
    medianEventsPerSecond: [...perSecond].sort((a, b) => a - b)[Math.floor(perSecond.length / 2)],
    watcherCpuPct: Math.round(((cpu.user + cpu.system) / 1e6 / seconds) * 100),
    watcherRssMiB: Math.round(process.memoryUsage().rss / 1024 / 1024),
    failures: failures.slice(0, 5),
  };
  console.log(JSON.stringify(summary));
  if (o.out !== '') await writeFile(o.out, `${JSON.stringify(summary)}\n`);
  stop.abort();
  await Promise.all(loops);
  client.close();
}

main().catch((err: unknown) => {
  console.error((err as Error).stack ?? String(err));
  process.exit(1);
});
