// Membership as a function of the log: the configuration is that of the snapshot, changed by each
// membership entry in log order. A change takes effect as soon as its entry is appended (Raft
// thesis 4.1), so a truncated entry takes its change back with it.
import {
  EntryType,
  invariant,
  isMembershipEntry,
  type Entry,
  type Member,
  type Membership,
  type MembershipChange,
  type MembershipChangeCodec,
  type NodeId,
} from './types';

/** The membership after applying one change entry (entries of other types leave it as is). */
export function applyMembershipChange(
  membership: Membership,
  type: EntryType,
  change: MembershipChange,
): Membership {
  const others = membership.filter((m) => m.id !== change.nodeId);
  const existing = membership.find((m) => m.id === change.nodeId);
  let next: Member[];
  switch (type) {
    case EntryType.JoinNoVoteNode:
      next = [
        ...others,
        {
          id: change.nodeId,
          address: change.address,
          learner: true,
          incarnation: change.incarnation,
        },
      ];
      break;
    case EntryType.JoinNode:
      next = [
        ...others,
        {
          id: change.nodeId,
          address: change.address || existing?.address || '',
          learner: false,
          incarnation: change.incarnation || existing?.incarnation || 0,
        },
      ];
      break;
    case EntryType.LeaveNode:
      next = others;
      break;
    case EntryType.Normal:
    case EntryType.NoOp:
      return membership;
  }
  return next.sort((a, b) => a.id - b.id);
}

export function votersOf(membership: Membership): NodeId[] {
  return membership.filter((m) => !m.learner).map((m) => m.id);
}

export function memberOf(membership: Membership, id: NodeId): Member | undefined {
  return membership.find((m) => m.id === id);
}

export function isVoter(membership: Membership, id: NodeId): boolean {
  return memberOf(membership, id)?.learner === false;
}

/** The memberships in effect after each membership entry still in the log, oldest first. */
export class MembershipHistory {
  private points: { index: number; membership: Membership }[];

  constructor(
    private readonly codec: MembershipChangeCodec,
    base: { index: number; membership: Membership },
  ) {
    this.points = [base];
  }

  current(): Membership {
    return this.points[this.points.length - 1].membership;
  }

  /** The index of the last membership entry (or of the base snapshot). */
  lastChangeIndex(): number {
    return this.points[this.points.length - 1].index;
  }

  /** The membership in effect once the log reaches `index`. */
  at(index: number): Membership {
    for (let i = this.points.length - 1; i >= 0; i--) {
      if (this.points[i].index <= index) return this.points[i].membership;
    }
    invariant(false, () => `no membership known at ${index} (base ${this.points[0].index})`);
  }

  /** Records the entries just appended; any change at or after the first of them is undone. */
  appended(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    this.truncateFrom(entries[0].index);
    for (const entry of entries) {
      if (!isMembershipEntry(entry.type)) continue;
      const change = this.codec.decode(entry.data);
      this.points.push({
        index: entry.index,
        membership: applyMembershipChange(this.current(), entry.type, change),
      });
    }
  }

  private truncateFrom(index: number): void {
    while (this.points.length > 1 && this.points[this.points.length - 1].index >= index) {
      this.points.pop();
    }
    invariant(
      this.points[0].index < index,
      () => `truncating at ${index} would drop the base membership at ${this.points[0].index}`,
    );
  }

  /** Restarts the history from a snapshot. */
  restore(index: number, membership: Membership): void {
    this.points = [{ index, membership }];
  }
}
