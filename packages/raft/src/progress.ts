// The leader's view of each peer's replication: how far the peer's log is known to match
// (`match`), what to send next (`next`), and how (probe, replicate or snapshot), with a bounded
// window of in-flight appends so that a slow peer never makes the leader buffer without limit.
import { invariant, type NodeId } from './types';

export enum ProgressState {
  /** We do not know where the peer's log matches: send one append per heartbeat and wait. */
  Probe = 'probe',
  /** The peer's log matches at `match`: stream appends optimistically, up to the window. */
  Replicate = 'replicate',
  /** The peer needs a snapshot; appends pause until it is installed or fails. */
  Snapshot = 'snapshot',
}

/** A bounded window of in-flight appends, by count and by bytes. */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly sizes: number[] = [];
  private bytes = 0;

  constructor(
    readonly countMax: number,
    readonly bytesMax: number,
  ) {}

  /** Records an append whose last entry is `lastIndex` carrying `sizeBytes` of data. */
  add(lastIndex: number, sizeBytes: number): void {
    invariant(!this.full(), () => 'inflight window is full');
    const last = this.lastIndexes.at(-1);
    invariant(
      last === undefined || lastIndex > last,
      () => `inflight ${lastIndex} not after ${last}`,
    );
    this.lastIndexes.push(lastIndex);
    this.sizes.push(sizeBytes);
    this.bytes += sizeBytes;
  }

  /** Frees every in-flight append whose last index is <= `index` (they were acknowledged). */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.lastIndexes.length && this.lastIndexes[n] <= index) {
      this.bytes -= this.sizes[n];
      n++;
    }
    if (n > 0) {
      this.lastIndexes.splice(0, n);
      this.sizes.splice(0, n);
    }
  }

  full(): boolean {
    return this.lastIndexes.length >= this.countMax || this.bytes >= this.bytesMax;
  }

  count(): number {
    return this.lastIndexes.length;
  }

  reset(): void {
    this.lastIndexes.length = 0;
    this.sizes.length = 0;
    this.bytes = 0;
  }
}

export class Progress {
  /** The highest index known to be replicated on the peer. */
  match = 0;
  /** The index of the next entry to send. */
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** In Snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In Probe state: an append was sent and we wait for its answer or the next heartbeat. */
  probeSent = false;
  /** An append was acknowledged since the last heartbeat answer (the pipeline is moving). */
  ackedSinceHeartbeat = false;
  readonly inflights: Inflights;

  constructor(
    readonly id: NodeId,
    next: number,
    inflightCountMax: number,
    inflightBytesMax: number,
  ) {
    this.next = next;
    this.inflights = new Inflights(inflightCountMax, inflightBytesMax);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // Leaving Snapshot state after the snapshot was installed: continue after it.
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records that the peer's log matches up to `index`. Returns false for stale answers. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** Records that an append ending at `lastIndex` was sent (optimistic in Replicate). */
  sentEntries(lastIndex: number, sizeBytes: number): void {
    switch (this.state) {
      case ProgressState.Replicate:
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, sizeBytes);
        break;
      case ProgressState.Probe:
        this.probeSent = true;
        break;
      case ProgressState.Snapshot:
        invariant(false, () => `sending entries to ${this.id} in snapshot state`);
    }
  }

  /**
   * Handles a rejected append of `rejected` (its prev index). `matchHint` is the highest index
   * that may still match. Returns false when the rejection is stale and must be ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      // A rejection at or below match is stale: match is known to be good.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In probe state only the answer to the last probe (next - 1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** No more appends may be sent to this peer until something is acknowledged. */
  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }
}
