// One-line descriptions of messages, entries and Ready, for logs and test transcripts. Stable
// output: simulation traces are compared byte for byte.
import { MessageType, type Message } from './message';
import type { Ready } from './raw-node';
import { EntryType, type Entry, type HardState, type Membership, type SnapshotMeta } from './types';

const entryTypeNames: Record<EntryType, string> = {
  [EntryType.Normal]: 'normal',
  [EntryType.JoinNoVoteNode]: 'join-learner',
  [EntryType.JoinNode]: 'join',
  [EntryType.LeaveNode]: 'leave',
  [EntryType.NoOp]: 'noop',
};

/** `3/12 normal 5B`: term/index, type, data size. */
export function describeEntry(e: Entry): string {
  return `${e.term}/${e.index} ${entryTypeNames[e.type]} ${e.data.length}B`;
}

export function describeEntries(entries: readonly Entry[]): string {
  if (entries.length <= 4) return `[${entries.map(describeEntry).join(', ')}]`;
  const first = entries[0];
  const last = entries[entries.length - 1];
  return `[${describeEntry(first)} ... ${describeEntry(last)} (${entries.length})]`;
}

export function describeMembership(membership: Membership): string {
  return `{${membership.map((m) => (m.learner ? `${m.id}L` : `${m.id}`)).join(',')}}`;
}

export function describeSnapshot(s: SnapshotMeta): string {
  return `snap ${s.term}/${s.index} ${describeMembership(s.membership)}`;
}

export function describeHardState(h: HardState): string {
  return `term=${h.term} vote=${h.vote} commit=${h.commit}`;
}

/** `1->2 Append term=3 prev=3/10 commit=9 entries=[3/11 normal 5B]`. */
export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case MessageType.Vote:
    case MessageType.PreVote:
      return `${head} last=${m.logTerm}/${m.index}${m.leaderTransfer ? ' transfer' : ''}`;
    case MessageType.VoteResponse:
    case MessageType.PreVoteResponse:
      return `${head} ${m.reject ? 'rejected' : 'granted'}`;
    case MessageType.Append:
      return `${head} prev=${m.logTerm}/${m.index} commit=${m.commit} entries=${describeEntries(m.entries)}`;
    case MessageType.AppendResponse:
      return m.reject
        ? `${head} rejected ${m.index} hint=${m.logTerm}/${m.rejectHint}`
        : `${head} index=${m.index}`;
    case MessageType.Heartbeat:
      return `${head} commit=${m.commit} round=${m.context}`;
    case MessageType.HeartbeatResponse:
      return m.reject
        ? `${head} round=${m.context} rejected (log ends at ${m.index})`
        : `${head} round=${m.context}`;
    case MessageType.Snapshot:
      return `${head} ${m.snapshot ? describeSnapshot(m.snapshot) : 'none'}`;
    case MessageType.TimeoutNow:
      return head;
  }
}

/** A multi-line description of a Ready (only the parts that are present). */
export function describeReady(rd: Ready): string {
  const lines: string[] = [];
  if (rd.softState) lines.push(`soft: ${rd.softState.role} leader=${rd.softState.leader}`);
  if (rd.hardState) lines.push(`hard: ${describeHardState(rd.hardState)}`);
  if (rd.snapshot) lines.push(`install: ${describeSnapshot(rd.snapshot)}`);
  if (rd.entries.length > 0) lines.push(`persist: ${describeEntries(rd.entries)}`);
  if (rd.committedEntries.length > 0) lines.push(`apply: ${describeEntries(rd.committedEntries)}`);
  for (const m of rd.messages) lines.push(`send: ${describeMessage(m)}`);
  for (const r of rd.readStates) lines.push(`read: #${r.requestId} at ${r.index}`);
  for (const r of rd.refused) lines.push(`refused: ${describeMessage(r.message)}: ${r.reason}`);
  if (rd.mustSync) lines.push('sync');
  return lines.join('\n');
}
