// The chaos suite's clients: several independent EraftKvClients doing random puts, gets, deletes
// and multi-op batches on a small key set (so that operations conflict), every written value
// unique. Every operation is recorded as an invocation, then ok, fail (refused before anything was
// applied: only invalid input) or unknown (timeouts, lost connections, anything else: a write may
// have been applied). A bulk writer also fills many more keys (spread over every slot, so that a
// slot move carries data), each written now and then and read back at the end by one scan: every
// acknowledged write must be found there.
import { EraftKvClient, InvalidArgumentError, type BatchOp, type ClientTls } from '@eraftkv/client';
import { slotOfKey } from '@eraftkv/protocol';
import { HistoryRecorder, type Operation } from './history';
import { ChaosRng } from './chaos-rng';

export interface WorkloadOptions {
  readonly endpoints: readonly string[];
  readonly clients: number;
  readonly keys: number;
  readonly seed: number;
  /** Pause between a client's operations, at most this long (random). */
  readonly thinkMsMax: number;
  /** Deadline of one operation (retries included). */
  readonly deadlineMs: number;
  /** Keys of the bulk writer (b0000, b0001, ...); 0 for none. */
  readonly bulkKeys: number;
  /** TLS material of the clients (a run with --tls). */
  readonly tls?: ClientTls;
}

export interface WorkloadCounts {
  ok: number;
  fail: number;
  unknown: number;
  reads: number;
  writes: number;
  batches: number;
  /** The first few error messages by kind, for the report. */
  errors: Map<string, number>;
}

const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export class Workload {
  readonly recorder = new HistoryRecorder({ now: monotonicMs });
  readonly counts: WorkloadCounts = {
    ok: 0,
    fail: 0,
    unknown: 0,
    reads: 0,
    writes: 0,
    batches: 0,
    errors: new Map(),
  };
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly clients: EraftKvClient[] = [];
  /** The keys the clients fight over. */
  readonly keys: string[];
  /** The bulk writer's keys, ascending. */
  readonly bulkKeys: string[];
  /** Every key the workload touches starts with one of these (a role grants them, with --auth). */
  readonly keyPrefixes: readonly string[] = [hotPrefix, bulkPrefix];
  /** The group of each of `keys` at the last look at the topology. */
  private readonly groupOfKey = new Map<string, number>();

  constructor(private readonly options: WorkloadOptions) {
    if (options.clients < 1) throw new RangeError('at least one client');
    this.keys = Array.from({ length: options.keys }, (_, i) => `${hotPrefix}${i}`);
    this.bulkKeys = Array.from({ length: options.bulkKeys }, (_, i) => bulkKey(i));
  }

  /** A client of the cluster (over TLS when the run uses it); the workload's own deadline by default. */
  private newClient(deadlineMs = this.options.deadlineMs): EraftKvClient {
    return new EraftKvClient({
      endpoints: this.options.endpoints,
      deadlineMs,
      attemptTimeoutMs: Math.min(1000, deadlineMs),
      tls: this.options.tls,
    });
  }

  start(): void {
    this.running = true;
    for (let c = 0; c < this.options.clients; c++) {
      const client = this.newClient();
      this.clients.push(client);
      this.loops.push(this.clientLoop(c, client, new ChaosRng(this.options.seed * 1000 + c)));
    }
    const watcher = this.newClient(2000);
    this.clients.push(watcher);
    this.loops.push(this.watchTopology(watcher));
    if (this.bulkKeys.length > 0) {
      // History client ids: 0..clients-1 the clients, clients the final reads, clients+1 this.
      const c = this.options.clients + 1;
      const client = this.newClient();
      this.clients.push(client);
      this.loops.push(this.bulkLoop(c, client, new ChaosRng(this.options.seed * 1000 + c)));
    }
  }

  /** Stops issuing operations and waits for those in flight to end (or time out). */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  /** Looks at the topology every half second while running (for batches within one group). */
  private async watchTopology(client: EraftKvClient): Promise<void> {
    while (this.running) {
      const view = await client.cluster({ deadlineMs: 2000 }).catch(() => null);
      if (view !== null) {
        const owner = new Map<number, number>();
        for (const g of view.groups) for (const slot of g.slots) owner.set(slot, g.id);
        for (const key of this.keys) {
          const group = owner.get(slotOfKey(Buffer.from(key), view.slotCount));
          if (group === undefined) this.groupOfKey.delete(key);
          else this.groupOfKey.set(key, group);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  /** Reads every key once more through a fresh client (recorded like any other read). */
  async finalReads(): Promise<{ key: string; value: string | null; error: string | null }[]> {
    const client = this.newClient(10_000);
    try {
      const out: { key: string; value: string | null; error: string | null }[] = [];
      for (const key of this.keys) {
        const id = this.recorder.invokeRead(this.options.clients, key);
        try {
          const value = await client.get(key);
          const text = value === undefined ? null : value.toString();
          this.recorder.ok(id, text);
          out.push({ key, value: text, error: null });
        } catch (err) {
          this.recorder.unknown(id);
          out.push({ key, value: null, error: (err as Error).message });
        }
      }
      return out;
    } finally {
      client.close();
    }
  }

  /**
   * Reads every bulk key back with one scan (paged, so each pair is read at some point between
   * the scan's start and end), recorded as a read of every bulk key: found or absent. Returns how
   * many were found, or the error.
   */
  async finalScan(): Promise<{ found: number; error: string | null }> {
    if (this.bulkKeys.length === 0) return { found: 0, error: null };
    const client = this.newClient(60_000);
    const c = this.options.clients;
    const ids = this.bulkKeys.map((key) => this.recorder.invokeRead(c, key));
    try {
      const { kvs, more } = await client.scan(bulkPrefix, bulkEnd, {
        limit: this.bulkKeys.length + 1,
      });
      if (more) throw new Error('the scan of the bulk keys found more pairs than keys written');
      const values = new Map(kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
      const written = new Set(this.bulkKeys);
      for (const key of values.keys()) {
        if (!written.has(key)) throw new Error(`the scan found a key never written: ${key}`);
      }
      this.bulkKeys.forEach((key, i) => this.recorder.ok(ids[i], values.get(key) ?? null));
      return { found: values.size, error: null };
    } catch (err) {
      for (const id of ids) this.recorder.unknown(id);
      return { found: 0, error: (err as Error).message };
    } finally {
      client.close();
    }
  }

  history(): Operation[] {
    return this.recorder.history();
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  private noteError(err: unknown): void {
    const name = err instanceof Error ? err.name : 'Error';
    this.counts.errors.set(name, (this.counts.errors.get(name) ?? 0) + 1);
  }

  private async clientLoop(c: number, client: EraftKvClient, rng: ChaosRng): Promise<void> {
    let seq = 0;
    const value = (): string => `c${c}-${++seq}`;
    while (this.running) {
      const roll = rng.float();
      const key = rng.pick(this.keys);
      if (roll < 0.4) {
        const written = value();
        await this.write(c, key, written, async () => {
          await client.put(key, written);
        });
      } else if (roll < 0.75) {
        await this.read(c, key, client);
      } else if (roll < 0.85) {
        await this.write(c, key, null, () => client.del(key).then(() => undefined));
      } else {
        await this.batch(c, client, rng, value);
      }
      const think = rng.int(this.options.thinkMsMax + 1);
      if (think > 0) await new Promise((resolve) => setTimeout(resolve, think));
    }
  }

  /**
   * The bulk writer: puts the bulk keys in turn (each value unique, about 100 bytes), now and
   * then reading one at random.
   */
  private async bulkLoop(c: number, client: EraftKvClient, rng: ChaosRng): Promise<void> {
    let seq = 0;
    let next = 0;
    const padding = '.'.repeat(80);
    while (this.running) {
      if (next < this.bulkKeys.length || rng.chance(0.7)) {
        const key = this.bulkKeys[next++ % this.bulkKeys.length];
        const written = `b${c}-${++seq}-${padding}`;
        await this.write(c, key, written, async () => {
          await client.put(key, written);
        });
      } else {
        await this.read(c, rng.pick(this.bulkKeys), client);
      }
    }
  }

  private async write(
    c: number,
    key: string,
    written: string | null,
    run: () => Promise<void>,
  ): Promise<void> {
    const id = this.recorder.invokeWrite(c, key, written);
    this.counts.writes++;
    try {
      await run();
      this.recorder.ok(id);
      this.counts.ok++;
    } catch (err) {
      this.noteError(err);
      if (err instanceof InvalidArgumentError) {
        this.recorder.fail(id);
        this.counts.fail++;
      } else {
        this.recorder.unknown(id);
        this.counts.unknown++;
      }
    }
  }

  private async read(c: number, key: string, client: EraftKvClient): Promise<void> {
    const id = this.recorder.invokeRead(c, key);
    this.counts.reads++;
    try {
      const value = await client.get(key);
      this.recorder.ok(id, value === undefined ? null : value.toString());
      this.counts.ok++;
    } catch (err) {
      this.noteError(err);
      this.recorder.unknown(id);
      this.counts.unknown++;
    }
  }

  /** A batch of 2-3 operations on distinct keys, applied atomically; one record per key. */
  private async batch(
    c: number,
    client: EraftKvClient,
    rng: ChaosRng,
    value: () => string,
  ): Promise<void> {
    // Keys of one group, as far as the last look at the topology knows (a batch over several
    // groups is refused whole): a first key, then others its group owned a moment ago.
    const first = rng.pick(this.keys);
    const group = this.groupOfKey.get(first);
    const sameGroup = this.keys.filter((k) => k !== first && this.groupOfKey.get(k) === group);
    const others = sameGroup.length > 0 ? sameGroup : this.keys.filter((k) => k !== first);
    const keys = [first, ...rng.sample(others, Math.min(others.length, 1 + rng.int(2)))];
    const ops: BatchOp[] = [];
    const ids: { id: number; kind: 'read' | 'write' }[] = [];
    for (const key of keys) {
      if (rng.float() < 0.6) {
        const v = value();
        ops.push({ type: 'put', key, value: v });
        ids.push({ id: this.recorder.invokeWrite(c, key, v), kind: 'write' });
      } else {
        ops.push({ type: 'get', key });
        ids.push({ id: this.recorder.invokeRead(c, key), kind: 'read' });
      }
    }
    this.counts.batches++;
    try {
      const results = await client.batch(ops);
      results.forEach((r, i) => {
        if (r.type === 'get')
          this.recorder.ok(ids[i].id, r.value === undefined ? null : r.value.toString());
        else this.recorder.ok(ids[i].id);
      });
      this.counts.ok++;
    } catch (err) {
      this.noteError(err);
      const definite = err instanceof InvalidArgumentError;
      for (const { id } of ids) {
        if (definite) this.recorder.fail(id);
        else this.recorder.unknown(id);
      }
      if (definite) this.counts.fail++;
      else this.counts.unknown++;
    }
  }
}

const bulkPrefix = 'b';
const hotPrefix = 'k';
/** The end of the bulk keys' range (exclusive): every bulk key starts with "b". */
const bulkEnd = 'c';

function bulkKey(i: number): string {
  return `${bulkPrefix}${String(i).padStart(5, '0')}`;
}
