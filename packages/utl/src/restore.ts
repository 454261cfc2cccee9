// eraftkv-utl snapshot restore: builds the data dirs of a new cluster from a backup (eraftkv-ctl
// snapshot save), as etcdutl snapshot restore does for etcd. Nothing runs: the nodes are started
// afterwards on their data dirs, and they come up as the cluster the backup describes.
//
// 1. Everything is checked before anything is written: the layout, that no data dir exists (or
//    each is empty), the whole backup (every checksum and count), and that the layout has exactly
//    the backup's kv groups.
// 2. The topology the meta group starts from is made by applying, to an empty topology, the
//    commands that would build it (ClusterInit with the backup's slot count, one ShardJoin per kv
//    group with the layout's addresses, one slot assignment per group with the backup's slots),
//    so it passes every invariant the meta group checks; each kv group's config is derived from
//    it as its leader would derive it.
// 3. Each node gets its identity (a new incarnation, the new cluster id), a raft log that starts
//    at its group's first membership (with every member's incarnation), and a snapshot of its
//    state machine's state at that point: the topology, or the group's keys from the backup
//    (raft-server's seed.ts says how a node opens this).
// 4. Everything is built in DIR.restoring next to each data dir and renamed into place only once
//    every node is complete: a failure leaves no data dir behind. Each dir carries a marker
//    (raft-server's restoreMarkerFileName) until every dir is in place, so that a crash among the
//    renames leaves dirs no node starts on, and that the same restore run again replaces.
import { copyFile, mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  configFromTopology,
  SeedStateError,
  writeSeedSnapshot,
  type SeedPair,
} from '@eraftkv/kv-server';
import {
  dedupWindowEntriesDefault,
  groupToWire,
  Topology,
  writeTopologySnapshot,
  type TopologyCommand,
  type TopologyRecords,
} from '@eraftkv/meta-server';
import {
  backupRecords,
  BackupRecordKind,
  ErrorCode,
  readBackup,
  type BackupGroupEnd,
  type BackupHeader,
} from '@eraftkv/protocol';
import type { Membership } from '@eraftkv/raft';
import {
  createNodeIdentity,
  restoreMarkerFileName,
  seedDataDir,
  seedIndex,
} from '@eraftkv/raft-server';
import { layoutGroups, type LayoutNode, type RestoreLayout } from './restore-layout';

/** The restore cannot go ahead: the message says what is wrong and with which file or entry. */
export class RestoreError extends Error {
  override name = 'RestoreError';
}

export interface RestoreOptions {
  readonly backup: string;
  readonly layout: RestoreLayout;
  /** Where the layout came from (named in errors). */
  readonly layoutPath: string;
  readonly clusterId: string;
  /** Progress lines (at most a few per second). */
  readonly progress?: (line: string) => void;
  /** The clock stamped on the slots' status_modify_time. */
  readonly nowMs?: () => number;
}

export interface RestoredGroup {
  readonly group: number;
  readonly keys: number;
  readonly bytes: number;
  readonly nodes: number;
}

export interface RestoreSummary {
  readonly clusterId: string;
  /** The cluster id recorded in the backup. */
  readonly backupClusterId: string;
  readonly slotCount: number;
  readonly configVersion: number;
  readonly groups: readonly RestoredGroup[];
  readonly keys: number;
  /** Bytes of keys and values restored (once, not per replica). */
  readonly bytes: number;
  readonly backupBytes: number;
  readonly seconds: number;
  readonly nodes: readonly LayoutNode[];
}

const restoringSuffix = '.restoring';

export async function restoreCluster(o: RestoreOptions): Promise<RestoreSummary> {
  const started = Date.now();
  const say = o.progress ?? ((): void => {});
  const nodes = [...o.layout.meta, ...o.layout.kv];
  await refuseExistingDataDirs(nodes);

  // 1. The whole backup, checked.
  say(`checking ${o.backup}...`);
  let header: BackupHeader | null = null;
  const ends = new Map<number, BackupGroupEnd>();
  await readBackup(o.backup, (record) => {
    if (record.kind === BackupRecordKind.Header) header = record.header;
    if (record.kind === BackupRecordKind.GroupEnd) ends.set(record.end.group, record.end);
  });
  const h = header as BackupHeader | null;
  if (h === null) throw new RestoreError(`${o.backup}: no header`);
  const groups = layoutGroups(o.layout);
  const missing = h.groups.filter((g) => !groups.has(g.id)).map((g) => g.id);
  const extra = [...groups.keys()].filter((id) => !h.groups.some((g) => g.id === id));
  if (missing.length > 0 || extra.length > 0) {
    throw new RestoreError(
      `--layout ${o.layoutPath}: the backup has kv groups ${h.groups.map((g) => g.id).join(', ')}` +
        (missing.length > 0 ? `; the layout has no node for group ${missing.join(', ')}` : '') +
        (extra.length > 0 ? `; the layout's group ${extra.join(', ')} is not in the backup` : '') +
        ' (a restore keeps the slot map: one layout group per backup group, with the same ids)',
    );
  }
  for (const g of h.groups) {
    if (!ends.has(g.id))
      throw new RestoreError(`${o.backup}: holds no data part for group ${g.id}`);
  }

  // 2. The topology, built by its own commands.
  const records = restoredTopology(h, groups, o.nowMs?.() ?? Date.now());
  const topology = Topology.fromRecords(records);

  const workDirs = nodes.map((n) => n.dataDir + restoringSuffix);
  try {
    for (const dir of workDirs) await rm(dir, { recursive: true, force: true });
    // 3a. Identities first: the memberships record every member's incarnation.
    const incarnations = new Map<LayoutNode, number>();
    for (const n of nodes) {
      const identity = await createNodeIdentity(n.dataDir + restoringSuffix, {
        clusterId: o.clusterId,
        kind: n.kind,
        groupId: n.group,
        nodeId: n.id,
      });
      incarnations.set(n, identity.incarnation);
      await writeFile(
        join(n.dataDir + restoringSuffix, restoreMarkerFileName),
        `eraftkv-utl snapshot restore ${o.backup} --layout ${o.layoutPath}, started ${new Date(started).toISOString()}\n`,
      );
    }
    const membershipOf = (members: readonly LayoutNode[]): Membership =>
      [...members]
        .sort((a, b) => a.id - b.id)
        .map((m) => ({
          id: m.id,
          address: m.address,
          learner: false,
          incarnation: incarnations.get(m) ?? 0,
        }));

    // 3b. The meta group.
    const metaMembership = membershipOf(o.layout.meta);
    for (const n of o.layout.meta) {
      await seedDataDir(n.dataDir + restoringSuffix, metaMembership, (path) =>
        writeTopologySnapshot(path, seedIndex, records),
      );
    }
    say(`meta group: ${o.layout.meta.length} nodes`);

    // 3c. Each kv group: its state written once, then copied to every member.
    const restored: RestoredGroup[] = [];
    for (const g of h.groups) {
      const members = groups.get(g.id) ?? [];
      const wire = groupToWire(topology, g.id);
      const config = configFromTopology({
        groupId: g.id,
        version: records.config.configVersion,
        slotCount: records.config.slotCount,
        groups: wire === undefined ? [] : [wire],
      });
      const expected = ends.get(g.id);
      const scratch = join(members[0].dataDir + restoringSuffix, 'restore-state.tmp');
      let counts: { keys: number; bytes: number };
      try {
        counts = await writeSeedSnapshot(
          scratch,
          seedIndex,
          config,
          groupPairs(o.backup, g.id, (keys) =>
            say(`group ${g.id}: ${keys} of ${expected?.keys ?? '?'} keys`),
          ),
        );
      } catch (err) {
        if (err instanceof SeedStateError)
          throw new RestoreError(`${o.backup}: group ${g.id}: ${err.message}`);
        throw err;
      }
      if (counts.keys !== expected?.keys)
        throw new RestoreError(
          `${o.backup}: group ${g.id} holds ${expected?.keys} keys, ${counts.keys} were read`,
        );
      const membership = membershipOf(members);
      for (const n of members) {
        await seedDataDir(n.dataDir + restoringSuffix, membership, (path) =>
          copyFile(scratch, path),
        );
      }
      await rm(scratch, { force: true });
      restored.push({ group: g.id, keys: counts.keys, bytes: counts.bytes, nodes: members.length });
      say(`group ${g.id}: ${counts.keys} keys on ${members.length} nodes`);
    }

    // 4. Into place (what is there is empty or an unfinished restore's), then usable.
    for (const n of nodes) {
      await rm(n.dataDir, { recursive: true, force: true });
      await rename(n.dataDir + restoringSuffix, n.dataDir);
      await syncDir(dirname(n.dataDir));
    }
    for (const n of nodes) {
      await rm(join(n.dataDir, restoreMarkerFileName));
      await syncDir(n.dataDir);
    }
    const backupBytes = (await stat(o.backup)).size;
    return {
      clusterId: o.clusterId,
      backupClusterId: h.clusterId,
      slotCount: records.config.slotCount,
      configVersion: records.config.configVersion,
      groups: restored,
      keys: restored.reduce((n, g) => n + g.keys, 0),
      bytes: restored.reduce((n, g) => n + g.bytes, 0),
      backupBytes,
      seconds: Math.max(0.001, (Date.now() - started) / 1000),
      nodes,
    };
  } catch (err) {
    for (const dir of workDirs) await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Refuses, naming each, data dirs that exist and are not empty (they belong to something). */
async function refuseExistingDataDirs(nodes: readonly LayoutNode[]): Promise<void> {
  const taken: string[] = [];
  for (const n of nodes) {
    try {
      const entries = await readdir(n.dataDir);
      // A dir an unfinished restore left (its marker still there) is replaced.
      if (entries.length > 0 && !entries.includes(restoreMarkerFileName)) taken.push(n.dataDir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') taken.push(n.dataDir);
      else if (code !== 'ENOENT')
        throw new RestoreError(`data dir ${n.dataDir}: ${(err as Error).message}`);
    }
    await mkdir(dirname(n.dataDir), { recursive: true });
  }
  if (taken.length > 0) {
    throw new RestoreError(
      `these data dirs exist and are not empty: ${taken.join(', ')}. A restore builds new data dirs ` +
        'and never writes into one that holds something; move them aside or name others in the layout',
    );
  }
}

/**
 * The meta group's records: an empty topology to which ClusterInit, a ShardJoin per group and
 * each group's slot assignment are applied, so that every invariant holds by construction.
 */
function restoredTopology(
  h: BackupHeader,
  groups: ReadonlyMap<number, readonly LayoutNode[]>,
  nowMs: number,
): TopologyRecords {
  const t = Topology.empty();
  const apply = (command: TopologyCommand): void => {
    const outcome = t.apply(command);
    if (outcome.code !== ErrorCode.OK || outcome.moving.length > 0)
      throw new RestoreError(`cannot build the topology (${command.kind}): ${outcome.message}`);
  };
  apply({
    kind: 'cluster-init',
    slotCount: h.slotCount,
    dedupWindowEntries: dedupWindowEntriesDefault,
    request: null,
  });
  for (const g of h.groups) {
    const servers = (groups.get(g.id) ?? [])
      .map((n) => ({ id: n.id, address: n.address }))
      .sort((a, b) => a.id - b.id);
    apply({ kind: 'shard-join', group: { id: g.id, servers }, request: null });
  }
  for (const g of h.groups) {
    if (g.slots.length > 0)
      apply({ kind: 'slot-move-begin', target: g.id, slots: g.slots, nowMs, request: null });
  }
  return t.toRecords();
}

/**
 * The key-value pairs of group `group` in the backup, read again from the file (checked again on
 * the way), one data record at a time.
 */
async function* groupPairs(
  path: string,
  group: number,
  onProgress: (keys: number) => void,
): AsyncGenerator<readonly SeedPair[]> {
  let keys = 0;
  let shown = 0;
  for await (const [record] of backupRecords(path)) {
    if (record.kind === BackupRecordKind.Data && record.group === group) {
      keys += record.pairs.length;
      if (Date.now() - shown >= 500) {
        shown = Date.now();
        onProgress(keys);
      }
      yield record.pairs;
    }
    if (record.kind === BackupRecordKind.GroupEnd && record.end.group === group) return;
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
