// Inbound peer RPCs: the ERaftKv methods RequestVote, AppendEntries (unary and streamed),
// Snapshot, TimeoutNow and Identify, checked for cluster, group, receiver and its incarnation,
// decoded (message-codec checks every field of a message, snapshot-coordinator every field of a
// snapshot block), handed to the node through its one entry point (PeerInbox.receive), and
// answered with the node's answer once it is durable. A request that fails a check never reaches
// the node: it is answered with an error status and reported to the node, which counts it.
import * as grpc from '@grpc/grpc-js';
import {
  ErrorCode,
  type AppendEntriesReq,
  type AppendEntriesResp,
  type ERaftKvServer,
  type IdentifyReq,
  type IdentifyResp,
  type RequestVoteReq,
  type RequestVoteResp,
  type SnapshotReq,
  type SnapshotResp,
  type TimeoutNowReq,
  type TimeoutNowResp,
} from '@eraftkv/protocol';
import type { Message, NodeId } from '@eraftkv/raft';
import { EraftError, InvalidArgumentError } from '../errors';
import {
  snapshotBlockFromWire,
  snapshotReplyToWire,
  type SnapshotBlock,
  type SnapshotBlockReply,
} from '../snapshot/snapshot-coordinator';
import {
  appendRequestFromWire,
  appendResponseToWire,
  timeoutNowFromWire,
  voteRequestFromWire,
  voteResponseToWire,
  type PeerIdentity,
} from './message-codec';

/** Why a peer request was refused before it reached the core. */
export enum PeerRefusal {
  /** A field is out of range or the message is malformed (INVALID_ARGUMENT). */
  Invalid = 'invalid',
  /** For another cluster, group or node id (FAILED_PRECONDITION). */
  Misaddressed = 'misaddressed',
  /** For another incarnation of this node: its data dir was created anew (FAILED_PRECONDITION). */
  ReceiverIncarnation = 'receiver-incarnation',
  /**
   * A vote asked by another incarnation of a member than the membership records: a node whose
   * data dir was created anew, campaigning as the member it was (FAILED_PRECONDITION).
   */
  CandidateIncarnation = 'candidate-incarnation',
  /** No peer certificate, or one no trusted peer CA signed (UNAUTHENTICATED). */
  Unauthenticated = 'unauthenticated',
  /** A peer certificate that names another member than the sender the request claims (PERMISSION_DENIED). */
  Impersonation = 'impersonation',
}

/** A call, as far as telling who made it goes (its TLS peer certificate). */
export type PeerCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>;

/**
 * Checks who sends a peer request: `senderId` of group `groupId` must be who the call's TLS peer
 * certificate names. Null when it is; otherwise why not. Without one, every sender is taken.
 */
export type PeerAuthenticator = (
  call: PeerCall,
  groupId: number,
  senderId: number,
) => { readonly kind: 'unauthenticated' | 'permission-denied'; readonly message: string } | null;

/** A decoded peer request, as it reaches the node. */
export type PeerInput =
  /** A request the core answers (votes, appends, heartbeats). */
  | { readonly kind: 'request'; readonly message: Message }
  /** A message that expects no answer (TimeoutNow). */
  | { readonly kind: 'one-way'; readonly message: Message }
  /** A block of a leader's snapshot, for the node's snapshot coordinator. */
  | { readonly kind: 'snapshot-block'; readonly block: SnapshotBlock };

/** What the node answers to each kind of input. */
export interface PeerAnswers {
  /** The core's answer once durable, or null if it dropped the request. */
  readonly request: Message | null;
  readonly 'one-way': undefined;
  readonly 'snapshot-block': SnapshotBlockReply;
}

export type PeerAnswer<I extends PeerInput> = PeerAnswers[I['kind']];

/** What the peer service needs from the node it serves. */
export interface PeerInbox {
  readonly selfId: NodeId;
  readonly identity: PeerIdentity;
  /** Hands a decoded request to the node; resolves with its answer. */
  receive<I extends PeerInput>(input: I): Promise<PeerAnswer<I>>;
  /** Who this node is (the Identify RPC); changes nothing. */
  identify(req: IdentifyReq): IdentifyResp;
  /** The incarnation this node's membership records for `id`; undefined when it is no member. */
  incarnationOf(id: NodeId): number | undefined;
  /** A request was refused before it reached the core (the node counts and logs it). */
  refused(reason: PeerRefusal, from: NodeId, detail: string): void;
}

export type PeerServiceHandlers = Pick<
  ERaftKvServer,
  'requestVote' | 'appendEntries' | 'appendEntriesStream' | 'snapshot' | 'timeoutNow' | 'identify'
>;

/**
 * Appends read from one stream before answers are written; beyond it the stream is paused (the
 * sender's in-flight window is far smaller, so this only bounds a misbehaving peer).
 */
const streamAppendsInFlightMax = 1024;

/**
 * A request for another cluster, group, node or incarnation (FAILED_PRECONDITION), or from a
 * sender its certificate does not name (UNAUTHENTICATED, PERMISSION_DENIED).
 */
class PeerRequestError extends EraftError {
  override name = 'PeerRequestError';
  constructor(
    readonly reason: Exclude<PeerRefusal, PeerRefusal.Invalid>,
    message: string,
  ) {
    super(
      ErrorCode.OK,
      reason === PeerRefusal.Unauthenticated
        ? grpc.status.UNAUTHENTICATED
        : reason === PeerRefusal.Impersonation
          ? grpc.status.PERMISSION_DENIED
          : grpc.status.FAILED_PRECONDITION,
      message,
    );
  }
}

/** Refuses a request whose sender the call's certificate does not name. */
function checkSender(
  authenticate: PeerAuthenticator | undefined,
  call: PeerCall,
  groupId: number,
  senderId: number,
): void {
  const problem = authenticate?.(call, groupId, senderId) ?? null;
  if (problem === null) return;
  throw new PeerRequestError(
    problem.kind === 'unauthenticated' ? PeerRefusal.Unauthenticated : PeerRefusal.Impersonation,
    `peer request claiming node ${senderId} of group ${groupId} refused: ${problem.message}`,
  );
}

/** The fields every peer request carries to say who sends it to whom. */
interface Addressing {
  readonly groupId: number;
  readonly clusterId: string;
  readonly toId: number;
  readonly fromIncarnation: number;
  readonly toIncarnation: number;
}

function checkAddress(
  inbox: PeerInbox,
  req: Omit<Addressing, 'fromIncarnation' | 'toIncarnation'>,
): void {
  const self = inbox.identity;
  const misaddressed = (text: string): PeerRequestError =>
    new PeerRequestError(PeerRefusal.Misaddressed, text);
  if (req.clusterId !== self.clusterId) {
    throw misaddressed(
      `message for cluster "${req.clusterId}" reached a node of cluster "${self.clusterId}"`,
    );
  }
  if (req.groupId !== self.groupId) {
    throw misaddressed(`message for group ${req.groupId} reached a node of group ${self.groupId}`);
  }
  if (req.toId !== inbox.selfId) {
    throw misaddressed(
      `message for node ${req.toId} reached node ${inbox.selfId} of group ${self.groupId}`,
    );
  }
}

/**
 * Checks that the request is for this very incarnation of this node. A node whose data dir was
 * wiped has a new incarnation: it must not answer for the votes and acknowledgements the old one
 * gave, and it is not counted until it has been removed from the group and added again. (Who
 * sends does not matter for safety, only who answers; and a follower that lags behind the re-add
 * of its new leader must still take that leader's appends, so the sender is not checked.)
 */
function checkIdentity(inbox: PeerInbox, req: Addressing): void {
  checkAddress(inbox, req);
  const self = inbox.identity;
  if (req.toIncarnation !== self.incarnation) {
    throw new PeerRequestError(
      PeerRefusal.ReceiverIncarnation,
      `message for incarnation ${req.toIncarnation} of node ${inbox.selfId} (group ${self.groupId}) reached incarnation ${self.incarnation}: ` +
        `this node's data dir was created anew, so it no longer holds what the group's member ${inbox.selfId} held; ` +
        `remove node ${inbox.selfId} from the group and add it again`,
    );
  }
}

/**
 * Checks that a vote is asked by the incarnation of the candidate that this node's membership
 * records. A node whose data dir was created anew may learn an old configuration (from a snapshot
 * of a leader that has not compacted past it) in which its id is still a voter; elected by members
 * that still hold that configuration, it would lead as the member it was, without its data. (The
 * other requests are not checked by sender: a follower that lags behind the re-add of its new
 * leader must still take that leader's appends, and its log decides nothing there.)
 */
function checkCandidate(inbox: PeerInbox, req: RequestVoteReq): void {
  const recorded = inbox.incarnationOf(req.candidateId);
  if (recorded === undefined || recorded === req.fromIncarnation) return;
  throw new PeerRequestError(
    PeerRefusal.CandidateIncarnation,
    `vote asked by incarnation ${req.fromIncarnation} of node ${req.candidateId}, which the membership of node ${inbox.selfId} records as incarnation ${recorded}: ` +
      `a node whose data dir was created anew is not elected as the member it was; remove node ${req.candidateId} from the group and add it again`,
  );
}

/** Runs `work` on a request; a refusal is reported to the node and becomes the error status. */
async function checked<T>(inbox: PeerInbox, from: number, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof PeerRequestError) inbox.refused(err.reason, from, err.message);
    else if (err instanceof InvalidArgumentError) {
      inbox.refused(PeerRefusal.Invalid, from, err.message);
    }
    throw err;
  }
}

/**
 * A refusal (the request fails a check) is answered with its status; anything else (the node is
 * not started or stopping, storage failed) UNAVAILABLE, which the sender retries.
 */
function statusOf(err: unknown): grpc.StatusObject {
  const metadata = new grpc.Metadata();
  if (err instanceof PeerRequestError || err instanceof InvalidArgumentError) {
    return { code: err.status, details: err.message, metadata };
  }
  return { code: grpc.status.UNAVAILABLE, details: (err as Error).message, metadata };
}

function handle<Req, Resp>(
  work: (req: Req, call: PeerCall) => Promise<Resp>,
): (call: grpc.ServerUnaryCall<Req, Resp>, callback: grpc.sendUnaryData<Resp>) => void {
  return (call, callback) => {
    // Through a promise, so that a synchronous throw becomes an error reply too.
    Promise.resolve(call.request)
      .then((req) => work(req, call))
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
  authenticate: PeerAuthenticator | undefined,
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
      const answer = checked(inbox, req.leaderId, async () => {
        checkSender(authenticate, call, req.groupId, req.leaderId);
        checkIdentity(inbox, req);
        const m = appendRequestFromWire(req);
        return appendResponseToWire(await inbox.receive({ kind: 'request', message: m }));
      });
      // Its failure is handled in turn below; until the answers before it are written, it must
      // not count as an unhandled rejection (a node refusing appends while it stops).
      answer.catch(() => undefined);
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

/**
 * The peer RPCs of a node. With `authenticate`, each request's claimed sender (candidate,
 * leader, asker) must be who the call's peer certificate names, checked before anything else.
 */
export function peerServiceHandlers(
  inbox: PeerInbox,
  authenticate?: PeerAuthenticator,
): PeerServiceHandlers {
  return {
    appendEntriesStream: appendEntriesStream(inbox, authenticate),
    requestVote: handle<RequestVoteReq, RequestVoteResp>((req, call) =>
      checked(inbox, req.candidateId, async () => {
        checkSender(authenticate, call, req.groupId, req.candidateId);
        checkIdentity(inbox, req);
        checkCandidate(inbox, req);
        const m = voteRequestFromWire(req);
        return voteResponseToWire(await inbox.receive({ kind: 'request', message: m }), req);
      }),
    ),
    appendEntries: handle<AppendEntriesReq, AppendEntriesResp>((req, call) =>
      checked(inbox, req.leaderId, async () => {
        checkSender(authenticate, call, req.groupId, req.leaderId);
        checkIdentity(inbox, req);
        const m = appendRequestFromWire(req);
        return appendResponseToWire(await inbox.receive({ kind: 'request', message: m }));
      }),
    ),
    snapshot: handle<SnapshotReq, SnapshotResp>((req, call) =>
      checked(inbox, req.leaderId, async () => {
        checkSender(authenticate, call, req.groupId, req.leaderId);
        checkIdentity(inbox, req);
        const block = snapshotBlockFromWire(req);
        const reply = await inbox.receive({ kind: 'snapshot-block', block });
        return snapshotReplyToWire(reply, req.messageToken);
      }),
    ),
    timeoutNow: handle<TimeoutNowReq, TimeoutNowResp>((req, call) =>
      checked(inbox, req.leaderId, async () => {
        checkSender(authenticate, call, req.groupId, req.leaderId);
        checkIdentity(inbox, req);
        await inbox.receive({ kind: 'one-way', message: timeoutNowFromWire(req) });
        return { term: req.term };
      }),
    ),
    identify: handle<IdentifyReq, IdentifyResp>((req, call) =>
      checked(inbox, req.fromId, () => {
        checkSender(authenticate, call, req.groupId, req.fromId);
        checkAddress(inbox, req);
        return Promise.resolve(inbox.identify(req));
      }),
    ),
  };
}

/**
 * A PeerInbox whose node is set later: for a gRPC server bound before its RaftServer exists (so
 * that a group's members can learn each other's ports first), or kept across restarts of the
 * node. Until a node is set, every request is answered UNAVAILABLE.
 */
export class DeferredPeerInbox implements PeerInbox {
  target: PeerInbox | null = null;

  private node(): PeerInbox {
    if (this.target === null) throw new Error('the node is not started yet');
    return this.target;
  }

  get selfId(): NodeId {
    return this.node().selfId;
  }

  get identity(): PeerIdentity {
    return this.node().identity;
  }

  receive<I extends PeerInput>(input: I): Promise<PeerAnswer<I>> {
    return this.node().receive(input);
  }

  identify(req: IdentifyReq): IdentifyResp {
    return this.node().identify(req);
  }

  incarnationOf(id: NodeId): number | undefined {
    return this.node().incarnationOf(id);
  }

  refused(reason: PeerRefusal, from: NodeId, detail: string): void {
    this.target?.refused(reason, from, detail);
  }
}
