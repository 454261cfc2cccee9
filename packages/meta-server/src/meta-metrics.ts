// The meta server's own metrics, next to RaftServer's eraftkv_server_* on the same registry and
// with the same group_id / node_id labels.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export class MetaMetrics {
  private readonly slotMoves: Counter<'group_id' | 'node_id' | 'outcome'>;
  private readonly slotsMigrated: Counter<'group_id' | 'node_id'>;
  private readonly keysMigrated: Counter<'group_id' | 'node_id'>;
  private readonly bytesMigrated: Counter<'group_id' | 'node_id'>;
  private readonly batchSeconds: Histogram<'group_id' | 'node_id' | 'outcome'>;
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
    const counter = (name: string, help: string): Counter<'group_id' | 'node_id'> =>
      new Counter({ name, help, labelNames: ['group_id', 'node_id'], registers: [registry] });
    this.slotsMigrated = counter(
      'eraftkv_meta_slots_migrated_total',
      'Slots holding keys whose keys this node (as meta leader) had copied into a target group.',
    );
    this.keysMigrated = counter(
      'eraftkv_meta_keys_migrated_total',
      'Keys copied into target groups by slot moves this node coordinated.',
    );
    this.bytesMigrated = counter(
      'eraftkv_meta_bytes_migrated_total',
      'Key and value bytes copied into target groups by slot moves this node coordinated.',
    );
    this.batchSeconds = new Histogram({
      name: 'eraftkv_meta_slot_move_batch_seconds',
      help:
        'How long one batch of a slot move took on this node (as meta leader), from freezing its ' +
        'slots in the source to the commit or rollback, by outcome.',
      labelNames: ['group_id', 'node_id', 'outcome'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    });
  }

  slotMoveSettled(committed: boolean, seconds: number): void {
    const outcome = committed ? 'committed' : 'rolled_back';
    this.slotMoves.inc({ ...this.base, outcome });
    this.batchSeconds.observe({ ...this.base, outcome }, seconds);
  }

  slotsCopied(slots: number, keys: number, bytes: number): void {
    this.slotsMigrated.inc(this.base, slots);
    this.keysMigrated.inc(this.base, keys);
    this.bytesMigrated.inc(this.base, bytes);
  }
}
