// Building a node's data dir outside a running node, as eraftkv-utl snapshot restore does: the
// group starts with a given membership and its state machine at a given state, as if the group
// had been bootstrapped and had then installed a snapshot of that state.
//
// The log is bootstrapped as a new group's is (its snapshot point at index 1, term 1, with the
// membership), and the snapshot store holds a snapshot file at that very point. When the node
// opens the data dir (recovery.ts), its state machine, which has applied nothing, lags the log's
// compaction point, so it is restored from that file: the state goes through the state machine's
// own snapshot reader and its checks, like any snapshot a leader sends.
import { join } from 'node:path';
import type { Membership } from '@eraftkv/raft';
import { LogStore } from './log-store';
import { DataDirError } from './node-identity';
import { SnapshotStore } from './snapshot';
import { openRocksEngine } from './storage-engine';

/** The log position of a seeded state: a bootstrapped group's snapshot point. */
export const seedIndex = 1;
export const seedTerm = 1;

/**
 * Writes the raft log and the snapshot of a data dir whose identity exists (createNodeIdentity):
 * `membership` (with every member's incarnation) and the state `writeState` writes in the state
 * machine's snapshot format, covering index `seedIndex`. Refuses a data dir that has a log.
 */
export async function seedDataDir(
  dataDir: string,
  membership: Membership,
  writeState: (path: string) => Promise<void>,
): Promise<void> {
  const engine = await openRocksEngine(join(dataDir, 'raft-log'));
  try {
    if (!(await LogStore.isNew(engine))) {
      throw new DataDirError(`data dir ${dataDir} already holds a raft log`);
    }
    const log = await LogStore.open(
      engine,
      { memoryBytesMax: 1024 * 1024, description: `data dir ${dataDir} (raft log)` },
      membership,
    );
    const start = log.latestSnapshot();
    if (start.index !== seedIndex || start.term !== seedTerm) {
      throw new Error(`a bootstrapped log starts at ${start.index}/${start.term}`);
    }
  } finally {
    await engine.close();
  }
  const snapshots = await SnapshotStore.open(join(dataDir, 'snapshots'));
  try {
    await snapshots.create(
      async (path) => {
        await writeState(path);
        return seedIndex;
      },
      () => ({ term: seedTerm, membership }),
    );
  } finally {
    await snapshots.close();
  }
}
