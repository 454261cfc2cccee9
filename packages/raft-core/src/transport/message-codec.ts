// Conversion between the core's one Message type and the ERaftKv wire messages. Requests carry
// the group and cluster id and the receiver's id; responses ride back as the RPC's reply.
import {
  assertSafeIndex,
  type AppendEntriesReq,
  type AppendEntriesResp,
  type Entry as WireEntry,
  type RequestVoteReq,
  type RequestVoteResp,
  type TimeoutNowReq,
} from '@eraftkv/protocol';
import { EntryType, message, MessageType, type Entry, type Message, type NodeId } from '../core';

/** Who is talking: stamped on every request, checked on every received one. */
export interface PeerIdentity {
  readonly groupId: number;
  readonly clusterId: string;
}

/** A Buffer view of bytes, without copying (the generated code wants Buffers). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
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

export function entryFromWire(e: WireEntry): Entry {
  // The wire enum and the core's share their numbers; anything else is refused.
  const wireType: number = e.eType;
  if (!Number.isInteger(wireType) || EntryType[wireType] === undefined) {
    throw new RangeError(`unknown entry type ${wireType}`);
  }
  if (e.dataSize !== e.data.length) {
    throw new RangeError(`entry ${e.id}: data_size ${e.dataSize} but ${e.data.length} bytes`);
  }
  return {
    index: assertSafeIndex(e.id, 'entry id'),
    term: assertSafeIndex(e.term, 'entry term'),
    type: wireType,
    data: e.data,
  };
}

export function voteRequestToWire(m: Message, id: PeerIdentity): RequestVoteReq {
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
  };
}

export function voteRequestFromWire(r: RequestVoteReq): Message {
  return message({
    type: r.prevote ? MessageType.PreVote : MessageType.Vote,
    from: r.candidateId,
    to: r.toId,
    term: r.term,
    index: r.lastLogIdx,
    logTerm: r.lastLogTerm,
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
    term: r.term,
    reject: !r.voteGranted,
  });
}

export function appendRequestToWire(m: Message, id: PeerIdentity): AppendEntriesReq {
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
  };
}

export function appendRequestFromWire(r: AppendEntriesReq): Message {
  return message({
    type: r.isHeartbeat ? MessageType.Heartbeat : MessageType.Append,
    from: r.leaderId,
    to: r.toId,
    term: r.term,
    index: r.prevLogIndex,
    logTerm: r.prevLogTerm,
    commit: r.leaderCommit,
    context: r.messageIndex,
    entries: r.entries.map(entryFromWire),
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
    term: r.term,
    reject: !r.success,
    index: r.currentIndex,
    rejectHint: r.conflictIndex,
    logTerm: r.conflictTerm,
    context: r.messageIndex,
  });
}

export function timeoutNowToWire(m: Message, id: PeerIdentity): TimeoutNowReq {
  return {
    term: m.term,
    leaderId: m.from,
    groupId: id.groupId,
    clusterId: id.clusterId,
    toId: m.to,
  };
}

export function timeoutNowFromWire(r: TimeoutNowReq): Message {
  return message({ type: MessageType.TimeoutNow, from: r.leaderId, to: r.toId, term: r.term });
}
