// RawNode: the API of the Raft core (see index.ts for the Ready contract).
import { resolveRaftConfig, type RaftConfig, type RaftConfigInput } from './config';
import { mayBeSentBeforePersist, type Message, type RefusedMessage } from './message';
import type { ProgressState } from './progress';
import { MembershipChangeKind, Raft, type ProposeResult, type RequestResult } from './raft';
import { entrySizeBytes, type LogStorage } from './storage';
import {
  hardStateEquals,
  type Entry,
  type HardState,
  type Membership,
  type MembershipChange,
  type NodeId,
  type ReadState,
  Role,
  type SnapshotMeta,
  type SoftState,
} from './types';

/** Everything the runtime must do, in order: persist, send, apply, then advance(). */
export interface Ready {
  /** Leader and role, when they changed since the previous Ready (not persisted). */
  readonly softState: SoftState | null;
  /** Term, vote and commit, when they changed: persist before sending any message. */
  readonly hardState: HardState | null;
  /**
   * Entries to persist, in index order. They may start below the stored last index: the stored
   * suffix from entries[0].index on is then replaced (truncated), atomically with the append.
   */
  readonly entries: readonly Entry[];
  /**
   * A snapshot received from the leader to install: the state machine is restored from it and
   * the stored log is replaced by it, before anything in `committedEntries` is applied.
   */
  readonly snapshot: SnapshotMeta | null;
  /** Entries to apply to the state machine, in order (after persisting). */
  readonly committedEntries: readonly Entry[];
  /**
   * Messages to send once the persist is done. Only the leader's Append and Heartbeat messages
   * may leave before its own write completes (Raft thesis 10.2.1): see `mayBeSentBeforePersist`.
   */
  readonly messages: readonly Message[];
  /** Confirmed reads: answer each once the state machine has applied its index. */
  readonly readStates: readonly ReadState[];
  /**
   * Messages the core refused as impossible in a correct group (a peer that lost entries it had
   * acknowledged, a forged or corrupted message). They changed nothing; report them (log, metric).
   */
  readonly refused: readonly RefusedMessage[];
  /** The write must be synced to disk (entries, or a term or vote change) before sending. */
  readonly mustSync: boolean;
}

export interface PeerStatus {
  readonly id: NodeId;
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly recentActive: boolean;
}

export interface BasicStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly membership: Membership;
  /** Leader only: every member's replication progress. */
  readonly progress: readonly PeerStatus[];
  readonly leadTransferee: NodeId;
}

export class RawNode {
  /** The protocol state machine; exposed for status and tests, driven only through RawNode. */
  protected readonly raft: Raft;
  private previousSoftState: SoftState;
  private previousHardState: HardState;
  /** The Ready handed out and not yet advanced. */
  private inFlight: Ready | null = null;

  /**
   * `createRaft` exists for tests that need a deliberately altered protocol (to prove that the
   * simulation's checkers catch it); production code never passes it.
   */
  constructor(
    config: RaftConfigInput,
    storage: LogStorage,
    createRaft: (config: RaftConfig, storage: LogStorage) => Raft = (c, s) => new Raft(c, s),
  ) {
    this.raft = createRaft(resolveRaftConfig(config), storage);
    this.previousSoftState = this.softState();
    this.previousHardState = this.hardState();
  }

  /** Advances logical time by one tick. */
  tick(): void {
    this.raft.tick();
  }

  /** Feeds a message received from a peer. */
  step(m: Message): void {
    this.raft.step(m);
  }

  /** Starts an election now (tests and operators; normally elections start from ticks). */
  campaign(): void {
    this.raft.hup();
  }

  /** Appends commands to the log (leader only). Entries get consecutive indexes from `index`. */
  propose(datas: readonly Uint8Array[]): ProposeResult {
    return this.raft.propose(datas);
  }

  /** Proposes one membership change (leader only; one change at a time). */
  proposeMembershipChange(kind: MembershipChangeKind, change: MembershipChange): ProposeResult {
    return this.raft.proposeMembershipChange(kind, change);
  }

  /** Requests a linearizable read; confirmed later through Ready.readStates with this id. */
  readIndex(requestId: number): RequestResult {
    return this.raft.readIndex(requestId);
  }

  /** Hands leadership to `target` (a caught-up voter); observe the outcome in softState. */
  transferLeader(target: NodeId): RequestResult {
    return this.raft.transferLeader(target);
  }

  /**
   * Entries that storage reported unavailable have been loaded: a leader retries the appends it
   * skipped (the apply path retries on its own through hasReady).
   */
  entriesAvailable(): void {
    if (this.raft.role === Role.Leader) this.raft.broadcastAppend();
  }

  reportUnreachable(id: NodeId): void {
    this.raft.reportUnreachable(id);
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(id, ok);
  }

  private softState(): SoftState {
    return { leader: this.raft.leader, role: this.raft.role };
  }

  private hardState(): HardState {
    return { term: this.raft.term, vote: this.raft.vote, commit: this.raft.log.committed };
  }

  /**
   * Removes and returns the queued messages that may leave at once, without waiting for the next
   * Ready: a leader's Append and Heartbeat messages (see mayBeSentBeforePersist). A runtime calls
   * it after every input so that heartbeats and replication keep flowing while it is still busy
   * with an earlier Ready (persisting or applying a large batch).
   */
  takeMessagesSendableNow(): Message[] {
    const raft = this.raft;
    if (!raft.messages.some(mayBeSentBeforePersist)) return [];
    const now = raft.messages.filter(mayBeSentBeforePersist);
    raft.messages = raft.messages.filter((m) => !mayBeSentBeforePersist(m));
    return now;
  }

  /** True when there is something to do. Always false while a Ready awaits its advance(). */
  hasReady(): boolean {
    if (this.inFlight !== null) return false;
    const raft = this.raft;
    const soft = this.softState();
    if (
      soft.leader !== this.previousSoftState.leader ||
      soft.role !== this.previousSoftState.role
    ) {
      return true;
    }
    if (!hardStateEquals(this.hardState(), this.previousHardState)) return true;
    if (raft.log.unstable.snapshot !== null) return true;
    if (raft.messages.length > 0 || raft.readStates.length > 0 || raft.refused.length > 0) {
      return true;
    }
    if (raft.log.unstableEntries().length > 0) return true;
    return this.committedEntriesAvailable();
  }

  private committedEntriesAvailable(): boolean {
    const log = this.raft.log;
    if (!log.hasNextCommittedEntries()) return false;
    const next = log.nextCommittedEntries(1);
    return next !== null && next.length > 0;
  }

  /**
   * Collects what the runtime must do now. Call `advance()` once it is all done; until then,
   * `ready()` must not be called again.
   */
  ready(): Ready {
    if (this.inFlight !== null) throw new Error('ready() called again before advance()');
    const raft = this.raft;
    const log = raft.log;
    const soft = this.softState();
    const hard = this.hardState();
    const softChanged =
      soft.leader !== this.previousSoftState.leader || soft.role !== this.previousSoftState.role;
    const hardChanged = !hardStateEquals(hard, this.previousHardState);
    const entries = [...log.unstableEntries()];
    const snapshot = log.unstable.snapshot;
    let committedEntries: Entry[] = [];
    if (snapshot === null && log.hasNextCommittedEntries()) {
      committedEntries =
        log.nextCommittedEntries(raft.config.committedEntriesPerReadyBytesMax) ?? [];
    }
    const rd: Ready = {
      softState: softChanged ? soft : null,
      hardState: hardChanged ? hard : null,
      entries,
      snapshot,
      committedEntries,
      messages: raft.messages,
      readStates: raft.readStates,
      refused: raft.refused,
      mustSync:
        entries.length > 0 ||
        snapshot !== null ||
        hard.term !== this.previousHardState.term ||
        hard.vote !== this.previousHardState.vote,
    };
    raft.messages = [];
    raft.readStates = [];
    raft.refused = [];
    if (softChanged) this.previousSoftState = soft;
    if (hardChanged) this.previousHardState = hard;
    if (committedEntries.length > 0) {
      log.acceptApplying(committedEntries[committedEntries.length - 1].index);
    }
    this.inFlight = rd;
    return rd;
  }

  /** Tells the core that the last Ready was persisted, sent and applied. */
  advance(): void {
    const rd = this.inFlight;
    if (rd === null) throw new Error('advance() without a ready() to acknowledge');
    this.inFlight = null;
    const raft = this.raft;
    if (rd.snapshot !== null) {
      raft.log.stableSnapshotTo(rd.snapshot.index);
      raft.log.appliedTo(rd.snapshot.index);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1];
      raft.log.stableTo(last.index, last.term);
      raft.persistedTo(last.index);
    }
    if (rd.committedEntries.length > 0) {
      raft.log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
      let bytes = 0;
      for (const e of rd.committedEntries) bytes += entrySizeBytes(e);
      raft.reduceUncommittedBytes(bytes);
    }
  }

  /** The cheap part of the status (no per-peer progress). */
  basicStatus(): BasicStatus {
    const raft = this.raft;
    return {
      id: raft.id,
      role: raft.role,
      term: raft.term,
      leader: raft.leader,
      commit: raft.log.committed,
      applied: raft.log.applied,
      lastIndex: raft.log.lastIndex(),
    };
  }

  status(): RaftStatus {
    const raft = this.raft;
    return {
      id: raft.id,
      role: raft.role,
      term: raft.term,
      vote: raft.vote,
      leader: raft.leader,
      commit: raft.log.committed,
      applied: raft.log.applied,
      firstIndex: raft.log.firstIndex(),
      lastIndex: raft.log.lastIndex(),
      membership: raft.currentMembership(),
      progress: [...raft.progress.values()].map((pr) => ({
        id: pr.id,
        match: pr.match,
        next: pr.next,
        state: pr.state,
        recentActive: pr.recentActive,
      })),
      leadTransferee: raft.leadTransferee,
    };
  }

  /** The membership in effect now (as appended, committed or not). */
  membership(): Membership {
    return this.raft.currentMembership();
  }

  /** The membership in effect at `index` (for the snapshot the runtime writes at that index). */
  membershipAt(index: number): Membership {
    return this.raft.membership.at(index);
  }
}
