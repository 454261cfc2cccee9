// Configuration of one Raft node. Time is counted in ticks (the runtime decides how long a tick
// is); every window and batch has a limit.
import type { Rng } from './rng';
import type { MembershipChangeCodec, NodeId } from './types';

export interface RaftConfig {
  /** This node's id; never 0. */
  readonly id: NodeId;
  /**
   * A follower that hears nothing from a leader for a random number of ticks in
   * [electionTicks, 2 * electionTicks) starts an election. A leader steps down (check-quorum)
   * when it has not heard from a quorum for electionTicks.
   */
  readonly electionTicks: number;
  /** A leader sends heartbeats every heartbeatTicks; must be < electionTicks. */
  readonly heartbeatTicks: number;
  /** Run a pre-vote round before incrementing the term (Raft thesis 9.6). */
  readonly preVote: boolean;
  /** A leader that has not heard from a quorum for an election timeout steps down. */
  readonly checkQuorum: boolean;
  /** The data bytes one Append may carry (at least one entry is always sent). */
  readonly appendBytesMax: number;
  /** Appends in flight to one peer before the leader waits for acknowledgements. */
  readonly inflightAppendsMax: number;
  /** Data bytes in flight to one peer before the leader waits for acknowledgements. */
  readonly inflightBytesMax: number;
  /** Proposals are refused while the leader's uncommitted entries exceed this many data bytes. */
  readonly uncommittedBytesMax: number;
  /** Linearizable reads waiting for leadership confirmation before readIndex refuses more. */
  readonly pendingReadsMax: number;
  /** Data bytes of committed entries handed to the application in one Ready. */
  readonly committedEntriesPerReadyBytesMax: number;
  /** Promote a learner to voter automatically once it has caught up. */
  readonly autoPromoteLearners: boolean;
  /** A learner counts as caught up when it is at most this many entries behind the leader. */
  readonly learnerCatchUpEntriesMax: number;
  /**
   * The largest term this node may reach: it never campaigns beyond it (the runtime sets what its
   * log store can hold). Messages with larger terms must be refused before they reach the core.
   */
  readonly termMax: number;
  /**
   * While a node follows a live leader (or leads), a message whose term is more than this above
   * its own is refused (Ready.refused): no correct group gets that far while one of its members
   * keeps hearing from its leader, and taking such a term from a forged or corrupted message would
   * bring the group near termMax, where it could elect no more. A node without a leader takes any
   * term, so that it can always catch up with its group.
   */
  readonly termJumpMax: number;
  /** The highest index the application has applied (for a restart); 0 for a new node. */
  readonly applied: number;
  /** The source of election jitter. */
  readonly rng: Rng;
  /** Encodes and decodes the data of membership entries. */
  readonly membershipCodec: MembershipChangeCodec;
}

/** Defaults that match etcd's behaviour with a 100 ms tick: 1 s elections, 100 ms heartbeats. */
export const raftConfigDefaults = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  appendBytesMax: 1024 * 1024,
  inflightAppendsMax: 256,
  inflightBytesMax: 32 * 1024 * 1024,
  uncommittedBytesMax: 64 * 1024 * 1024,
  committedEntriesPerReadyBytesMax: 16 * 1024 * 1024,
  pendingReadsMax: 65536,
  autoPromoteLearners: true,
  learnerCatchUpEntriesMax: 100,
  termMax: Number.MAX_SAFE_INTEGER,
  termJumpMax: 2 ** 32,
  applied: 0,
} as const;

export type RaftConfigInput = Pick<RaftConfig, 'id' | 'rng' | 'membershipCodec'> &
  Partial<Omit<RaftConfig, 'id' | 'rng' | 'membershipCodec'>>;

/** Fills defaults and rejects a configuration that cannot work, saying why. */
export function resolveRaftConfig(input: RaftConfigInput): RaftConfig {
  // An option passed as undefined takes its default, like one left out: a plain spread would
  // let the undefined override the default (and silently turn off preVote and checkQuorum).
  const config: RaftConfig = { ...raftConfigDefaults, ...withoutUndefined(input) };
  const positive = [
    'id',
    'electionTicks',
    'heartbeatTicks',
    'appendBytesMax',
    'inflightAppendsMax',
    'inflightBytesMax',
    'uncommittedBytesMax',
    'committedEntriesPerReadyBytesMax',
    'pendingReadsMax',
    'termMax',
    'termJumpMax',
  ] as const;
  for (const key of positive) {
    const value = config[key];
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`raft config: ${key} must be a positive integer, got ${value}`);
    }
  }
  if (config.heartbeatTicks >= config.electionTicks) {
    throw new RangeError(
      `raft config: heartbeatTicks (${config.heartbeatTicks}) must be below electionTicks (${config.electionTicks})`,
    );
  }
  if (
    !Number.isSafeInteger(config.learnerCatchUpEntriesMax) ||
    config.learnerCatchUpEntriesMax < 0
  ) {
    throw new RangeError('raft config: learnerCatchUpEntriesMax must be a non-negative integer');
  }
  if (!Number.isSafeInteger(config.applied) || config.applied < 0) {
    throw new RangeError('raft config: applied must be a non-negative integer');
  }
  return config;
}

/** A shallow copy of `input` without the properties whose value is undefined. */
function withoutUndefined<T extends object>(input: T): T {
  const copy = { ...input };
  for (const key of Object.keys(copy) as (keyof T)[]) {
    if (copy[key] === undefined) delete copy[key];
  }
  return copy;
}
