// Inbound peer RPCs: the ERaftKv methods RequestVote, AppendEntries (unary and streamed),
// Snapshot and TimeoutNow, checked for group, cluster and receiver, turned into core messages, and answered with the
// core's response once it is durable (see RaftServer.stepRequest).
import * as grpc from '@grpc/grpc-js';
import type {
  AppendEntriesReq,
  AppendEntriesResp,
  ERaftKvServer,
  RequestVoteReq,
  RequestVoteResp,
  SnapshotReq,
  SnapshotResp,
  TimeoutNowReq,
  TimeoutNowResp,
} from '@eraftkv/protocol';
import type { Message, NodeId } from '../core';
import {
  appendRequestFromWire,
  appendResponseToWire,
  timeoutNowFromWire,
  voteRequestFromWire,
  voteResponseToWire,
  type PeerIdentity,
} from './message-codec';

/** What the peer service needs from the node it serves. */
export interface PeerInbox {
  readonly selfId: NodeId;
  readonly identity: PeerIdentity;
  /** Steps a request into the core; resolves with the core's answer, or null if it dropped it. */
  stepRequest(m: Message): Promise<Message | null>;
  /** Steps a message that expects no answer (TimeoutNow). */
  stepOneWay(m: Message): void;
  receiveSnapshotBlock(req: SnapshotReq): Promise<SnapshotResp>;
}

export type PeerServiceHandlers = Pick<
  ERaftKvServer,
  'requestVote' | 'appendEntries' | 'appendEntriesStream' | 'snapshot' | 'timeoutNow'
>;

/**
 * Appends read from one stream before answers are written; beyond it the stream is paused (the
 * sender's in-flight window is far smaller, so this only bounds a misbehaving peer).
 */
const streamAppendsInFlightMax = 1024;

class PeerRequestError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

function checkIdentity(inbox: PeerInbox, groupId: number, clusterId: string, toId: number): void {
  const self = inbox.identity;
  if (clusterId !== self.clusterId) {
    throw new PeerRequestError(
      grpc.status.FAILED_PRECONDITION,
      `message for cluster "${clusterId}" reached a node of cluster "${self.clusterId}"`,
    );
  }
  if (groupId !== self.groupId) {
    throw new PeerRequestError(
      grpc.status.FAILED_PRECONDITION,
      `message for group ${groupId} reached a node of group ${self.groupId}`,
    );
  }
  if (toId !== inbox.selfId) {
    throw new PeerRequestError(
      grpc.status.FAILED_PRECONDITION,
      `message for node ${toId} reached node ${inbox.selfId} of group ${self.groupId}`,
    );
  }
}

function statusOf(err: unknown): grpc.StatusObject {
  const metadata = new grpc.Metadata();
  if (err instanceof PeerRequestError) return { code: err.code, details: err.message, metadata };
  if (err instanceof RangeError) {
    return { code: grpc.status.INVALID_ARGUMENT, details: err.message, metadata };
  }
  return { code: grpc.status.UNAVAILABLE, details: (err as Error).message, metadata };
}

function handle<Req, Resp>(
  work: (req: Req) => Promise<Resp>,
): (call: grpc.ServerUnaryCall<Req, Resp>, callback: grpc.sendUnaryData<Resp>) => void {
  return (call, callback) => {
    // Through a promise, so that a synchronous throw becomes an error reply too.
    Promise.resolve(call.request)
      .then(work)
      .then(
        (resp) => callback(null, resp),
        (err: unknown) => callback(statusOf(err)),
      );
  };
}

/**
 * Serves AppendEntriesStream: each append is stepped as it arrives (so they pipeline through the
 * node's Ready cycles) and answered in arrival order. The first failure ends the stream.
 */
function appendEntriesStream(
  inbox: PeerInbox,
): (call: grpc.ServerDuplexStream<AppendEntriesReq, AppendEntriesResp>) => void {
  return (call) => {
    let answered: Promise<void> = Promise.resolve();
    let inFlight = 0;
    let closed = false;
    const fail = (err: unknown): void => {
      if (closed) return;
      closed = true;
      call.emit('error', statusOf(err));
    };
    call.on('data', (req: AppendEntriesReq) => {
      if (closed) return;
      if (++inFlight >= streamAppendsInFlightMax) call.pause();
      const answer = Promise.resolve(req).then(async (r) => {
        checkIdentity(inbox, r.groupId, r.clusterId, r.toId);
        return appendResponseToWire(await inbox.stepRequest(appendRequestFromWire(r)));
      });
      answered = answered
        .then(() => answer)
        .then((resp) => {
          if (closed || call.cancelled) return;
          call.write(resp);
          if (--inFlight === streamAppendsInFlightMax - 1) call.resume();
        }, fail);
    });
    call.on('end', () => {
      void answered.then(() => {
        if (closed) return;
        closed = true;
        call.end();
      });
    });
    call.on('error', () => {
      closed = true;
    });
  };
}

export function peerServiceHandlers(inbox: PeerInbox): PeerServiceHandlers {
  return {
    appendEntriesStream: appendEntriesStream(inbox),
    requestVote: handle<RequestVoteReq, RequestVoteResp>(async (req) => {
      checkIdentity(inbox, req.groupId, req.clusterId, req.toId);
      const response = await inbox.stepRequest(voteRequestFromWire(req));
      return voteResponseToWire(response, req);
    }),
    appendEntries: handle<AppendEntriesReq, AppendEntriesResp>(async (req) => {
      checkIdentity(inbox, req.groupId, req.clusterId, req.toId);
      const response = await inbox.stepRequest(appendRequestFromWire(req));
      return appendResponseToWire(response);
    }),
    snapshot: handle<SnapshotReq, SnapshotResp>(async (req) => {
      checkIdentity(inbox, req.groupId, req.clusterId, req.toId);
      return inbox.receiveSnapshotBlock(req);
    }),
    timeoutNow: handle<TimeoutNowReq, TimeoutNowResp>((req) => {
      checkIdentity(inbox, req.groupId, req.clusterId, req.toId);
      inbox.stepOneWay(timeoutNowFromWire(req));
      return Promise.resolve({ term: req.term });
    }),
  };
}
