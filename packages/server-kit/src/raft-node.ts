// How both server binaries open their Raft node, in one order: the data dir's identity first (a
// data dir belongs to one node of one group, see node-identity.ts), then the server's state
// machine, then RaftServer.open() while the host answers Identify through a RaftServerBoot, and
// last the one policy for a --peers that disagrees with the data dir (peersDisagreement).
import type { Registry } from 'prom-client';
import type { Member } from '@eraftkv/raft';
import {
  openNodeIdentity,
  RaftServer,
  RaftServerBoot,
  type Logger,
  type NodeKind,
  type RaftServerOptions,
  type StateMachine,
} from '@eraftkv/raft-server';
import type { NodeHost } from './node-host';
import { formatPeers, peersDisagreement, peersMissingSelf } from './peers';

/** The Raft settings an operator (flags) or a test may tune, the same for meta and kv nodes. */
export type RaftTuning = Partial<
  Pick<
    RaftServerOptions<unknown>,
    | 'tickMs'
    | 'electionTicks'
    | 'heartbeatTicks'
    | 'snapshotEntries'
    | 'compactionMarginEntries'
    | 'logMemoryBytesMax'
    | 'learnerCatchUpEntriesMax'
    | 'rpcTimeoutMs'
    | 'appendBytesMax'
    | 'peerRoutes'
    | 'peerCredentials'
    | 'createPeerRpc'
  >
>;

export interface RaftNodeOptions<S> {
  readonly kind: NodeKind;
  readonly clusterId: string;
  readonly groupId: number;
  readonly id: number;
  readonly dataDir: string;
  /** --peers: bootstraps a new data dir; empty: join an existing group. */
  readonly peers: readonly Member[];
  readonly raft: RaftTuning;
  readonly host: NodeHost;
  /** Answers for the node while it opens (the server keeps it to stop a node that is starting). */
  readonly boot: RaftServerBoot;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly onFatal: (err: Error) => void;
  /** Opens the server's state machine in the data dir. */
  readonly openStateMachine: () => Promise<S>;
}

/** Opens the data dir and the Raft node over the server's state machine. */
export async function openRaftNode<R, S extends StateMachine<R>>(
  o: RaftNodeOptions<S>,
): Promise<{ raft: RaftServer<R>; stateMachine: S }> {
  const missingSelf = peersMissingSelf(o.peers, o.id);
  if (missingSelf !== null) throw new Error(missingSelf);
  const { identity } = await openNodeIdentity(o.dataDir, {
    clusterId: o.clusterId,
    kind: o.kind,
    groupId: o.groupId,
    nodeId: o.id,
  });
  const stateMachine = await o.openStateMachine();
  o.host.boot(o.boot);
  let raft: RaftServer<R>;
  try {
    raft = await RaftServer.open<R>({
      ...o.raft,
      id: o.id,
      groupId: o.groupId,
      clusterId: o.clusterId,
      dataDir: o.dataDir,
      incarnation: identity.incarnation,
      bootstrap: o.peers.length > 0 ? o.peers : null,
      stateMachine,
      registry: o.registry,
      logger: o.logger,
      onFatal: o.onFatal,
      boot: o.boot,
    });
  } catch (err) {
    // RaftServer closes the state machine only once it is open.
    await stateMachine.close().catch(() => undefined);
    throw err;
  }
  const stored = raft.membership();
  const disagreement = peersDisagreement(o.peers, stored, o.dataDir);
  if (disagreement !== null) {
    o.logger.warn(disagreement, { peers: formatPeers(o.peers), stored: formatPeers(stored) });
  } else if (stored.length === 0) {
    o.logger.info(
      'empty data dir and no --peers: waiting for the group leader to add this node (eraftkv-ctl member add)',
    );
  }
  return { raft, stateMachine };
}
