// What a RaftServer is opened with (RaftServerOptions) and the one place their defaults are
// filled in (resolveRaftServerOptions, in the spirit of @eraftkv/raft's resolveRaftConfig). The
// rest of the package reads only ResolvedRaftServerOptions: every value set, and the values that
// derive from several options (deadlines, the largest gRPC message) computed here once.
import { randomInt } from 'node:crypto';
import { Registry } from 'prom-client';
import type { Membership, NodeId, Rng } from '@eraftkv/raft';
import { silentLogger, type Logger } from './logger';
import type { StateMachine } from './state-machine';
import type { StorageEngine } from './storage-engine';
import { RaftServerBoot } from './bootstrap';
import type { PeerIdentity, PeerTransportOptions } from './transport';

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
  /**
   * How often the data dir is checked for having been deleted or replaced under the running node
   * (data-dir-watch.ts; default 1000 ms, 0 never).
   */
  readonly dataDirCheckMs?: number;
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
  /** What peers are dialed with (TLS with the node's peer certificate); default plaintext. */
  readonly peerCredentials?: PeerTransportOptions['credentials'];
  /** Replaces the RocksDB engine of the log (tests use it to inject disk faults). */
  readonly wrapLogEngine?: (engine: StorageEngine) => StorageEngine;
  /** Called once when the node fails and stops (the server binaries exit the process). */
  readonly onFatal?: (err: Error) => void;
  /**
   * Answers for the node while RaftServer.open() builds it (Identify during bootstrap discovery,
   * health, a stop that gives up), then forwards to the open server; see RaftServerBoot.
   */
  readonly boot?: RaftServerBoot;
}

/** The options that may stay unset: no peer routes, the default gRPC peer clients. */
type Unset = 'peerRoutes' | 'createPeerRpc' | 'peerCredentials';

/** The options with every default filled in, and what derives from them. */
export type ResolvedRaftServerOptions<R> = Required<Omit<RaftServerOptions<R>, Unset>> &
  Pick<RaftServerOptions<R>, Unset> & {
    /** Attempts to resume a broken snapshot transfer before giving it up. */
    readonly snapshotRetriesMax: number;
    /** Who this node is on the wire. */
    readonly identity: PeerIdentity;
    /** Deadline of heartbeats, votes, TimeoutNow and Identify: about an election timeout. */
    readonly controlTimeoutMs: number;
    /** How long a leadership transfer may take before it is abandoned. */
    readonly transferTimeoutMs: number;
    /** The largest gRPC message between peers: the larger of an append and a block, plus 1 MiB. */
    readonly messageBytesMax: number;
  };

const mebibyte = 1024 * 1024;

export const raftServerDefaults = {
  bootstrapRetryMs: 300,
  tickMs: 100,
  dataDirCheckMs: 1000,
  electionTicks: 10,
  heartbeatTicks: 1,
  logMemoryBytesMax: 64 * mebibyte,
  snapshotEntries: 100_000,
  compactionMarginEntries: 1000,
  snapshotBlockBytesMax: mebibyte,
  snapshotRetriesMax: 10,
  pendingProposalsMax: 10_000,
  pendingReadsMax: 10_000,
  appendBytesMax: mebibyte,
  autoPromoteLearners: true,
  learnerCatchUpEntriesMax: 1000,
  rpcTimeoutMs: 5000,
  healthApplyLagEntriesMax: 1000,
} as const;

/** Fills in the defaults (an option given as undefined takes its default, like one left out). */
export function resolveRaftServerOptions<R>(o: RaftServerOptions<R>): ResolvedRaftServerOptions<R> {
  const d = raftServerDefaults;
  const tickMs = o.tickMs ?? d.tickMs;
  const electionTicks = o.electionTicks ?? d.electionTicks;
  const appendBytesMax = o.appendBytesMax ?? d.appendBytesMax;
  const snapshotBlockBytesMax = o.snapshotBlockBytesMax ?? d.snapshotBlockBytesMax;
  return {
    id: o.id,
    groupId: o.groupId,
    clusterId: o.clusterId,
    dataDir: o.dataDir,
    incarnation: o.incarnation,
    bootstrap: o.bootstrap,
    bootstrapRetryMs: o.bootstrapRetryMs ?? d.bootstrapRetryMs,
    stateMachine: o.stateMachine,
    tickMs,
    dataDirCheckMs: o.dataDirCheckMs ?? d.dataDirCheckMs,
    electionTicks,
    heartbeatTicks: o.heartbeatTicks ?? d.heartbeatTicks,
    logMemoryBytesMax: o.logMemoryBytesMax ?? d.logMemoryBytesMax,
    snapshotEntries: o.snapshotEntries ?? d.snapshotEntries,
    compactionMarginEntries: o.compactionMarginEntries ?? d.compactionMarginEntries,
    snapshotBlockBytesMax,
    snapshotRetriesMax: d.snapshotRetriesMax,
    pendingProposalsMax: o.pendingProposalsMax ?? d.pendingProposalsMax,
    pendingReadsMax: o.pendingReadsMax ?? d.pendingReadsMax,
    appendBytesMax,
    autoPromoteLearners: o.autoPromoteLearners ?? d.autoPromoteLearners,
    learnerCatchUpEntriesMax: o.learnerCatchUpEntriesMax ?? d.learnerCatchUpEntriesMax,
    rpcTimeoutMs: o.rpcTimeoutMs ?? d.rpcTimeoutMs,
    healthApplyLagEntriesMax: o.healthApplyLagEntriesMax ?? d.healthApplyLagEntriesMax,
    registry: o.registry ?? new Registry(),
    // The given logger, with this node's group and id on every line.
    logger: (o.logger ?? silentLogger).child({ group: o.groupId, node: o.id }),
    rng: o.rng ?? { nextInt: (bound) => randomInt(bound) },
    peerRoutes: o.peerRoutes,
    createPeerRpc: o.createPeerRpc,
    peerCredentials: o.peerCredentials,
    wrapLogEngine: o.wrapLogEngine ?? ((engine) => engine),
    onFatal: o.onFatal ?? (() => {}),
    boot: o.boot ?? new RaftServerBoot(),
    identity: { groupId: o.groupId, clusterId: o.clusterId, incarnation: o.incarnation },
    controlTimeoutMs: tickMs * electionTicks,
    transferTimeoutMs: 2 * electionTicks * tickMs,
    messageBytesMax: Math.max(appendBytesMax, snapshotBlockBytesMax) + mebibyte,
  };
}
