// Conversion between the core's one Message type and the ERaftKv wire messages, and the data of
// membership entries (protobufMembershipCodec). Requests carry the group and cluster id, the
// receiver's id and both sides' incarnations; responses ride back as the RPC's reply.
//
// Everything that comes from the wire is checked here before it reaches the core: every term,
// index and id against what the core and the log store can hold, and the shape of an append (its
// entries follow its prev index, one after another, with terms that never go down). A message
// that fails is refused with an InvalidArgumentError naming the field; it never reaches the core
// or storage.
import {
  MembershipChange as MembershipChangeProto,
  type AppendEntriesReq,
  type AppendEntriesResp,
  type Entry as WireEntry,
  type Membership as WireMembership,
  type RequestVoteReq,
  type RequestVoteResp,
  type TimeoutNowReq,
} from '@eraftkv/protocol';
import {
  EntryType,
  message,
  MessageType,
  type Entry,
  type Membership,
  type MembershipChangeCodec,
  type Message,
  type NodeId,
} from '@eraftkv/raft';
import { InvalidArgumentError } from '../errors';
import { storedNumberMax } from '../log-store/entry-codec';

/**
 * The largest term, index, node id or incarnation accepted from a peer: what the log store holds
 * (six bytes on disk). Before this check one vote request with a term of 2^48 - 1 made every node
 * that later campaigned crash persisting term + 1, at every restart: the group never came back.
 * (The core also refuses a term far above its own: see RaftConfig.termJumpMax.)
 */
export const peerNumberMax = storedNumberMax;

/** The longest member address accepted from a peer (host:port; DNS names are at most 253). */
export const memberAddressBytesMax = 300;

/** Who is talking: stamped on every request, checked on every received one. */
export interface PeerIdentity {
  readonly groupId: number;
  readonly clusterId: string;
  /** The incarnation of this node's data dir (see node-identity.ts). */
  readonly incarnation: number;
}

/**
 * Returns `value` if it is an integer in [min, peerNumberMax]; otherwise throws an
 * InvalidArgumentError that names the field.
 */
export function checkPeerNumber(value: number, field: string, min = 0): number {
  if (!Number.isSafeInteger(value) || value < min || value > peerNumberMax) {
    throw new InvalidArgumentError(
      `${field} must be an integer from ${min} to 2^48-1, got ${value}`,
    );
  }
  return value;
}

/** A Buffer view of bytes, without copying (the generated code wants Buffers). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function membershipToWire(membership: Membership): WireMembership {
  return {
    members: membership.map((m) => ({
      id: m.id,
      address: m.address,
      learner: m.learner,
      incarnation: m.incarnation,
    })),
  };
}

/** A membership from a peer (a snapshot's) or from storage, checked member by member. */
export function membershipFromWire(wire: WireMembership | undefined, field: string): Membership {
  const members = (wire?.members ?? []).map((m, i) => {
    const where = `${field}.members[${i}]`;
    checkPeerNumber(m.id, `${where}.id`, 1);
    checkPeerNumber(m.incarnation, `${where}.incarnation`);
    if (Buffer.byteLength(m.address) > memberAddressBytesMax) {
      throw new InvalidArgumentError(
        `${where}.address is longer than ${memberAddressBytesMax} bytes`,
      );
    }
    return { id: m.id, address: m.address, learner: m.learner, incarnation: m.incarnation };
  });
  const ids = new Set(members.map((m) => m.id));
  if (ids.size !== members.length) throw new InvalidArgumentError(`${field} names a member twice`);
  return members.sort((a, b) => a.id - b.id);
}

export function entryToWire(e: Entry): WireEntry {
  return {
    term: e.term,
    id: e.index,
    eType: e.type as number,
    dataSize: e.data.length,
    data: asBuffer(e.data),
  };
}

export function entryFromWire(e: WireEntry, field = 'entry'): Entry {
  // The wire enum and the core's share their numbers; anything else is refused.
  const wireType: number = e.eType;
  if (!Number.isInteger(wireType) || EntryType[wireType] === undefined) {
    throw new InvalidArgumentError(`${field}.e_type ${wireType} is not an entry type`);
  }
  if (e.dataSize !== e.data.length) {
    throw new InvalidArgumentError(
      `${field}.data_size is ${e.dataSize} but data has ${e.data.length} bytes`,
    );
  }
  return {
    index: checkPeerNumber(e.id, `${field}.id`, 1),
    term: checkPeerNumber(e.term, `${field}.term`, 1),
    type: wireType,
    data: e.data,
  };
}

export function voteRequestToWire(
  m: Message,
  id: PeerIdentity,
  toIncarnation: number,
): RequestVoteReq {
  return {
    prevote: m.type === MessageType.PreVote,
    term: m.term,
    candidateId: m.from,
    lastLogIdx: m.index,
    lastLogTerm: m.logTerm,
    groupId: id.groupId,
    clusterId: id.clusterId,
    toId: m.to,
    leaderTransfer: m.leaderTransfer,
    fromIncarnation: id.incarnation,
    toIncarnation,
  };
}

export function voteRequestFromWire(r: RequestVoteReq): Message {
  const term = checkPeerNumber(r.term, 'term', 1);
  const lastLogTerm = checkPeerNumber(r.lastLogTerm, 'last_log_term');
  if (lastLogTerm > term) {
    throw new InvalidArgumentError(
      `last_log_term ${lastLogTerm} is above the campaign's term ${term}`,
    );
  }
  return message({
    type: r.prevote ? MessageType.PreVote : MessageType.Vote,
    from: checkPeerNumber(r.candidateId, 'candidate_id', 1),
    to: checkPeerNumber(r.toId, 'to_id', 1),
    term,
    index: checkPeerNumber(r.lastLogIdx, 'last_log_idx'),
    logTerm: lastLogTerm,
    leaderTransfer: r.leaderTransfer,
  });
}

export function voteResponseToWire(m: Message | null, request: RequestVoteReq): RequestVoteResp {
  if (m === null) {
    return {
      prevote: request.prevote,
      requestTerm: request.term,
      term: 0,
      voteGranted: false,
      leaderId: 0,
      dropped: true,
    };
  }
  return {
    prevote: m.type === MessageType.PreVoteResponse,
    requestTerm: request.term,
    term: m.term,
    voteGranted: !m.reject,
    leaderId: 0,
    dropped: false,
  };
}

/** The reply to a vote request as a core message, or null when the voter dropped it. */
export function voteResponseFromWire(r: RequestVoteResp, from: NodeId, to: NodeId): Message | null {
  if (r.dropped) return null;
  return message({
    type: r.prevote ? MessageType.PreVoteResponse : MessageType.VoteResponse,
    from,
    to,
    term: checkPeerNumber(r.term, 'vote response term'),
    reject: !r.voteGranted,
  });
}

export function appendRequestToWire(
  m: Message,
  id: PeerIdentity,
  toIncarnation: number,
): AppendEntriesReq {
  const heartbeat = m.type === MessageType.Heartbeat;
  return {
    leaderId: m.from,
    messageIndex: m.context,
    term: m.term,
    prevLogIndex: m.index,
    prevLogTerm: m.logTerm,
    leaderCommit: m.commit,
    isHeartbeat: heartbeat,
    entries: m.entries.map(entryToWire),
    groupId: id.groupId,
    clusterId: id.clusterId,
    toId: m.to,
    fromIncarnation: id.incarnation,
    toIncarnation,
  };
}

export function appendRequestFromWire(r: AppendEntriesReq): Message {
  const term = checkPeerNumber(r.term, 'term', 1);
  const prevIndex = checkPeerNumber(r.prevLogIndex, 'prev_log_index');
  const prevTerm = checkPeerNumber(r.prevLogTerm, 'prev_log_term');
  if (prevTerm > term) {
    throw new InvalidArgumentError(`prev_log_term ${prevTerm} is above the leader's term ${term}`);
  }
  if (r.isHeartbeat && r.entries.length > 0) {
    throw new InvalidArgumentError(`a heartbeat carries ${r.entries.length} entries`);
  }
  // The entries must continue the log at prev_log_index + 1, one index after another, with terms
  // that never decrease and never exceed the leader's: anything else could only be stored as a log
  // that no leader ever had.
  let previousTerm = prevTerm;
  const entries = r.entries.map((wire, i) => {
    const field = `entries[${i}]`;
    const entry = entryFromWire(wire, field);
    if (entry.index !== prevIndex + 1 + i) {
      throw new InvalidArgumentError(
        `${field}.id is ${entry.index}, expected ${prevIndex + 1 + i}`,
      );
    }
    if (entry.term < previousTerm || entry.term > term) {
      throw new InvalidArgumentError(
        `${field}.term ${entry.term} is outside [${previousTerm}, ${term}] (terms never decrease along a log and never pass the leader's)`,
      );
    }
    previousTerm = entry.term;
    return entry;
  });
  return message({
    type: r.isHeartbeat ? MessageType.Heartbeat : MessageType.Append,
    from: checkPeerNumber(r.leaderId, 'leader_id', 1),
    to: checkPeerNumber(r.toId, 'to_id', 1),
    term,
    index: prevIndex,
    logTerm: prevTerm,
    commit: checkPeerNumber(r.leaderCommit, 'leader_commit'),
    context: checkPeerNumber(r.messageIndex, 'message_index'),
    entries,
  });
}

export function appendResponseToWire(m: Message | null): AppendEntriesResp {
  if (m === null) {
    return {
      messageToken: '',
      term: 0,
      success: false,
      currentIndex: 0,
      conflictIndex: 0,
      conflictTerm: 0,
      messageIndex: 0,
      isHeartbeat: false,
      dropped: true,
    };
  }
  return {
    messageToken: '',
    term: m.term,
    success: !m.reject,
    currentIndex: m.index,
    conflictIndex: m.rejectHint,
    conflictTerm: m.logTerm,
    messageIndex: m.context,
    isHeartbeat: m.type === MessageType.HeartbeatResponse,
    dropped: false,
  };
}

export function appendResponseFromWire(
  r: AppendEntriesResp,
  from: NodeId,
  to: NodeId,
): Message | null {
  if (r.dropped) return null;
  return message({
    type: r.isHeartbeat ? MessageType.HeartbeatResponse : MessageType.AppendResponse,
    from,
    to,
    term: checkPeerNumber(r.term, 'append response term'),
    reject: !r.success,
    index: checkPeerNumber(r.currentIndex, 'append response current_index'),
    rejectHint: checkPeerNumber(r.conflictIndex, 'append response conflict_index'),
    logTerm: checkPeerNumber(r.conflictTerm, 'append response conflict_term'),
    context: checkPeerNumber(r.messageIndex, 'append response message_index'),
  });
}

export function timeoutNowToWire(
  m: Message,
  id: PeerIdentity,
  toIncarnation: number,
): TimeoutNowReq {
  return {
    term: m.term,
    leaderId: m.from,
    groupId: id.groupId,
    clusterId: id.clusterId,
    toId: m.to,
    fromIncarnation: id.incarnation,
    toIncarnation,
  };
}

export function timeoutNowFromWire(r: TimeoutNowReq): Message {
  return message({
    type: MessageType.TimeoutNow,
    from: checkPeerNumber(r.leaderId, 'leader_id', 1),
    to: checkPeerNumber(r.toId, 'to_id', 1),
    term: checkPeerNumber(r.term, 'term', 1),
  });
}

/** The protobuf codec for membership entries: what JOIN/LEAVE entries carry on the wire. */
export const protobufMembershipCodec: MembershipChangeCodec = {
  encode: (change) =>
    MembershipChangeProto.encode({
      nodeId: change.nodeId,
      address: change.address,
      incarnation: change.incarnation,
    }).finish(),
  decode: (data) => {
    const decoded = MembershipChangeProto.decode(data);
    return {
      nodeId: checkPeerNumber(decoded.nodeId, 'membership change node_id', 1),
      address: decoded.address,
      incarnation: checkPeerNumber(decoded.incarnation, 'membership change incarnation'),
    };
  },
};
