// The meta server's own metrics, next to RaftServer's eraftkv_server_* on the same registry and
// with the same group_id / node_id labels.
import { Counter, Gauge, type Registry } from 'prom-client';

export class MetaMetrics {
  private readonly slotMoves: Counter<'group_id' | 'node_id' | 'outcome'>;
  private readonly slotsMigrated: Counter<'group_id' | 'node_id'>;
  private readonly keysMigrated: Counter<'group_id' | 'node_id'>;
  private readonly bytesMigrated: Counter<'group_id' | 'node_id'>;
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
  }

  slotMoveSettled(committed: boolean): void {
    this.slotMoves.inc({ ...this.base, outcome: committed ? 'committed' : 'rolled_back' });
  }

  slotsCopied(slots: number, keys: number, bytes: number): void {
    this.slotsMigrated.inc(this.base, slots);
    this.keysMigrated.inc(this.base, keys);
    this.bytesMigrated.inc(this.base, bytes);
  }
}
