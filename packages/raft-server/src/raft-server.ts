// RaftServer (the name from the ERaftKV design): drives the deterministic core with a real clock,
// turns peer RPCs into steps, and handles every Ready in the order the core's contract demands:
// persist (one atomic RocksDB batch, synced when required), send, apply, advance. It owns the log
// store, the snapshot store, the transport and the metrics, and offers the servers an API:
// propose, readIndex, membership changes, leadership transfer, status.
import { randomInt } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import {
  ErrorCode,
  MembershipChange as MembershipChangeProto,
  type IdentifyReq,
  type IdentifyResp,
  type SnapshotReq,
  type SnapshotResp,
} from '@eraftkv/protocol';
import {
  isMembershipEntry,
  isResponse,
  mayBeSentBeforePersist,
  MembershipChangeKind,
  message,
  MessageType,
  noNode,
  RaftRefusal,
  RawNode,
  RefusalKind,
  Role,
  type Entry,
  type Membership,
  type Message,
  type MembershipChangeCodec,
  type NodeId,
  type RaftConfigInput,
  type RaftStatus,
  type Ready,
  type RefusedMessage,
  type Rng,
} from '@eraftkv/raft';
import {
  BusyError,
  InvalidArgumentError,
  NotLeaderError,
  ProposalDroppedError,
  RejectedError,
  StoppedError,
} from './errors';
import type { HealthReport } from './http-endpoint';
import { LogStore } from './log-store';
import { storedNumberMax } from './log-store/entry-codec';
import { DataDirError } from './node-identity';
import { silentLogger, type LogFields, type Logger } from './logger';
import { RaftMetrics } from './metrics';
import { SnapshotStore, type SnapshotFile } from './snapshot';
import type { StateMachine } from './state-machine';
import { openRocksEngine, type StorageEngine } from './storage-engine';
import {
  checkPeerNumber,
  membershipFromWire,
  membershipToWire,
  PeerRefusal,
  PeerTransport,
  type PeerIdentity,
  type PeerInbox,
  type PeerTransportOptions,
} from './transport';

export interface RaftServerOptions<R> {
  readonly id: NodeId;
  readonly groupId: number;
  /** Peers of another cluster id are refused. */
  readonly clusterId: string;
  readonly dataDir: string;
  /** The incarnation of the data dir (from its identity, see node-identity.ts). */
  readonly incarnation: number;
  /**
   * The members a brand-new group starts with (--peers; used only when the data dir holds no log
   * yet; their incarnations are learned from them before bootstrapping, see discoverBootstrap);
   * null for a node that joins an existing group and learns its membership from the leader.
   */
  readonly bootstrap: Membership | null;
  /** How often a bootstrapping node asks peers that have not answered yet (default 300 ms). */
  readonly bootstrapRetryMs?: number;
  readonly stateMachine: StateMachine<R>;
  /** One tick of the core (default 100 ms: elections after 1-2 s, heartbeats every 100 ms). */
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Bytes of log entries kept in memory (tier 1; default 64 MiB). */
  readonly logMemoryBytesMax?: number;
  /**
   * Take a snapshot every this many applied entries (default 100,000, etcd's --snapshot-count):
   * a snapshot writes the whole state, so taking them often costs more than it saves.
   */
  readonly snapshotEntries?: number;
  /** Entries kept in the log below a snapshot for slightly slow followers (default 1,000). */
  readonly compactionMarginEntries?: number;
  /** The size of one snapshot block on the wire (default 1 MiB). */
  readonly snapshotBlockBytesMax?: number;
  /** Proposals waiting to be applied before propose() refuses with BusyError (default 10,000). */
  readonly pendingProposalsMax?: number;
  /** Linearizable reads waiting before readIndex() refuses (default 10,000). */
  readonly pendingReadsMax?: number;
  /** Data bytes per append (default 1 MiB). */
  readonly appendBytesMax?: number;
  /** Promote caught-up learners to voters automatically (default true). */
  readonly autoPromoteLearners?: boolean;
  readonly learnerCatchUpEntriesMax?: number;
  /** Deadline of an append or a snapshot block RPC (default 5 s). */
  readonly rpcTimeoutMs?: number;
  /** A node is healthy while it applies within this many entries of its commit (default 1,000). */
  readonly healthApplyLagEntriesMax?: number;
  readonly registry?: Registry;
  readonly logger?: Logger;
  /** Election jitter (default: seeded from a cryptographic source). */
  readonly rng?: Rng;
  /**
   * Addresses to dial instead of the ones peers advertise in the membership (a proxy in front of
   * a peer, or the chaos suite's per-link proxies).
   */
  readonly peerRoutes?: ReadonlyMap<NodeId, string>;
  /** Replaces the gRPC peer clients (tests use it to inject network faults). */
  readonly createPeerRpc?: PeerTransportOptions['createPeerRpc'];
  /** Replaces the RocksDB engine of the log (tests use it to inject disk faults). */
  readonly wrapLogEngine?: (engine: StorageEngine) => StorageEngine;
}

/** A snapshot of the node's state for status RPCs and tools. */
export interface RaftServerStatus extends RaftStatus {
  readonly groupId: number;
  readonly incarnation: number;
  readonly leaderAddress: string;
  readonly snapshotIndex: number;
  readonly stopped: boolean;
}

/** The protobuf codec for membership entries: what JOIN/LEAVE entries carry on the wire. */
export const protobufMembershipCodec: MembershipChangeCodec = {
  encode: (change) =>
    MembershipChangeProto.encode({
      nodeId: change.nodeId,
      address: change.address,
      incarnation: change.incarnation,
    }).finish(),
  decode: (data) => {
    const decoded = MembershipChangeProto.decode(data);
    return {
      nodeId: checkPeerNumber(decoded.nodeId, 'membership change node_id', 1),
      address: decoded.address,
      incarnation: checkPeerNumber(decoded.incarnation, 'membership change incarnation'),
    };
  },
};

/**
 * A node with a new data dir and --peers found that the group already exists and knows this node
 * as another incarnation (the data dir was wiped), or without this node at all.
 */
export class BootstrapRefusedError extends DataDirError {
  override name = 'BootstrapRefusedError';
}

/** How long a node being added may take to answer who it is (it may be starting). */
const newNodeWaitMs = 3000;

/** How long a repeated warning about the same thing stays quiet. */
const warningIntervalMs = 10_000;

interface PendingProposal<R> {
  readonly term: number;
  readonly resolve: (result: R | undefined) => void;
  readonly reject: (err: Error) => void;
}

interface QueuedProposal<R> {
  readonly data: Uint8Array;
  readonly resolve: (result: R | undefined) => void;
  readonly reject: (err: Error) => void;
}

interface ResponseWaiter {
  readonly from: NodeId;
  readonly request: MessageType;
  readonly seq: number;
  readonly resolve: (m: Message | null) => void;
}

interface ReadWaiter {
  index: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/** Which response types answer a request of each type on its RPC. */
function answers(request: MessageType, response: MessageType): boolean {
  switch (request) {
    case MessageType.Vote:
      return response === MessageType.VoteResponse;
    case MessageType.PreVote:
      return response === MessageType.PreVoteResponse;
    case MessageType.Append:
    case MessageType.Heartbeat:
      return response === MessageType.AppendResponse || response === MessageType.HeartbeatResponse;
    case MessageType.Snapshot:
      return response === MessageType.AppendResponse;
    case MessageType.TimeoutNow:
    case MessageType.VoteResponse:
    case MessageType.PreVoteResponse:
    case MessageType.AppendResponse:
    case MessageType.HeartbeatResponse:
      return false;
  }
}

export class RaftServer<R> implements PeerInbox {
  readonly selfId: NodeId;
  readonly identity: PeerIdentity;
  readonly registry: Registry;
  private readonly logger: Logger;
  private readonly tickMs: number;
  private readonly electionTicks: number;
  private node!: RawNode;
  private logStore!: LogStore;
  private snapshots!: SnapshotStore;
  private transport!: PeerTransport;
  private metrics!: RaftMetrics;
  private ticker: NodeJS.Timeout | null = null;
  private starting = false;
  private started = false;
  /** Waiting for the --peers members to answer before bootstrapping (see discoverBootstrap). */
  private discovering = false;
  /** Set when a peer addressed another incarnation of this node: why /health is false. */
  private notThisIncarnation: string | null = null;
  /** Set when this node found it lost entries it had acknowledged: why /health is false. */
  private lostEntries: string | null = null;
  /** The highest commit index a leader has told this node of (health: how far behind it is). */
  private groupCommitSeen = 0;
  private readonly lastWarned = new Map<string, number>();
  private stopping = false;
  /** Stopped without finishing the Ready in progress (abort() or a fatal failure). */
  private aborted = false;
  private failure: Error | null = null;
  private loopRunning = false;
  private loopDone: Promise<void> = Promise.resolve();
  private proposalFlushScheduled = false;
  private readonly proposalQueue: QueuedProposal<R>[] = [];
  private readonly proposals = new Map<number, PendingProposal<R>>();
  private readonly waiters: ResponseWaiter[] = [];
  private stepSeq = 0;
  private readSeq = 0;
  private readonly readRequests = new Map<number, ReadWaiter>();
  private readonly readsWaitingApply: ReadWaiter[] = [];
  private readonly transferWaiters: {
    target: NodeId;
    resolve: () => void;
    reject: (e: Error) => void;
    deadline: number;
  }[] = [];
  private appliedIndex = 0;
  private snapshotInProgress = false;
  /**
   * Switching the snapshot in use (a local snapshot adopted and the log compacted below it, or a
   * leader's snapshot installed) happens one switch at a time, in this chain: a local snapshot
   * finishing while a newer one from the leader is being installed must see the newer one and
   * stand down, not replace it (and remove its file) halfway through the install.
   */
  private snapshotSwitch: Promise<void> = Promise.resolve();
  private lastSnapshotIndex = 0;
  private leader: NodeId = noNode;
  private role: Role = Role.Follower;

  constructor(private readonly options: RaftServerOptions<R>) {
    this.selfId = options.id;
    this.identity = {
      groupId: options.groupId,
      clusterId: options.clusterId,
      incarnation: options.incarnation,
    };
    this.registry = options.registry ?? new Registry();
    this.logger = (options.logger ?? silentLogger).child({
      group: options.groupId,
      node: options.id,
    });
    this.tickMs = options.tickMs ?? 100;
    this.electionTicks = options.electionTicks ?? 10;
  }

  // ---------------------------------------------------------------------------------------------
  // Life cycle
  // ---------------------------------------------------------------------------------------------

  /**
   * Opens the data dir, recovers, and starts ticking. A new data dir with `bootstrap` members first
   * learns their incarnations (discoverBootstrap), which may wait for them to start.
   */
  async start(): Promise<void> {
    if (this.started || this.starting) throw new Error('RaftServer already started');
    this.starting = true;
    const o = this.options;
    const engine = await openRocksEngine(join(o.dataDir, 'raft-log'));
    const description = `data dir ${o.dataDir} (raft log)`;
    let snapshots: SnapshotStore | null = null;
    let transport: PeerTransport | null = null;
    try {
      snapshots = await SnapshotStore.open(join(o.dataDir, 'snapshots'));
      this.snapshots = snapshots;
      transport = new PeerTransport(this.transportOptions(snapshots));
      this.transport = transport;
      let bootstrap: Membership | null = null;
      if (o.bootstrap !== null && o.bootstrap.length > 0 && (await LogStore.isNew(engine))) {
        bootstrap = await this.discoverBootstrap(o.bootstrap);
      }
      this.logStore = await LogStore.open(
        o.wrapLogEngine ? o.wrapLogEngine(engine) : engine,
        { memoryBytesMax: o.logMemoryBytesMax ?? 64 * 1024 * 1024, description },
        bootstrap,
      );
    } catch (err) {
      transport?.close();
      await snapshots?.close();
      await engine.close();
      throw err;
    }
    const snapshotMeta = this.logStore.latestSnapshot();
    const snapshotFile = this.snapshots.find(snapshotMeta.index, snapshotMeta.term) ?? null;
    await this.snapshots.adopt(snapshotFile);
    this.logStore.markSnapshotFileReady(snapshotFile !== null);
    this.lastSnapshotIndex = snapshotMeta.index;

    // The state machine may lag the log's compaction point (its unsynced writes were lost, or a
    // snapshot install was interrupted): then it is restored from the snapshot first.
    let applied = await o.stateMachine.appliedIndex();
    const compacted = this.logStore.firstIndex() - 1;
    if (applied < compacted) {
      if (snapshotFile !== null && snapshotFile.meta.index >= compacted) {
        this.logger.warn('state machine behind the log; restoring it from the snapshot', {
          applied,
          snapshot: snapshotFile.meta.index,
        });
        await o.stateMachine.restoreSnapshot(snapshotFile.path, snapshotFile.meta.index);
        applied = snapshotFile.meta.index;
      } else if (compacted > 1) {
        throw new Error(
          `${description}: the state machine has applied ${applied} but the log starts after ${compacted} and no snapshot file covers the gap; the data dir is incomplete`,
        );
      }
    }
    this.appliedIndex = applied;

    this.node = new RawNode(
      {
        id: o.id,
        electionTicks: this.electionTicks,
        heartbeatTicks: o.heartbeatTicks ?? 1,
        appendBytesMax: o.appendBytesMax ?? 1024 * 1024,
        pendingReadsMax: o.pendingReadsMax ?? 10_000,
        autoPromoteLearners: o.autoPromoteLearners ?? true,
        learnerCatchUpEntriesMax: o.learnerCatchUpEntriesMax ?? 1000,
        applied: Math.max(applied, compacted),
        termMax: storedNumberMax,
        rng: o.rng ?? { nextInt: (bound) => randomInt(bound) },
        membershipCodec: protobufMembershipCodec,
      } satisfies RaftConfigInput,
      this.logStore,
    );
    this.metrics = new RaftMetrics(this.registry, o.groupId, o.id, {
      hasLeader: () => this.leader !== noNode,
      isLeader: () => this.role === Role.Leader,
      term: () => this.node.basicStatus().term,
      commitIndex: () => this.node.basicStatus().commit,
      appliedIndex: () => this.appliedIndex,
      pendingProposals: () => this.proposals.size + this.proposalQueue.length,
    });
    this.transport.setPeers(this.node.membership());
    this.logStore.onEntriesLoaded = () => {
      this.node.entriesAvailable();
      this.schedule();
    };
    this.logStore.onSnapshotNeeded = () => this.maybeSnapshot(true);
    this.logStore.setRetainFrom(this.appliedIndex + 1);
    this.started = true;
    this.ticker = setInterval(() => {
      this.node.tick();
      this.expireTransfers();
      this.schedule();
    }, this.tickMs);
    this.logger.info('raft server started', {
      applied: this.appliedIndex,
      lastIndex: this.logStore.lastIndex(),
      term: this.logStore.storedHardState().term,
      members: this.node
        .status()
        .membership.map((m) => m.id)
        .join(','),
    });
    this.schedule();
  }

  private transportOptions(snapshots: SnapshotStore): PeerTransportOptions {
    const o = this.options;
    const messageBytesMax =
      Math.max(o.appendBytesMax ?? 1024 * 1024, o.snapshotBlockBytesMax ?? 1024 * 1024) +
      1024 * 1024;
    return {
      selfId: o.id,
      identity: this.identity,
      messageBytesMax,
      rpcTimeoutMs: o.rpcTimeoutMs ?? 5000,
      controlTimeoutMs: this.tickMs * this.electionTicks,
      snapshotBlockBytesMax: o.snapshotBlockBytesMax ?? 1024 * 1024,
      snapshotRetriesMax: 10,
      snapshotStore: snapshots,
      onResponse: (m) => this.stepLocal(m),
      onUnreachable: (id) => {
        this.node.reportUnreachable(id);
        this.schedule();
      },
      onSnapshotDone: (id, ok) => {
        this.metrics.snapshotSend.inc({ ...this.metrics.base, outcome: ok ? 'ok' : 'failed' });
        this.logger.info(ok ? 'snapshot sent' : 'snapshot transfer abandoned', { to: id });
        this.node.reportSnapshot(id, ok);
        this.schedule();
      },
      onPeerRefusal: (id, detail) => {
        this.metrics.peerSentRefused.inc(this.metrics.peer(id));
        this.warnEvery(`refused-by-${id}`, 'a peer refused a request', { to: id, reason: detail });
      },
      observe: (kind, to, seconds, failed) => {
        if (failed) this.metrics.peerSentFailures.inc(this.metrics.peer(to));
        else if (kind === 'heartbeat')
          this.metrics.peerRoundTrip.observe(this.metrics.peer(to), seconds);
      },
      createPeerRpc: o.createPeerRpc,
      peerRoutes: o.peerRoutes,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Bootstrapping a new group
  // ---------------------------------------------------------------------------------------------

  /**
   * Before a new data dir bootstraps a group from --peers, every other peer is asked who it is
   * (Identify) until all have answered, so that the first membership records each member's
   * incarnation, the same on every member. If a peer already belongs to the group, the group
   * exists: this node must not bootstrap it again. If the group knows this node as this very
   * incarnation (this node crashed after answering and before bootstrapping), it joins empty and
   * the leader brings it up to date; if the group knows it as another incarnation, this data dir
   * was created anew (the node lost its data) and start-up is refused with what to do about it.
   * Returns the membership to bootstrap with, or null to join the existing group.
   */
  private async discoverBootstrap(peers: Membership): Promise<Membership | null> {
    const o = this.options;
    const others = peers.filter((p) => p.id !== o.id);
    const answers = new Map<NodeId, IdentifyResp>();
    const waitingFor = new Map<NodeId, string>();
    this.discovering = true;
    const started = Date.now();
    let reported = started;
    try {
      for (;;) {
        if (this.stopping) throw new StoppedError('the raft server stopped while bootstrapping');
        await Promise.all(
          others
            .filter((p) => !answers.has(p.id))
            .map(async (p) => {
              const answer = await this.askIdentity(p.id, p.address, '--peers');
              if (typeof answer === 'string') waitingFor.set(p.id, answer);
              else {
                waitingFor.delete(p.id);
                answers.set(p.id, answer);
              }
            }),
        );
        for (const [id, answer] of answers) {
          const membership = membershipFromWire(answer.membership, `node ${id}'s membership`);
          if (membership.length > 0) {
            const first = membershipFromWire(
              answer.bootstrapMembership,
              `node ${id}'s bootstrap membership`,
            );
            return this.joinExistingGroup(id, membership, first);
          }
          if (!answer.bootstrapping) {
            answers.delete(id);
            waitingFor.set(
              id,
              'it was started with an empty --peers (to join an existing group), not to bootstrap this one',
            );
          }
        }
        if (answers.size === others.length) {
          const incarnation = (id: NodeId): number =>
            id === o.id ? o.incarnation : (answers.get(id)?.incarnation ?? 0);
          return peers.map((p) => ({ ...p, incarnation: incarnation(p.id) }));
        }
        if (Date.now() - reported >= 5000) {
          reported = Date.now();
          this.logger.warn('waiting for every --peers member to answer before bootstrapping', {
            waitingMs: reported - started,
            waitingFor: [...waitingFor].map(([id, why]) => `${id}: ${why}`).join('; '),
          });
        }
        await new Promise((resolve) => setTimeout(resolve, o.bootstrapRetryMs ?? 300));
      }
    } finally {
      this.discovering = false;
    }
  }

  /**
   * Asks node `id` at `address` who it is. Returns its answer, or why it did not answer (it may
   * not be up yet). A node that refuses on principle (another cluster, group or id at that
   * address) is a configuration error named after `flag`.
   */
  private async askIdentity(
    id: NodeId,
    address: string,
    flag: string,
  ): Promise<IdentifyResp | string> {
    const o = this.options;
    try {
      const answer = await this.transport.identify(
        id,
        address,
        {
          groupId: o.groupId,
          clusterId: o.clusterId,
          toId: id,
          fromId: o.id,
          fromIncarnation: o.incarnation,
        },
        this.tickMs * this.electionTicks,
      );
      checkPeerNumber(answer.incarnation, `incarnation of node ${id}`, 1);
      return answer;
    } catch (err) {
      if (err instanceof InvalidArgumentError) return `it answered: ${err.message}`;
      const e = err as Partial<{ code: number; details: string; message: string }>;
      if (e.code === grpc.status.FAILED_PRECONDITION) {
        throw new DataDirError(`${flag}: node ${id} at ${address} refused: ${e.details ?? ''}`);
      }
      return e.details ?? e.message ?? String(err);
    }
  }

  /**
   * The group exists (node `from` belongs to it with `membership`). Returns the membership to
   * bootstrap with when `first`, the one the group was bootstrapped with, already counts this
   * very data dir (the peers answered before this node bootstrapped itself), or null to join
   * empty and be brought up to date by the leader.
   */
  private joinExistingGroup(
    from: NodeId,
    membership: Membership,
    first: Membership,
  ): Membership | null {
    const o = this.options;
    const members = membership.map((m) => `${m.id}`).join(',');
    const self = membership.find((m) => m.id === o.id);
    const group = `group ${o.groupId}`;
    if (self === undefined) {
      throw new BootstrapRefusedError(
        `${group} already exists (node ${from} has members ${members}) and node ${o.id} is not one of them: ` +
          `a running group is never bootstrapped again. To add this node, start it with an empty --peers ` +
          `and run: eraftkv-ctl member add --group ${o.groupId} ${o.id} <its address> --learner`,
      );
    }
    if (self.incarnation !== o.incarnation) {
      throw new BootstrapRefusedError(
        `${group} already has a node ${o.id}, incarnation ${self.incarnation} (says node ${from}), but data dir ${o.dataDir} ` +
          `was created anew as incarnation ${o.incarnation}: this node lost its data, and it must not be counted as the member it was. ` +
          `Remove it and add it again: eraftkv-ctl member remove --group ${o.groupId} ${o.id}; then start it with an empty --peers; ` +
          `then eraftkv-ctl member add --group ${o.groupId} ${o.id} ${self.address} --learner`,
      );
    }
    const firstSelf = first.find((m) => m.id === o.id);
    if (firstSelf !== undefined && firstSelf.incarnation === o.incarnation) {
      return first;
    }
    this.logger.info('the group already exists and counts this data dir as a member: joining', {
      from,
      members,
    });
    return null;
  }

  /** The Identify RPC: who this node is, and the membership it knows (empty when none). */
  identify(req: IdentifyReq): IdentifyResp {
    const known = this.incarnationOf(req.fromId);
    if (known !== undefined && known !== 0 && known !== req.fromIncarnation) {
      this.warnEvery(
        `identify-${req.fromId}`,
        'a node with a new data dir asks to join the group under the id of a member: it lost its data and is refused until it is removed and added again',
        { node: req.fromId, incarnation: req.fromIncarnation, memberIncarnation: known },
      );
    }
    return {
      nodeId: this.options.id,
      groupId: this.options.groupId,
      clusterId: this.options.clusterId,
      incarnation: this.options.incarnation,
      bootstrapping: this.discovering,
      membership: membershipToWire(this.started ? this.node.membership() : []),
      bootstrapMembership: membershipToWire(this.bootstrapMembership()),
    };
  }

  /**
   * The membership this group was bootstrapped with, while the log still starts there (a log
   * starting at index 1, term 1 starts from a bootstrap); empty otherwise.
   */
  private bootstrapMembership(): Membership {
    if (!this.started) return [];
    const snapshot = this.logStore.latestSnapshot();
    return snapshot.index === 1 && snapshot.term === 1 ? snapshot.membership : [];
  }

  /** The incarnation the membership records for `id`, undefined when it is not a member. */
  incarnationOf(id: NodeId): number | undefined {
    if (!this.started) return undefined;
    return this.node.membership().find((m) => m.id === id)?.incarnation;
  }

  /** A peer request refused before it reached the core (see peer-service.ts). */
  refused(reason: PeerRefusal, from: NodeId, detail: string): void {
    if (this.started) this.metrics.peerReceivedRefused.inc({ ...this.metrics.base, reason });
    if (reason === PeerRefusal.ReceiverIncarnation) this.notThisIncarnation = detail;
    this.warnEvery(`refused-${reason}-${from}`, 'refused a peer request', {
      from,
      reason,
      detail,
    });
  }

  private reportRefused(refused: readonly RefusedMessage[]): void {
    for (const r of refused) {
      this.metrics.peerReceivedRefused.inc({ ...this.metrics.base, reason: r.kind });
      if (r.kind === RefusalKind.LostEntries) this.lostEntries = r.reason;
      const lost = r.kind === RefusalKind.LostEntries || r.kind === RefusalKind.PeerLostEntries;
      const log = lost ? 'log lost' : 'refused a peer message';
      this.errorEvery(`${r.kind}-${r.message.from}`, log, {
        from: r.message.from,
        type: r.message.type,
        term: r.message.term,
        reason: r.reason,
      });
    }
  }

  /** Logs a warning, at most once per warningIntervalMs for the same key. */
  private warnEvery(key: string, message: string, fields: LogFields): void {
    if (this.quiet(key)) return;
    this.logger.warn(message, fields);
  }

  private errorEvery(key: string, message: string, fields: LogFields): void {
    if (this.quiet(key)) return;
    this.logger.error(message, fields);
  }

  private quiet(key: string): boolean {
    const now = Date.now();
    const last = this.lastWarned.get(key);
    if (last !== undefined && now - last < warningIntervalMs) return true;
    if (this.lastWarned.size > 1000) this.lastWarned.clear();
    this.lastWarned.set(key, now);
    return false;
  }

  /**
   * Stops ticking and taking requests, lets the Ready in progress finish (so that nothing
   * acknowledged is lost), fails everything still pending with StoppedError and closes storage.
   */
  async stop(): Promise<void> {
    if (this.discovering) {
      // start() sees this, gives up bootstrapping and closes what it opened.
      this.stopping = true;
      return;
    }
    if (!this.started || this.stopping) return;
    this.logger.info('raft server stopping');
    this.stopping = true;
    if (this.ticker) clearInterval(this.ticker);
    this.transport.close();
    await this.loopDone;
    this.failAll(
      new StoppedError(
        'the raft server stopped before the request completed; its outcome is unknown',
      ),
    );
    await this.snapshots.close();
    await this.logStore.close();
    await this.options.stateMachine.close();
    this.logger.info('raft server stopped');
  }

  /**
   * Stops at once, as a crash would: the Ready in progress is abandoned (whatever it had not yet
   * persisted is lost, nothing more is sent or applied) and every pending request fails. Storage
   * is closed once the write in progress, if any, returns. Tests use it to crash a node; a fatal
   * failure does the same.
   */
  async abort(): Promise<void> {
    if (this.discovering) {
      this.stopping = true;
      return;
    }
    if (!this.started || this.aborted) return;
    this.aborted = true;
    this.stopping = true;
    if (this.ticker) clearInterval(this.ticker);
    this.transport.close();
    this.failAll(
      new StoppedError('the raft server was aborted; the outcome of the request is unknown'),
    );
    await this.loopDone;
    await this.snapshots.close();
    await this.logStore.close();
    await this.options.stateMachine.close();
  }

  /** Stops the node after a failure that leaves its state unknown (never acknowledges after). */
  private fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.logger.error('raft server failed; stopping', { error: err.message });
    this.aborted = true;
    this.stopping = true;
    if (this.ticker) clearInterval(this.ticker);
    this.transport.close();
    this.failAll(new StoppedError(`the raft server stopped after a failure: ${err.message}`));
    this.onFatal(err);
  }

  /** Called once when the node fails; the server binaries exit the process. */
  onFatal: (err: Error) => void = () => {};

  /** The failure that stopped the node, if any. */
  fatalError(): Error | null {
    return this.failure;
  }

  private failAll(err: Error): void {
    for (const p of this.proposalQueue.splice(0)) p.reject(err);
    for (const p of this.proposals.values()) p.reject(err);
    this.proposals.clear();
    for (const w of this.waiters.splice(0)) w.resolve(null);
    for (const r of this.readRequests.values()) r.reject(err);
    this.readRequests.clear();
    for (const r of this.readsWaitingApply.splice(0)) r.reject(err);
    for (const t of this.transferWaiters.splice(0)) t.reject(err);
  }

  // ---------------------------------------------------------------------------------------------
  // The Ready loop
  // ---------------------------------------------------------------------------------------------

  /**
   * Called after every input to the core. A leader's appends and heartbeats leave at once (they
   * need nothing persisted), so that a long persist or apply never delays them; everything else
   * waits for the Ready loop.
   */
  private schedule(): void {
    if (this.stopping || !this.started) return;
    for (const m of this.node.takeMessagesSendableNow()) this.transport.send(m);
    if (this.loopRunning) return;
    this.loopRunning = true;
    this.loopDone = new Promise<void>((resolve) => {
      setImmediate(() => {
        this.runLoop()
          .catch((err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))))
          .finally(() => {
            this.loopRunning = false;
            resolve();
            if (!this.stopping && this.node.hasReady()) this.schedule();
          });
      });
    });
  }

  private async runLoop(): Promise<void> {
    // A graceful stop finishes the Ready in progress; an abort abandons it (see handleReady).
    while (!this.stopping && this.node.hasReady()) {
      const background = this.logStore.backgroundFailure();
      if (background !== null) throw background;
      const cutoff = this.stepSeq;
      const rd = this.node.ready();
      await this.handleReady(rd, cutoff);
    }
  }

  private async handleReady(rd: Ready, cutoff: number): Promise<void> {
    // A leader's appends and heartbeats may leave before its own write (Raft thesis 10.2.1).
    const early = rd.messages.filter(mayBeSentBeforePersist);
    for (const m of early) this.transport.send(m);

    if (rd.refused.length > 0) this.reportRefused(rd.refused);

    // 1. Persist.
    if (rd.snapshot !== null) {
      await this.installSnapshot(rd);
      if (this.aborted) return;
    }
    if (rd.entries.length > 0 || (rd.hardState !== null && rd.snapshot === null)) {
      const started = process.hrtime.bigint();
      await this.logStore.persist(
        rd.entries,
        rd.snapshot === null ? rd.hardState : null,
        rd.mustSync,
      );
      if (rd.mustSync) {
        this.metrics.fsyncDuration.observe(
          this.metrics.base,
          Number(process.hrtime.bigint() - started) / 1e9,
        );
      }
    }

    // 2. Send.
    for (const m of rd.messages) {
      if (early.includes(m)) continue;
      if (isResponse(m.type)) this.answer(m);
      else if (m.type === MessageType.Snapshot) this.sendSnapshot(m);
      else this.transport.send(m);
    }
    // Requests stepped before this Ready that got no answer were dropped by the core.
    for (let i = 0; i < this.waiters.length;) {
      if (this.waiters[i].seq < cutoff) this.waiters.splice(i, 1)[0].resolve(null);
      else i++;
    }

    if (rd.softState !== null) this.onSoftState(rd.softState.leader, rd.softState.role);

    // 3. Apply.
    if (rd.committedEntries.length > 0) await this.apply(rd.committedEntries);
    if (this.aborted) return;
    for (const rs of rd.readStates) {
      const waiter = this.readRequests.get(rs.requestId);
      if (waiter === undefined) continue;
      this.readRequests.delete(rs.requestId);
      waiter.index = rs.index;
      if (this.appliedIndex >= rs.index) waiter.resolve();
      else this.readsWaitingApply.push(waiter);
    }

    // 4. Advance.
    this.node.advance();
    this.logStore.setRetainFrom(this.appliedIndex + 1);
    this.maybeSnapshot(false);
  }

  private answer(m: Message): void {
    const i = this.waiters.findIndex((w) => w.from === m.to && answers(w.request, m.type));
    if (i >= 0) this.waiters.splice(i, 1)[0].resolve(m);
  }

  private async apply(entries: readonly Entry[]): Promise<void> {
    const started = process.hrtime.bigint();
    const results = await this.options.stateMachine.apply(entries);
    this.metrics.applyDuration.observe(
      this.metrics.base,
      Number(process.hrtime.bigint() - started) / 1e9,
    );
    this.metrics.proposalsCommitted.inc(this.metrics.base, entries.length);
    this.metrics.proposalsApplied.inc(this.metrics.base, entries.length);
    let membershipChanged = false;
    entries.forEach((e, i) => {
      if (isMembershipEntry(e.type)) membershipChanged = true;
      const pending = this.proposals.get(e.index);
      if (pending === undefined) return;
      this.proposals.delete(e.index);
      if (pending.term === e.term) pending.resolve(results[i]);
      else {
        this.metrics.proposalsFailed.inc(this.metrics.base);
        pending.reject(
          new ProposalDroppedError(
            `the proposal at index ${e.index} was replaced by a newer leader's entry; it was not applied`,
          ),
        );
      }
    });
    this.appliedIndex = entries[entries.length - 1].index;
    if (membershipChanged) {
      const membership = this.node.membership();
      this.transport.setPeers(membership);
      this.logger.info('membership changed', {
        members: membership
          .map((m) => `${m.id}${m.learner ? '(learner)' : ''}@${m.address}`)
          .join(','),
      });
    }
    for (let i = 0; i < this.readsWaitingApply.length;) {
      if (this.readsWaitingApply[i].index <= this.appliedIndex) {
        this.readsWaitingApply.splice(i, 1)[0].resolve();
      } else i++;
    }
  }

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
      const err = new NotLeaderError(leader, this.addressOf(leader));
      for (const r of this.readRequests.values()) r.reject(err);
      this.readRequests.clear();
    }
    for (let i = 0; i < this.transferWaiters.length;) {
      const t = this.transferWaiters[i];
      if (leader === t.target) {
        this.transferWaiters.splice(i, 1);
        t.resolve();
      } else i++;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Snapshots
  // ---------------------------------------------------------------------------------------------

  /** Starts writing a snapshot when enough entries were applied (or when a follower needs one). */
  private maybeSnapshot(needed: boolean): void {
    const every = this.options.snapshotEntries ?? 100_000;
    if (this.snapshotInProgress || this.stopping) return;
    if (!needed && this.appliedIndex - this.lastSnapshotIndex < every) return;
    if (this.appliedIndex <= 1) return;
    this.snapshotInProgress = true;
    void this.takeSnapshot()
      .catch((err: unknown) => {
        this.logger.error('snapshot failed', { error: (err as Error).message });
      })
      .finally(() => {
        this.snapshotInProgress = false;
      });
  }

  /** Runs `fn` once every earlier snapshot switch has finished, and before any later one. */
  private switchSnapshot<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.snapshotSwitch.then(fn);
    this.snapshotSwitch = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async takeSnapshot(): Promise<void> {
    const started = process.hrtime.bigint();
    const file = await this.snapshots.create(
      (path) => this.options.stateMachine.writeSnapshot(path),
      (index) => {
        const term = this.logStore.term(index);
        if (term === undefined) throw new Error(`no term for snapshot index ${index}`);
        return { term, membership: this.node.membershipAt(index) };
      },
    );
    await this.switchSnapshot(() => this.adoptLocalSnapshot(file, started));
  }

  private async adoptLocalSnapshot(file: SnapshotFile, started: bigint): Promise<void> {
    if (this.stopping || this.aborted) return;
    if (file.meta.index <= this.logStore.latestSnapshot().index) {
      // A newer snapshot arrived from the leader meanwhile: this one is of no use.
      await this.snapshots.discard(file);
      return;
    }
    await this.snapshots.adopt(file);
    await this.logStore.setSnapshot(file.meta);
    this.lastSnapshotIndex = file.meta.index;
    const margin = this.options.compactionMarginEntries ?? 1000;
    const compactTo = file.meta.index - margin;
    if (compactTo >= this.logStore.firstIndex()) await this.logStore.compact(compactTo);
    this.logger.info('snapshot written', {
      index: file.meta.index,
      term: file.meta.term,
      bytes: file.sizeBytes,
      ms: Math.round(Number(process.hrtime.bigint() - started) / 1e6),
      logFirstIndex: this.logStore.firstIndex(),
    });
    this.schedule();
  }

  private sendSnapshot(m: Message): void {
    const file = this.snapshots.latest();
    if (file === null || m.snapshot === null || file.meta.index !== m.snapshot.index) {
      this.node.reportSnapshot(m.to, false);
      return;
    }
    this.logger.info('sending snapshot', {
      to: m.to,
      index: file.meta.index,
      bytes: file.sizeBytes,
    });
    this.transport.sendSnapshot(m, file);
  }

  /** Installs a snapshot received from the leader: log store first, then the state machine. */
  private installSnapshot(rd: Ready): Promise<void> {
    return this.switchSnapshot(() => this.installLeaderSnapshot(rd));
  }

  private async installLeaderSnapshot(rd: Ready): Promise<void> {
    const meta = rd.snapshot;
    if (meta === null) return;
    const started = process.hrtime.bigint();
    const file = this.snapshots.find(meta.index, meta.term);
    if (file === undefined)
      throw new Error(`snapshot ${meta.term}/${meta.index} to install is not on disk`);
    await this.snapshots.adopt(file);
    // Recorded first: a crash before the state machine is restored is repaired at start.
    await this.logStore.installSnapshot(meta, rd.hardState);
    await this.options.stateMachine.restoreSnapshot(file.path, meta.index);
    this.appliedIndex = meta.index;
    this.lastSnapshotIndex = meta.index;
    // Proposals at or below the snapshot can no longer be matched to their entries.
    for (const [index, p] of this.proposals) {
      if (index <= meta.index) {
        this.proposals.delete(index);
        p.reject(
          new ProposalDroppedError(
            `a snapshot replaced the log up to ${meta.index}; the outcome of the proposal at ${index} is unknown`,
          ),
        );
      }
    }
    this.transport.setPeers(meta.membership);
    this.metrics.snapshotInstallDuration.observe(
      this.metrics.base,
      Number(process.hrtime.bigint() - started) / 1e9,
    );
    this.logger.info('snapshot installed', { index: meta.index, term: meta.term });
  }

  /** A block of a snapshot from the leader (the Snapshot RPC). */
  async receiveSnapshotBlock(req: SnapshotReq): Promise<SnapshotResp> {
    this.assertRunning();
    const term = this.node.basicStatus().term;
    const reply = (fields: Partial<SnapshotResp>): SnapshotResp => ({
      term,
      messageToken: req.messageToken,
      offset: 0,
      success: true,
      isLastChunk: false,
      ...fields,
    });
    checkPeerNumber(req.term, 'term', 1);
    if (req.term < term) return reply({ success: false });
    const block = req.block;
    if (block === undefined) throw new InvalidArgumentError('snapshot request without a block');
    const membership = membershipFromWire(req.membership, 'membership');
    const meta = {
      index: checkPeerNumber(req.snapshotIndex, 'snapshot_index', 1),
      term: checkPeerNumber(req.snapshotTerm, 'snapshot_term', 1),
      membership,
    };
    if (meta.term > req.term) {
      throw new InvalidArgumentError(
        `snapshot_term ${meta.term} is above the leader's term ${req.term}`,
      );
    }
    checkPeerNumber(req.leaderId, 'leader_id', 1);
    checkPeerNumber(block.offset, 'block.offset');
    checkPeerNumber(block.fileSize, 'block.file_size');
    if (meta.index > this.groupCommitSeen) this.groupCommitSeen = meta.index;
    const result = await this.snapshots.receive({
      token: req.messageToken,
      meta,
      offset: block.offset,
      data: block.data,
      blockCrc32: block.blockCrc32,
      isLast: block.isLastChunk,
      fileSizeBytes: block.fileSize,
      fileCrc32: block.fileCrc32,
    });
    switch (result.kind) {
      case 'next':
        return reply({ offset: result.offset });
      case 'rejected':
        this.logger.warn('snapshot rejected', { reason: result.reason });
        return reply({ success: false });
      case 'complete': {
        // The file is verified: hand the snapshot to the core, answer once it is installed.
        const answer = await this.stepRequest(
          message({
            type: MessageType.Snapshot,
            from: req.leaderId,
            to: this.selfId,
            term: req.term,
            snapshot: meta,
          }),
        );
        return reply({
          term: answer?.term ?? term,
          offset: result.file.sizeBytes,
          success: answer !== null && !answer.reject,
          isLastChunk: true,
        });
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Peer messages (PeerInbox)
  // ---------------------------------------------------------------------------------------------

  /** Steps a peer's request; resolves with the core's answer after it is durable. */
  stepRequest(m: Message): Promise<Message | null> {
    const stopped = this.stoppedError();
    if (stopped !== null) return Promise.reject(stopped);
    // It passed the incarnation check: the group knows this node as this data dir again.
    this.notThisIncarnation = null;
    if (m.type === MessageType.Append && m.commit > this.groupCommitSeen) {
      this.groupCommitSeen = m.commit;
    }
    // A leader's heartbeat that this log can honour again clears a lost-data report (a lone
    // forged heartbeat must not leave the node unhealthy for good; a node that really lost
    // entries keeps getting heartbeats it cannot honour).
    if (m.type === MessageType.Heartbeat && m.commit <= this.node.basicStatus().lastIndex) {
      this.lostEntries = null;
    }
    return new Promise((resolve) => {
      this.node.step(m);
      this.waiters.push({ from: m.from, request: m.type, seq: this.stepSeq++, resolve });
      this.schedule();
    });
  }

  stepOneWay(m: Message): void {
    this.assertRunning();
    this.stepLocal(m);
  }

  private stepLocal(m: Message): void {
    if (this.stopping) return;
    this.node.step(m);
    this.schedule();
  }

  private stoppedError(): StoppedError | null {
    if (!this.started) return new StoppedError('the raft server is not started');
    if (this.stopping) return new StoppedError('the raft server is stopping');
    return null;
  }

  private assertRunning(): void {
    const stopped = this.stoppedError();
    if (stopped !== null) throw stopped;
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
    const max = this.options.pendingProposalsMax ?? 10_000;
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
    if (this.stopping) return;
    const batch = this.proposalQueue.splice(0);
    const result = this.node.propose(batch.map((p) => p.data));
    if (!result.ok) {
      const err = this.refusalError(result.refusal);
      this.metrics.proposalsFailed.inc(this.metrics.base, batch.length);
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      this.proposals.set(result.index + i, {
        term: result.term,
        resolve: p.resolve,
        reject: p.reject,
      });
    });
    this.schedule();
  }

  private refusalError(refusal: RaftRefusal): Error {
    switch (refusal) {
      case RaftRefusal.NotLeader:
      case RaftRefusal.Removed:
        return new NotLeaderError(
          this.leader === this.selfId ? noNode : this.leader,
          this.addressOf(this.leader),
        );
      case RaftRefusal.TransferInProgress:
        return new BusyError('a leadership transfer is in progress; retry shortly');
      case RaftRefusal.Busy:
        return new BusyError(
          'too much uncommitted data or too many pending reads; retry with backoff',
        );
      case RaftRefusal.MembershipChangePending:
        return new RejectedError(
          ErrorCode.MEMBERSHIP_CHANGE_PENDING,
          'another membership change is still in progress; retry when it has committed',
        );
      case RaftRefusal.NodeNotFound:
        return new RejectedError(
          ErrorCode.NODE_NOT_FOUND,
          'the node is not a member of the group (in the required role)',
        );
      case RaftRefusal.NodeExists:
        return new RejectedError(
          ErrorCode.NODE_EXISTS,
          'the node is already a member in that role',
        );
      case RaftRefusal.LastVoter:
        return new RejectedError(
          ErrorCode.REJECTED,
          'removing the last voter would leave the group unable to elect a leader',
        );
    }
  }

  /** Resolves once a linearizable read may be served from this node's state machine. */
  readIndex(): Promise<void> {
    const stopped = this.stoppedError();
    if (stopped !== null) return Promise.reject(stopped);
    const id = ++this.readSeq;
    const result = this.node.readIndex(id);
    if (!result.ok) return Promise.reject(this.refusalError(result.refusal));
    return new Promise((resolve, reject) => {
      this.readRequests.set(id, { index: 0, resolve, reject });
      this.schedule();
    });
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
      incarnation = await this.incarnationOfNewNode(nodeId, address);
      this.assertRunning();
    }
    const result = this.node.proposeMembershipChange(kind, { nodeId, address, incarnation });
    if (!result.ok) throw this.refusalError(result.refusal);
    this.schedule();
    await new Promise<R | undefined>((resolve, reject) => {
      this.proposals.set(result.index, { term: result.term, resolve, reject });
    });
    return this.node.membership();
  }

  /**
   * Asks a node about to be added who it is. A node that was just started may not listen yet:
   * it is asked again for a few seconds before the change is refused.
   */
  private async incarnationOfNewNode(nodeId: NodeId, address: string): Promise<number> {
    const deadline = Date.now() + newNodeWaitMs;
    const ask = (): Promise<IdentifyResp | string> =>
      this.askIdentity(nodeId, address, 'member add').catch((err: unknown) => {
        // Another cluster, group or node id answers at that address.
        throw new RejectedError(ErrorCode.REJECTED, (err as Error).message);
      });
    let answer = await ask();
    while (typeof answer === 'string' && Date.now() < deadline && !this.stopping) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      answer = await ask();
    }
    if (typeof answer === 'string') {
      throw new RejectedError(
        ErrorCode.REJECTED,
        `cannot ask node ${nodeId} at ${address} who it is (${answer}): start it first, with an empty --peers, then add it`,
      );
    }
    if (answer.bootstrapping) {
      throw new RejectedError(
        ErrorCode.REJECTED,
        `node ${nodeId} at ${address} is waiting to bootstrap a new group with its --peers: restart it with an empty --peers to add it to this group`,
      );
    }
    return answer.incarnation;
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
    this.schedule();
    return new Promise((resolve, reject) => {
      this.transferWaiters.push({
        target,
        resolve,
        reject,
        deadline: Date.now() + 2 * this.electionTicks * this.tickMs,
      });
    });
  }

  private expireTransfers(): void {
    const now = Date.now();
    for (let i = 0; i < this.transferWaiters.length;) {
      const t = this.transferWaiters[i];
      if (now > t.deadline) {
        this.transferWaiters.splice(i, 1);
        t.reject(
          new RejectedError(
            ErrorCode.TRANSFER_FAILED,
            `node ${t.target} did not take over leadership in time; the transfer was abandoned`,
          ),
        );
      } else i++;
    }
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
      applied: this.appliedIndex,
      groupId: this.options.groupId,
      incarnation: this.options.incarnation,
      leaderAddress: this.addressOf(s.leader),
      snapshotIndex: this.lastSnapshotIndex,
      stopped: this.stopping,
    };
  }

  /**
   * Whether this node can serve correctly, and why not: it must be running, know a leader, be a
   * member the group counts (not a wiped data dir under an old id, not a log that lost entries),
   * and have applied what its group committed, give or take healthApplyLagEntriesMax.
   */
  health(): HealthReport {
    if (this.failure !== null) return { healthy: false, reason: `failed: ${this.failure.message}` };
    if (this.discovering) {
      return {
        healthy: false,
        reason: 'bootstrapping: waiting for every --peers member to answer',
      };
    }
    if (this.stopping || !this.started) return { healthy: false, reason: 'not running' };
    if (this.notThisIncarnation !== null) {
      return { healthy: false, reason: `not a member: ${this.notThisIncarnation}` };
    }
    if (this.lostEntries !== null) {
      return {
        healthy: false,
        reason: `lost data: a leader's heartbeat says ${this.lostEntries}; remove this node from its group and add it again`,
      };
    }
    const s = this.node.basicStatus();
    if (s.leader === noNode) return { healthy: false, reason: 'no leader' };
    if (this.incarnationOf(this.selfId) === undefined) {
      return {
        healthy: false,
        reason:
          'not a member of the group: a new node waits to be added and to receive the group state from the leader',
      };
    }
    const max = this.options.healthApplyLagEntriesMax ?? 1000;
    const behind = Math.max(s.commit, this.groupCommitSeen) - this.appliedIndex;
    if (behind > max) {
      return {
        healthy: false,
        reason: `catching up: applied ${this.appliedIndex}, the group has committed ${Math.max(s.commit, this.groupCommitSeen)}`,
      };
    }
    return { healthy: true, reason: `leader ${s.leader}, applied ${this.appliedIndex}` };
  }
}
