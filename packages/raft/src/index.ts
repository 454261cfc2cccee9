// @eraftkv/raft: the Raft protocol as a deterministic, synchronous state machine. No IO, no clocks,
// no randomness of its own, no dependencies (a lint rule enforces it). @eraftkv/raft-server drives
// it. The public API is RawNode and its Ready contract, the message, entry and membership types,
// the configuration and describe*; Raft, Progress, Inflights and RaftLog stay inside.
//
// THE READY CONTRACT
//
// Drive a RawNode with three kinds of input: tick() at a fixed interval, step(message) for every
// message from a peer, and requests (propose, readIndex, membership changes, transferLeader).
// Then, whenever hasReady() is true, take ready() and handle it in this order:
//
//   1. Persist. Install `snapshot` if set (restore the state machine from the received data and
//      replace the stored log by it). Append `entries` to stable storage, replacing any stored
//      suffix that starts at entries[0].index, and store `hardState` if set, in one atomic write.
//      When `mustSync` is set the write must reach the disk (fsync) before step 2.
//   2. Send `messages`. A leader may send its Append and Heartbeat messages before or during
//      step 1 (mayBeSentBeforePersist); everything else, above all vote grants and append
//      acknowledgements, only after step 1, because they promise that the state is durable.
//   3. Apply `committedEntries` to the state machine in order, storing the applied index
//      atomically with the data they produce; answer `readStates` once their index is applied.
//   4. Call advance(). Only then may ready() be called again.
//
// `refused` lists messages the core would not act on because no correct peer could have sent
// them (a follower that lost acknowledged entries, a forged message): report them; they changed
// nothing.
//
// A crash at any point loses only what step 1 had not made durable; a restarted node is built
// from its storage (hard state, snapshot, entries) and the state machine's applied index.
export {
  raftConfigDefaults,
  resolveRaftConfig,
  type RaftConfig,
  type RaftConfigInput,
} from './config';
export {
  describeEntries,
  describeEntry,
  describeHardState,
  describeMembership,
  describeMessage,
  describeReady,
  describeSnapshot,
} from './describe';
export { applyMembershipChange, isVoter, memberOf, votersOf } from './membership';
export {
  isResponse,
  mayBeSentBeforePersist,
  message,
  MessageType,
  RefusalKind,
  type Message,
  type RefusedMessage,
} from './message';
export { ProgressState } from './progress';
export { MembershipChangeKind, RaftRefusal, type ProposeResult, type RequestResult } from './raft';
export {
  RawNode,
  type BasicStatus,
  type PeerStatus,
  type RaftStatus,
  type Ready,
} from './raw-node';
export { SeededRng, type Rng } from './rng';
export { entrySizeBytes, limitEntriesBytes, type InitialState, type LogStorage } from './storage';
export {
  assertNever,
  emptyHardState,
  emptySnapshotMeta,
  EntryType,
  hardStateEquals,
  invariant,
  isMembershipEntry,
  noNode,
  RaftInvariantError,
  Role,
  type Entry,
  type HardState,
  type Member,
  type Membership,
  type MembershipChange,
  type MembershipChangeCodec,
  type NodeId,
  type ReadState,
  type SnapshotMeta,
  type SoftState,
} from './types';
