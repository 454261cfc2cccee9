// The topology as the wire shows it: ShardGroup records, the meta group first as id 0 (servers =
// meta members, no slots), then every kv group by id with its servers and the slots it owns
// (a Migrating slot with the group it moves to).
import { ServerStatus, type ShardGroup, type Slot } from '@eraftkv/protocol';
import type { Membership } from '@eraftkv/raft';
import type { Topology } from './topology';

/** The meta group's id in the topology. */
export const metaGroupId = 0;

/** One kv group's record as the wire shows it (undefined when the group does not exist). */
export function groupToWire(topology: Topology, groupId: number): ShardGroup | undefined {
  const group = topology.group(groupId);
  if (group === undefined) return undefined;
  return {
    id: group.id,
    servers: group.servers.map((s) => ({
      id: s.id,
      address: s.address,
      serverStatus: ServerStatus.Up,
    })),
    slots: topology.slotsOwnedBy(groupId).map((s) => ({
      id: s.slot,
      slotStatus: s.status,
      statusModifyTime: s.modifiedMs,
      targetShardId: s.move?.target ?? 0,
    })),
    // The meta group does not track kv leaders; clients find them through NOT_LEADER hints.
    leaderId: 0,
  };
}

/**
 * Builds the kv groups once per config version: with 65,536 slots a query would otherwise build
 * that many Slot objects each time a kv leader polls. Keyed by the Topology object, because a
 * restored snapshot replaces it.
 */
const kvGroupsCache = new WeakMap<Topology, { version: number; groups: ShardGroup[] }>();

function kvGroups(topology: Topology): ShardGroup[] {
  const cached = kvGroupsCache.get(topology);
  if (cached !== undefined && cached.version === topology.configVersion) return cached.groups;
  const slotsByOwner = new Map<number, Slot[]>();
  for (const id of topology.groupIds()) slotsByOwner.set(id, []);
  // One pass over the slot table instead of one per group.
  for (let slot = 0; slot < topology.slotCount; slot++) {
    const s = topology.slot(slot);
    if (s.owner === 0) continue;
    slotsByOwner.get(s.owner)?.push({
      id: slot,
      slotStatus: s.status,
      statusModifyTime: s.modifiedMs,
      targetShardId: s.move?.target ?? 0,
    });
  }
  const groups = topology.groupIds().map((id): ShardGroup => {
    const group = topology.group(id);
    return {
      id,
      servers: (group?.servers ?? []).map((s) => ({
        id: s.id,
        address: s.address,
        serverStatus: ServerStatus.Up,
      })),
      slots: slotsByOwner.get(id) ?? [],
      leaderId: 0,
    };
  });
  kvGroupsCache.set(topology, { version: topology.configVersion, groups });
  return groups;
}

/** The whole topology: the meta group (id 0) first, then the kv groups by id. */
export function topologyToWire(
  topology: Topology,
  metaMembers: Membership,
  metaLeaderId: number,
): ShardGroup[] {
  const meta: ShardGroup = {
    id: metaGroupId,
    slots: [],
    servers: metaMembers.map((m) => ({
      id: m.id,
      address: m.address,
      serverStatus: ServerStatus.Up,
    })),
    leaderId: metaLeaderId,
  };
  return [meta, ...kvGroups(topology)];
}
