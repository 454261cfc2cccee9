// The errors our code throws on purpose. Each says what happened and what to do, and how a
// request that fails with it is answered (server-kit's error-mapping turns it into the answer);
// anything else that escapes a request handler is a bug, answered INTERNAL and logged.
import * as grpc from '@grpc/grpc-js';
import { ErrorCode } from '@eraftkv/protocol';
import type { NodeId } from '@eraftkv/raft';

/**
 * An error thrown on purpose, with the answer it gets. Exactly one of `errorCode` and `status`
 * is not OK: either the call succeeds and its response carries `errorCode` in `error_code`
 * (routing outcomes and refusals: `status` is OK), or the call ends with the gRPC `status` and
 * the message as its details (`errorCode` is OK). (Not named `code`: a gRPC ServiceError's
 * `code` is a status, and the two must not be mistaken for each other.)
 */
export class EraftError extends Error {
  override name = 'EraftError';
  constructor(
    readonly errorCode: ErrorCode,
    readonly status: grpc.status,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * A request (or a peer's message) is malformed: a field out of range, a missing field, an
 * unknown enum value. The message names the field. Answered INVALID_ARGUMENT.
 */
export class InvalidArgumentError extends EraftError {
  override name = 'InvalidArgumentError';
  constructor(message: string) {
    super(ErrorCode.OK, grpc.status.INVALID_ARGUMENT, message);
  }
}

/** This node is not the leader; `leaderAddress` names the leader when known. */
/**
 * The caller is not who may make this call: no (trusted) certificate (UNAUTHENTICATED), or one
 * that names someone without the right (PERMISSION_DENIED).
 */
export class AccessDeniedError extends EraftError {
  override name = 'AccessDeniedError';
  constructor(kind: 'unauthenticated' | 'permission-denied', message: string) {
    super(
      ErrorCode.OK,
      kind === 'unauthenticated' ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED,
      message,
    );
  }
}

export class NotLeaderError extends EraftError {
  override name = 'NotLeaderError';
  constructor(
    readonly leaderId: NodeId,
    readonly leaderAddress: string,
  ) {
    super(
      leaderId === 0 ? ErrorCode.NO_LEADER : ErrorCode.NOT_LEADER,
      grpc.status.OK,
      leaderId === 0
        ? 'this node is not the leader and no leader is known yet (an election may be running); retry shortly'
        : `this node is not the leader; send the request to the leader, node ${leaderId} at ${leaderAddress || 'an unknown address'}`,
    );
  }
}

/**
 * Too much work is queued (pending proposals, reads, uncommitted bytes, requests in flight);
 * retry with backoff. Answered RESOURCE_EXHAUSTED.
 */
export class BusyError extends EraftError {
  override name = 'BusyError';
  constructor(message: string) {
    super(ErrorCode.OK, grpc.status.RESOURCE_EXHAUSTED, message);
  }
}

/**
 * A request asks for more than a limit of this node allows (the message names the flag);
 * sending it again does not help, asking for less does. Answered RESOURCE_EXHAUSTED.
 */
export class LimitExceededError extends EraftError {
  override name = 'LimitExceededError';
  constructor(message: string) {
    super(ErrorCode.OK, grpc.status.RESOURCE_EXHAUSTED, message);
  }
}

/**
 * The proposal's log position was taken by another leader's entry: it was not applied. A
 * request with a (client id, command id) may be retried safely. Answered ABORTED.
 */
export class ProposalDroppedError extends EraftError {
  override name = 'ProposalDroppedError';
  constructor(message: string) {
    super(ErrorCode.OK, grpc.status.ABORTED, message);
  }
}

/**
 * The node stopped (or failed) before the request completed; its outcome is unknown. Answered
 * UNAVAILABLE.
 */
export class StoppedError extends EraftError {
  override name = 'StoppedError';
  constructor(message: string) {
    super(ErrorCode.OK, grpc.status.UNAVAILABLE, message);
  }
}

/** The error codes a refused request is answered with. */
export type RefusalCode =
  | ErrorCode.MEMBERSHIP_CHANGE_PENDING
  | ErrorCode.NODE_NOT_FOUND
  | ErrorCode.NODE_EXISTS
  | ErrorCode.TRANSFER_FAILED
  | ErrorCode.REJECTED;

/**
 * A membership change or leadership transfer was refused; `errorCode` says why (the response's
 * `error_code`; the call itself succeeds).
 */
export class RejectedError extends EraftError {
  override name = 'RejectedError';
  constructor(code: RefusalCode, message: string) {
    super(code, grpc.status.OK, message);
  }
}
