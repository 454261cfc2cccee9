// The one place where RaftServer's errors become wire answers: routing outcomes as an ErrorCode
// with hints (leader address), overload and stops as gRPC statuses that clients retry.
import * as grpc from '@grpc/grpc-js';
import { ErrorCode } from '@eraftkv/protocol';
import { RaftRefusal } from '@eraftkv/raft';
import {
  BusyError,
  NotLeaderError,
  ProposalDroppedError,
  RejectedError,
  StoppedError,
} from '@eraftkv/raft-server';
import { StorageCorruptionError } from '@eraftkv/raft-server';

/** An error to answer with a gRPC status instead of a response. */
export class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A store of this node reported corruption: the answer is DATA_LOSS, saying that this replica's
 * data cannot be trusted (the node also reports itself unhealthy) and that another replica can
 * serve.
 */
export function corruptionStatus(err: StorageCorruptionError): StatusError {
  return new StatusError(
    grpc.status.DATA_LOSS,
    `this replica's data is corrupt: ${err.message}; it reports itself unhealthy. ` +
      'Read from another replica, and replace this one (remove it from its group, move its data dir away, add it back)',
  );
}

/** What a response carries when a request did not succeed. */
export interface ErrorAnswer {
  readonly errorCode: ErrorCode;
  readonly leaderAddress: string;
  readonly leaderId: number;
  readonly errorMessage: string;
}

const refusalCodes: Partial<Record<string, ErrorCode>> = {
  [RaftRefusal.MembershipChangePending]: ErrorCode.MEMBERSHIP_CHANGE_PENDING,
  [RaftRefusal.NodeNotFound]: ErrorCode.NODE_NOT_FOUND,
  [RaftRefusal.NodeExists]: ErrorCode.NODE_EXISTS,
  [RaftRefusal.LastVoter]: ErrorCode.REJECTED,
  'transfer-timeout': ErrorCode.TRANSFER_FAILED,
};

/**
 * Maps an error from RaftServer (or a state machine) to an answer. Errors that are not routing
 * outcomes become StatusErrors: BusyError is RESOURCE_EXHAUSTED, a stop is UNAVAILABLE, a dropped
 * proposal is ABORTED (safe to retry with the same request id); anything else is rethrown.
 */
export function errorAnswer(err: unknown): ErrorAnswer {
  if (err instanceof NotLeaderError) {
    return {
      errorCode: err.leaderId === 0 ? ErrorCode.NO_LEADER : ErrorCode.NOT_LEADER,
      leaderAddress: err.leaderAddress,
      leaderId: err.leaderId,
      errorMessage: err.message,
    };
  }
  if (err instanceof RejectedError) {
    return {
      errorCode: refusalCodes[err.reason] ?? ErrorCode.REJECTED,
      leaderAddress: '',
      leaderId: 0,
      errorMessage: err.message,
    };
  }
  if (err instanceof BusyError) throw new StatusError(grpc.status.RESOURCE_EXHAUSTED, err.message);
  if (err instanceof StoppedError) throw new StatusError(grpc.status.UNAVAILABLE, err.message);
  if (err instanceof ProposalDroppedError) throw new StatusError(grpc.status.ABORTED, err.message);
  if (err instanceof StorageCorruptionError) throw corruptionStatus(err);
  throw err;
}

/**
 * Adapts an async handler to grpc-js: StatusErrors become their status, RangeErrors (bad input)
 * INVALID_ARGUMENT, corrupt storage DATA_LOSS, anything else INTERNAL with its message (and it is
 * logged by the caller).
 */
export function unaryHandler<Req, Resp>(
  work: (req: Req, call: grpc.ServerUnaryCall<Req, Resp>) => Promise<Resp>,
  onInternalError: (err: Error) => void = () => {},
): (call: grpc.ServerUnaryCall<Req, Resp>, callback: grpc.sendUnaryData<Resp>) => void {
  return (call, callback) => {
    Promise.resolve(call.request)
      .then((req) => work(req, call))
      .then(
        (resp) => callback(null, resp),
        (caught: unknown) => {
          const err = caught instanceof StorageCorruptionError ? corruptionStatus(caught) : caught;
          if (err instanceof StatusError) callback({ code: err.code, details: err.message });
          else if (err instanceof RangeError)
            callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
          else {
            const e = err instanceof Error ? err : new Error(String(err));
            onInternalError(e);
            callback({ code: grpc.status.INTERNAL, details: e.message });
          }
        },
      );
  };
}

/** A streaming method this server does not offer: the stream ends with UNIMPLEMENTED. */
export function unimplementedStream(
  what: string,
): (call: grpc.ServerDuplexStream<unknown, unknown>) => void {
  return (call) => {
    call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: `${what} is not served here` });
  };
}
