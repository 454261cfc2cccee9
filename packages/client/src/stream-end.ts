// How a server stream the client keeps open (a watch, a lease keep-alive) ended, read from its
// gRPC status: broken (open it again, on this or another member) or failed (a refusal that
// reopening cannot change). Decided from status codes, never from message text.
import * as grpc from '@grpc/grpc-js';
import { serviceError } from './connections';
import { rpcError } from './leader-caller';

/** How a stream ended by its status. */
export type StatusEnd =
  /** It broke (or the server stopped it): open it again. */
  | { readonly kind: 'broken'; readonly code: grpc.status; readonly details: string }
  /** It cannot go on (or was stopped): this error says why. */
  | { readonly kind: 'failed'; readonly error: Error };

/**
 * The statuses after which a stream is opened again: the node stopped or failed, the client was
 * too slow or the node has too many streams, the node no longer serves the group (the topology
 * moved), or the server ended the stream without saying why (OK).
 */
const resumable: ReadonlySet<grpc.status> = new Set([
  grpc.status.OK,
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.ABORTED,
  grpc.status.INTERNAL,
  grpc.status.UNAVAILABLE,
]);

/**
 * The resumable statuses that the LeaderCaller does not retry by itself: a stream that ended
 * with one before its first response is answered with a "retry" verdict (another member, after
 * a pause).
 */
const refusals: ReadonlySet<grpc.status> = new Set([
  grpc.status.OK,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.INTERNAL,
]);

/** How a stream to `address` that ended with `status` ended. */
export function statusEnd(status: grpc.StatusObject, address: string): StatusEnd {
  if (resumable.has(status.code))
    return { kind: 'broken', code: status.code, details: status.details };
  return { kind: 'failed', error: rpcError(serviceError(status.code, status.details), address) };
}

/**
 * What a stream that broke before its first response tells the LeaderCaller: the reason to try
 * the next member (a refusal, for a "retry" verdict), or an error for it to judge by its code.
 */
export function unansweredEnd(end: {
  readonly code: grpc.status;
  readonly details: string;
}): { readonly refusal: string } | { readonly error: grpc.ServiceError } {
  if (refusals.has(end.code)) return { refusal: describeEnd(end) };
  return { error: serviceError(end.code, end.details) };
}

/** A broken stream's reason, in words. */
export function describeEnd(end: { readonly code: grpc.status; readonly details: string }): string {
  return end.details || `the stream ended (${grpc.status[end.code]})`;
}
