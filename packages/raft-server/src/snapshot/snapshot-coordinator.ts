// Snapshots of one RaftServer, from end to end: a snapshot point every snapshotEntries applied
// entries with the log compacted below it, a snapshot file when a follower needs one, sending it
// to the follower the core names, receiving a leader's snapshot block by block, and installing it
// when the core hands it back in a Ready. Switching the snapshot in use happens one switch at a
// time.
//
// The state machine's own store is the snapshot (as etcd's bbolt and TiKV's RocksDB are): a
// periodic snapshot point only makes the applied state durable (StateMachine.syncApplied, one
// synced write) and records its index, term and membership in the log store, which may then
// compact its log below it. Nothing is rewritten on the write path. A snapshot file, the whole
// state as of one applied index, is written only when a follower lags behind the compacted log:
// the core asks the log store for a snapshot, the log store has no file for its snapshot point
// and asks for one, and this coordinator writes the current state into a file (a consistent
// iterator over the state's store) and makes it the snapshot point. A file is a fixed sequence of
// bytes, so a broken transfer resumes at an offset, block by block, with checksums.
//
// It also owns the snapshot blocks' wire format: snapshotBlockToWire for the sender,
// snapshotBlockFromWire for the peer service, which checks every field (an InvalidArgumentError naming the
// field refuses the request, as message-codec.ts does for the other messages) before the block
// reaches the node through its inbox like any other peer message.
import type { SnapshotReq, SnapshotResp } from '@eraftkv/protocol';
import {
  message,
  MessageType,
  type HardState,
  type Message,
  type NodeId,
  type RawNode,
  type SnapshotMeta,
} from '@eraftkv/raft';
import { crc32 } from 'node:zlib';
import { InvalidArgumentError } from '../errors';
import type { LogStore } from '../log-store';
import type { Logger } from '../logger';
import type { RaftMetrics } from '../metrics';
import type { StateMachine } from '../state-machine';
import {
  checkPeerNumber,
  membershipFromWire,
  membershipToWire,
  type PeerIdentity,
} from '../transport/message-codec';
import type { PeerTransport } from '../transport/peer-transport';
import type { IncomingBlock, SnapshotFile, SnapshotStore } from './snapshot-store';

/** One block of a leader's snapshot, checked, as it reaches the node. */
export interface SnapshotBlock extends IncomingBlock {
  /** The leader's term. */
  readonly term: number;
  readonly leaderId: NodeId;
}

/** The node's answer to a block: the offset it wants next, or whether the install succeeded. */
export interface SnapshotBlockReply {
  readonly term: number;
  readonly offset: number;
  readonly success: boolean;
  readonly isLastChunk: boolean;
}

/** A block of a snapshot request from the wire, every field checked. */
export function snapshotBlockFromWire(req: SnapshotReq): SnapshotBlock {
  const term = checkPeerNumber(req.term, 'term', 1);
  const block = req.block;
  if (block === undefined) throw new InvalidArgumentError('snapshot request without a block');
  const membership = membershipFromWire(req.membership, 'membership');
  const meta = {
    index: checkPeerNumber(req.snapshotIndex, 'snapshot_index', 1),
    term: checkPeerNumber(req.snapshotTerm, 'snapshot_term', 1),
    membership,
  };
  if (meta.term > term) {
    throw new InvalidArgumentError(`snapshot_term ${meta.term} is above the leader's term ${term}`);
  }
  const offset = checkPeerNumber(block.offset, 'block.offset');
  const fileSizeBytes = checkPeerNumber(block.fileSize, 'block.file_size');
  // A block never reaches past the file it says it belongs to: the bytes a transfer writes are
  // bounded by the size it declared, not by how long the sender keeps sending.
  if (offset + block.data.length > fileSizeBytes) {
    throw new InvalidArgumentError(
      `block.data (${block.data.length} bytes at block.offset ${offset}) reaches past block.file_size ${fileSizeBytes}`,
    );
  }
  return {
    token: req.messageToken,
    term,
    leaderId: checkPeerNumber(req.leaderId, 'leader_id', 1),
    meta,
    offset,
    data: block.data,
    blockCrc32: block.blockCrc32,
    isLast: block.isLastChunk,
    fileSizeBytes,
    fileCrc32: block.fileCrc32,
  };
}

export function snapshotReplyToWire(reply: SnapshotBlockReply, token: string): SnapshotResp {
  return { messageToken: token, ...reply };
}

/** The request carrying `data`, the block of `file` at `offset`, from leader message `m`. */
export function snapshotBlockToWire(
  m: Message,
  file: SnapshotFile,
  token: string,
  offset: number,
  data: Buffer,
  id: PeerIdentity,
  toIncarnation: number,
): SnapshotReq {
  const meta = file.meta;
  return {
    term: m.term,
    leaderId: m.from,
    messageToken: token,
    snapshotIndex: meta.index,
    snapshotTerm: meta.term,
    block: {
      offset,
      data,
      blockSize: data.length,
      isLastChunk: offset + data.length >= file.sizeBytes,
      blockCrc32: crc32(data),
      fileSize: file.sizeBytes,
      fileCrc32: file.crc32,
    },
    groupId: id.groupId,
    clusterId: id.clusterId,
    toId: m.to,
    membership: membershipToWire(meta.membership),
    fromIncarnation: id.incarnation,
    toIncarnation,
  };
}

/** What the coordinator works with. */
export interface SnapshotCoordinatorParts {
  readonly selfId: NodeId;
  readonly store: SnapshotStore;
  readonly logStore: LogStore;
  readonly node: RawNode;
  readonly transport: PeerTransport;
  readonly stateMachine: StateMachine<unknown>;
  readonly metrics: RaftMetrics;
  readonly logger: Logger;
  /** Take a snapshot every this many applied entries. */
  readonly snapshotEntries: number;
  /** Entries kept in the log below a snapshot. */
  readonly compactionMarginEntries: number;
  /** The index of the snapshot in use at start. */
  readonly snapshotIndex: number;
  readonly appliedIndex: () => number;
  readonly stopping: () => boolean;
  readonly aborted: () => boolean;
  /** Runs the Ready loop (a new snapshot lets the core compact and send it). */
  readonly schedule: () => void;
  /** Steps a peer request into the core; resolves with the core's answer once durable. */
  readonly step: (m: Message) => Promise<Message | null>;
  /** A leader's snapshot block names an index the group has committed. */
  readonly commitSeen: (index: number) => void;
  /** A leader's snapshot was installed: the state machine now holds `meta.index`. */
  readonly installed: (meta: SnapshotMeta) => void;
}

export class SnapshotCoordinator {
  private inProgress = false;
  private latestIndex: number;
  /**
   * Switching the snapshot in use (a local snapshot adopted and the log compacted below it, or a
   * leader's snapshot installed) happens one switch at a time, in this chain: a local snapshot
   * finishing while a newer one from the leader is being installed must see the newer one and
   * stand down, not replace it (and remove its file) halfway through the install.
   */
  private switching: Promise<void> = Promise.resolve();

  constructor(private readonly p: SnapshotCoordinatorParts) {
    this.latestIndex = p.snapshotIndex;
  }

  /** The index of the snapshot in use. */
  get snapshotIndex(): number {
    return this.latestIndex;
  }

  /**
   * Takes a snapshot point when enough entries were applied since the last one, or writes a
   * snapshot file when a follower needs one (`fileNeeded`).
   */
  maybeSnapshot(fileNeeded: boolean): void {
    const applied = this.p.appliedIndex();
    if (this.inProgress || this.p.stopping()) return;
    if (!fileNeeded && applied - this.latestIndex < this.p.snapshotEntries) return;
    if (applied <= 1) return;
    this.inProgress = true;
    void (fileNeeded ? this.take() : this.takePoint())
      .catch((err: unknown) => {
        this.p.logger.error('snapshot failed', { error: (err as Error).message });
      })
      .finally(() => {
        this.inProgress = false;
      });
  }

  /** Runs `fn` once every earlier snapshot switch has finished, and before any later one. */
  private switchSnapshot<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.switching.then(fn);
    this.switching = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** A snapshot point at the applied index: the state made durable, the log compacted below. */
  private async takePoint(): Promise<void> {
    const started = process.hrtime.bigint();
    const index = await this.p.stateMachine.syncApplied();
    const term = this.p.logStore.term(index);
    if (term === undefined) throw new Error(`no term for snapshot index ${index}`);
    const meta: SnapshotMeta = { index, term, membership: this.p.node.membershipAt(index) };
    await this.switchSnapshot(() => this.adoptPoint(meta, null, started));
  }

  /** Writes a snapshot file of the current state (a follower needs one) and adopts it. */
  private async take(): Promise<void> {
    const started = process.hrtime.bigint();
    const file = await this.p.store.create(
      (path) => this.p.stateMachine.writeSnapshot(path),
      (index) => {
        const term = this.p.logStore.term(index);
        if (term === undefined) throw new Error(`no term for snapshot index ${index}`);
        return { term, membership: this.p.node.membershipAt(index) };
      },
    );
    await this.switchSnapshot(() => this.adoptPoint(file.meta, file, started));
  }

  /**
   * Makes `meta` the snapshot point, with its file (written for a follower) or without one (the
   * state machine's store holds it), and compacts the log below it.
   */
  private async adoptPoint(
    meta: SnapshotMeta,
    file: SnapshotFile | null,
    started: bigint,
  ): Promise<void> {
    const { store, logStore } = this.p;
    if (this.p.stopping() || this.p.aborted()) return;
    const current = logStore.latestSnapshot();
    if (meta.index < current.index || (meta.index === current.index && file === null)) {
      // A newer snapshot arrived from the leader meanwhile: this one is of no use.
      if (file !== null) await store.discard(file);
      return;
    }
    // Any older file is removed once no transfer reads it.
    await store.adopt(file);
    await logStore.setSnapshot(meta, file !== null);
    this.latestIndex = meta.index;
    const compactTo = this.compactionPoint(meta.index);
    if (compactTo >= logStore.firstIndex()) await logStore.compact(compactTo);
    this.p.logger.info(file === null ? 'snapshot point taken' : 'snapshot file written', {
      index: meta.index,
      term: meta.term,
      ...(file === null ? {} : { bytes: file.sizeBytes }),
      ms: Math.round(Number(process.hrtime.bigint() - started) / 1e6),
      logFirstIndex: logStore.firstIndex(),
    });
    this.p.schedule();
  }

  /**
   * Where to compact the log below the snapshot point at `index`: compactionMarginEntries below
   * it, but on a leader not past a follower that is catching up (recently active, behind that),
   * which would need a snapshot again and, if snapshots come faster than it can install them,
   * never catch up. A follower holds compaction back by at most one more snapshot interval.
   */
  private compactionPoint(index: number): number {
    const margin = index - this.p.compactionMarginEntries;
    const floor = margin - this.p.snapshotEntries;
    let point = margin;
    for (const pr of this.p.node.status().progress) {
      if (pr.id === this.p.selfId || !pr.recentActive) continue;
      if (pr.match < point) point = Math.max(floor, pr.match);
    }
    return point;
  }

  /** Sends the snapshot a Ready's message names to its follower (the latest one on disk). */
  send(m: Message): void {
    const file = this.p.store.latest();
    if (file === null || m.snapshot === null || file.meta.index !== m.snapshot.index) {
      this.p.node.reportSnapshot(m.to, false);
      return;
    }
    this.p.logger.info('sending snapshot', {
      to: m.to,
      index: file.meta.index,
      bytes: file.sizeBytes,
    });
    this.p.transport.sendSnapshot(m, file);
  }

  /** The transport finished sending a snapshot to `id` (ok) or gave it up. */
  sent(id: NodeId, ok: boolean): void {
    const metrics = this.p.metrics;
    metrics.snapshotSend.inc({ ...metrics.base, outcome: ok ? 'ok' : 'failed' });
    this.p.logger.info(ok ? 'snapshot sent' : 'snapshot transfer abandoned', { to: id });
    this.p.node.reportSnapshot(id, ok);
    this.p.schedule();
  }

  /** Installs a snapshot received from the leader (a Ready's): log store first, then the state machine. */
  install(meta: SnapshotMeta, hardState: HardState | null): Promise<void> {
    return this.switchSnapshot(() => this.installLeaderSnapshot(meta, hardState));
  }

  private async installLeaderSnapshot(
    meta: SnapshotMeta,
    hardState: HardState | null,
  ): Promise<void> {
    const started = process.hrtime.bigint();
    const file = this.p.store.find(meta.index, meta.term);
    if (file === undefined)
      throw new Error(`snapshot ${meta.term}/${meta.index} to install is not on disk`);
    await this.p.store.adopt(file);
    // Recorded first: a crash before the state machine is restored is repaired at start.
    await this.p.logStore.installSnapshot(meta, hardState);
    await this.p.stateMachine.restoreSnapshot(file.path, meta.index);
    this.p.installed(meta);
    this.latestIndex = meta.index;
    this.p.transport.setPeers(meta.membership);
    const metrics = this.p.metrics;
    metrics.snapshotInstallDuration.observe(
      metrics.base,
      Number(process.hrtime.bigint() - started) / 1e9,
    );
    this.p.logger.info('snapshot installed', { index: meta.index, term: meta.term });
  }

  /**
   * A block of a leader's snapshot (the Snapshot RPC). The last block, once the file is verified,
   * hands the snapshot to the core; the answer comes once it is installed.
   */
  async receive(block: SnapshotBlock): Promise<SnapshotBlockReply> {
    const term = this.p.node.basicStatus().term;
    const reply = (fields: Partial<SnapshotBlockReply>): SnapshotBlockReply => ({
      term,
      offset: 0,
      success: true,
      isLastChunk: false,
      ...fields,
    });
    if (block.term < term) return reply({ success: false });
    const meta = block.meta;
    this.p.commitSeen(meta.index);
    const result = await this.p.store.receive(block);
    switch (result.kind) {
      case 'next':
        return reply({ offset: result.offset });
      case 'rejected':
        this.p.logger.warn('snapshot rejected', { reason: result.reason });
        return reply({ success: false });
      case 'complete': {
        const answer = await this.p.step(
          message({
            type: MessageType.Snapshot,
            from: block.leaderId,
            to: this.p.selfId,
            term: block.term,
            snapshot: meta,
          }),
        );
        return reply({
          term: answer?.term ?? term,
          offset: result.file.sizeBytes,
          success: answer !== null && !answer.reject,
          isLastChunk: true,
        });
      }
    }
  }

  close(): Promise<void> {
    return this.p.store.close();
  }
}
