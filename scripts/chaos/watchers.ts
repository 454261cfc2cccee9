// The chaos suite's watchers (the watch nemesis): a watch of the workload's whole key prefix and
// watches of single keys, each through its own EraftKvClient, started before the first write and
// cut now and then by the suite itself (the watch is stopped and started again from the last
// revision it received in each group) while kills, pauses, partitions and slot moves cut their
// streams too. At the end every watcher must have seen every acknowledged write of its keys
// exactly once, no write that was never made, each key's writes in an order the clients'
// real-time order allows, and each group's events in revision order.
import { EraftKvClient, type ClientTls, type Watch } from '@eraftkv/client';
import { ChaosRng } from './chaos-rng';
import { hasKnownOutcome, type Operation } from './history';

export interface WatchersOptions {
  readonly endpoints: readonly string[];
  readonly tls?: ClientTls;
  readonly seed: number;
  /** The prefix every workload key starts with (one watcher watches all of it). */
  readonly prefix: string;
  /** Keys watched alone, one watcher each. */
  readonly keys: readonly string[];
  /** The suite cuts a random watcher about this often (0: never). */
  readonly cutEveryMs: number;
}

/** One event as a watcher received it. */
interface Seen {
  readonly group: number;
  readonly revision: number;
  readonly type: 'put' | 'delete';
  readonly key: string;
  readonly value: string;
}

interface Watcher {
  readonly name: string;
  readonly key: string;
  readonly prefix: boolean;
  readonly client: EraftKvClient;
  readonly seen: Seen[];
  /** Each group's last revision received: the next start is one after. */
  readonly last: Map<number, number>;
  /** Stops the current watch (a cut, or the end). */
  abort: AbortController;
  /** Every watch started, the first one included. */
  starts: number;
  errors: Map<string, number>;
}

export interface WatchersReport {
  readonly watchers: number;
  readonly events: number;
  readonly cuts: number;
  readonly restarts: number;
  readonly problems: string[];
  readonly errors: Map<string, number>;
}

export class ChaosWatchers {
  private readonly watchers: Watcher[] = [];
  private readonly loops: Promise<void>[] = [];
  private running = false;
  private stopped = false;
  private cuts = 0;
  private cutTimer: NodeJS.Timeout | null = null;
  private readonly rng: ChaosRng;

  constructor(private readonly options: WatchersOptions) {
    this.rng = new ChaosRng(options.seed * 1000 + 999);
    const specs = [
      { name: `prefix ${options.prefix}`, key: options.prefix, prefix: true },
      ...options.keys.map((key) => ({ name: `key ${key}`, key, prefix: false })),
    ];
    for (const spec of specs) {
      this.watchers.push({
        ...spec,
        client: new EraftKvClient({
          endpoints: options.endpoints,
          deadlineMs: 5000,
          attemptTimeoutMs: 1000,
          tls: options.tls,
        }),
        seen: [],
        last: new Map(),
        abort: new AbortController(),
        starts: 0,
        errors: new Map(),
      });
    }
  }

  /** Starts every watch from now, and resolves once each has heard from every group. */
  async start(): Promise<void> {
    this.running = true;
    const ready = this.watchers.map(
      (w) =>
        new Promise<void>((resolve) => {
          this.loops.push(this.watchLoop(w, resolve));
        }),
    );
    await Promise.all(ready);
    if (this.options.cutEveryMs > 0) this.scheduleCut();
  }

  private scheduleCut(): void {
    const delay = this.rng.between(this.options.cutEveryMs / 2, (this.options.cutEveryMs * 3) / 2);
    this.cutTimer = setTimeout(() => {
      if (!this.running) return;
      const w = this.rng.pick(this.watchers);
      this.cuts++;
      w.abort.abort();
      this.scheduleCut();
    }, delay);
  }

  /** Runs watches of `w` one after another until the end, each from where the last stopped. */
  private async watchLoop(w: Watcher, started: () => void): Promise<void> {
    let first = true;
    while (this.running) {
      w.abort = new AbortController();
      w.starts++;
      const startRevisions: Record<number, number> = {};
      for (const [group, revision] of w.last) startRevisions[group] = revision + 1;
      let watch: Watch;
      try {
        watch = w.client.watch(w.key, {
          prefix: w.prefix,
          startRevisions,
          signal: w.abort.signal,
        });
        for await (const batch of watch) {
          if (batch.created && first) {
            // The first watch is ready once every group it watches has answered.
            if (batch.revision >= 0) w.last.set(batch.group, batch.revision);
          }
          for (const e of batch.events) {
            w.seen.push({
              group: batch.group,
              revision: e.revision,
              type: e.type,
              key: e.key.toString(),
              value: e.value.toString(),
            });
          }
          const before = w.last.get(batch.group) ?? 0;
          if (batch.revision > before) w.last.set(batch.group, batch.revision);
          if (first && batch.created && watch.startedEveryGroup()) {
            first = false;
            started();
          }
        }
      } catch (err) {
        const message = (err as Error).message.replace(/\d+/g, 'N').slice(0, 160);
        w.errors.set(message, (w.errors.get(message) ?? 0) + 1);
        if (!this.running) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    if (first) started();
  }

  /** Waits until every watcher has seen every acknowledged write of its keys, or `timeoutMs`. */
  async catchUp(history: readonly Operation[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.watchers.every((w) => missing(w, history).length === 0)) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Stops every watch and closes the clients (once; later calls do nothing). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.running = false;
    if (this.cutTimer !== null) clearTimeout(this.cutTimer);
    for (const w of this.watchers) w.abort.abort();
    await Promise.all(this.loops);
    for (const w of this.watchers) w.client.close();
  }

  /** Checks every watcher against the workload's history. */
  report(history: readonly Operation[]): WatchersReport {
    const problems: string[] = [];
    const errors = new Map<string, number>();
    for (const w of this.watchers) {
      for (const p of watcherProblems(w, history)) problems.push(`${w.name}: ${p}`);
      for (const [m, n] of w.errors) errors.set(`${w.name}: ${m}`, n);
    }
    return {
      watchers: this.watchers.length,
      events: this.watchers.reduce((n, w) => n + w.seen.length, 0),
      cuts: this.cuts,
      restarts: this.watchers.reduce((n, w) => n + w.starts - 1, 0),
      problems,
      errors,
    };
  }
}

function covers(w: Watcher, key: string): boolean {
  return w.prefix ? key.startsWith(w.key) : key === w.key;
}

/** The acknowledged puts of the watcher's keys it has not seen. */
function missing(w: Watcher, history: readonly Operation[]): Operation[] {
  const seen = new Set(w.seen.filter((e) => e.type === 'put').map((e) => `${e.key}\0${e.value}`));
  return history.filter(
    (op) =>
      op.kind === 'write' &&
      op.value !== null &&
      hasKnownOutcome(op) &&
      covers(w, op.key) &&
      !seen.has(`${op.key}\0${op.value}`),
  );
}

/** Everything wrong with what `w` saw, given the history (at most a few lines per kind). */
export function watcherProblems(
  w: Pick<Watcher, 'key' | 'prefix' | 'seen'>,
  history: readonly Operation[],
): string[] {
  const problems: string[] = [];
  const note = (p: string): void => {
    if (problems.length < 20) problems.push(p);
  };
  const watcher = w as Watcher;
  const writes = new Map<string, Operation>();
  for (const op of history) {
    if (op.kind === 'write' && op.value !== null && covers(watcher, op.key))
      writes.set(`${op.key}\0${op.value}`, op);
  }
  // Exactly once, and only writes that were made (and not refused).
  const position = new Map<string, number>();
  for (const [i, e] of w.seen.entries()) {
    if (!covers(watcher, e.key)) {
      note(`got ${e.key}, which it does not watch`);
      continue;
    }
    if (e.type !== 'put') continue;
    const id = `${e.key}\0${e.value}`;
    if (position.has(id)) note(`saw the put of ${e.key}=${e.value} twice`);
    position.set(id, i);
    const op = writes.get(id);
    if (op === undefined) note(`saw ${e.key}=${e.value}, which no client wrote`);
    else if (!op.ok && op.complete !== null)
      note(`saw ${e.key}=${e.value}, a write that was refused`);
  }
  for (const op of missing(watcher, history))
    note(`never saw the acknowledged put ${op.key}=${String(op.value)} (operation ${op.id})`);
  // Each group's events in revision order.
  const lastOfGroup = new Map<number, number>();
  for (const e of w.seen) {
    const last = lastOfGroup.get(e.group) ?? 0;
    if (e.revision < last)
      note(`group ${e.group}: revision ${e.revision} came after revision ${last}`);
    lastOfGroup.set(e.group, Math.max(last, e.revision));
  }
  // Each key's puts in an order real time allows: a put acknowledged before another was sent
  // must be seen before it.
  const byKey = new Map<string, Operation[]>();
  for (const op of writes.values()) {
    if (!position.has(`${op.key}\0${op.value}`)) continue;
    const list = byKey.get(op.key) ?? [];
    list.push(op);
    byKey.set(op.key, list);
  }
  for (const [key, ops] of byKey) {
    const byComplete = ops
      .filter((op) => op.complete !== null)
      .sort((a, b) => (a.complete as number) - (b.complete as number));
    const byInvoke = [...ops].sort((a, b) => a.invoke - b.invoke);
    let j = 0;
    let latest: Operation | null = null;
    for (const op of byInvoke) {
      while (j < byComplete.length && (byComplete[j].complete as number) < op.invoke) {
        const done = byComplete[j++];
        if (latest === null || pos(done) > pos(latest)) latest = done;
      }
      if (latest !== null && pos(latest) > pos(op))
        note(
          `key ${key}: saw ${String(op.value)} before ${String(latest.value)}, though ${String(latest.value)} was acknowledged before ${String(op.value)} was sent`,
        );
    }
  }
  return problems;

  function pos(op: Operation): number {
    return position.get(`${op.key}\0${op.value}`) as number;
  }
}
