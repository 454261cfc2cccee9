// RaftServer (the name from the ERaftKV design): one member of a Raft group, driving the
// deterministic core with a real clock. RaftServer.open() opens the data dir, recovers (or
// bootstraps, see bootstrap.ts) and returns a running server. The server coordinates the parts:
//   - the Ready loop (ready-loop.ts): persist, send, apply, advance;
//   - the snapshot coordinator (snapshot/snapshot-coordinator.ts): take, send, receive, install;
//   - the waiters (waiters.ts): proposals, reads, leadership transfers and peer requests waiting
//     for their answer;
//   - the log store, the peer transport and the metrics.
// It takes peer requests through its inbox (receive) and offers the servers an API: propose,
// readIndex, membership changes, leadership transfer, status and health.
import type { Registry } from 'prom-client';
import type { IdentifyReq, IdentifyResp } from '@eraftkv/protocol';
import {
  MembershipChangeKind,
  noNode,
  RaftRefusal,
  RawNode,
  RefusalKind,
  Role,
  type Membership,
  type Message,
  type NodeId,
  type RaftStatus,
  type RefusedMessage,
  type SnapshotMeta,
} from '@eraftkv/raft';
import { DataDirWatch } from './data-dir-watch';
import { identityAnswer, incarnationOfNewNode, type OpenNode } from './bootstrap';
import { BusyError, NotLeaderError, ProposalDroppedError, StoppedError } from './errors';
import { NodeHealth } from './health';
import type { HealthReport } from './http-endpoint';
import type { LogStore } from './log-store';
import { ThrottledLog, type Logger } from './logger';
import { RaftMetrics } from './metrics';
import {
  resolveRaftServerOptions,
  type RaftServerOptions,
  type ResolvedRaftServerOptions,
} from './raft-server-options';
import { ReadyLoop, type PendingProposals } from './ready-loop';
import { recoverNode, type RecoveredNode } from './recovery';
import { refusalError } from './refusals';
import { SnapshotCoordinator } from './snapshot';
import {
  PeerRefusal,
  PeerTransport,
  type PeerAnswer,
  type PeerIdentity,
  type PeerInput,
} from './transport';
import { PendingAnswers, PendingReads, PendingTransfers, Wait } from './waiters';

/** A snapshot of the node's state for status RPCs and tools. */
export interface RaftServerStatus extends RaftStatus {
  readonly groupId: number;
  readonly clusterId: string;
  readonly incarnation: number;
  readonly leaderAddress: string;
  readonly snapshotIndex: number;
  readonly stopped: boolean;
}

interface QueuedProposal<R> {
  readonly data: Uint8Array;
  readonly resolve: (result: R | undefined) => void;
  readonly reject: (err: Error) => void;
}

export class RaftServer<R> implements OpenNode {
  readonly selfId: NodeId;
  readonly identity: PeerIdentity;
  readonly registry: Registry;
  private readonly logger: Logger;
  private readonly warnings: ThrottledLog;
  private readonly node: RawNode;
  private readonly logStore: LogStore;
  private readonly transport: PeerTransport;
  private readonly metrics: RaftMetrics;
  private readonly snapshots: SnapshotCoordinator;
  private readonly loop: ReadyLoop<R>;
  private readonly proposalQueue: QueuedProposal<R>[] = [];
  private readonly proposals: PendingProposals<R> = new Wait();
  private readonly reads = new PendingReads();
  private readonly transfers = new PendingTransfers();
  private readonly answers = new PendingAnswers();
  private ticker: NodeJS.Timeout | null = null;
  private dataDirWatch: DataDirWatch | null = null;
  private proposalFlushScheduled = false;
  /** The term whose leader last dropped the proposals its log overwrote (see flushProposals). */
  private proposalsTerm = 0;
  private readonly nodeHealth: NodeHealth;
  private failure: Error | null = null;
  private leader: NodeId = noNode;
  private role: Role = Role.Follower;

  // ---------------------------------------------------------------------------------------------
  // Life cycle
  // ---------------------------------------------------------------------------------------------

  /**
   * Opens the data dir, recovers, and starts ticking. A new data dir with `bootstrap` members first
   * learns their incarnations (discoverBootstrap), which may wait for them to start; meanwhile
   * options.boot answers for the node. The state machine is closed by stop() and abort(), not
   * when open() fails.
   */
  static async open<R>(options: RaftServerOptions<R>): Promise<RaftServer<R>> {
    const o = resolveRaftServerOptions(options);
    o.boot.begin(o.id, o.identity, o.logger);
    // The transport exists before the server (bootstrap discovery asks the peers through it);
    // its events reach the server once it is built.
    let built: RaftServer<R> | null = null;
    const parts = await recoverNode(o, {
      onResponse: (m) => built?.stepLocal(m),
      onUnreachable: (id) => built?.peerUnreachable(id),
      onSnapshotDone: (id, ok) => built?.snapshots.sent(id, ok),
      onPeerRefusal: (id, detail) => built?.peerRefused(id, detail),
      observe: (kind, to, seconds, failed) => built?.observePeer(kind, to, seconds, failed),
    });
    const server = new RaftServer(o, parts);
    built = server;
    server.dataDirWatch = await DataDirWatch.start(o.dataDir, o.dataDirCheckMs, (err) =>
      server.fail(err),
    );
    server.run(parts);
    o.boot.opened(server);
    if (o.boot.stopRequested) {
      // Stopped while it opened: it does not run on behind its caller's back.
      await server.stop();
      throw new StoppedError('the raft server was stopped while it opened');
    }
    return server;
  }

  private constructor(
    private readonly options: ResolvedRaftServerOptions<R>,
    parts: RecoveredNode,
  ) {
    const o = options;
    this.selfId = o.id;
    this.identity = o.identity;
    this.registry = o.registry;
    this.logger = o.logger;
    this.warnings = new ThrottledLog(o.logger);
    this.nodeHealth = new NodeHealth(o.healthApplyLagEntriesMax, o.boot.notThisIncarnation);
    this.node = parts.node;
    this.logStore = parts.logStore;
    this.transport = parts.transport;
    this.metrics = new RaftMetrics(this.registry, o.groupId, o.id, {
      hasLeader: () => this.leader !== noNode,
      isLeader: () => this.role === Role.Leader,
      term: () => this.node.basicStatus().term,
      commitIndex: () => this.node.basicStatus().commit,
      appliedIndex: () => this.loop.appliedIndex,
      pendingProposals: () => this.proposals.size + this.proposalQueue.length,
    });
    this.snapshots = new SnapshotCoordinator({
      selfId: o.id,
      store: parts.snapshotStore,
      logStore: parts.logStore,
      node: parts.node,
      transport: parts.transport,
      stateMachine: o.stateMachine,
      metrics: this.metrics,
      logger: this.logger,
      snapshotEntries: o.snapshotEntries,
      compactionMarginEntries: o.compactionMarginEntries,
      snapshotIndex: parts.snapshotIndex,
      appliedIndex: () => this.loop.appliedIndex,
      stopping: () => this.loop.stopping,
      aborted: () => this.loop.aborted,
      schedule: () => this.loop.schedule(),
      step: (m) => this.stepRequest(m),
      commitSeen: (index) => this.nodeHealth.commitSeen(index),
      installed: (meta) => this.snapshotInstalled(meta),
    });
    this.loop = new ReadyLoop({
      node: parts.node,
      logStore: parts.logStore,
      transport: parts.transport,
      snapshots: this.snapshots,
      stateMachine: o.stateMachine,
      metrics: this.metrics,
      logger: this.logger,
      proposals: this.proposals,
      reads: this.reads,
      answers: this.answers,
      appliedIndex: parts.applied,
      onSoftState: (leader, role) => this.onSoftState(leader, role),
      onRefused: (refused) => this.reportRefused(refused),
      onFailure: (err) => this.fail(err),
    });
  }

  /** Follows the membership, hooks the log store up, and starts ticking. */
  private run(parts: RecoveredNode): void {
    this.transport.setPeers(this.node.membership());
    this.logStore.onEntriesLoaded = () => {
      this.node.entriesAvailable();
      this.loop.schedule();
    };
    this.logStore.onSnapshotNeeded = () => this.snapshots.maybeSnapshot(true);
    this.logStore.onRemovalFailed = (err) =>
      this.warnings.warn(
        'log-removal',
        'removing compacted log entries failed; the next open retries',
        {
          error: err.message,
        },
      );
    this.logStore.setRetainFrom(parts.applied + 1);
    this.ticker = setInterval(() => {
      this.node.tick();
      this.transfers.expire(Date.now());
      this.loop.schedule();
    }, this.options.tickMs);
    this.logger.info('raft server started', {
      applied: parts.applied,
      lastIndex: this.logStore.lastIndex(),
      term: this.logStore.storedHardState().term,
      members: this.node
        .status()
        .membership.map((m) => m.id)
        .join(','),
    });
    this.loop.schedule();
  }

  /**
   * Stops ticking and taking requests, lets the Ready in progress finish (so that nothing
   * acknowledged is lost), fails everything still pending with StoppedError and closes storage.
   */
  async stop(): Promise<void> {
    if (this.loop.stopping) return;
    this.logger.info('raft server stopping');
    this.halt();
    await this.loop.idle();
    this.failAll(
      new StoppedError(
        'the raft server stopped before the request completed; its outcome is unknown',
      ),
    );
    await this.closeStorage();
    this.logger.info('raft server stopped');
  }

  /**
   * Stops at once, as a crash would: the Ready in progress is abandoned (whatever it had not yet
   * persisted is lost, nothing more is sent or applied) and every pending request fails. Storage
   * is closed once the write in progress, if any, returns. Tests use it to crash a node; a fatal
   * failure does the same.
   */
  async abort(): Promise<void> {
    if (this.loop.aborted) return;
    this.halt(true);
    this.failAll(
      new StoppedError('the raft server was aborted; the outcome of the request is unknown'),
    );
    await this.loop.idle();
    await this.closeStorage();
  }

  /** Stops the node after a failure that leaves its state unknown (never acknowledges after). */
  private fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.nodeHealth.failed(err);
    this.logger.error('raft server failed; stopping', { error: err.message });
    this.halt(true);
    this.failAll(new StoppedError(`the raft server stopped after a failure: ${err.message}`));
    this.options.onFatal(err);
  }

  /** The failure that stopped the node, if any. */
  fatalError(): Error | null {
    return this.failure;
  }

  private halt(abort = false): void {
    if (abort) this.loop.abort();
    else this.loop.stop();
    if (this.ticker) clearInterval(this.ticker);
    this.dataDirWatch?.stop();
    this.transport.close();
  }

  private async closeStorage(): Promise<void> {
    await this.snapshots.close();
    await this.logStore.close();
    await this.options.stateMachine.close();
  }

  private failAll(err: Error): void {
    for (const p of this.proposalQueue.splice(0)) p.reject(err);
    this.proposals.failAll(err);
    this.answers.dropAll();
    this.reads.failAll(err);
    this.transfers.failAll(err);
  }

  private stoppedError(): StoppedError | null {
    return this.loop.stopping ? new StoppedError('the raft server is stopping') : null;
  }

  private assertRunning(): void {
    const stopped = this.stoppedError();
    if (stopped !== null) throw stopped;
  }

  // ---------------------------------------------------------------------------------------------
  // Peer requests (PeerInbox) and the transport's events
  // ---------------------------------------------------------------------------------------------

  /** A decoded peer request: stepped into the core, or a snapshot block for the coordinator. */
  receive<I extends PeerInput>(input: I): Promise<PeerAnswer<I>> {
    return this.receiveInput(input) as Promise<PeerAnswer<I>>;
  }

  private async receiveInput(input: PeerInput): Promise<PeerAnswer<PeerInput>> {
    switch (input.kind) {
      case 'request':
        return this.stepRequest(input.message);
      case 'one-way':
        this.assertRunning();
        this.stepLocal(input.message);
        return undefined;
      case 'snapshot-block':
        this.assertRunning();
        return this.snapshots.receive(input.block);
    }
  }

  /** Steps a peer's request; resolves with the core's answer after it is durable. */
  private stepRequest(m: Message): Promise<Message | null> {
    const stopped = this.stoppedError();
    if (stopped !== null) return Promise.reject(stopped);
    this.nodeHealth.stepped(m, this.node.basicStatus().lastIndex);
    this.node.step(m);
    const answer = this.answers.register(m);
    this.loop.schedule();
    return answer;
  }

  /** Steps a message that expects no answer (a reply to one of ours, or TimeoutNow). */
  private stepLocal(m: Message): void {
    if (this.loop.stopping) return;
    this.node.step(m);
    this.loop.schedule();
  }

  private peerUnreachable(id: NodeId): void {
    this.node.reportUnreachable(id);
    this.loop.schedule();
  }

  private peerRefused(id: NodeId, detail: string): void {
    this.metrics.peerSentRefused.inc(this.metrics.peer(id));
    this.warnings.warn(`refused-by-${id}`, 'a peer refused a request', { to: id, reason: detail });
  }

  private observePeer(kind: string, to: NodeId, seconds: number, failed: boolean): void {
    if (failed) this.metrics.peerSentFailures.inc(this.metrics.peer(to));
    else if (kind === 'heartbeat')
      this.metrics.peerRoundTrip.observe(this.metrics.peer(to), seconds);
  }

  /** The Identify RPC: who this node is, and the membership it knows (empty when none). */
  identify(req: IdentifyReq): IdentifyResp {
    const known = this.incarnationOf(req.fromId);
    if (known !== undefined && known !== 0 && known !== req.fromIncarnation) {
      this.warnings.warn(
        `identify-${req.fromId}`,
        'a node with a new data dir asks to join the group under the id of a member: it lost its data and is refused until it is removed and added again',
        { node: req.fromId, incarnation: req.fromIncarnation, memberIncarnation: known },
      );
    }
    return identityAnswer(this.selfId, this.identity, {
      bootstrapping: false,
      membership: this.node.membership(),
      bootstrapMembership: this.bootstrapMembership(),
    });
  }

  /**
   * The membership this group was bootstrapped with, while the log still starts there (a log
   * starting at index 1, term 1 starts from a bootstrap); empty otherwise.
   */
  private bootstrapMembership(): Membership {
    const snapshot = this.logStore.latestSnapshot();
    return snapshot.index === 1 && snapshot.term === 1 ? snapshot.membership : [];
  }

  /** The incarnation the membership records for `id`, undefined when it is not a member. */
  incarnationOf(id: NodeId): number | undefined {
    return this.node.membership().find((m) => m.id === id)?.incarnation;
  }

  /** A peer request refused before it reached the core (see peer-service.ts). */
  refused(reason: PeerRefusal, from: NodeId, detail: string): void {
    this.metrics.peerReceivedRefused.inc({ ...this.metrics.base, reason });
    if (reason === PeerRefusal.ReceiverIncarnation) this.nodeHealth.notThisIncarnationSays(detail);
    this.warnings.warn(`refused-${reason}-${from}`, 'refused a peer request', {
      from,
      reason,
      detail,
    });
  }

  private reportRefused(refused: readonly RefusedMessage[]): void {
    for (const r of refused) {
      this.metrics.peerReceivedRefused.inc({ ...this.metrics.base, reason: r.kind });
      if (r.kind === RefusalKind.LostEntries) this.nodeHealth.lost(r.reason);
      const lost = r.kind === RefusalKind.LostEntries || r.kind === RefusalKind.PeerLostEntries;
      const log = lost ? 'log lost' : 'refused a peer message';
      this.warnings.error(`${r.kind}-${r.message.from}`, log, {
        from: r.message.from,
        type: r.message.type,
        term: r.message.term,
        reason: r.reason,
      });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // What the Ready loop and the snapshot coordinator report
  // ---------------------------------------------------------------------------------------------

  private onSoftState(leader: NodeId, role: Role): void {
    const wasLeader = this.role === Role.Leader;
    if (leader !== this.leader) {
      if (leader !== noNode) this.metrics.leaderChanges.inc(this.metrics.base);
      this.logger.info(leader === noNode ? 'leader lost' : 'leader changed', {
        leader,
        role,
        term: this.node.basicStatus().term,
      });
    }
    this.leader = leader;
    this.role = role;
    if (wasLeader && role !== Role.Leader) {
      // The core dropped its pending reads; the proposals may still commit under a new leader.
      this.reads.failUnconfirmed(new NotLeaderError(leader, this.addressOf(leader)));
    }
    if (role === Role.Leader) {
      // The entry that opens this term is the last one: what an earlier term proposed from
      // there on is no longer in this leader's log.
      const { term, lastIndex } = this.node.basicStatus();
      this.dropProposalsOverwritten(lastIndex, term);
    }
    this.transfers.leaderChanged(leader);
  }

  /**
   * Fails the proposals of terms before `term` at index `from` or later, where this node, leading
   * in `term`, holds entries of `term` only. Such a proposal lost its entry when this node
   * followed another leader. Left waiting, it would be settled only once the log grew to its
   * index, which in a quiet group may be never, and whatever waits on it would wait with it (a
   * slot move holds the meta leader's later moves); a new proposal at its index would even
   * replace its waiter. Proposals below `from` are settled by apply, matched by term as usual.
   */
  private dropProposalsOverwritten(from: number, term: number): void {
    this.proposalsTerm = term;
    this.proposals.failWhere(
      (index, proposedIn) => proposedIn < term && index >= from,
      (index, proposedIn) =>
        new ProposalDroppedError(
          `the proposal at index ${index} (term ${proposedIn}) lost its entry to another leader's log before this node led again in term ${term}; its outcome is unknown`,
        ),
    );
  }

  private snapshotInstalled(meta: SnapshotMeta): void {
    this.loop.appliedIndex = meta.index;
    // Proposals at or below the snapshot can no longer be matched to their entries.
    this.proposals.failWhere(
      (index) => index <= meta.index,
      (index) =>
        new ProposalDroppedError(
          `a snapshot replaced the log up to ${meta.index}; the outcome of the proposal at ${index} is unknown`,
        ),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // The API the servers use
  // ---------------------------------------------------------------------------------------------

  /**
   * Proposes a command; resolves with the state machine's result once it is applied here. Rejects
   * with NotLeaderError (with the leader's address), BusyError, ProposalDroppedError or
   * StoppedError.
   */
  propose(data: Uint8Array): Promise<R | undefined> {
    const stopped = this.stoppedError();
    if (stopped !== null) return Promise.reject(stopped);
    if (this.role !== Role.Leader) {
      return Promise.reject(new NotLeaderError(this.leader, this.addressOf(this.leader)));
    }
    const max = this.options.pendingProposalsMax;
    if (this.proposals.size + this.proposalQueue.length >= max) {
      this.metrics.proposalsFailed.inc(this.metrics.base);
      return Promise.reject(
        new BusyError(`${max} proposals are already pending; retry with backoff`),
      );
    }
    return new Promise((resolve, reject) => {
      this.proposalQueue.push({ data, resolve, reject });
      if (!this.proposalFlushScheduled) {
        this.proposalFlushScheduled = true;
        // Proposals made in the same turn of the event loop go into the log as one batch.
        setImmediate(() => this.flushProposals());
      }
    });
  }

  private flushProposals(): void {
    this.proposalFlushScheduled = false;
    if (this.proposalQueue.length === 0) return;
    if (this.loop.stopping) return;
    const batch = this.proposalQueue.splice(0);
    const result = this.node.propose(batch.map((p) => p.data));
    if (!result.ok) {
      const err = this.refusalError(result.refusal);
      this.metrics.proposalsFailed.inc(this.metrics.base, batch.length);
      for (const p of batch) p.reject(err);
      return;
    }
    // A leader whose soft state changes were folded into one Ready (leader, follower, leader
    // again) never saw its new term in onSoftState: its first proposal of the term checks.
    if (result.term !== this.proposalsTerm)
      this.dropProposalsOverwritten(result.index, result.term);
    batch.forEach((p, i) => {
      this.proposals.put(result.index + i, {
        tag: result.term,
        resolve: p.resolve,
        reject: p.reject,
      });
    });
    this.loop.schedule();
  }

  private refusalError(refusal: RaftRefusal): Error {
    return refusalError(refusal, this.selfId, this.leader, this.addressOf(this.leader));
  }

  /** Resolves once a linearizable read may be served from this node's state machine. */
  readIndex(): Promise<void> {
    const stopped = this.stoppedError();
    if (stopped !== null) return Promise.reject(stopped);
    const id = this.reads.nextRequestId();
    const result = this.node.readIndex(id);
    if (!result.ok) return Promise.reject(this.refusalError(result.refusal));
    const read = this.reads.register(id);
    this.loop.schedule();
    return read;
  }

  /**
   * Proposes a membership change; resolves with the membership once the change is applied. A
   * node that is not a member yet is first asked who it is, so that the membership records the
   * incarnation of its data dir: it must be running (with an empty --peers) to be added.
   */
  async changeMembership(
    kind: MembershipChangeKind,
    nodeId: NodeId,
    address: string,
  ): Promise<Membership> {
    this.assertRunning();
    let incarnation = 0;
    const adding =
      kind === MembershipChangeKind.AddLearner || kind === MembershipChangeKind.AddVoter;
    if (adding && this.isLeader() && this.incarnationOf(nodeId) === undefined) {
      incarnation = await incarnationOfNewNode(
        this.transport,
        this.options,
        nodeId,
        address,
        () => this.loop.stopping,
      );
      this.assertRunning();
    }
    const result = this.node.proposeMembershipChange(kind, { nodeId, address, incarnation });
    if (!result.ok) throw this.refusalError(result.refusal);
    this.loop.schedule();
    await this.proposals.register(result.index, result.term);
    return this.node.membership();
  }

  addLearner(nodeId: NodeId, address: string): Promise<Membership> {
    return this.changeMembership(MembershipChangeKind.AddLearner, nodeId, address);
  }

  addVoter(nodeId: NodeId, address: string): Promise<Membership> {
    return this.changeMembership(MembershipChangeKind.AddVoter, nodeId, address);
  }

  promote(nodeId: NodeId): Promise<Membership> {
    return this.changeMembership(MembershipChangeKind.Promote, nodeId, '');
  }

  removeMember(nodeId: NodeId): Promise<Membership> {
    return this.changeMembership(MembershipChangeKind.Remove, nodeId, '');
  }

  /** Hands leadership to `target`; resolves once it leads, rejects if that takes too long. */
  transferLeader(target: NodeId): Promise<void> {
    const stopped = this.stoppedError();
    if (stopped !== null) return Promise.reject(stopped);
    if (this.leader === target) return Promise.resolve();
    const result = this.node.transferLeader(target);
    if (!result.ok) return Promise.reject(this.refusalError(result.refusal));
    this.loop.schedule();
    return this.transfers.register(target, Date.now() + this.options.transferTimeoutMs);
  }

  addressOf(id: NodeId): string {
    if (id === noNode) return '';
    return this.node.membership().find((m) => m.id === id)?.address ?? '';
  }

  leaderId(): NodeId {
    return this.leader;
  }

  isLeader(): boolean {
    return this.role === Role.Leader;
  }

  /** The group's membership as this node sees it now. */
  membership(): Membership {
    return this.node.membership();
  }

  status(): RaftServerStatus {
    const s = this.node.status();
    return {
      ...s,
      applied: this.loop.appliedIndex,
      groupId: this.options.groupId,
      clusterId: this.options.clusterId,
      incarnation: this.options.incarnation,
      leaderAddress: this.addressOf(s.leader),
      snapshotIndex: this.snapshots.snapshotIndex,
      stopped: this.loop.stopping,
    };
  }

  /** Whether this node can serve correctly, and why not (see health.ts). */
  health(): HealthReport {
    const s = this.node.basicStatus();
    return this.nodeHealth.report({
      stopping: this.loop.stopping,
      leader: s.leader,
      member: this.incarnationOf(this.selfId) !== undefined,
      commit: s.commit,
      applied: this.loop.appliedIndex,
    });
  }
}
