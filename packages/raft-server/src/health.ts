// Whether a RaftServer can serve correctly, and why not (/health, grpc.health.v1): what the node
// has learned about itself from its peers (another incarnation addressed, entries it lost, how
// far its group has committed) and from its own failures, judged with its current state.
import { MessageType, noNode, type Message, type NodeId } from '@eraftkv/raft';
import type { HealthReport } from './http-endpoint';

/** The node's state that health is judged on, read when asked. */
export interface HealthInputs {
  readonly stopping: boolean;
  readonly leader: NodeId;
  /** Whether the membership counts this node. */
  readonly member: boolean;
  readonly commit: number;
  readonly applied: number;
}

export class NodeHealth {
  /** Set when a peer addressed another incarnation of this node. */
  private notThisIncarnation: string | null;
  /** Set when this node found it lost entries it had acknowledged. */
  private lostEntries: string | null = null;
  /** The highest commit index a leader has told this node of (how far behind it is). */
  private groupCommitSeen = 0;
  private failure: Error | null = null;

  constructor(
    /** Healthy while applying within this many entries of the group's commit. */
    private readonly applyLagEntriesMax: number,
    notThisIncarnation: string | null,
  ) {
    this.notThisIncarnation = notThisIncarnation;
  }

  /** A peer's request passed the checks; `lastIndex` is the last index of this node's log. */
  stepped(m: Message, lastIndex: number): void {
    // It passed the incarnation check: the group knows this node as this data dir again.
    this.notThisIncarnation = null;
    if (m.type === MessageType.Append && m.commit > this.groupCommitSeen)
      this.groupCommitSeen = m.commit;
    // A leader's heartbeat that this log can honour again clears a lost-data report (a lone
    // forged heartbeat must not leave the node unhealthy for good; a node that really lost
    // entries keeps getting heartbeats it cannot honour).
    if (m.type === MessageType.Heartbeat && m.commit <= lastIndex) this.lostEntries = null;
  }

  /** A leader's snapshot names `index`, which the group has committed. */
  commitSeen(index: number): void {
    if (index > this.groupCommitSeen) this.groupCommitSeen = index;
  }

  notThisIncarnationSays(detail: string): void {
    this.notThisIncarnation = detail;
  }

  lost(reason: string): void {
    this.lostEntries = reason;
  }

  failed(err: Error): void {
    this.failure = err;
  }

  /**
   * It must be running, know a leader, be a member the group counts (not a wiped data dir under
   * an old id, not a log that lost entries), and have applied what its group committed, give or
   * take applyLagEntriesMax.
   */
  report(s: HealthInputs): HealthReport {
    if (this.failure !== null) return { healthy: false, reason: `failed: ${this.failure.message}` };
    if (s.stopping) return { healthy: false, reason: 'not running' };
    if (this.notThisIncarnation !== null) {
      return { healthy: false, reason: `not a member: ${this.notThisIncarnation}` };
    }
    if (this.lostEntries !== null) {
      return {
        healthy: false,
        reason: `lost data: a leader's heartbeat says ${this.lostEntries}; remove this node from its group and add it again`,
      };
    }
    if (s.leader === noNode) return { healthy: false, reason: 'no leader' };
    if (!s.member) {
      return {
        healthy: false,
        reason:
          'not a member of the group: a new node waits to be added and to receive the group state from the leader',
      };
    }
    const committed = Math.max(s.commit, this.groupCommitSeen);
    if (committed - s.applied > this.applyLagEntriesMax) {
      return {
        healthy: false,
        reason: `catching up: applied ${s.applied}, the group has committed ${committed}`,
      };
    }
    return { healthy: true, reason: `leader ${s.leader}, applied ${s.applied}` };
  }
}
