// Raft metrics with etcd's names under our prefix (DESIGN.md section 8), on an injected
// prom-client registry so that several nodes can live in one process. Every series carries
// group_id and node_id.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { NodeId } from '@eraftkv/raft';

/** What the gauges read at scrape time. */
export interface RaftMetricsSource {
  hasLeader(): boolean;
  isLeader(): boolean;
  term(): number;
  commitIndex(): number;
  appliedIndex(): number;
  pendingProposals(): number;
}

const exponential = (start: number, factor: number, count: number): number[] =>
  Array.from({ length: count }, (_, i) => start * factor ** i);

export class RaftMetrics {
  readonly leaderChanges: Counter;
  readonly proposalsCommitted: Counter;
  readonly proposalsApplied: Counter;
  readonly proposalsFailed: Counter;
  readonly fsyncDuration: Histogram;
  readonly applyDuration: Histogram;
  readonly snapshotSend: Counter;
  readonly snapshotInstallDuration: Histogram;
  readonly peerRoundTrip: Histogram;
  readonly peerSentFailures: Counter;
  readonly peerSentRefused: Counter;
  readonly peerReceivedRefused: Counter;
  private readonly labels: { group_id: string; node_id: string };

  constructor(registry: Registry, groupId: number, nodeId: NodeId, source: RaftMetricsSource) {
    const labels = { group_id: String(groupId), node_id: String(nodeId) };
    this.labels = labels;
    const labelNames = ['group_id', 'node_id'] as const;
    const registers = [registry];
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.set(labels, read());
        },
      });
    };
    gauge(
      'eraftkv_server_has_leader',
      'Whether this node knows a leader of its group (1) or not (0).',
      () => (source.hasLeader() ? 1 : 0),
    );
    gauge('eraftkv_server_is_leader', 'Whether this node is the leader of its group.', () =>
      source.isLeader() ? 1 : 0,
    );
    gauge('eraftkv_server_term', 'The current Raft term of this node.', () => source.term());
    gauge('eraftkv_server_commit_index', 'The highest log index known to be committed.', () =>
      source.commitIndex(),
    );
    gauge(
      'eraftkv_server_applied_index',
      'The highest log index applied to the state machine.',
      () => source.appliedIndex(),
    );
    gauge('eraftkv_server_proposals_pending', 'Proposals accepted but not yet applied.', () =>
      source.pendingProposals(),
    );
    this.leaderChanges = new Counter({
      name: 'eraftkv_server_leader_changes_seen_total',
      help: 'The number of leader changes this node has seen.',
      labelNames,
      registers,
    });
    this.proposalsCommitted = new Counter({
      name: 'eraftkv_server_proposals_committed_total',
      help: 'Log entries committed (seen by this node).',
      labelNames,
      registers,
    });
    this.proposalsApplied = new Counter({
      name: 'eraftkv_server_proposals_applied_total',
      help: 'Log entries applied to the state machine.',
      labelNames,
      registers,
    });
    this.proposalsFailed = new Counter({
      name: 'eraftkv_server_proposals_failed_total',
      help: 'Proposals that failed (refused, dropped by a leader change, or lost to a stop).',
      labelNames,
      registers,
    });
    this.fsyncDuration = new Histogram({
      name: 'eraftkv_disk_log_fsync_duration_seconds',
      help: 'The latency of synced log writes (one per Ready with entries or a vote).',
      labelNames,
      registers,
      buckets: exponential(0.0005, 2, 14),
    });
    this.applyDuration = new Histogram({
      name: 'eraftkv_server_apply_duration_seconds',
      help: 'The latency of applying one batch of committed entries.',
      labelNames,
      registers,
      buckets: exponential(0.0001, 2, 16),
    });
    this.snapshotSend = new Counter({
      name: 'eraftkv_snapshot_send_total',
      help: 'Snapshot transfers to followers, by outcome.',
      labelNames: ['group_id', 'node_id', 'outcome'],
      registers,
    });
    this.snapshotInstallDuration = new Histogram({
      name: 'eraftkv_snapshot_install_duration_seconds',
      help: 'The time to install a snapshot received from the leader.',
      labelNames,
      registers,
      buckets: exponential(0.01, 2, 14),
    });
    this.peerRoundTrip = new Histogram({
      name: 'eraftkv_network_peer_round_trip_time_seconds',
      help: 'Round-trip time of heartbeats to each peer.',
      labelNames: ['group_id', 'node_id', 'to'],
      registers,
      buckets: exponential(0.0001, 2, 16),
    });
    this.peerSentFailures = new Counter({
      name: 'eraftkv_network_peer_sent_failures_total',
      help: 'Peer RPCs that failed, by peer.',
      labelNames: ['group_id', 'node_id', 'to'],
      registers,
    });
    this.peerSentRefused = new Counter({
      name: 'eraftkv_network_peer_sent_refused_total',
      help: 'Peer requests that the peer refused on principle (another incarnation, group or cluster, or a field out of range), by peer.',
      labelNames: ['group_id', 'node_id', 'to'],
      registers,
    });
    this.peerReceivedRefused = new Counter({
      name: 'eraftkv_network_peer_received_refused_total',
      help: 'Peer messages this node refused, by reason: invalid (a field out of range), misaddressed, unauthenticated (no trusted peer certificate), impersonation (a certificate naming another member), receiver-incarnation (for another incarnation of this node), term-jump, lost-entries (this node lost acknowledged entries), peer-lost-entries, contradiction (impossible in a correct group).',
      labelNames: ['group_id', 'node_id', 'reason'],
      registers,
    });
  }

  get base(): { group_id: string; node_id: string } {
    return this.labels;
  }

  peer(to: NodeId): { group_id: string; node_id: string; to: string } {
    return { ...this.labels, to: String(to) };
  }
}
