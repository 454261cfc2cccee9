// The Raft protocol as a synchronous state machine. Inputs: step(message), tick(), and the calls
// of RawNode (propose, readIndex, membership changes, leadership transfer). Outputs: messages,
// log entries and read states, collected by RawNode into a Ready.
//
// The role decides behaviour through two swapped functions, `stepRole` and `tickRole`: followers
// and candidates count down to an election, leaders send heartbeats; each role handles messages in
// its own step function. Rules every role shares (terms, votes) live in `step`.
import type { RaftConfig } from './config';
import { RaftLog } from './log';
import { isVoter, memberOf, MembershipHistory, votersOf } from './membership';
import {
  message,
  MessageType,
  voteResponseType,
  RefusalKind,
  type Message,
  type RefusedMessage,
} from './message';
import { Progress, ProgressState } from './progress';
import { committedIndex, hasQuorum, voteResult, VoteResult } from './quorum';
import { ReadIndexQueue } from './read-index';
import { entrySizeBytes, type LogStorage } from './storage';
import {
  assertNever,
  EntryType,
  invariant,
  isMembershipEntry,
  noNode,
  Role,
  type Entry,
  type Membership,
  type MembershipChange,
  type NodeId,
  type ReadState,
  type SnapshotMeta,
} from './types';

/** Why a request to the core was refused. */
export enum RaftRefusal {
  /** Only the leader accepts this; RawNode.status().leader names it when known. */
  NotLeader = 'not-leader',
  /** A leadership transfer is in progress; proposals resume when it ends. */
  TransferInProgress = 'transfer-in-progress',
  /** Too many uncommitted bytes or pending reads; retry with backoff. */
  Busy = 'busy',
  /** The previous membership change has not committed yet. */
  MembershipChangePending = 'membership-change-pending',
  /** The node is not a member (or not in the role the request needs). */
  NodeNotFound = 'node-not-found',
  /** The node is already a member in the requested role. */
  NodeExists = 'node-exists',
  /** The change would leave the group without voters. */
  LastVoter = 'last-voter',
  /** The leader has removed itself and is about to step down. */
  Removed = 'removed',
}

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly refusal: RaftRefusal };

export type RequestResult =
  { readonly ok: true } | { readonly ok: false; readonly refusal: RaftRefusal };

export enum MembershipChangeKind {
  AddLearner = 'add-learner',
  AddVoter = 'add-voter',
  Promote = 'promote',
  Remove = 'remove',
}

enum CampaignType {
  /** A pre-vote round: asks whether an election could be won, changes no state. */
  PreElection = 'pre-election',
  Election = 'election',
  /** An election started by the leader's TimeoutNow: skips pre-vote and leader stickiness. */
  Transfer = 'transfer',
}

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = noNode;
  leader: NodeId = noNode;
  role: Role = Role.Follower;
  readonly log: RaftLog;
  readonly membership: MembershipHistory;
  /** Leader only: replication progress of every member, itself included when it is a member. */
  readonly progress = new Map<NodeId, Progress>();
  /** Outgoing messages since the last Ready. */
  messages: Message[] = [];
  /** Reads confirmed since the last Ready. */
  readStates: ReadState[] = [];
  /** Messages refused since the last Ready (see RefusedMessage). */
  refused: RefusedMessage[] = [];

  private readonly votes = new Map<NodeId, boolean>();
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Leader only: the voter that leadership is being handed to. */
  leadTransferee: NodeId = noNode;
  /** Leader only: the index of the latest membership entry; a new change waits for its commit. */
  private pendingMembershipIndex = 0;
  /** Leader only: data bytes of proposals appended but not yet committed. */
  private uncommittedBytes = 0;
  private readonly reads: ReadIndexQueue;
  /** Leader only: reads that wait for the first commit of this term before a round may start. */
  private readsBeforeFirstCommit: number[] = [];

  private stepRole: (m: Message) => void = (m) => this.stepFollower(m);
  private tickRole: () => void = () => this.tickElection();

  constructor(
    readonly config: RaftConfig,
    storage: LogStorage,
  ) {
    invariant(config.id !== noNode, () => 'a node id must not be 0');
    this.id = config.id;
    this.log = new RaftLog(storage, config.applied);
    const { hardState, snapshot, membershipEntries } = storage.initialState();
    this.membership = new MembershipHistory(config.membershipCodec, {
      index: snapshot.index,
      membership: snapshot.membership,
    });
    this.membership.appended(membershipEntries);
    this.reads = new ReadIndexQueue(config.pendingReadsMax);
    this.becomeFollower(hardState.term, noNode);
    this.vote = hardState.vote;
  }

  // ---------------------------------------------------------------------------------------------
  // Membership and roles
  // ---------------------------------------------------------------------------------------------

  currentMembership(): Membership {
    return this.membership.current();
  }

  voters(): NodeId[] {
    return votersOf(this.membership.current());
  }

  /**
   * A node may campaign if it is a voter and is not installing a snapshot. A voter whose removal
   * is appended but not yet committed may campaign too (counting only the new configuration's
   * votes): it may hold the only copy of the removal, and without it the others could never
   * elect a leader (a leader that removed itself and lost leadership before the removal
   * committed would otherwise deadlock a two-voter group).
   */
  promotable(): boolean {
    if (this.log.unstable.snapshot !== null) return false;
    const membership = this.membership.current();
    if (isVoter(membership, this.id)) return true;
    const lastChange = this.membership.lastChangeIndex();
    return (
      memberOf(membership, this.id) === undefined &&
      lastChange > this.log.committed &&
      isVoter(this.membership.at(lastChange - 1), this.id) &&
      votersOf(membership).length > 0
    );
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = noNode;
    }
    this.leader = noNode;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout =
      this.config.electionTicks + this.config.rng.nextInt(this.config.electionTicks);
    this.leadTransferee = noNode;
    this.votes.clear();
    this.progress.clear();
    this.pendingMembershipIndex = 0;
    this.uncommittedBytes = 0;
    this.reads.reset();
    this.readsBeforeFirstCommit = [];
  }

  becomeFollower(term: number, leader: NodeId): void {
    this.reset(term);
    this.leader = leader;
    this.role = Role.Follower;
    this.stepRole = (m) => this.stepFollower(m);
    this.tickRole = () => this.tickElection();
  }

  private becomePreCandidate(): void {
    invariant(this.role !== Role.Leader, () => 'a leader cannot become a pre-candidate');
    // Pre-vote changes neither the term nor the vote: a node that cannot win must not disturb
    // the cluster (Raft thesis 9.6).
    this.votes.clear();
    this.leader = noNode;
    this.role = Role.PreCandidate;
    this.stepRole = (m) => this.stepCandidate(m);
    this.tickRole = () => this.tickElection();
  }

  private becomeCandidate(): void {
    invariant(this.role !== Role.Leader, () => 'a leader cannot become a candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.stepRole = (m) => this.stepCandidate(m);
    this.tickRole = () => this.tickElection();
  }

  private becomeLeader(): void {
    invariant(this.role === Role.Candidate, () => `${this.role} cannot become leader`);
    this.reset(this.term);
    this.leader = this.id;
    this.role = Role.Leader;
    this.stepRole = (m) => this.stepLeader(m);
    this.tickRole = () => this.tickHeartbeat();
    this.resetProgress();
    // Any uncommitted entry might be a membership change: allow no new change until everything
    // up to here has committed.
    this.pendingMembershipIndex = this.log.lastIndex();
    this.appendTermStart();
  }

  /**
   * Raft 5.4.2 / 8: a leader commits entries of earlier terms only through an entry of its own
   * term, so it starts its term with an empty one; reads wait for it to commit (thesis 6.4).
   */
  protected appendTermStart(): void {
    this.appendEntries([{ type: EntryType.NoOp, data: new Uint8Array(0) }]);
  }

  /** The index up to which this node's own log is persisted and matches the current log. */
  private persistedIndex(): number {
    return Math.min(this.log.storage.lastIndex(), this.log.unstable.offset - 1);
  }

  private resetProgress(): void {
    this.progress.clear();
    const next = this.log.lastIndex() + 1;
    for (const member of this.membership.current()) {
      const pr = this.newProgress(member.id, next);
      if (member.id === this.id) {
        pr.maybeUpdate(this.persistedIndex());
        pr.becomeReplicate();
        pr.recentActive = true;
      }
      this.progress.set(member.id, pr);
    }
  }

  private newProgress(id: NodeId, next: number): Progress {
    return new Progress(id, next, this.config.inflightAppendsMax, this.config.inflightBytesMax);
  }

  /** Leader only: adds progress for new members and drops it for removed ones. */
  private syncProgressWithMembership(): void {
    const members = this.membership.current();
    for (const id of [...this.progress.keys()]) {
      if (!members.some((m) => m.id === id)) this.progress.delete(id);
    }
    for (const member of members) {
      if (!this.progress.has(member.id)) {
        // A new member is probed from the end of the log and backs up from there.
        this.progress.set(member.id, this.newProgress(member.id, this.log.lastIndex() + 1));
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Ticks
  // ---------------------------------------------------------------------------------------------

  tick(): void {
    this.tickRole();
  }

  /** Followers and candidates: start an election when no leader was heard for a timeout. */
  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup();
    }
  }

  /** Leaders: heartbeats, check-quorum and the leadership-transfer deadline. */
  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.config.electionTicks) {
      this.electionElapsed = 0;
      if (this.config.checkQuorum) {
        if (!this.quorumActive()) {
          // Check-quorum: a leader cut off from a majority steps down, so that it stops serving
          // and a leader on the majority side can be elected without waiting for it.
          this.becomeFollower(this.term, noNode);
          return;
        }
        for (const [id, pr] of this.progress) pr.recentActive = id === this.id;
      }
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.leadTransferee !== noNode) this.leadTransferee = noNode;
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat(this.reads.inflightRound());
    }
  }

  private quorumActive(): boolean {
    return hasQuorum(
      this.voters(),
      (id) => id === this.id || this.progress.get(id)?.recentActive === true,
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Elections
  // ---------------------------------------------------------------------------------------------

  /** Starts an election (with a pre-vote round when configured), unless this node leads. */
  hup(): void {
    if (this.role === Role.Leader || !this.promotable()) return;
    // Storage could not record the next term (never reached by a correct group: see termJumpMax).
    if (this.term >= this.config.termMax) return;
    this.campaign(this.config.preVote ? CampaignType.PreElection : CampaignType.Election);
  }

  private campaign(type: CampaignType): void {
    let voteType: MessageType.Vote | MessageType.PreVote;
    let term: number;
    if (type === CampaignType.PreElection) {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      // A pre-vote asks for the term an election would use, without moving to it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      term = this.term;
    }
    if (this.poll(this.id, true) === VoteResult.Won) {
      // A single voter wins at once.
      if (type === CampaignType.PreElection) this.campaign(CampaignType.Election);
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.voters()) {
      if (id === this.id) continue;
      this.send(
        message({
          type: voteType,
          from: this.id,
          to: id,
          term,
          index: lastIndex,
          logTerm: lastTerm,
          leaderTransfer: type === CampaignType.Transfer,
        }),
      );
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    return voteResult(this.voters(), this.votes);
  }

  /**
   * Raft 5.2 / 5.4.1: one vote per term, only for a candidate whose log is at least as up to date
   * as ours. A pre-vote for a later term is answered as the vote would be, but records nothing.
   */
  protected canGrantVote(m: Message): boolean {
    const free =
      this.vote === m.from ||
      (this.vote === noNode && this.leader === noNode) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    return free && this.log.isUpToDate(m.index, m.logTerm);
  }

  /** This node heard from a live leader (or is one) within the minimum election timeout. */
  private inLeaderLease(): boolean {
    return this.leader !== noNode && this.electionElapsed < this.config.electionTicks;
  }

  private handleVoteRequest(m: Message): void {
    const responseType = voteResponseType(m.type as MessageType.Vote | MessageType.PreVote);
    if (this.canGrantVote(m)) {
      // The grant carries the candidate's term: a pre-candidate counts it for the term it asked
      // about. A real vote is recorded now and persisted (HardState) before the grant is sent.
      this.send(message({ type: responseType, from: this.id, to: m.from, term: m.term }));
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(
        message({ type: responseType, from: this.id, to: m.from, term: this.term, reject: true }),
      );
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Step: the rules every role shares, then the role's own step function
  // ---------------------------------------------------------------------------------------------

  step(m: Message): void {
    invariant(m.to === this.id, () => `message for ${m.to} stepped into ${this.id}`);
    if (m.term - this.term > this.config.termJumpMax && this.inLeaderLease()) {
      // A node that follows a live leader has no reason to believe in a term this far ahead: no
      // correct group gets there while one of its members keeps hearing from its leader. Taking
      // it would bring the group near termMax, where it could elect no more. A node without a
      // leader takes any term, as it must to catch up with wherever its group has gone.
      this.refuse(
        m,
        RefusalKind.TermJump,
        `its term ${m.term} is more than ${this.config.termJumpMax} above this node's term ${this.term}, and this node follows a live leader`,
      );
      return;
    }
    if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        // Leader stickiness (Raft thesis 4.2.3): a node that heard from a live leader within the
        // minimum election timeout ignores vote requests, so that a node rejoining after a
        // partition cannot depose a healthy leader. A transfer bypasses this on purpose.
        if (this.config.checkQuorum && this.inLeaderLease() && !m.leaderTransfer) return;
      }
      if (m.type === MessageType.PreVote) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.PreVoteResponse && !m.reject) {
        // A granted pre-vote carries the term we asked about; it is counted by stepCandidate.
      } else {
        const fromLeader =
          m.type === MessageType.Append ||
          m.type === MessageType.Heartbeat ||
          m.type === MessageType.Snapshot;
        this.becomeFollower(m.term, fromLeader ? m.from : noNode);
      }
    } else if (m.term < this.term) {
      if (
        (this.config.checkQuorum || this.config.preVote) &&
        (m.type === MessageType.Append || m.type === MessageType.Heartbeat)
      ) {
        // A stale leader (for example one that was partitioned) learns our term from this
        // answer and steps down; without it, pre-vote could leave it stuck forever.
        this.send(
          message({ type: MessageType.AppendResponse, from: this.id, to: m.from, term: this.term }),
        );
      } else if (m.type === MessageType.PreVote) {
        this.send(
          message({
            type: MessageType.PreVoteResponse,
            from: this.id,
            to: m.from,
            term: this.term,
            reject: true,
          }),
        );
      }
      return;
    }

    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      this.handleVoteRequest(m);
      return;
    }
    this.stepRole(m);
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        // The leader hands over leadership: campaign at once, skipping pre-vote.
        if (this.promotable()) this.campaign(CampaignType.Transfer);
        return;
      case MessageType.Vote:
      case MessageType.PreVote:
      case MessageType.VoteResponse:
      case MessageType.PreVoteResponse:
      case MessageType.AppendResponse:
      case MessageType.HeartbeatResponse:
        // Answers to an earlier role of ours: stale.
        return;
      default:
        assertNever(m.type, 'message type');
    }
  }

  private stepCandidate(m: Message): void {
    const myResponseType =
      this.role === Role.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    switch (m.type) {
      case MessageType.Append:
        // A leader exists for our term (or a later one): follow it.
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.VoteResponse:
      case MessageType.PreVoteResponse: {
        if (m.type !== myResponseType) return;
        switch (this.poll(m.from, !m.reject)) {
          case VoteResult.Won:
            if (this.role === Role.PreCandidate) this.campaign(CampaignType.Election);
            else {
              this.becomeLeader();
              this.broadcastAppend();
            }
            return;
          case VoteResult.Lost:
            this.becomeFollower(this.term, noNode);
            return;
          case VoteResult.Pending:
            return;
        }
        return;
      }
      case MessageType.TimeoutNow:
      case MessageType.Vote:
      case MessageType.PreVote:
      case MessageType.AppendResponse:
      case MessageType.HeartbeatResponse:
        return;
      default:
        assertNever(m.type, 'message type');
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.AppendResponse:
        this.handleAppendResponse(m);
        return;
      case MessageType.HeartbeatResponse:
        this.handleHeartbeatResponse(m);
        return;
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Snapshot:
        // Another leader in our own term would break election safety: no correct node sends
        // this, so it is forged or corrupted, and it must change nothing.
        this.refuse(
          m,
          RefusalKind.Contradiction,
          `node ${m.from} claims to lead term ${m.term}, which this node leads`,
        );
        return;
      case MessageType.TimeoutNow:
      case MessageType.Vote:
      case MessageType.PreVote:
      case MessageType.VoteResponse:
      case MessageType.PreVoteResponse:
        return;
      default:
        assertNever(m.type, 'message type');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Follower side of replication
  // ---------------------------------------------------------------------------------------------

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index is known to match; tell the leader where we stand.
      this.respondAppend(m.from, { index: this.log.committed });
      return;
    }
    const result = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (result === 'conflicts-with-committed') {
      // Leader completeness says every leader holds every committed entry: this append was not
      // sent by a correct leader (or this node's log is damaged). It changes nothing.
      this.refuse(
        m,
        RefusalKind.Contradiction,
        `its entries conflict with entries committed here (up to ${this.log.committed})`,
      );
      return;
    }
    if (result !== 'mismatch') {
      this.membership.appended(result.appended);
      this.respondAppend(m.from, { index: result.lastNewIndex });
      return;
    }
    // Raft 5.3 with fast backtracking: reject, and tell the leader the last index whose term is
    // not above the one it probed with, so that it can skip a whole term of mismatches at once.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.respondAppend(m.from, {
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
    });
  }

  private respondAppend(
    to: NodeId,
    fields: Pick<Partial<Message>, 'index' | 'reject' | 'rejectHint' | 'logTerm'>,
  ): void {
    this.send(
      message({ type: MessageType.AppendResponse, from: this.id, to, term: this.term, ...fields }),
    );
  }

  private handleHeartbeat(m: Message): void {
    const lastIndex = this.log.lastIndex();
    if (m.commit > lastIndex) {
      // The leader sends min(our match, its commit): a commit beyond our log means we lost
      // entries we acknowledged in this term (storage lost synced writes, or this log is not the
      // one that acknowledged them). Nothing is committed, no read round is confirmed, and the
      // leader is told, so that it treats this follower as broken rather than as progress.
      this.refuse(
        m,
        RefusalKind.LostEntries,
        `it asks to commit ${m.commit}, beyond this node's last index ${lastIndex}: this node lost entries it had acknowledged`,
      );
      this.send(
        message({
          type: MessageType.HeartbeatResponse,
          from: this.id,
          to: m.from,
          term: this.term,
          reject: true,
          index: lastIndex,
        }),
      );
      return;
    }
    this.log.commitTo(m.commit);
    this.send(
      message({
        type: MessageType.HeartbeatResponse,
        from: this.id,
        to: m.from,
        term: this.term,
        context: m.context,
      }),
    );
  }

  private handleSnapshot(m: Message): void {
    invariant(m.snapshot !== null, () => 'snapshot message without a snapshot');
    if (this.restore(m.snapshot)) {
      this.respondAppend(m.from, { index: this.log.lastIndex() });
    } else {
      this.respondAppend(m.from, { index: this.log.committed });
    }
  }

  /** Installs a snapshot from the leader. Returns false when it brings nothing new. */
  private restore(snapshot: SnapshotMeta): boolean {
    if (snapshot.index <= this.log.committed) return false;
    if (this.log.matchTerm(snapshot.index, snapshot.term)) {
      // We already hold the snapshot's last entry: only the commit index moves.
      this.log.commitTo(snapshot.index);
      return false;
    }
    this.log.restore(snapshot);
    this.membership.restore(snapshot.index, snapshot.membership);
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Leader side of replication
  // ---------------------------------------------------------------------------------------------

  /** Leader only: appends new entries of the current term to its own log. */
  private appendEntries(entries: readonly { type: EntryType; data: Uint8Array }[]): number {
    let index = this.log.lastIndex();
    const stamped: Entry[] = entries.map((e) => ({
      index: ++index,
      term: this.term,
      type: e.type,
      data: e.data,
    }));
    this.log.append(stamped);
    this.membership.appended(stamped);
    if (stamped.some((e) => isMembershipEntry(e.type))) {
      this.pendingMembershipIndex = index;
      this.syncProgressWithMembership();
    }
    // The leader counts its own entries only once they are persisted (RawNode.advance), so that
    // it may send them to followers before its own write finishes.
    return stamped[0].index;
  }

  /** Sends the next append to `to` if its window allows. Returns true if something was sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || to === this.id || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) {
      // The entries the peer needs were compacted away: it needs a snapshot.
      return this.maybeSendSnapshot(to, pr);
    }
    const lastIndex = this.log.lastIndex();
    let entries: readonly Entry[] = [];
    if (pr.next <= lastIndex) {
      const slice = this.log.slice(pr.next, lastIndex + 1, this.config.appendBytesMax);
      // Temporarily unavailable (being loaded from disk): try again on a later ack or heartbeat.
      if (slice === null) return false;
      entries = slice;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(
      message({
        type: MessageType.Append,
        from: this.id,
        to,
        term: this.term,
        index: prevIndex,
        logTerm: prevTerm,
        entries,
        commit: this.log.committed,
      }),
    );
    if (entries.length > 0) {
      let bytes = 0;
      for (const e of entries) bytes += entrySizeBytes(e);
      pr.sentEntries(entries[entries.length - 1].index, bytes);
    } else if (pr.state === ProgressState.Probe) {
      pr.probeSent = true;
    }
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    // A peer we have not heard from lately is probably down: do not start a transfer for it.
    if (!pr.recentActive) return false;
    const snapshot = this.log.storage.snapshot();
    if (snapshot === null) return false;
    invariant(
      snapshot.index >= this.log.firstIndex() - 1,
      () => `snapshot ${snapshot.index} is older than the log start ${this.log.firstIndex()}`,
    );
    pr.becomeSnapshot(snapshot.index);
    this.send(
      message({ type: MessageType.Snapshot, from: this.id, to, term: this.term, snapshot }),
    );
    return true;
  }

  /** Sends appends to every peer, as far as their windows allow. */
  broadcastAppend(): void {
    for (const id of this.progress.keys()) {
      if (id !== this.id) this.maybeSendAppend(id, true);
    }
  }

  private broadcastHeartbeat(readRound: number): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit past what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.send(
        message({
          type: MessageType.Heartbeat,
          from: this.id,
          to: id,
          term: this.term,
          commit,
          context: readRound,
        }),
      );
    }
  }

  private handleAppendResponse(m: Message): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    if (!m.reject && m.index > this.log.lastIndex()) {
      // An acknowledgement of entries this leader never had: forged or corrupted.
      this.refuse(
        m,
        RefusalKind.Contradiction,
        `it acknowledges index ${m.index}, beyond the leader's last index ${this.log.lastIndex()}`,
      );
      return;
    }
    pr.recentActive = true;
    if (m.reject) {
      // Fast backtracking: with a hint term, skip to the last index of ours whose term is not
      // above it; without one, to the follower's hint index.
      let matchHint = m.rejectHint;
      if (m.logTerm > 0) matchHint = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, matchHint)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.maybeSendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    pr.ackedSinceHeartbeat = true;
    switch (pr.state) {
      case ProgressState.Probe:
        pr.becomeReplicate();
        break;
      case ProgressState.Snapshot:
        // The snapshot is installed (or the peer caught up otherwise): resume appends.
        if (pr.match + 1 >= this.log.firstIndex()) {
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case ProgressState.Replicate:
        pr.inflights.freeLE(m.index);
        break;
    }
    if (this.maybeCommit()) {
      this.broadcastAppend();
    } else if (wasPaused) {
      this.maybeSendAppend(m.from, true);
    }
    // Fill the window: there may be more entries than one append carries.
    while (this.role === Role.Leader && this.maybeSendAppend(m.from, false)) {
      // keep sending
    }
    if (this.role !== Role.Leader) return;
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.sendTimeoutNow(m.from);
    }
    this.maybePromoteLearner(m.from, pr);
  }

  private handleHeartbeatResponse(m: Message): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    if (m.reject) {
      // The follower's log ends below what it acknowledged (see handleHeartbeat): an error, not
      // progress. It confirms no read round, and its match stays where it was, so it never
      // counts again for entries it does not hold; an operator must remove it and add it again.
      this.refuse(
        m,
        RefusalKind.PeerLostEntries,
        `node ${m.from} lost entries it acknowledged: its log ends at ${m.index}, below its match index ${pr.match}`,
      );
      return;
    }
    pr.recentActive = true;
    pr.probeSent = false;
    if (pr.match < this.log.lastIndex()) {
      if (pr.state === ProgressState.Replicate && !pr.ackedSinceHeartbeat) {
        // Entries are outstanding but nothing was acknowledged for a whole heartbeat round:
        // they were probably lost. Probe from the known match to send them again.
        pr.becomeProbe();
      }
      this.maybeSendAppend(m.from, true);
    }
    pr.ackedSinceHeartbeat = false;
    if (m.context !== 0) {
      const released = this.reads.recordAck(m.from, m.context, (acks) =>
        hasQuorum(this.voters(), (id) => acks.has(id)),
      );
      this.readStates.push(...released);
      this.maybeStartReadRound();
    }
    // A learner that caught up while its promotion had to wait (its join, or another change, had
    // not committed yet) sends no more acks that advance its match in an idle group: its
    // heartbeat answers are the next chance to promote it.
    this.maybePromoteLearner(m.from, pr);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(message({ type: MessageType.TimeoutNow, from: this.id, to, term: this.term }));
  }

  /**
   * Raft 5.3 / 5.4.2: advances the commit index to the highest index stored on a majority of
   * voters, but only if that entry is from the current term. Returns true if it advanced.
   */
  protected maybeCommit(): boolean {
    const index = committedIndex(this.voters(), (id) => this.progress.get(id)?.match ?? 0);
    if (!this.log.maybeCommit(index, this.term)) return false;
    this.afterCommit();
    return true;
  }

  /** What a leader does once its commit index moved. */
  protected afterCommit(): void {
    if (this.readsBeforeFirstCommit.length > 0 && this.committedInCurrentTerm()) {
      for (const id of this.readsBeforeFirstCommit) this.reads.enqueue(id);
      this.readsBeforeFirstCommit = [];
      this.maybeStartReadRound();
    }
    // A leader that removed itself steps down once the removal commits (Raft thesis 4.2.2).
    if (
      memberOf(this.membership.current(), this.id) === undefined &&
      this.log.committed >= this.membership.lastChangeIndex()
    ) {
      this.broadcastAppend();
      this.becomeFollower(this.term, noNode);
    }
  }

  /**
   * One change at a time (Raft thesis 4.1): the previous change must have committed. And a new
   * leader changes nothing until an entry of its own term has committed: otherwise two leaders
   * of different terms can each append a change to the same base configuration, and the two
   * resulting configurations need not share a majority (the single-server change bug found
   * after the thesis; the simulation found it here too, seed 11203 with 5 nodes).
   */
  private membershipChangeAllowed(): boolean {
    return this.pendingMembershipIndex <= this.log.committed && this.committedInCurrentTerm();
  }

  private committedInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private maybePromoteLearner(id: NodeId, pr: Progress): void {
    if (!this.config.autoPromoteLearners) return;
    const member = memberOf(this.membership.current(), id);
    if (member === undefined || !member.learner) return;
    if (this.log.lastIndex() - pr.match > this.config.learnerCatchUpEntriesMax) return;
    // A learner that has not acknowledged even what the log no longer holds still needs the
    // snapshot, however short the log is: it has nothing yet and would only weaken the quorum.
    if (pr.match < this.log.firstIndex() - 1) return;
    if (!this.membershipChangeAllowed() || this.leadTransferee !== noNode) return;
    this.appendEntries([
      {
        type: EntryType.JoinNode,
        data: this.config.membershipCodec.encode({
          nodeId: id,
          address: member.address,
          incarnation: member.incarnation,
        }),
      },
    ]);
    this.broadcastAppend();
  }

  /** Called by RawNode once entries up to `index` of this node's log are persisted. */
  persistedTo(index: number): void {
    if (this.role !== Role.Leader) return;
    const self = this.progress.get(this.id);
    if (self === undefined) return;
    if (self.maybeUpdate(Math.min(index, this.persistedIndex())) && this.maybeCommit()) {
      this.broadcastAppend();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Requests from the application (through RawNode)
  // ---------------------------------------------------------------------------------------------

  propose(datas: readonly Uint8Array[]): ProposeResult {
    invariant(datas.length > 0, () => 'propose needs at least one entry');
    const refusal = this.proposalRefusal();
    if (refusal !== undefined) return { ok: false, refusal };
    let bytes = 0;
    for (const d of datas) bytes += d.length;
    // Bound the uncommitted tail, but never refuse the first proposal into an empty one, so a
    // single large entry can always make progress.
    if (
      this.uncommittedBytes > 0 &&
      this.uncommittedBytes + bytes > this.config.uncommittedBytesMax
    ) {
      return { ok: false, refusal: RaftRefusal.Busy };
    }
    this.uncommittedBytes += bytes;
    const index = this.appendEntries(datas.map((data) => ({ type: EntryType.Normal, data })));
    this.broadcastAppend();
    return { ok: true, index, term: this.term };
  }

  private proposalRefusal(): RaftRefusal | undefined {
    if (this.role !== Role.Leader) return RaftRefusal.NotLeader;
    if (this.leadTransferee !== noNode) return RaftRefusal.TransferInProgress;
    if (memberOf(this.membership.current(), this.id) === undefined) return RaftRefusal.Removed;
    return undefined;
  }

  /** Called when the application has applied committed entries of `bytes` data bytes. */
  reduceUncommittedBytes(bytes: number): void {
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - bytes);
  }

  proposeMembershipChange(kind: MembershipChangeKind, change: MembershipChange): ProposeResult {
    const refusal = this.proposalRefusal();
    if (refusal !== undefined) return { ok: false, refusal };
    if (!this.membershipChangeAllowed()) {
      return { ok: false, refusal: RaftRefusal.MembershipChangePending };
    }
    const membership = this.membership.current();
    const existing = memberOf(membership, change.nodeId);
    let type: EntryType;
    switch (kind) {
      case MembershipChangeKind.AddLearner:
        if (existing !== undefined) return { ok: false, refusal: RaftRefusal.NodeExists };
        type = EntryType.JoinNoVoteNode;
        break;
      case MembershipChangeKind.AddVoter:
        if (existing !== undefined && !existing.learner) {
          return { ok: false, refusal: RaftRefusal.NodeExists };
        }
        type = EntryType.JoinNode;
        break;
      case MembershipChangeKind.Promote:
        if (existing === undefined) return { ok: false, refusal: RaftRefusal.NodeNotFound };
        if (!existing.learner) return { ok: false, refusal: RaftRefusal.NodeExists };
        type = EntryType.JoinNode;
        break;
      case MembershipChangeKind.Remove:
        if (existing === undefined) return { ok: false, refusal: RaftRefusal.NodeNotFound };
        if (!existing.learner && votersOf(membership).length === 1) {
          return { ok: false, refusal: RaftRefusal.LastVoter };
        }
        type = EntryType.LeaveNode;
        break;
      default:
        assertNever(kind, 'membership change');
    }
    const address = change.address || existing?.address || '';
    const incarnation = change.incarnation || existing?.incarnation || 0;
    const index = this.appendEntries([
      {
        type,
        data: this.config.membershipCodec.encode({ nodeId: change.nodeId, address, incarnation }),
      },
    ]);
    this.broadcastAppend();
    return { ok: true, index, term: this.term };
  }

  /** Starts a read at the commit index; it is released in readStates once leadership is confirmed. */
  readIndex(requestId: number): RequestResult {
    if (this.role !== Role.Leader) return { ok: false, refusal: RaftRefusal.NotLeader };
    if (this.reads.isFull() || this.readsBeforeFirstCommit.length >= this.config.pendingReadsMax) {
      return { ok: false, refusal: RaftRefusal.Busy };
    }
    if (!this.committedInCurrentTerm()) {
      // Until an entry of this term commits, the commit index may be behind that of an earlier
      // leader: wait for the no-op to commit (Raft thesis 6.4, step 1).
      this.readsBeforeFirstCommit.push(requestId);
      return { ok: true };
    }
    this.reads.enqueue(requestId);
    this.maybeStartReadRound();
    return { ok: true };
  }

  private maybeStartReadRound(): void {
    if (hasQuorum(this.voters(), (id) => id === this.id)) {
      // Alone in the group: no one else can lead, nothing to confirm.
      this.readStates.push(...this.reads.releaseAll(this.log.committed));
      return;
    }
    const round = this.reads.maybeStartRound(this.log.committed, this.id);
    if (round !== 0) this.broadcastHeartbeat(round);
  }

  /** Raft thesis 3.10: hands leadership to a caught-up voter. */
  transferLeader(target: NodeId): RequestResult {
    if (this.role !== Role.Leader) return { ok: false, refusal: RaftRefusal.NotLeader };
    if (target === this.id) return { ok: true };
    const pr = this.progress.get(target);
    if (pr === undefined || !isVoter(this.membership.current(), target)) {
      return { ok: false, refusal: RaftRefusal.NodeNotFound };
    }
    if (this.leadTransferee === target) return { ok: true };
    // The transfer must complete within an election timeout (see tickHeartbeat).
    this.electionElapsed = 0;
    this.leadTransferee = target;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.maybeSendAppend(target, true);
    return { ok: true };
  }

  /** The transport could not reach `id`: stop streaming to it and probe instead. */
  reportUnreachable(id: NodeId): void {
    const pr = this.progress.get(id);
    if (this.role !== Role.Leader || pr === undefined) return;
    if (pr.state === ProgressState.Replicate) pr.becomeProbe();
  }

  /** The runtime finished (ok) or abandoned (!ok) sending the snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.progress.get(id);
    if (this.role !== Role.Leader || pr === undefined || pr.state !== ProgressState.Snapshot) {
      return;
    }
    if (!ok) pr.pendingSnapshot = 0;
    // Probe after the snapshot; wait for the peer's answer or the next heartbeat before sending.
    pr.becomeProbe();
    pr.probeSent = true;
  }

  private send(m: Message): void {
    this.messages.push(m);
  }

  private refuse(m: Message, kind: RefusalKind, reason: string): void {
    this.refused.push({ message: m, kind, reason });
  }
}
