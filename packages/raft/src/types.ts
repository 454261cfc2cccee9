// The vocabulary of the Raft core: node ids, log entries, hard state, membership and snapshots.
// These types mirror the wire messages of protos/eraftkv.proto, but the core defines its own so
// that it depends on nothing outside itself; the runtime converts at the edge.

/** A node id within one Raft group. 0 means "none" (no leader, no vote). */
export type NodeId = number;
export const noNode: NodeId = 0;

/** Kinds of log entries; the numeric values equal the wire enum `eraftkv.EntryType`. */
export enum EntryType {
  /** A state-machine command. */
  Normal = 0,
  /** Add a node as a non-voting learner (data: an encoded MembershipChange). */
  JoinNoVoteNode = 1,
  /** Add a node as a voter or promote a learner (data: an encoded MembershipChange). */
  JoinNode = 2,
  /** Remove a node (data: an encoded MembershipChange). */
  LeaveNode = 3,
  /** The empty entry a new leader appends at the start of its term. */
  NoOp = 4,
}

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** True for the entry types that change membership. */
export function isMembershipEntry(type: EntryType): boolean {
  return (
    type === EntryType.JoinNoVoteNode || type === EntryType.JoinNode || type === EntryType.LeaveNode
  );
}

/** The state that must reach stable storage before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const emptyHardState: HardState = { term: 0, vote: noNode, commit: 0 };

export function hardStateEquals(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/**
 * One member of the group. `address` and `incarnation` are opaque to the core: the runtime routes
 * by the address, and stamps the incarnation (which data dir of the node is the member; 0 when
 * unknown) on every message it sends the member, so that a node whose storage was wiped is never
 * taken for the member it used to be.
 */
export interface Member {
  readonly id: NodeId;
  readonly address: string;
  readonly learner: boolean;
  readonly incarnation: number;
}

/** The members of a group, voters and learners, in ascending id order. */
export type Membership = readonly Member[];

/** What a membership entry carries (incarnation 0: keep the member's recorded one). */
export interface MembershipChange {
  readonly nodeId: NodeId;
  readonly address: string;
  readonly incarnation: number;
}

/**
 * Encodes and decodes the data of membership entries. Injected by the caller, so that the core
 * stays free of any wire format (the runtime passes the protobuf `MembershipChange` codec).
 */
export interface MembershipChangeCodec {
  encode(change: MembershipChange): Uint8Array;
  decode(data: Uint8Array): MembershipChange;
}

/** Describes a snapshot: the last index and term it covers and the membership at that index. */
export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly membership: Membership;
}

export const emptySnapshotMeta: SnapshotMeta = { index: 0, term: 0, membership: [] };

/** The roles a node moves between. */
export enum Role {
  Follower = 'follower',
  PreCandidate = 'pre-candidate',
  Candidate = 'candidate',
  Leader = 'leader',
}

/** Volatile state that the runtime may want to observe (not persisted). */
export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

/** A linearizable read that the leader confirmed: serve it once `index` has been applied. */
export interface ReadState {
  /** The caller's request id, passed to `readIndex`. */
  readonly requestId: number;
  readonly index: number;
}

/** A programmer error or a broken invariant: it stops the process (never caught and ignored). */
export class RaftInvariantError extends Error {
  override name = 'RaftInvariantError';
}

export function invariant(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new RaftInvariantError(message());
}

export function assertNever(value: never, what: string): never {
  throw new RaftInvariantError(`unexpected ${what}: ${String(value)}`);
}
