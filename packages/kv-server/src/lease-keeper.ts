// When the leases of a kv group expire (docs/leases.md): decided by the group's leader alone, on
// its own monotonic clock, and carried out through Raft (a LeaseRevoke entry deletes the lease and
// its keys on every replica). Expiry times are not replicated: a node that becomes leader starts
// every lease's TTL again before it expires any, so a leader change never expires a lease early
// (it may expire one up to a TTL late). A lease this node learns of while leader (a grant applied)
// starts its TTL when first seen. Keep-alives go to the leader and start the TTL again.
import { formatLeaseId } from '@eraftkv/protocol';
import type { Logger, RaftServer } from '@eraftkv/raft-server';
import type { DataStateMachine, KvApplyResult } from './data-state-machine';
import { encodeLeaseRevoke } from './kv-commands';

export interface LeaseKeeperOptions {
  readonly raft: Pick<RaftServer<KvApplyResult>, 'isLeader' | 'status' | 'propose'>;
  readonly stateMachine: Pick<DataStateMachine, 'leaseTable'>;
  readonly logger: Logger;
  /** How often expiry is looked at (default 250 ms). */
  readonly checkIntervalMs?: number;
  /** Monotonic milliseconds (tests pass their own clock). */
  readonly now?: () => number;
}

const monotonicMs = (): number => performance.now();

export class LeaseKeeper {
  /** While leader: when each lease expires (monotonic ms). */
  private readonly expiry = new Map<number, number>();
  /** The term this node leads in, or null while it is not leader. */
  private leaderTerm: number | null = null;
  /** Revokes proposed and not yet answered. */
  private readonly revoking = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  /** The clock expiry is decided on (monotonic ms). */
  readonly now: () => number;

  constructor(private readonly o: LeaseKeeperOptions) {
    this.now = o.now ?? monotonicMs;
  }

  start(): void {
    const interval = this.o.checkIntervalMs ?? 250;
    this.timer = setInterval(() => this.check(), interval);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Follows leadership and the leases held: a new term as leader starts every TTL again; leases
   * granted since start theirs; those gone are forgotten. Then proposes the revoke of each lease
   * whose TTL ran out.
   */
  check(): void {
    if (!this.o.raft.isLeader()) {
      this.leaderTerm = null;
      this.expiry.clear();
      return;
    }
    const term = this.o.raft.status().term;
    const now = this.now();
    if (this.leaderTerm !== term) {
      this.leaderTerm = term;
      this.expiry.clear();
    }
    const held = this.o.stateMachine.leaseTable().all();
    const ids = new Set<number>();
    for (const lease of held) {
      ids.add(lease.id);
      if (!this.expiry.has(lease.id)) this.expiry.set(lease.id, now + lease.ttlSeconds * 1000);
    }
    for (const id of this.expiry.keys()) if (!ids.has(id)) this.expiry.delete(id);
    for (const [id, at] of this.expiry) {
      if (at > now || this.revoking.has(id)) continue;
      this.revoke(id);
    }
  }

  private revoke(id: number): void {
    this.revoking.add(id);
    this.o.raft.propose(encodeLeaseRevoke({ id })).then(
      (result) => {
        this.revoking.delete(id);
        if (result?.kind === 'wrong-shard') {
          // A key of the lease is frozen for a move, which rolls back (a source does not move
          // leased keys): the next check tries again.
          this.o.logger.info('the revoke of an expired lease waits for a slot move', {
            lease: formatLeaseId(id),
            reason: result.message,
          });
          return;
        }
        this.expiry.delete(id);
        this.o.logger.info('lease expired: its keys were deleted', { lease: formatLeaseId(id) });
      },
      (err: unknown) => {
        // Not leader any more, or stopping: the next leader decides again.
        this.revoking.delete(id);
        this.o.logger.warn('the revoke of an expired lease failed', {
          lease: formatLeaseId(id),
          error: (err as Error).message,
        });
      },
    );
  }

  /**
   * Starts lease `id`'s TTL again from `receivedAt` (a keep-alive received then, on this keeper's
   * clock; never earlier than the expiry already set); the TTL in seconds, or 0 when the lease is
   * not held. The caller confirms leadership first (only a leader's keep-alive counts).
   */
  keepAlive(id: number, receivedAt: number): number {
    const lease = this.o.stateMachine.leaseTable().get(id);
    if (lease === undefined || this.revoking.has(id)) return 0;
    if (this.leaderTerm !== null) {
      const at = receivedAt + lease.ttlSeconds * 1000;
      this.expiry.set(id, Math.max(at, this.expiry.get(id) ?? at));
    }
    return lease.ttlSeconds;
  }

  /** The seconds left before lease `id` expires (-1: not held); its TTL when not tracked yet. */
  remainingSeconds(id: number): number {
    const lease = this.o.stateMachine.leaseTable().get(id);
    if (lease === undefined) return -1;
    const at = this.expiry.get(id);
    if (at === undefined) return lease.ttlSeconds;
    return Math.max(0, Math.ceil((at - this.now()) / 1000));
  }
}
