// Consistency checks of a kv group (like etcd's corruption check and TiKV's consistency check):
// the leader appends a check entry to the group's log; every replica, applying it, digests its
// whole state as of that index (DataStateMachine.startCheck, from a RocksDB snapshot); the leader
// then asks each member for its digest at that index (Status with check_index) and compares.
// A replica whose digest differs from the one most replicas hold is named in an error log and
// in the metric eraftkv_server_replica_digest_mismatch. The same check answers HashKv
// (eraftkv-ctl endpoint hashkv), and runs in the background every --consistency-check-interval-ms.
import type * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Connections } from '@eraftkv/client';
import {
  ErrorCode,
  judgeDigests,
  type HashKvReq,
  type HashKvResp,
  type ReplicaDigest,
} from '@eraftkv/protocol';
import { InvalidArgumentError, type Logger, type RaftServer } from '@eraftkv/raft-server';
import { errorAnswer, unaryHandler, type AccessControl } from '@eraftkv/server-kit';
import type { DataStateMachine, KvApplyResult } from './data-state-machine';
import { encodeCheck } from './kv-commands';

export interface ConsistencyCheckerOptions {
  readonly groupId: number;
  readonly nodeId: number;
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  /** How the leader reaches its members (with the node's peer certificate under TLS). */
  readonly connections: Connections;
  readonly registry: Registry;
  readonly logger: Logger;
  /** How long a check waits for every member's digest. */
  readonly waitMs?: number;
}

/** One check's outcome: the index, every member's digest, and who differs from the majority. */
export interface CheckOutcome {
  readonly index: number;
  readonly replicas: ReplicaDigest[];
  /** Node ids whose digest differs from the one most replicas hold. */
  readonly mismatched: number[];
}

const pollMs = 100;

/** A replica's digest at a check's index, 'pending' while it is made, null if it has none. */
type Digest = { readonly digest: string } | 'pending' | null;

export class ConsistencyChecker {
  private readonly checks: Counter;
  private readonly mismatch: Gauge;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<CheckOutcome> | null = null;
  private stopped = false;

  constructor(private readonly o: ConsistencyCheckerOptions) {
    this.checks = new Counter({
      name: 'eraftkv_server_consistency_checks_total',
      help: 'Consistency checks this node ran as leader, by outcome: ok, mismatch (a replica holds other data) or incomplete (a member gave no digest)',
      labelNames: ['group_id', 'node_id', 'outcome'],
      registers: [o.registry],
    });
    this.mismatch = new Gauge({
      name: 'eraftkv_server_replica_digest_mismatch',
      help: "1 when the last consistency check found this replica's state different from the majority's (see the error log), else 0",
      labelNames: ['group_id', 'node_id', 'replica_id'],
      registers: [o.registry],
    });
    const labels = { group_id: String(o.groupId), node_id: String(o.nodeId) };
    for (const outcome of ['ok', 'mismatch', 'incomplete'])
      this.checks.inc({ ...labels, outcome }, 0);
  }

  /** Runs a check every `intervalMs` while this node leads (0: never). */
  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    const tick = (): void => {
      this.timer = setTimeout(() => {
        if (this.stopped) return;
        const work = this.o.raft.isLeader() ? this.check() : Promise.resolve(null);
        void work
          .catch((err: unknown) =>
            this.o.logger.warn('consistency check failed', { error: (err as Error).message }),
          )
          .finally(() => {
            if (!this.stopped) tick();
          });
      }, intervalMs);
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }

  /** One check now (one at a time: a second caller shares the check in progress). */
  check(): Promise<CheckOutcome> {
    if (this.running === null) {
      this.running = this.run().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  private async run(): Promise<CheckOutcome> {
    const { raft, stateMachine } = this.o;
    const applied = await raft.propose(encodeCheck());
    if (applied?.kind !== 'check') throw new Error('the check entry was not applied as one');
    const index = applied.index;
    const deadline = Date.now() + (this.o.waitMs ?? 30_000);
    const members = raft.membership();
    const replicas = await Promise.all(
      members.map(async (m): Promise<ReplicaDigest> => {
        const base = { nodeId: m.id, address: m.address, isLearner: m.learner };
        try {
          const digest =
            m.id === this.o.nodeId
              ? await this.waitFor(() => stateMachine.checkDigest(index), deadline)
              : await this.waitFor(() => this.remoteDigest(m.address, index, deadline), deadline);
          return { ...base, digest, error: '' };
        } catch (err) {
          return { ...base, digest: '', error: (err as Error).message };
        }
      }),
    );
    return this.judge(index, replicas);
  }

  /** A member's digest at `index` ('pending' while it computes it, null if it has none). */
  private async remoteDigest(
    address: string,
    index: number,
    deadline: number,
  ): Promise<{ readonly digest: string } | 'pending' | null> {
    const resp = await this.o.connections.unary(
      address,
      (c) => c.status.bind(c),
      { withDigest: false, withSlots: false, checkIndex: index },
      Math.min(2000, Math.max(1, deadline - Date.now())),
    );
    if (resp.checkDigest !== '') return { digest: resp.checkDigest };
    // Not applied there yet (pending or behind) is worth waiting for; a node past it without a
    // digest restarted since or was caught up by a snapshot.
    if (resp.checkPending || resp.appliedIndex < index) return 'pending';
    return null;
  }

  private async waitFor(digest: () => Digest | Promise<Digest>, deadline: number): Promise<string> {
    let last: string | null = null;
    for (;;) {
      let d: Digest;
      try {
        d = await digest();
      } catch (err) {
        d = 'pending';
        last = (err as grpc.ServiceError).details ?? (err as Error).message;
      }
      if (d === null)
        throw new Error('no digest at this index (restarted since, or caught up by a snapshot)');
      if (d !== 'pending') return d.digest;
      if (Date.now() >= deadline)
        throw new Error(`no digest before the deadline${last === null ? '' : `: ${last}`}`);
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  /** Names the replicas whose digest differs from the one most replicas hold. */
  private judge(index: number, replicas: ReplicaDigest[]): CheckOutcome {
    const verdict = judgeDigests(replicas);
    const majority = verdict.majority;
    const answered = replicas.filter((r) => r.digest !== '');
    const mismatched = verdict.differing.map((r) => r.nodeId);
    const labels = { group_id: String(this.o.groupId), node_id: String(this.o.nodeId) };
    for (const r of replicas)
      this.mismatch.set(
        { ...labels, replica_id: String(r.nodeId) },
        mismatched.includes(r.nodeId) ? 1 : 0,
      );
    const outcome =
      mismatched.length > 0 ? 'mismatch' : answered.length < replicas.length ? 'incomplete' : 'ok';
    this.checks.inc({ ...labels, outcome });
    for (const r of replicas.filter((x) => mismatched.includes(x.nodeId))) {
      this.o.logger.error('consistency check: a replica holds other data than the majority', {
        group: this.o.groupId,
        index,
        replica: r.nodeId,
        address: r.address,
        digest: r.digest,
        majority: majority === '' ? 'none' : majority,
        remedy: `remove member ${r.nodeId} from group ${this.o.groupId}, move its data dir away, and add it back (it is sent a snapshot)`,
      });
    }
    for (const r of replicas.filter((x) => x.error !== ''))
      this.o.logger.warn('consistency check: a replica gave no digest', {
        group: this.o.groupId,
        index,
        replica: r.nodeId,
        error: r.error,
      });
    return { index, replicas, mismatched };
  }
}

/** The HashKv handler: a check now, answered by the leader (others answer NOT_LEADER). */
export function hashKvHandler(
  groupId: number,
  checker: ConsistencyChecker,
  access: AccessControl,
  logger: Logger,
): grpc.handleUnaryCall<HashKvReq, HashKvResp> {
  return unaryHandler<HashKvReq, HashKvResp>(async (req, call) => {
    // A scan of the whole state on every replica: an administrator's call (root with auth).
    access.requireAdmin(call, 'HashKv');
    if (req.groupId !== groupId)
      throw new InvalidArgumentError(
        `group_id is ${req.groupId}, but this node serves group ${groupId}`,
      );
    try {
      const outcome = await checker.check();
      return {
        errorCode: ErrorCode.OK,
        leaderAddress: '',
        errorMessage: '',
        leaderId: 0,
        index: outcome.index,
        replicas: outcome.replicas,
      };
    } catch (err) {
      return { ...errorAnswer(err), index: 0, replicas: [] };
    }
  }, logger);
}
