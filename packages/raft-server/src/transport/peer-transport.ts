// Outbound peer traffic over grpc-js: one pair of channels per peer (replication, and control for
// heartbeats, votes and TimeoutNow, so that a large append never delays a heartbeat), appends
// pipelined over one AppendEntriesStream per channel, per-request deadlines, short reconnect backoff, a maximum message size. Replies come back as core messages
// through onResponse; failures are reported to the core as unreachable peers, never retried in a
// tight loop (the core decides when to send again).
import * as grpc from '@grpc/grpc-js';
import {
  grpcChannelOptions,
  ERaftKvWireClient,
  type AppendEntriesReq,
  type AppendEntriesResp,
  type IdentifyReq,
  type IdentifyResp,
  type RequestVoteReq,
  type RequestVoteResp,
  type SnapshotReq,
  type SnapshotResp,
  type TimeoutNowReq,
  type TimeoutNowResp,
} from '@eraftkv/protocol';
import { AppendStream } from './append-stream';
import { message, MessageType, type Membership, type Message, type NodeId } from '@eraftkv/raft';
import { InvalidArgumentError } from '../errors';
import type { SnapshotFile, SnapshotStore } from '../snapshot';
import { snapshotBlockToWire } from '../snapshot/snapshot-coordinator';
import {
  appendRequestToWire,
  appendResponseFromWire,
  checkPeerNumber,
  timeoutNowToWire,
  voteRequestToWire,
  voteResponseFromWire,
  type PeerIdentity,
} from './message-codec';

/** The RPCs this node makes to one peer. The default uses grpc-js; tests may wrap it. */
export interface PeerRpc {
  requestVote(req: RequestVoteReq, deadlineMs: number): Promise<RequestVoteResp>;
  appendEntries(
    req: AppendEntriesReq,
    deadlineMs: number,
    control: boolean,
  ): Promise<AppendEntriesResp>;
  snapshot(req: SnapshotReq, deadlineMs: number): Promise<SnapshotResp>;
  timeoutNow(req: TimeoutNowReq, deadlineMs: number): Promise<TimeoutNowResp>;
  identify(req: IdentifyReq, deadlineMs: number): Promise<IdentifyResp>;
  close(): void;
}

export interface PeerTransportOptions {
  readonly selfId: NodeId;
  readonly identity: PeerIdentity;
  /** The largest gRPC message sent or received (appends are sized below it). */
  readonly messageBytesMax: number;
  /** Deadline of an append or snapshot block. */
  readonly rpcTimeoutMs: number;
  /** Deadline of heartbeats, votes and TimeoutNow (about an election timeout). */
  readonly controlTimeoutMs: number;
  readonly snapshotBlockBytesMax: number;
  /** Attempts to resume a broken snapshot transfer before giving it up. */
  readonly snapshotRetriesMax: number;
  readonly snapshotStore: SnapshotStore;
  /** A reply to one of our requests, as a core message to step. */
  readonly onResponse: (m: Message) => void;
  readonly onUnreachable: (id: NodeId) => void;
  /** A snapshot transfer finished (ok) or was abandoned. */
  readonly onSnapshotDone: (id: NodeId, ok: boolean) => void;
  /**
   * A peer refused a request (FAILED_PRECONDITION or INVALID_ARGUMENT: another incarnation, group
   * or cluster, or a field it found out of range) or answered with a reply that fails the checks.
   */
  readonly onPeerRefusal?: (id: NodeId, detail: string) => void;
  /** Observes each RPC: its kind, the peer, seconds taken and whether it failed. */
  readonly observe?: (kind: string, to: NodeId, seconds: number, failed: boolean) => void;
  /** Addresses to dial instead of the advertised ones, by peer id. */
  readonly peerRoutes?: ReadonlyMap<NodeId, string>;
  /** Builds the RPC endpoint for a peer (default: grpc-js clients). */
  readonly createPeerRpc?: (address: string, options: PeerTransportOptions) => PeerRpc;
  /** What the default grpc-js clients dial with (default: plaintext). */
  readonly credentials?: grpc.ChannelCredentials;
}

function unary<Req, Resp>(
  call: (
    req: Req,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: (err: grpc.ServiceError | null, resp: Resp) => void,
  ) => grpc.ClientUnaryCall,
  req: Req,
  deadlineMs: number,
): Promise<Resp> {
  return new Promise((resolve, reject) => {
    call(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, resp) =>
      err ? reject(err) : resolve(resp),
    );
  });
}

/** grpc-js clients for one peer: a replication channel and a separate control channel. */
export function createGrpcPeerRpc(address: string, options: PeerTransportOptions): PeerRpc {
  const channelOptions: grpc.ChannelOptions = {
    ...grpcChannelOptions(options.messageBytesMax),
    // Peer-specific: a peer's channels stay open for the node's whole life, mostly idle on the
    // control channel, and a connection that died silently (a peer that froze, a middlebox that
    // dropped it) must be noticed within seconds, before the next election timeout matters. Calls
    // from clients and from servers into other groups are short-lived and do without pings.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
  };
  const credentials = options.credentials ?? grpc.credentials.createInsecure();
  const replication = new ERaftKvWireClient(address, credentials, channelOptions);
  // A channel of its own (not shared from the global subchannel pool): its own TCP connection.
  const control = new ERaftKvWireClient(address, credentials, {
    ...channelOptions,
    'grpc.use_local_subchannel_pool': 1,
  });
  const replicationAppends = new AppendStream(replication);
  const controlAppends = new AppendStream(control);
  return {
    requestVote: (req, deadlineMs) => unary(control.requestVote.bind(control), req, deadlineMs),
    appendEntries: (req, deadlineMs, onControl) =>
      (onControl ? controlAppends : replicationAppends).send(req, deadlineMs),
    snapshot: (req, deadlineMs) => unary(replication.snapshot.bind(replication), req, deadlineMs),
    timeoutNow: (req, deadlineMs) => unary(control.timeoutNow.bind(control), req, deadlineMs),
    identify: (req, deadlineMs) => unary(control.identify.bind(control), req, deadlineMs),
    close: () => {
      replicationAppends.close();
      controlAppends.close();
      replication.close();
      control.close();
    },
  };
}

interface Peer {
  readonly id: NodeId;
  readonly address: string;
  /** The incarnation the membership records for the peer; stamped on every request to it. */
  incarnation: number;
  rpc: PeerRpc;
  snapshotInFlight: boolean;
  /** RPCs that failed in a row (reset by any success). */
  failuresInARow: number;
}

/**
 * After this many failed RPCs in a row, a peer's channels are closed and opened anew: a connection
 * that went silently dead (a middlebox, a peer resumed after a long pause) is not trusted to heal
 * itself through keepalives.
 */
const reconnectAfterFailures = 20;

export class PeerTransport {
  private readonly peers = new Map<NodeId, Peer>();
  private closed = false;

  constructor(private readonly options: PeerTransportOptions) {}

  /** Follows membership: connects to new members, disconnects from removed ones. */
  setPeers(membership: Membership): void {
    const wanted = new Map(
      membership
        .filter((m) => m.id !== this.options.selfId)
        .map((m) => [m.id, { address: this.route(m.id, m.address), incarnation: m.incarnation }]),
    );
    for (const [id, peer] of this.peers) {
      if (wanted.get(id)?.address !== peer.address) {
        peer.rpc.close();
        this.peers.delete(id);
      }
    }
    for (const [id, { address, incarnation }] of wanted) {
      const existing = this.peers.get(id);
      if (existing !== undefined) {
        existing.incarnation = incarnation;
        continue;
      }
      if (address === '') continue;
      const create = this.options.createPeerRpc ?? createGrpcPeerRpc;
      this.peers.set(id, {
        id,
        address,
        incarnation,
        rpc: create(address, this.options),
        snapshotInFlight: false,
        failuresInARow: 0,
      });
    }
  }

  /** The address to dial for node `id`: its route (a proxy) if one is set, else `address`. */
  private route(id: NodeId, address: string): string {
    return this.options.peerRoutes?.get(id) ?? address;
  }

  /**
   * Asks the node expected at `address` who it is (the Identify RPC), through its route if one is
   * set. Used before bootstrapping a group and before adding a node.
   */
  async identify(
    nodeId: NodeId,
    address: string,
    req: IdentifyReq,
    deadlineMs: number,
  ): Promise<IdentifyResp> {
    const target = this.route(nodeId, address);
    const member = this.peers.get(nodeId);
    if (member !== undefined && member.address === target) {
      return member.rpc.identify(req, deadlineMs);
    }
    const rpc = (this.options.createPeerRpc ?? createGrpcPeerRpc)(target, this.options);
    try {
      return await rpc.identify(req, deadlineMs);
    } finally {
      rpc.close();
    }
  }

  addressOf(id: NodeId): string | undefined {
    return this.peers.get(id)?.address;
  }

  /** Sends a request message of the core (responses to peers travel as RPC replies instead). */
  send(m: Message): void {
    if (this.closed) return;
    const peer = this.peers.get(m.to);
    if (peer === undefined) {
      this.options.onUnreachable(m.to);
      return;
    }
    const o = this.options;
    const started = process.hrtime.bigint();
    const done = (kind: string, err: unknown): void => {
      o.observe?.(kind, m.to, Number(process.hrtime.bigint() - started) / 1e9, err !== null);
      this.countOutcome(peer, err !== null);
      if (err !== null) this.reportRefusal(m.to, err);
    };
    switch (m.type) {
      case MessageType.Vote:
      case MessageType.PreVote:
        peer.rpc
          .requestVote(voteRequestToWire(m, o.identity, peer.incarnation), o.controlTimeoutMs)
          .then(
            (resp) => {
              done('vote', null);
              this.deliver(m.to, () => voteResponseFromWire(resp, m.to, o.selfId));
            },
            (err: unknown) => done('vote', err),
          );
        return;
      case MessageType.Append:
      case MessageType.Heartbeat: {
        const heartbeat = m.type === MessageType.Heartbeat;
        const kind = heartbeat ? 'heartbeat' : 'append';
        const deadline = heartbeat ? o.controlTimeoutMs : o.rpcTimeoutMs;
        peer.rpc
          .appendEntries(appendRequestToWire(m, o.identity, peer.incarnation), deadline, heartbeat)
          .then(
            (resp) => {
              done(kind, null);
              this.deliver(m.to, () => appendResponseFromWire(resp, m.to, o.selfId));
            },
            (err: unknown) => {
              done(kind, err);
              if (!this.closed) o.onUnreachable(m.to);
            },
          );
        return;
      }
      case MessageType.TimeoutNow:
        peer.rpc
          .timeoutNow(timeoutNowToWire(m, o.identity, peer.incarnation), o.controlTimeoutMs)
          .then(
            () => done('timeout-now', null),
            (err: unknown) => done('timeout-now', err),
          );
        return;
      case MessageType.Snapshot:
        // Sent with sendSnapshot, which needs the file.
        return;
      case MessageType.VoteResponse:
      case MessageType.PreVoteResponse:
      case MessageType.AppendResponse:
      case MessageType.HeartbeatResponse:
        // Responses ride back on the reply of the request they answer.
        return;
    }
  }

  private countOutcome(peer: Peer, failed: boolean): void {
    if (!failed) {
      peer.failuresInARow = 0;
      return;
    }
    if (++peer.failuresInARow < reconnectAfterFailures || this.closed) return;
    peer.failuresInARow = 0;
    if (this.peers.get(peer.id) !== peer) return;
    peer.rpc.close();
    peer.rpc = (this.options.createPeerRpc ?? createGrpcPeerRpc)(peer.address, this.options);
  }

  /** Steps a peer's reply, unless it fails the checks (then it is reported and dropped). */
  private deliver(from: NodeId, decode: () => Message | null): void {
    if (this.closed) return;
    let m: Message | null;
    try {
      m = decode();
    } catch (err) {
      if (!(err instanceof InvalidArgumentError)) throw err;
      this.options.onPeerRefusal?.(from, `invalid reply: ${err.message}`);
      return;
    }
    if (m !== null) this.options.onResponse(m);
  }

  /** A peer that refused a request on principle (not a network failure) is reported. */
  private reportRefusal(to: NodeId, err: unknown): void {
    const code = (err as Partial<grpc.ServiceError> | null)?.code;
    if (code !== grpc.status.FAILED_PRECONDITION && code !== grpc.status.INVALID_ARGUMENT) return;
    if (this.closed) return;
    this.options.onPeerRefusal?.(to, (err as grpc.ServiceError).details);
  }

  /**
   * Streams a snapshot file to a follower in blocks, resuming from the offset the follower
   * reports after a broken call, and reports the outcome through onSnapshotDone.
   */
  sendSnapshot(m: Message, file: SnapshotFile): void {
    const peer = this.peers.get(m.to);
    if (peer === undefined || peer.snapshotInFlight || this.closed) {
      if (peer === undefined) this.options.onSnapshotDone(m.to, false);
      return;
    }
    peer.snapshotInFlight = true;
    const store = this.options.snapshotStore;
    store.acquire(file);
    void this.streamSnapshot(peer, m, file)
      .then(
        (ok) => ok,
        () => false,
      )
      .then(async (ok) => {
        peer.snapshotInFlight = false;
        await store.release(file);
        if (!this.closed) this.options.onSnapshotDone(m.to, ok);
      });
  }

  private async streamSnapshot(peer: Peer, m: Message, file: SnapshotFile): Promise<boolean> {
    const o = this.options;
    const meta = file.meta;
    const token = `${m.from}-${m.term}-${meta.term}-${meta.index}-${file.crc32.toString(16)}`;
    let offset = 0;
    let failures = 0;
    for (;;) {
      if (this.closed) return false;
      const data = await o.snapshotStore.readBlock(file, offset, o.snapshotBlockBytesMax);
      const req = snapshotBlockToWire(m, file, token, offset, data, o.identity, peer.incarnation);
      const started = process.hrtime.bigint();
      let resp: SnapshotResp;
      try {
        resp = await peer.rpc.snapshot(req, o.rpcTimeoutMs);
        o.observe?.('snapshot', m.to, Number(process.hrtime.bigint() - started) / 1e9, false);
        this.countOutcome(peer, false);
      } catch (err) {
        o.observe?.('snapshot', m.to, Number(process.hrtime.bigint() - started) / 1e9, true);
        this.countOutcome(peer, true);
        this.reportRefusal(m.to, err);
        if (++failures > o.snapshotRetriesMax) return false;
        // Back off a little, then resume: the follower answers with the offset it has.
        await new Promise((resolve) => setTimeout(resolve, 100 * failures));
        continue;
      }
      if (resp.term > m.term) {
        // The follower knows a newer term: this leader is stale; let the core find out.
        this.deliver(m.to, () =>
          message({
            type: MessageType.AppendResponse,
            from: m.to,
            to: m.from,
            term: checkPeerNumber(resp.term, 'snapshot response term'),
          }),
        );
        return false;
      }
      if (!resp.success) return false;
      if (resp.isLastChunk) return true;
      if (resp.offset > file.sizeBytes) return false;
      offset = resp.offset;
    }
  }

  close(): void {
    this.closed = true;
    for (const peer of this.peers.values()) peer.rpc.close();
    this.peers.clear();
  }
}
