// The errors RaftServer rejects requests with. Each says what happened and what to do; the
// servers map them to error codes and gRPC statuses in one place.
import type { NodeId } from '@eraftkv/raft';

/** This node is not the leader; `leaderAddress` names the leader when known. */
export class NotLeaderError extends Error {
  override name = 'NotLeaderError';
  constructor(
    readonly leaderId: NodeId,
    readonly leaderAddress: string,
  ) {
    super(
      leaderId === 0
        ? 'this node is not the leader and no leader is known yet (an election may be running); retry shortly'
        : `this node is not the leader; send the request to the leader, node ${leaderId} at ${leaderAddress || 'an unknown address'}`,
    );
  }
}

/** Too much work is queued (pending proposals, reads or uncommitted bytes); retry with backoff. */
export class BusyError extends Error {
  override name = 'BusyError';
}

/**
 * The proposal's log position was taken by another leader's entry: it was not applied. A
 * request with a (client id, command id) may be retried safely.
 */
export class ProposalDroppedError extends Error {
  override name = 'ProposalDroppedError';
}

/** The node stopped (or failed) before the request completed; its outcome is unknown. */
export class StoppedError extends Error {
  override name = 'StoppedError';
}

/** A membership change or leadership transfer was refused; `reason` says why. */
export class RejectedError extends Error {
  override name = 'RejectedError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}
