// The Ready loop of a RaftServer: after every input to the core it takes each Ready and handles
// it in the order the core's contract demands (see @eraftkv/raft's index.ts): persist (a leader's
// snapshot installed, then entries and hard state in one atomic RocksDB batch, synced when
// required), send (responses ride back on the RPC they answer, snapshots go to the snapshot
// coordinator), apply (committed entries to the state machine, settling the proposals and reads
// waiting on them), advance. Committed entries already stored before the Ready are applied while
// its write is in flight (see handle). It owns the applied index and whether the loop still runs: a
// graceful stop finishes the Ready in progress, an abort abandons it.
import {
  isMembershipEntry,
  isResponse,
  mayBeSentBeforePersist,
  MessageType,
  type Entry,
  type NodeId,
  type RawNode,
  type Ready,
  type RefusedMessage,
  type Role,
} from '@eraftkv/raft';
import { ProposalDroppedError } from './errors';
import type { LogStore } from './log-store';
import type { Logger } from './logger';
import type { RaftMetrics } from './metrics';
import type { SnapshotCoordinator } from './snapshot';
import type { StateMachine } from './state-machine';
import type { PeerTransport } from './transport';
import type { PendingAnswers, PendingReads, Wait } from './waiters';

/** Proposals waiting to be applied, by log index, tagged with the term they were proposed in. */
export type PendingProposals<R> = Wait<number, R | undefined, number>;

export interface ReadyLoopParts<R> {
  readonly node: RawNode;
  readonly logStore: LogStore;
  readonly transport: PeerTransport;
  readonly snapshots: SnapshotCoordinator;
  readonly stateMachine: StateMachine<R>;
  readonly metrics: RaftMetrics;
  readonly logger: Logger;
  readonly proposals: PendingProposals<R>;
  readonly reads: PendingReads;
  readonly answers: PendingAnswers;
  /** The index the state machine has applied at start. */
  readonly appliedIndex: number;
  readonly onSoftState: (leader: NodeId, role: Role) => void;
  /** Messages the core refused (see Ready.refused). */
  readonly onRefused: (refused: readonly RefusedMessage[]) => void;
  /** Handling a Ready failed: the node's state is unknown from here. */
  readonly onFailure: (err: Error) => void;
}

/**
 * Splits a Ready's committed entries into those this node already stores, untouched by the
 * Ready's own entries (applied while the Ready's write is in flight), and the rest (applied after
 * it). `storedLast` is the last index stored before the Ready; the Ready's entries replace
 * everything from their first index on, so stored entries from there on do not count (they may
 * be an old leader's, overwritten by this very write).
 */
export function splitCommitted(
  committed: readonly Entry[],
  storedLast: number,
  readyEntries: readonly Entry[],
): [readonly Entry[], readonly Entry[]] {
  const untouched =
    readyEntries.length > 0 ? Math.min(storedLast, readyEntries[0].index - 1) : storedLast;
  const split = committed.findIndex((e) => e.index > untouched);
  if (split === -1) return [committed, []];
  return [committed.slice(0, split), committed.slice(split)];
}

export class ReadyLoop<R> {
  /** The highest index applied to the state machine (by apply, or by a snapshot install). */
  appliedIndex: number;
  private halting: 'no' | 'stop' | 'abort' = 'no';
  private running = false;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly p: ReadyLoopParts<R>) {
    this.appliedIndex = p.appliedIndex;
  }

  /** Stopping or stopped: no new Ready is taken. */
  get stopping(): boolean {
    return this.halting !== 'no';
  }

  /** Stopped without finishing the Ready in progress (abort or a failure). */
  get aborted(): boolean {
    return this.halting === 'abort';
  }

  /** No new Ready is taken; the one in progress finishes (see idle()). */
  stop(): void {
    if (this.halting === 'no') this.halting = 'stop';
  }

  /** No new Ready is taken, and the one in progress stops at its next step. */
  abort(): void {
    this.halting = 'abort';
  }

  /** Resolves when no Ready is being handled. */
  idle(): Promise<void> {
    return this.done;
  }

  /**
   * Called after every input to the core. A leader's appends and heartbeats leave at once (they
   * need nothing persisted), so that a long persist or apply never delays them; everything else
   * waits for the Ready loop.
   */
  schedule(): void {
    if (this.stopping) return;
    for (const m of this.p.node.takeMessagesSendableNow()) this.p.transport.send(m);
    if (this.running) return;
    this.running = true;
    this.done = new Promise<void>((resolve) => {
      setImmediate(() => {
        this.run()
          .catch((err: unknown) =>
            this.p.onFailure(err instanceof Error ? err : new Error(String(err))),
          )
          .finally(() => {
            this.running = false;
            resolve();
            if (!this.stopping && this.p.node.hasReady()) this.schedule();
          });
      });
    });
  }

  private async run(): Promise<void> {
    // A graceful stop finishes the Ready in progress; an abort abandons it (see handle).
    while (!this.stopping && this.p.node.hasReady()) {
      const background = this.p.logStore.backgroundFailure();
      if (background !== null) throw background;
      const cutoff = this.p.answers.cutoff();
      await this.handle(this.p.node.ready(), cutoff);
    }
  }

  /** One Ready; `cutoff` numbers the peer requests stepped before it was taken. */
  private async handle(rd: Ready, cutoff: number): Promise<void> {
    const { node, logStore, transport } = this.p;
    // A leader's appends and heartbeats may leave before its own write (Raft thesis 10.2.1).
    const early = rd.messages.filter(mayBeSentBeforePersist);
    for (const m of early) transport.send(m);

    if (rd.refused.length > 0) this.p.onRefused(rd.refused);

    // Committed entries this node has already stored are applied while this Ready's write is in
    // flight (as etcd does): they are committed, so nothing this write decides can change them,
    // and their answers need not wait for an fsync of newer entries. Committed entries that this
    // very Ready stores (a follower's append that also commits them) are applied after the write.
    // (A crash can then leave an applied index above the stored commit index: recovery raises the
    // commit index to it, see LogStore.commitAtLeast.)
    const [applyNow, applyAfter] =
      rd.snapshot === null
        ? splitCommitted(rd.committedEntries, logStore.lastIndex(), rd.entries)
        : [[], rd.committedEntries];
    const applying = applyNow.length > 0 ? this.apply(applyNow) : null;
    // Failures surface through the await below; until then the rejection is held here.
    applying?.catch(() => undefined);

    // 1. Persist.
    await this.persist(rd);
    if (this.aborted) {
      await applying?.catch(() => undefined);
      return;
    }

    // 2. Send.
    for (const m of rd.messages) {
      if (early.includes(m)) continue;
      if (isResponse(m.type)) this.p.answers.answer(m);
      else if (m.type === MessageType.Snapshot) this.p.snapshots.send(m);
      else transport.send(m);
    }
    // Requests stepped before this Ready that got no answer were dropped by the core.
    this.p.answers.droppedBefore(cutoff);

    if (rd.softState !== null) this.p.onSoftState(rd.softState.leader, rd.softState.role);

    // 3. Apply.
    if (applying !== null) await applying;
    if (applyAfter.length > 0) await this.apply(applyAfter);
    if (this.aborted) return;
    for (const rs of rd.readStates) {
      this.p.reads.confirmed(rs.requestId, rs.index, this.appliedIndex);
    }

    // 4. Advance.
    node.advance();
    logStore.setRetainFrom(this.appliedIndex + 1);
    this.p.snapshots.maybeSnapshot(false);
  }

  /** Persists a Ready: a leader's snapshot installed, then its entries and hard state. */
  private async persist(rd: Ready): Promise<void> {
    const { logStore, metrics } = this.p;
    if (rd.snapshot !== null) {
      await this.p.snapshots.install(rd.snapshot, rd.hardState);
      if (this.aborted) return;
    }
    if (rd.entries.length > 0 || (rd.hardState !== null && rd.snapshot === null)) {
      const started = process.hrtime.bigint();
      await logStore.persist(rd.entries, rd.snapshot === null ? rd.hardState : null, rd.mustSync);
      if (rd.mustSync) {
        metrics.fsyncDuration.observe(
          metrics.base,
          Number(process.hrtime.bigint() - started) / 1e9,
        );
      }
    }
  }

  private async apply(entries: readonly Entry[]): Promise<void> {
    const { metrics, proposals } = this.p;
    const started = process.hrtime.bigint();
    const results = await this.p.stateMachine.apply(entries);
    metrics.applyDuration.observe(metrics.base, Number(process.hrtime.bigint() - started) / 1e9);
    metrics.proposalsCommitted.inc(metrics.base, entries.length);
    metrics.proposalsApplied.inc(metrics.base, entries.length);
    let membershipChanged = false;
    entries.forEach((e, i) => {
      if (isMembershipEntry(e.type)) membershipChanged = true;
      const pending = proposals.take(e.index);
      if (pending === undefined) return;
      if (pending.tag === e.term) pending.resolve(results[i]);
      else {
        metrics.proposalsFailed.inc(metrics.base);
        pending.reject(
          new ProposalDroppedError(
            `the proposal at index ${e.index} was replaced by a newer leader's entry; it was not applied`,
          ),
        );
      }
    });
    this.appliedIndex = entries[entries.length - 1].index;
    if (membershipChanged) {
      const membership = this.p.node.membership();
      this.p.transport.setPeers(membership);
      this.p.logger.info('membership changed', {
        members: membership
          .map((m) => `${m.id}${m.learner ? '(learner)' : ''}@${m.address}`)
          .join(','),
      });
    }
    this.p.reads.applied(this.appliedIndex);
  }
}
