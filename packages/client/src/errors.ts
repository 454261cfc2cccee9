// The errors EraftKvClient rejects with. Every message says what happened and what to do next.
import { ErrorCode } from '@eraftkv/protocol';

export abstract class EraftKvError extends Error {
  abstract readonly kind:
    | 'invalid-argument'
    | 'unavailable'
    | 'timeout'
    | 'cluster'
    | 'wrong-shard'
    | 'not-leader'
    | 'access-denied'
    | 'compacted'
    | 'lease-not-found';
}

/** The request is malformed or exceeds a limit; retrying it unchanged cannot succeed. */
export class InvalidArgumentError extends EraftKvError {
  override name = 'InvalidArgumentError';
  readonly kind = 'invalid-argument';
}

/** No node answered (the cluster is down, unreachable, or --endpoints is wrong). */
export class UnavailableError extends EraftKvError {
  override name = 'UnavailableError';
  readonly kind = 'unavailable';
}

/**
 * The call's deadline passed before it completed. For a write the outcome is unknown: it may or
 * may not have been applied (retrying through the same client applies it at most once).
 */
export class TimeoutError extends EraftKvError {
  override name = 'TimeoutError';
  readonly kind = 'timeout';
}

/** The cluster refused the request (for example GROUP_EXISTS or SLOT_NOT_EMPTY). */
export class ClusterError extends EraftKvError {
  override name = 'ClusterError';
  readonly kind = 'cluster';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Routing kept failing: the key's group changed faster than the client could follow. */
export class WrongShardError extends EraftKvError {
  override name = 'WrongShardError';
  readonly kind = 'wrong-shard';
}

/**
 * The cluster refused the caller (auth is enabled): `unauthenticated` when the call named no user
 * (no client certificate, or the node does not verify them), else the user lacks a permission.
 * Nothing of the request was done.
 */
export class AccessDeniedError extends EraftKvError {
  override name = 'AccessDeniedError';
  readonly kind = 'access-denied';
  constructor(
    readonly unauthenticated: boolean,
    message: string,
  ) {
    super(message);
  }
}

/** The node is not the leader and the deadline ran out before a leader was found. */
export class NotLeaderError extends EraftKvError {
  override name = 'NotLeaderError';
  readonly kind = 'not-leader';
  constructor(
    readonly leaderAddress: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A watch asked a group for changes older than the history it keeps: nothing of the watch was
 * lost, but it cannot go on where it stood. `compactRevision` is the oldest revision of `group`
 * that can still be watched; start again from it (missing what came before it) or from now after
 * a fresh read.
 */
export class WatchCompactedError extends EraftKvError {
  override name = 'WatchCompactedError';
  readonly kind = 'compacted';
  constructor(
    readonly group: number,
    readonly compactRevision: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Lease `id` is not held by its group: it was never granted, it expired, or it was revoked. A
 * keep-alive of it has stopped; keys put with it are gone (or were never written).
 */
export class LeaseNotFoundError extends EraftKvError {
  override name = 'LeaseNotFoundError';
  readonly kind = 'lease-not-found';
  constructor(
    readonly id: number,
    message: string,
  ) {
    super(message);
  }
}

/** What an ErrorCode means to a user, for messages. */
export function describeErrorCode(code: ErrorCode): string {
  switch (code) {
    case ErrorCode.OK:
      return 'ok';
    case ErrorCode.NOT_LEADER:
      return 'not the leader';
    case ErrorCode.WRONG_SHARD:
      return 'the key belongs to another group (stale topology)';
    case ErrorCode.SNAPSHOTTING:
      return 'the node is installing a snapshot';
    case ErrorCode.BUSY:
      return 'the node is busy';
    case ErrorCode.NO_LEADER:
      return 'the group has no leader right now';
    case ErrorCode.NOT_INITIALIZED:
      return "the cluster is not initialized (run 'eraftkv-ctl init' or use npm start)";
    case ErrorCode.ALREADY_INITIALIZED:
      return 'the cluster is already initialized';
    case ErrorCode.GROUP_NOT_FOUND:
      return 'no such group';
    case ErrorCode.GROUP_EXISTS:
      return 'the group already exists';
    case ErrorCode.GROUP_HAS_SLOTS:
      return "the group still owns slots: move them away first ('eraftkv-ctl balance --drain <gid> --apply')";
    case ErrorCode.SLOT_NOT_EMPTY:
      return 'a slot holds data (the source group says so when it freezes a slot for a move)';
    case ErrorCode.SLOT_MIGRATING:
      return "the key's slot is moving to another group; retried until the move is done";
    case ErrorCode.MEMBERSHIP_CHANGE_PENDING:
      return 'another membership change is still in progress; retry when it has committed';
    case ErrorCode.NODE_NOT_FOUND:
      return 'no such member';
    case ErrorCode.NODE_EXISTS:
      return 'the node is already a member';
    case ErrorCode.TRANSFER_FAILED:
      return 'the leadership transfer failed';
    case ErrorCode.REJECTED:
      return 'the request was rejected';
    case ErrorCode.STALE_SERVER_CONFIG:
      return 'the server is catching up with the topology';
    case ErrorCode.LEASE_NOT_FOUND:
      return 'no such lease (never granted, expired or revoked)';
    case ErrorCode.UNRECOGNIZED:
    default:
      return `error code ${String(code)}`;
  }
}
