// ReadIndex (Raft thesis 6.4): a leader serves a linearizable read at its commit index once a
// heartbeat round proves that it is still the leader. Concurrent reads share rounds: at most one
// round is in flight; reads that arrive meanwhile wait in a queue and all go out together in the
// next round, so a burst of N reads costs one or two rounds, not N.
import type { NodeId, ReadState } from './types';

interface ReadRound {
  readonly round: number;
  /** The commit index when the round started: the reads may be served once it is applied. */
  readonly index: number;
  readonly requestIds: readonly number[];
  readonly acks: Set<NodeId>;
}

export class ReadIndexQueue {
  private lastRound = 0;
  private inflight: ReadRound | null = null;
  private queued: number[] = [];

  constructor(private readonly requestsMax: number) {}

  /** The number of reads waiting (queued or in a round). */
  pendingCount(): number {
    return this.queued.length + (this.inflight?.requestIds.length ?? 0);
  }

  isFull(): boolean {
    return this.pendingCount() >= this.requestsMax;
  }

  enqueue(requestId: number): void {
    this.queued.push(requestId);
  }

  /** The round the next heartbeats should carry (0 when none is in flight). */
  inflightRound(): number {
    return this.inflight?.round ?? 0;
  }

  /**
   * Starts a round for the queued reads if none is in flight. Returns the new round number, or 0
   * when nothing was started.
   */
  maybeStartRound(commitIndex: number, self: NodeId): number {
    if (this.inflight !== null || this.queued.length === 0) return 0;
    this.lastRound++;
    this.inflight = {
      round: this.lastRound,
      index: commitIndex,
      requestIds: this.queued,
      acks: new Set([self]),
    };
    this.queued = [];
    return this.lastRound;
  }

  /**
   * Records that `from` acknowledged heartbeat round `round`. When `confirmed` says the acks now
   * include a quorum, the round's reads are released and returned.
   */
  recordAck(
    from: NodeId,
    round: number,
    confirmed: (acks: ReadonlySet<NodeId>) => boolean,
  ): ReadState[] {
    const inflight = this.inflight;
    if (inflight === null || round !== inflight.round) return [];
    inflight.acks.add(from);
    if (!confirmed(inflight.acks)) return [];
    this.inflight = null;
    return inflight.requestIds.map((requestId) => ({ requestId, index: inflight.index }));
  }

  /** Releases every queued read at once (a leader that is alone needs no round). */
  releaseAll(commitIndex: number): ReadState[] {
    const ids = [...(this.inflight?.requestIds ?? []), ...this.queued];
    this.inflight = null;
    this.queued = [];
    return ids.map((requestId) => ({ requestId, index: commitIndex }));
  }

  /** Drops every pending read (leadership was lost; the runtime fails them). */
  reset(): void {
    this.inflight = null;
    this.queued = [];
  }
}
