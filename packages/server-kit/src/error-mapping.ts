// The one place where errors become wire answers (docs/servers-contract.md, "Answers"). An
// EraftError (thrown on purpose, see @eraftkv/raft-server's errors.ts) is answered as it says:
// routing outcomes and refusals as an ErrorCode in the response (with the leader's address for
// NotLeaderError), everything else as its gRPC status with its message as details (DATA_LOSS
// with what to do about a corrupt replica). Anything else that escapes a handler is a bug: it is
// logged with its stack and answered INTERNAL.
import * as grpc from '@grpc/grpc-js';
import { ErrorCode } from '@eraftkv/protocol';
import {
  EraftError,
  NotLeaderError,
  StorageCorruptionError,
  type Logger,
} from '@eraftkv/raft-server';

/** What a response carries when a request did not succeed (the call itself succeeds). */
export interface ErrorAnswer {
  readonly errorCode: ErrorCode;
  readonly leaderAddress: string;
  readonly leaderId: number;
  readonly errorMessage: string;
}

/** How a call that failed ends. */
export interface FailureStatus {
  readonly status: grpc.status;
  readonly details: string;
}

/** The details of a status answer: the message, and for corrupt storage what to do about it. */
function detailsOf(err: EraftError): string {
  if (err instanceof StorageCorruptionError) {
    return (
      `this replica's data is corrupt: ${err.message}; it reports itself unhealthy. ` +
      'Read from another replica, and replace this one (remove it from its group, move its data dir away, add it back)'
    );
  }
  return err.message;
}

/**
 * The routing answer for an error whose answer travels in the response (NotLeaderError,
 * RejectedError); every other error is rethrown, for unaryHandler to answer with its status.
 */
export function errorAnswer(err: unknown): ErrorAnswer {
  if (!(err instanceof EraftError) || err.status !== grpc.status.OK) throw err;
  const leader = err instanceof NotLeaderError ? err : null;
  return {
    errorCode: err.errorCode,
    leaderAddress: leader?.leaderAddress ?? '',
    leaderId: leader?.leaderId ?? 0,
    errorMessage: err.message,
  };
}

/**
 * The status a call ends with when its handler failed with `err`. An EraftError with a status
 * ends with it (logged if that status is INTERNAL: the node failed). Anything else is a bug,
 * and so is an EraftError meant for a response that no handler turned into one: it is logged
 * with its stack through `logger` and answered INTERNAL with its message.
 */
export function failureStatus(err: unknown, logger: Logger, method: string): FailureStatus {
  if (
    err instanceof EraftError &&
    err.status !== grpc.status.OK &&
    err.status !== grpc.status.INTERNAL
  ) {
    return { status: err.status, details: detailsOf(err) };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  logger.error('internal error answering a call', {
    method,
    error: e.message,
    stack: e.stack ?? '',
  });
  return { status: grpc.status.INTERNAL, details: e.message };
}

/**
 * Adapts an async handler to grpc-js: a response, or the status failureStatus gives (bugs are
 * logged through `logger`).
 */
export function unaryHandler<Req, Resp>(
  work: (req: Req, call: grpc.ServerUnaryCall<Req, Resp>) => Promise<Resp>,
  logger: Logger,
): (call: grpc.ServerUnaryCall<Req, Resp>, callback: grpc.sendUnaryData<Resp>) => void {
  return (call, callback) => {
    Promise.resolve(call.request)
      .then((req) => work(req, call))
      .then(
        (resp) => callback(null, resp),
        (err: unknown) => {
          const { status, details } = failureStatus(err, logger, call.getPath());
          callback({ code: status, details });
        },
      );
  };
}

/** A streaming method this server does not offer: the stream ends with UNIMPLEMENTED. */
export function unimplementedStream(what: string): (call: NodeJS.EventEmitter) => void {
  return (call) => {
    call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: `${what} is not served here` });
  };
}
