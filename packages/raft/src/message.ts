// The one message type that flows through `step`. Every Raft RPC request and response is a
// Message with a `type`; fields that a type does not use keep their zero values.
import type { Entry, NodeId, SnapshotMeta } from './types';

export enum MessageType {
  /** Candidate -> voter: vote for me in `term` (index/logTerm: my last entry). */
  Vote = 'Vote',
  VoteResponse = 'VoteResponse',
  /** Pre-candidate -> voter: would you vote for me in `term` (= my term + 1)? Changes no state. */
  PreVote = 'PreVote',
  PreVoteResponse = 'PreVoteResponse',
  /** Leader -> follower: append `entries` after (index, logTerm); `commit` is the leader's. */
  Append = 'Append',
  /**
   * Follower -> leader. Success: `index` is the last index known to match. Reject: `index` is the
   * rejected prev index and (rejectHint, logTerm) the follower's hint for fast backtracking.
   */
  AppendResponse = 'AppendResponse',
  /** Leader -> follower: I am alive; `commit` is safe for you; `context` is a read round. */
  Heartbeat = 'Heartbeat',
  /**
   * Follower -> leader. `reject` means the heartbeat's commit index is beyond the follower's log,
   * whose last index is `index`: the follower lost entries it had acknowledged.
   */
  HeartbeatResponse = 'HeartbeatResponse',
  /** Leader -> follower: install the snapshot described by `snapshot`. */
  Snapshot = 'Snapshot',
  /** Leader -> transfer target: campaign now, skipping pre-vote and leader stickiness. */
  TimeoutNow = 'TimeoutNow',
}

export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /** Append: prev log term. Vote/PreVote: last log term. AppendResponse reject: hint term. */
  readonly logTerm: number;
  /** Append: prev log index. Vote/PreVote: last log index. AppendResponse: see the type. */
  readonly index: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
  readonly reject: boolean;
  /** AppendResponse reject: the follower's conflict index hint. */
  readonly rejectHint: number;
  /** Heartbeat and HeartbeatResponse: the read round this heartbeat confirms (0: none). */
  readonly context: number;
  /** Snapshot: the snapshot to install. */
  readonly snapshot: SnapshotMeta | null;
  /** Vote: the campaign was started by a leadership transfer. */
  readonly leaderTransfer: boolean;
}

/**
 * A message the core refused because it contradicts what this node knows, something that cannot
 * happen in a correct group: a peer that lost entries it acknowledged, or a forged or corrupted
 * message. The message changed nothing; the runtime reports it (log and metric).
 */
export interface RefusedMessage {
  readonly message: Message;
  readonly kind: RefusalKind;
  /** What was wrong, in words (for the log). */
  readonly reason: string;
}

export enum RefusalKind {
  /** A heartbeat's commit index is beyond this node's log: this node lost acknowledged entries. */
  LostEntries = 'lost-entries',
  /** A follower answered that it lost entries it had acknowledged (see LostEntries). */
  PeerLostEntries = 'peer-lost-entries',
  /** The message's term is more than RaftConfig.termJumpMax above this node's. */
  TermJump = 'term-jump',
  /**
   * The message contradicts what this node knows: another leader in its own term, an append
   * that conflicts with committed entries, an acknowledgement of entries the leader never had.
   */
  Contradiction = 'contradiction',
}

/** Builds a message, filling every field the caller does not name with its zero value. */
export function message(
  fields: Pick<Message, 'type' | 'from' | 'to' | 'term'> & Partial<Message>,
): Message {
  return {
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: 0,
    snapshot: null,
    leaderTransfer: false,
    ...fields,
  };
}

/** True for the messages that answer a request (they ride back on the request's RPC). */
export function isResponse(type: MessageType): boolean {
  switch (type) {
    case MessageType.VoteResponse:
    case MessageType.PreVoteResponse:
    case MessageType.AppendResponse:
    case MessageType.HeartbeatResponse:
      return true;
    case MessageType.Vote:
    case MessageType.PreVote:
    case MessageType.Append:
    case MessageType.Heartbeat:
    case MessageType.Snapshot:
    case MessageType.TimeoutNow:
      return false;
  }
}

/**
 * True for the messages a leader may send before its own write of the same Ready completes (Raft
 * thesis 10.2.1): the leader counts its own entries only after they are persisted, and these
 * messages depend on nothing else that is not durable yet. Everything else waits for the persist.
 */
export function mayBeSentBeforePersist(m: Message): boolean {
  return m.type === MessageType.Append || m.type === MessageType.Heartbeat;
}

/** The response type that answers a vote request of the given type. */
export function voteResponseType(type: MessageType.Vote | MessageType.PreVote): MessageType {
  return type === MessageType.Vote ? MessageType.VoteResponse : MessageType.PreVoteResponse;
}
