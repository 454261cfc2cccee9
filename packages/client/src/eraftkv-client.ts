// EraftKvClient: the TypeScript client of eraftkv. Given the meta servers' addresses it caches
// the topology and each group's leader, routes every key by its slot, follows NOT_LEADER and
// WRONG_SHARD hints, and retries with jittered backoff within a per-call deadline. Every write
// carries (client id, command id), so a write retried after a lost answer applies once.
//
//   const client = new EraftKvClient({ endpoints: ['127.0.0.1:8088'] });
//   await client.put('hello', 'world');
//   (await client.get('hello'))?.toString(); // 'world'
//   client.close();
//
// It is a facade over two objects that share one session (connections, leader cache, topology):
// `client.kv` (KvClient: data) and `client.admin` (AdminClient: groups, slots, members, status).
import type { BackupChunk, ReplicaDigest, StatusResp } from '@eraftkv/protocol';
import { AuthClient } from './auth-client';
import { AdminClient, type MemberView } from './admin-client';
import {
  ClientSession,
  type CallOptions,
  type ClusterView,
  type EraftKvClientOptions,
  type ReadOptions,
} from './client-session';
import {
  KvClient,
  type BatchOp,
  type BatchResult,
  type Bytes,
  type PutOptions,
  type ResponseHeader,
  type ScanResult,
} from './kv-client';
import {
  LeaseClient,
  type LeaseGrant,
  type LeaseGrantOptions,
  type LeaseKeepAlive,
  type LeaseKeepAliveOptions,
  type LeaseStatus,
  type LeaseTimeToLive,
} from './lease';
import { Watch, type WatchOptions } from './watch';

export class EraftKvClient {
  readonly clientId: string;
  /** The data operations. */
  readonly kv: KvClient;
  /** The administration of the cluster. */
  readonly admin: AdminClient;
  /** Users, roles and key permissions. */
  readonly auth: AuthClient;
  /** Leases (see leaseGrant). */
  readonly lease: LeaseClient;
  private readonly session: ClientSession;

  constructor(options: EraftKvClientOptions) {
    this.session = new ClientSession(options);
    this.clientId = this.session.clientId;
    this.kv = new KvClient(this.session);
    this.admin = new AdminClient(this.session);
    this.auth = new AuthClient(this.session);
    this.lease = new LeaseClient(this.session);
  }

  // Data: see KvClient.

  /** Writes `value` under `key`; with `lease`, the key is deleted when the lease expires. */
  put(key: Bytes, value: Bytes, options?: PutOptions): Promise<ResponseHeader> {
    return this.kv.put(key, value, options);
  }

  get(key: Bytes, options?: ReadOptions): Promise<Buffer | undefined> {
    return this.kv.get(key, options);
  }

  del(key: Bytes, options?: CallOptions): Promise<boolean> {
    return this.kv.del(key, options);
  }

  scan(
    start: Bytes,
    end: Bytes | undefined,
    options?: ReadOptions & { limit?: number },
  ): Promise<ScanResult> {
    return this.kv.scan(start, end, options);
  }

  batch(ops: readonly BatchOp[], options?: CallOptions): Promise<BatchResult[]> {
    return this.kv.batch(ops, options);
  }

  batchWithHeader(
    ops: readonly BatchOp[],
    options?: CallOptions,
  ): Promise<{ results: BatchResult[]; header: ResponseHeader }> {
    return this.kv.batchWithHeader(ops, options);
  }

  /**
   * The changes of `key` (a key alone), of [key, rangeEnd) or of every key with prefix `key`,
   * from now or from a start revision on, as an async iterable of batches (docs/watch.md):
   *
   *   for await (const batch of client.watch('app/', { prefix: true, signal })) ...
   *
   * Revisions are per group, and a key's slot may move between groups: every kv group is
   * watched, for a key as for a range, each in its own revisions (`startRevisions` says where
   * each starts); a group created later is watched from its first revision. Order: the changes
   * of a key come in the order they were applied, each once, across slot moves too (a moved
   * slot's changes in its new group wait until its old group's are delivered); the changes of
   * different keys come in revision order within a group, and batches of different groups
   * interleave in no set order. Every group starts with a `created` batch.
   *
   * A group's stream that breaks (a node stops, the watcher was too slow, the topology moved) is
   * reopened from the revision after the last one received, on the group's known leader first
   * and then its other members, with backoff: no change is delivered twice or skipped. The watch
   * fails (the iterable throws, after the batches before) when a group cannot be reached again
   * within the deadline (`deadlineMs`, default the client's), with a WatchCompactedError when a
   * start revision is older than a group's history, and with InvalidArgumentError or
   * AccessDeniedError when the cluster refuses it. Abort `signal`, call cancel(), break out of
   * the loop or close the client to end it: the iterable then ends without an error (and drops
   * the batches not taken yet).
   */
  watch(key: Bytes, options?: WatchOptions): Watch {
    return new Watch(this.session, key, options);
  }

  // Leases: see LeaseClient.

  /**
   * Grants a lease of `ttlSeconds` (docs/leases.md); `put(key, value, { lease: id })` attaches
   * keys to it, which are deleted when it expires or is revoked. A lease belongs to one kv group
   * (its id carries it: id = group * 2^32 + n) and holds keys of that group only: it is granted
   * in `group`, else in the group of `key` (grant it with the key it is meant to hold), else in
   * the kv group with the lowest id.
   */
  leaseGrant(ttlSeconds: number, options?: LeaseGrantOptions): Promise<LeaseGrant> {
    return this.lease.grant(ttlSeconds, options);
  }

  /** Revokes lease `id` and deletes its keys (LeaseNotFoundError when it is not held). */
  leaseRevoke(id: number, options?: CallOptions): Promise<{ revision: number }> {
    return this.lease.revoke(id, options);
  }

  /** The seconds left of lease `id` (-1 when it is not held), with its keys when asked. */
  leaseTimeToLive(
    id: number,
    options?: CallOptions & { keys?: boolean },
  ): Promise<LeaseTimeToLive> {
    return this.lease.timeToLive(id, options);
  }

  /** The leases of kv group `group`, or of every kv group, in id order. */
  leases(options?: CallOptions & { group?: number }): Promise<LeaseStatus[]> {
    return this.lease.list(options);
  }

  /** Keeps lease `id` alive once; returns its TTL (LeaseNotFoundError when it is not held). */
  leaseKeepAliveOnce(id: number, options?: CallOptions): Promise<number> {
    return this.lease.keepAliveOnce(id, options);
  }

  /**
   * Keeps lease `id` alive in the background until close() (or `signal`, or the client's close),
   * over one stream to its group's leader, followed when leadership moves; its answers come as
   * an async iterable of the newest, which throws LeaseNotFoundError once the lease is gone (see
   * LeaseKeepAlive).
   */
  leaseKeepAlive(id: number, options?: LeaseKeepAliveOptions): LeaseKeepAlive {
    return this.lease.keepAlive(id, options);
  }

  // Administration: see AdminClient.

  initCluster(slotCount?: number, options?: CallOptions): Promise<ClusterView> {
    return this.admin.initCluster(slotCount, options);
  }

  cluster(options?: ReadOptions): Promise<ClusterView> {
    return this.admin.cluster(options);
  }

  addGroup(
    groupId: number,
    servers: readonly string[],
    options?: CallOptions,
  ): Promise<ClusterView> {
    return this.admin.addGroup(groupId, servers, options);
  }

  removeGroup(groupId: number, options?: CallOptions): Promise<ClusterView> {
    return this.admin.removeGroup(groupId, options);
  }

  moveSlots(
    groupId: number,
    slots: readonly number[],
    options?: CallOptions,
  ): Promise<ClusterView> {
    return this.admin.moveSlots(groupId, slots, options);
  }

  members(groupId: number, options?: CallOptions): ReturnType<AdminClient['members']> {
    return this.admin.members(groupId, options);
  }

  addMember(
    groupId: number,
    nodeId: number,
    address: string,
    learner: boolean,
    options?: CallOptions,
  ): Promise<MemberView[]> {
    return this.admin.addMember(groupId, nodeId, address, learner, options);
  }

  removeMember(groupId: number, nodeId: number, options?: CallOptions): Promise<MemberView[]> {
    return this.admin.removeMember(groupId, nodeId, options);
  }

  promoteMember(groupId: number, nodeId: number, options?: CallOptions): Promise<MemberView[]> {
    return this.admin.promoteMember(groupId, nodeId, options);
  }

  transferLeader(groupId: number, nodeId: number, options?: CallOptions): Promise<void> {
    return this.admin.transferLeader(groupId, nodeId, options);
  }

  /** A consistent copy of kv group `groupId`'s data, chunk by chunk (AdminClient.backup). */
  backup(
    groupId: number,
    options?: CallOptions & { chunkBytes?: number },
  ): AsyncGenerator<BackupChunk> {
    return this.admin.backup(groupId, options);
  }

  /** A consistency check of kv group `groupId`: every replica's digest at one log index. */
  hashKv(
    groupId: number,
    options?: CallOptions,
  ): Promise<{ index: number; replicas: ReplicaDigest[] }> {
    return this.admin.hashKv(groupId, options);
  }

  status(
    address: string,
    options?: CallOptions & { withDigest?: boolean; withSlots?: boolean },
  ): Promise<StatusResp> {
    return this.admin.status(address, options);
  }

  health(address: string, options?: CallOptions): Promise<boolean> {
    return this.admin.health(address, options);
  }

  groupAddresses(groupId: number, options?: CallOptions): Promise<string[]> {
    return this.admin.groupAddresses(groupId, options);
  }

  /** Closes every connection; the client cannot be used afterwards. */
  close(): void {
    this.session.close();
  }
}
