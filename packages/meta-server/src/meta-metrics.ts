// The meta server's own metrics, next to RaftServer's eraftkv_server_* on the same registry and
// with the same group_id / node_id labels.
import { Counter, Gauge, type Registry } from 'prom-client';

export class MetaMetrics {
  private readonly slotMoves: Counter<'group_id' | 'node_id' | 'outcome'>;
  private readonly base: { group_id: string; node_id: string };

  constructor(
    registry: Registry,
    labels: { groupId: number; nodeId: number },
    read: { configVersion: () => number; slotCount: () => number },
  ) {
    this.base = { group_id: String(labels.groupId), node_id: String(labels.nodeId) };
    const base = this.base;
    new Gauge({
      name: 'eraftkv_meta_config_version',
      help: 'The topology config version this node has applied.',
      labelNames: ['group_id', 'node_id'],
      registers: [registry],
      collect() {
        this.set(base, read.configVersion());
      },
    });
    new Gauge({
      name: 'eraftkv_meta_slots',
      help: 'The number of slots the cluster was initialized with (0 before ClusterInit).',
      labelNames: ['group_id', 'node_id'],
      registers: [registry],
      collect() {
        this.set(base, read.slotCount());
      },
    });
    this.slotMoves = new Counter({
      name: 'eraftkv_meta_slot_moves_total',
      help: 'Slot moves this node finished as meta leader, by outcome (committed or rolled_back).',
      labelNames: ['group_id', 'node_id', 'outcome'],
      registers: [registry],
    });
  }

  slotMoveSettled(committed: boolean): void {
    this.slotMoves.inc({ ...this.base, outcome: committed ? 'committed' : 'rolled_back' });
  }
}
