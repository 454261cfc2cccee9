// The client's cached view of the cluster: which group owns each slot, and the servers of every
// group. Built from a ShardsQuery answer; replaced whenever a server says WRONG_SHARD.
import { slotOfKey, SlotStatus, type ClusterConfigChangeResp } from '@eraftkv/protocol';

export interface GroupInfo {
  readonly id: number;
  readonly servers: readonly { id: number; address: string }[];
  /** Slot ids owned by the group, ascending. */
  readonly slots: readonly number[];
  /** Slots currently being moved away (frozen). */
  readonly migratingSlots: readonly number[];
  /** The same slots by the group each moves to, targets ascending. */
  readonly migratingTo: readonly { readonly target: number; readonly slots: readonly number[] }[];
}

export class Topology {
  readonly version: number;
  readonly slotCount: number;
  /** The meta group (id 0) and every kv group, by id. */
  readonly groups: ReadonlyMap<number, GroupInfo>;
  private readonly owner: Int32Array;

  constructor(resp: ClusterConfigChangeResp) {
    this.version = resp.configVersion;
    this.slotCount = resp.slotCount;
    this.owner = new Int32Array(Math.max(0, resp.slotCount));
    const groups = new Map<number, GroupInfo>();
    for (const g of resp.shardGroup) {
      const slots = g.slots.map((s) => s.id).sort((a, b) => a - b);
      for (const slot of slots) if (slot >= 0 && slot < this.owner.length) this.owner[slot] = g.id;
      groups.set(g.id, {
        id: g.id,
        servers: g.servers.map((s) => ({ id: s.id, address: s.address })),
        slots,
        migratingSlots: g.slots
          .filter((s) => s.slotStatus === SlotStatus.Migrating)
          .map((s) => s.id),
        migratingTo: movesOf(g.slots),
      });
    }
    this.groups = groups;
  }

  initialized(): boolean {
    return this.slotCount > 0;
  }

  slotOf(key: Uint8Array): number {
    return slotOfKey(key, this.slotCount);
  }

  /** The group that owns `key`'s slot, or 0 when no group owns it. */
  groupOf(key: Uint8Array): number {
    return this.owner[this.slotOf(key)];
  }

  /** The kv groups (without the meta group), ascending by id. */
  dataGroups(): GroupInfo[] {
    return [...this.groups.values()].filter((g) => g.id !== 0).sort((a, b) => a.id - b.id);
  }
}

/** A group's Migrating slots by target, targets and slots ascending. */
function movesOf(
  slots: readonly { id: number; slotStatus: SlotStatus; targetShardId: number }[],
): { target: number; slots: number[] }[] {
  const byTarget = new Map<number, number[]>();
  for (const s of slots) {
    if (s.slotStatus !== SlotStatus.Migrating) continue;
    byTarget.set(s.targetShardId, [...(byTarget.get(s.targetShardId) ?? []), s.id]);
  }
  return [...byTarget]
    .sort(([a], [b]) => a - b)
    .map(([target, ids]) => ({ target, slots: ids.sort((a, b) => a - b) }));
}
