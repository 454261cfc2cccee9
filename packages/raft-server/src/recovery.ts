// Opening a node's data dir for RaftServer.open(): the raft log (RocksDB; a new data dir with
// --peers bootstraps it after bootstrap discovery, see bootstrap.ts), the snapshot store with the
// snapshot in use, the state machine brought up to the log's compaction point (restored from the
// snapshot when it lags), the peer transport, and the core (RawNode) created over the log.
import { join } from 'node:path';
import { RawNode, type Membership } from '@eraftkv/raft';
import { discoverBootstrap } from './bootstrap';
import { LogStore } from './log-store';
import { storedNumberMax } from './log-store/entry-codec';
import { DataDirError } from './node-identity';
import type { ResolvedRaftServerOptions } from './raft-server-options';
import { SnapshotStore } from './snapshot';
import { openRocksEngine } from './storage-engine';
import { PeerTransport, protobufMembershipCodec, type PeerTransportOptions } from './transport';

/** What the transport reports to the node (replies, unreachable peers, snapshot transfers). */
export type PeerTransportEvents = Pick<
  PeerTransportOptions,
  'onResponse' | 'onUnreachable' | 'onSnapshotDone' | 'onPeerRefusal' | 'observe'
>;

/** A node's storage opened and recovered, and the core over it. */
export interface RecoveredNode {
  readonly logStore: LogStore;
  readonly snapshotStore: SnapshotStore;
  readonly transport: PeerTransport;
  readonly node: RawNode;
  /** The index the state machine has applied. */
  readonly applied: number;
  /** The index of the snapshot in use. */
  readonly snapshotIndex: number;
}

/**
 * Opens and recovers the data dir. On failure, what it opened is closed again (but not the state
 * machine, which the caller opened).
 */
export async function recoverNode<R>(
  o: ResolvedRaftServerOptions<R>,
  events: PeerTransportEvents,
): Promise<RecoveredNode> {
  const engine = await openRocksEngine(join(o.dataDir, 'raft-log'));
  const description = `data dir ${o.dataDir} (raft log)`;
  let snapshotStore: SnapshotStore | null = null;
  let transport: PeerTransport | null = null;
  let logStore: LogStore;
  try {
    snapshotStore = await SnapshotStore.open(join(o.dataDir, 'snapshots'));
    transport = new PeerTransport({
      selfId: o.id,
      identity: o.identity,
      messageBytesMax: o.messageBytesMax,
      rpcTimeoutMs: o.rpcTimeoutMs,
      controlTimeoutMs: o.controlTimeoutMs,
      snapshotBlockBytesMax: o.snapshotBlockBytesMax,
      snapshotRetriesMax: o.snapshotRetriesMax,
      snapshotStore,
      ...events,
      createPeerRpc: o.createPeerRpc,
      peerRoutes: o.peerRoutes,
      credentials: o.peerCredentials,
    });
    let bootstrap: Membership | null = null;
    if (o.bootstrap !== null && o.bootstrap.length > 0 && (await LogStore.isNew(engine))) {
      bootstrap = await discoverBootstrap(transport, o, o.bootstrap);
    }
    logStore = await LogStore.open(
      o.wrapLogEngine(engine),
      { memoryBytesMax: o.logMemoryBytesMax, description },
      bootstrap,
    );
  } catch (err) {
    transport?.close();
    await snapshotStore?.close();
    await engine.close();
    throw err;
  }
  // Whatever fails from here on (an incomplete data dir, say) closes what was opened.
  const stores = snapshotStore;
  const network = transport;
  try {
    const snapshotMeta = logStore.latestSnapshot();
    const snapshotFile = stores.find(snapshotMeta.index, snapshotMeta.term) ?? null;
    let applied = await o.stateMachine.appliedIndex();
    const compacted = logStore.firstIndex() - 1;
    // The snapshot file is read whole once: a damaged one is never restored or sent.
    const damage = snapshotFile === null ? null : await stores.damage(snapshotFile);
    if (snapshotFile !== null && damage !== null) {
      const json = snapshotFile.path.replace(/\.dat$/, '.json');
      throw new DataDirError(
        `snapshot file ${snapshotFile.path} is damaged: ${damage}. ` +
          (applied < compacted
            ? `This node needs it (its state machine has applied ${applied} and the log starts after ${compacted}), ` +
              `so its data is incomplete: remove it from its group (eraftkv-ctl member remove), move data dir ${o.dataDir} ` +
              `aside, start it with an empty --peers and add it back as a learner (eraftkv-ctl member add --learner)`
            : `This node does not need it (its state machine has applied ${applied}, past the snapshot's ${snapshotFile.meta.index}): ` +
              `move ${snapshotFile.path} and ${json} aside and start it again; it writes a new snapshot when a follower needs one`),
      );
    }
    await stores.adopt(snapshotFile);
    logStore.markSnapshotFileReady(snapshotFile !== null);

    // The state machine may lag the log's compaction point (its unsynced writes were lost, or a
    // snapshot install was interrupted): then it is restored from the snapshot first.
    if (applied < compacted) {
      if (snapshotFile !== null && snapshotFile.meta.index >= compacted) {
        o.logger.warn('state machine behind the log; restoring it from the snapshot', {
          applied,
          snapshot: snapshotFile.meta.index,
        });
        await o.stateMachine.restoreSnapshot(snapshotFile.path, snapshotFile.meta.index);
        applied = snapshotFile.meta.index;
      } else if (compacted > 1) {
        throw new Error(
          `${description}: the state machine has applied ${applied} but the log starts after ${compacted} and no snapshot file covers the gap; the data dir is incomplete`,
        );
      }
    }
    logStore.commitAtLeast(applied);
    const node = new RawNode(
      {
        id: o.id,
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        appendBytesMax: o.appendBytesMax,
        pendingReadsMax: o.pendingReadsMax,
        autoPromoteLearners: o.autoPromoteLearners,
        learnerCatchUpEntriesMax: o.learnerCatchUpEntriesMax,
        applied: Math.max(applied, compacted),
        termMax: storedNumberMax,
        rng: o.rng,
        membershipCodec: protobufMembershipCodec,
      },
      logStore,
    );
    return {
      logStore,
      snapshotStore: stores,
      transport: network,
      node,
      applied,
      snapshotIndex: snapshotMeta.index,
    };
  } catch (err) {
    network.close();
    await stores.close();
    await logStore.close();
    throw err;
  }
}
