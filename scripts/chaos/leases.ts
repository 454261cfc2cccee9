// The chaos suite's lease holders (the lease nemesis): clients that each hold one lease at a time,
// with one key attached, while kills, pauses, partitions and slot moves strike. A holder grants a
// lease (TTL 1, 2 or 4 s) in its key's group, puts the key with it, keeps it alive every quarter
// of its TTL and reads the key now and then, for a few TTLs; then it revokes the lease or walks
// away from it, and starts over with a new key. Checked against what the group promised:
// - a lease lives at least its TTL after the client sent a keep-alive the group answered with a
//   TTL (or sent the grant): seeing it gone earlier (a keep-alive answered "not held", its key
//   read absent, a put refused as not held) is a violation, whatever the faults did;
// - a revoked lease's key is gone as soon as the revoke is answered;
// - a lease nobody keeps alive expires: at the end, once every fault has healed, the key of
//   every lease walked away from (or held until the end) must be gone within its TTL and a
//   margin.
// A lease may legitimately expire while its holder still wants it (keep-alives that did not get
// through for a whole TTL): that is counted as lost, not as a violation.
import { EraftKvClient, formatLeaseId, LeaseNotFoundError, type ClientTls } from '@eraftkv/client';
import { ChaosRng } from './chaos-rng';

export interface LeaseHoldersOptions {
  readonly endpoints: readonly string[];
  readonly tls?: ClientTls;
  readonly seed: number;
  readonly holders: number;
  /** The prefix of the holders' keys (outside the workload's keys). */
  readonly prefix: string;
}

/** One lease's life as its holder saw it. Times are this process's monotonic ms. */
export interface LeaseRecord {
  readonly key: string;
  readonly id: number;
  readonly ttlMs: number;
  /**
   * The latest send time of the grant or of a keep-alive answered with a TTL: the lease must live
   * at least `ttlMs` after it.
   */
  keptSentAt: number;
  /** When the holder first saw the lease gone, and how; null while it has not. */
  goneSeenAt: number | null;
  goneHow: string;
  /**
   * held: kept alive until the end of the run; revoked: revoke answered; walked-away: no more
   * keep-alives (it must expire); lost: seen gone while still kept alive.
   */
  end: 'held' | 'revoked' | 'walked-away' | 'lost';
  /** After a revoke: the key read absent (true) or present (false); null: not read. */
  absentAfterRevoke: boolean | null;
  /** At the end of the run: the key read present (true) or absent (false); null: not read. */
  presentAtEnd: boolean | null;
}

export interface LeaseHoldersReport {
  readonly leases: number;
  readonly keepAlives: number;
  readonly revoked: number;
  readonly expired: number;
  readonly lost: number;
  /** Leases whose key no read answered at the end: their expiry is unchecked. */
  readonly unread: number;
  readonly problems: string[];
  readonly errors: Map<string, number>;
}

/** How far the clocks of this process and a node may disagree on an interval (timer grain). */
const clockSlackMs = 10;
/** How long, once everything has healed, a lease nobody keeps alive may take to expire past its TTL. */
const expiryMarginMs = 30_000;

const now = (): number => performance.now();
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ChaosLeaseHolders {
  private readonly records: LeaseRecord[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly clients: EraftKvClient[] = [];
  private readonly errors = new Map<string, number>();
  private running = false;
  private keepAlives = 0;

  constructor(private readonly options: LeaseHoldersOptions) {}

  start(): void {
    this.running = true;
    for (let h = 0; h < this.options.holders; h++) {
      const client = new EraftKvClient({
        endpoints: this.options.endpoints,
        deadlineMs: 4000,
        attemptTimeoutMs: 1000,
        tls: this.options.tls,
      });
      this.clients.push(client);
      const rng = new ChaosRng(this.options.seed * 1000 + 500 + h);
      this.loops.push(this.holderLoop(h, client, rng));
    }
  }

  /**
   * Stops the holders: no lease is kept alive from now on, so a lease still held must expire as
   * one walked away from does (checkExpiries). A second call only waits for the same loops.
   */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /**
   * Once the holders have stopped and every fault has healed: reads the key of every lease that
   * was not revoked (nor seen gone) until it is gone, waiting at most the longest TTL and a margin.
   */
  async checkExpiries(): Promise<void> {
    const client = this.clients[0];
    if (client === undefined) return;
    const waiting = this.records.filter((r) => r.end !== 'revoked' && r.end !== 'lost');
    const until = now() + Math.max(0, ...waiting.map((r) => r.ttlMs)) + expiryMarginMs;
    for (const r of waiting) {
      for (;;) {
        const present = await client
          .get(r.key, { deadlineMs: 4000 })
          .then((v) => v !== undefined)
          .catch((err: unknown) => {
            this.count(err);
            return null;
          });
        if (present !== null) r.presentAtEnd = present;
        if (present === false || now() > until) break;
        await pause(250);
      }
    }
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  report(): LeaseHoldersReport {
    return {
      leases: this.records.length,
      keepAlives: this.keepAlives,
      revoked: this.records.filter((r) => r.end === 'revoked').length,
      expired: this.records.filter((r) => r.end !== 'revoked' && r.presentAtEnd === false).length,
      lost: this.records.filter((r) => r.end === 'lost').length,
      unread: this.records.filter(
        (r) => r.end !== 'revoked' && r.end !== 'lost' && r.presentAtEnd === null,
      ).length,
      problems: leaseProblems(this.records),
      errors: new Map(this.errors),
    };
  }

  private count(err: unknown): void {
    const message = (err instanceof Error ? err.message : String(err))
      .replace(/\d+/g, 'N')
      .slice(0, 160);
    this.errors.set(message, (this.errors.get(message) ?? 0) + 1);
  }

  private async holderLoop(holder: number, client: EraftKvClient, rng: ChaosRng): Promise<void> {
    for (let generation = 1; this.running; generation++) {
      const key = `${this.options.prefix}${holder}/${generation}`;
      const ttlSeconds = rng.pick([1, 2, 4]);
      const grantSentAt = now();
      let id: number;
      try {
        id = (await client.leaseGrant(ttlSeconds, { key })).id;
      } catch (err) {
        // A grant whose answer was lost may have made a lease with no key: it expires alone.
        this.count(err);
        await pause(200);
        continue;
      }
      const r: LeaseRecord = {
        key,
        id,
        ttlMs: ttlSeconds * 1000,
        keptSentAt: grantSentAt,
        goneSeenAt: null,
        goneHow: '',
        end: 'held',
        absentAfterRevoke: null,
        presentAtEnd: null,
      };
      this.records.push(r);
      const gone = (how: string): void => {
        r.goneSeenAt = now();
        r.goneHow = how;
        r.end = 'lost';
      };
      let attached = false;
      try {
        await client.put(key, String(generation), { lease: id });
        attached = true;
      } catch (err) {
        if (/is not held/.test((err as Error).message))
          gone('a put with it was refused as not held');
        else {
          // The key's slot moved to another group since the grant, or the outcome is unknown:
          // whatever the put did, the lease must expire.
          this.count(err);
          r.end = 'walked-away';
        }
      }
      if (r.end !== 'held') continue;
      const holdUntil = now() + rng.between(2, 6) * r.ttlMs;
      for (let round = 0; this.running && now() < holdUntil; round++) {
        await pause(r.ttlMs / 4);
        const sentAt = now();
        try {
          await client.leaseKeepAliveOnce(id, { deadlineMs: r.ttlMs });
          this.keepAlives++;
          r.keptSentAt = Math.max(r.keptSentAt, sentAt);
        } catch (err) {
          if (err instanceof LeaseNotFoundError) {
            gone('a keep-alive was answered "not held"');
            break;
          }
          this.count(err);
        }
        if (attached && round % 2 === 1) {
          const value = await client.get(key, { deadlineMs: r.ttlMs }).catch((err: unknown) => {
            this.count(err);
            return null;
          });
          if (value === undefined) {
            gone('its key was read absent');
            break;
          }
        }
      }
      if (r.end !== 'held' || !this.running) continue;
      if (rng.float() < 0.5) {
        r.end = 'walked-away';
        continue;
      }
      try {
        await client.leaseRevoke(id);
        r.end = 'revoked';
      } catch (err) {
        if (err instanceof LeaseNotFoundError) gone('a revoke was answered "not held"');
        else {
          this.count(err);
          r.end = 'walked-away';
        }
        continue;
      }
      if (attached) {
        const value = await client.get(key).catch((err: unknown) => {
          this.count(err);
          return null;
        });
        if (value !== null) r.absentAfterRevoke = value === undefined;
      }
    }
  }
}

/** Everything wrong with the leases' lives (at most 20 lines). */
export function leaseProblems(records: readonly LeaseRecord[]): string[] {
  const problems: string[] = [];
  const note = (p: string): void => {
    if (problems.length < 20) problems.push(p);
  };
  for (const r of records) {
    const lease = `lease ${formatLeaseId(r.id)} (TTL ${r.ttlMs / 1000} s, key ${r.key})`;
    if (r.goneSeenAt !== null) {
      const lived = r.goneSeenAt - r.keptSentAt;
      if (lived < r.ttlMs - clockSlackMs)
        note(
          `${lease} expired early: ${r.goneHow} ${Math.round(lived)} ms after the send of a keep-alive (or the grant) answered with its TTL`,
        );
    }
    if (r.absentAfterRevoke === false) note(`${lease}: its key was still there after the revoke`);
    if (r.end !== 'revoked' && r.end !== 'lost' && r.presentAtEnd === true)
      note(`${lease} never expired: nobody kept it alive, yet its key was still there at the end`);
  }
  return problems;
}
