// The Lease and LeaseKeepAlive RPCs of a kv server (docs/leases.md). Grants and revokes are log
// entries proposed by the leader; time-to-live and list are answered by the leader once a
// ReadIndex confirms it leads and has applied every grant acknowledged before; keep-alives are
// taken by the leader only, once a ReadIndex confirms it leads (its LeaseKeeper decides expiry).
// A follower answers NOT_LEADER with the leader's address, as for client requests.
import * as grpc from '@grpc/grpc-js';
import {
  ErrorCode,
  formatLeaseId,
  groupOfLeaseId,
  leaseIdProblem,
  LeaseAction,
  type LeaseInfo,
  type LeaseKeepAliveReq,
  type LeaseKeepAliveResp,
  type LeaseReq,
  type LeaseResp,
} from '@eraftkv/protocol';
import { InvalidArgumentError, type Logger, type RaftServer } from '@eraftkv/raft-server';
import { errorAnswer, failureStatus, unaryHandler, type AccessControl } from '@eraftkv/server-kit';
import type { DataStateMachine, KvApplyResult } from './data-state-machine';
import { encodeLeaseGrant, encodeLeaseRevoke } from './kv-commands';
import type { LeaseKeeper } from './lease-keeper';

export interface LeaseServiceOptions {
  readonly groupId: number;
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  readonly keeper: LeaseKeeper;
  readonly access: AccessControl;
  /** The longest TTL granted (--lease-ttl-max-seconds). */
  readonly ttlSecondsMax: number;
  readonly logger: Logger;
}

/** Keep-alives one stream may have unanswered; more end it with RESOURCE_EXHAUSTED. */
const keepAlivesInFlightMax = 1024;

export function leaseHandlers(o: LeaseServiceOptions): {
  lease: grpc.handleUnaryCall<LeaseReq, LeaseResp>;
  leaseKeepAlive: grpc.handleBidiStreamingCall<LeaseKeepAliveReq, LeaseKeepAliveResp>;
} {
  const { raft, stateMachine, keeper, groupId } = o;

  const respond = (fields: Partial<LeaseResp>): LeaseResp => {
    const leaderId = raft.leaderId();
    return {
      errorCode: ErrorCode.OK,
      errorMessage: '',
      leaderAddress: raft.addressOf(leaderId),
      leaderId,
      groupId,
      revision: 0,
      leases: [],
      ...fields,
    };
  };

  /** A refusal of the Raft server (not leader, stopping) as an answer. */
  const refused = (err: unknown): LeaseResp => {
    const a = errorAnswer(err);
    return respond({
      errorCode: a.errorCode,
      errorMessage: a.errorMessage,
      leaderId: a.leaderId,
      leaderAddress: a.leaderAddress,
    });
  };

  const info = (id: number, keys: boolean): LeaseInfo | null => {
    const lease = stateMachine.leaseTable().get(id);
    if (lease === undefined) return null;
    return {
      id,
      grantedTtlSeconds: lease.ttlSeconds,
      ttlSeconds: keeper.remainingSeconds(id),
      keys: keys ? [...lease.keys].sort().map((k) => Buffer.from(k, 'latin1')) : [],
    };
  };

  /** Why `id` (from the wire) is no lease of this group, or null when it can be one. */
  const notOurs = (id: number): string | null => {
    const problem = leaseIdProblem(id);
    if (problem !== null) return `id: ${problem}`;
    if (groupOfLeaseId(id) !== groupId)
      return `lease ${formatLeaseId(id)} belongs to group ${groupOfLeaseId(id)}, but this node serves group ${groupId}`;
    return null;
  };

  const ownLease = (id: number): void => {
    const refusal = notOurs(id);
    if (refusal !== null) throw new InvalidArgumentError(refusal);
  };

  const answer = async (req: LeaseReq): Promise<LeaseResp> => {
    switch (req.action) {
      case LeaseAction.LEASE_GRANT: {
        if (req.groupId !== 0 && req.groupId !== groupId)
          throw new InvalidArgumentError(
            `group_id is ${req.groupId}, but this node serves group ${groupId}`,
          );
        if (req.ttlSeconds < 1 || req.ttlSeconds > o.ttlSecondsMax)
          throw new InvalidArgumentError(
            `ttl_seconds must be in [1, ${o.ttlSecondsMax}] (--lease-ttl-max-seconds), got ${req.ttlSeconds}`,
          );
        let result: KvApplyResult | undefined;
        try {
          result = await raft.propose(encodeLeaseGrant({ ttlSeconds: req.ttlSeconds }));
        } catch (err) {
          return refused(err);
        }
        if (result?.kind === 'rejected') throw new InvalidArgumentError(result.message);
        if (result?.kind !== 'lease') throw new Error('a lease grant was not applied as one');
        return respond({
          revision: result.revision,
          leases: [
            {
              id: result.id,
              grantedTtlSeconds: result.ttlSeconds,
              ttlSeconds: result.ttlSeconds,
              keys: [],
            },
          ],
        });
      }
      case LeaseAction.LEASE_REVOKE: {
        ownLease(req.id);
        let result: KvApplyResult | undefined;
        try {
          result = await raft.propose(encodeLeaseRevoke({ id: req.id }));
        } catch (err) {
          return refused(err);
        }
        // A key of the lease is in a slot frozen for a move: the client retries shortly.
        if (result?.kind === 'wrong-shard')
          return respond({ errorCode: ErrorCode.SLOT_MIGRATING, errorMessage: result.message });
        if (result?.kind !== 'lease') throw new Error('a lease revoke was not applied as one');
        if (!result.found)
          return respond({
            errorCode: ErrorCode.LEASE_NOT_FOUND,
            errorMessage: `lease ${formatLeaseId(req.id)} is not held (expired, revoked or never granted)`,
            revision: result.revision,
          });
        return respond({ revision: result.revision });
      }
      case LeaseAction.LEASE_TIME_TO_LIVE: {
        ownLease(req.id);
        try {
          await raft.readIndex();
        } catch (err) {
          return refused(err);
        }
        const found = info(req.id, req.keys);
        return respond({
          leases: [found ?? { id: req.id, grantedTtlSeconds: 0, ttlSeconds: -1, keys: [] }],
        });
      }
      case LeaseAction.LEASE_LIST: {
        try {
          await raft.readIndex();
        } catch (err) {
          return refused(err);
        }
        const leases = stateMachine
          .leaseTable()
          .all()
          .map((l) => info(l.id, false))
          .filter((l): l is LeaseInfo => l !== null);
        return respond({ leases });
      }
      default:
        throw new InvalidArgumentError(`action ${String(req.action)} is not a lease action`);
    }
  };

  /**
   * One keep-alive. Only the leader takes it, and only once a ReadIndex has confirmed that it
   * still leads: a leader cut off from its group goes on believing it leads until its check of
   * the quorum fails, while the others may already have elected another, whose clock (started at
   * its election) expires the lease. An answer from such a leader would promise the client a TTL
   * the group does not keep. Once confirmed, no other leader was elected before the keep-alive
   * arrived, so any later one starts the TTL again after it, and the lease lives at least its TTL
   * after the client sent the keep-alive.
   */
  const keepAliveAnswer = async (req: LeaseKeepAliveReq): Promise<LeaseKeepAliveResp> => {
    const resp: LeaseKeepAliveResp = {
      id: req.id,
      ttlSeconds: 0,
      errorCode: ErrorCode.OK,
      errorMessage: '',
      leaderAddress: '',
    };
    if (!raft.isLeader()) {
      resp.errorCode = ErrorCode.NOT_LEADER;
      resp.errorMessage = 'keep-alives go to the group leader';
      resp.leaderAddress = raft.addressOf(raft.leaderId());
      return resp;
    }
    // An id that cannot be a lease (or one of another group's) is held by no lease here; it is
    // answered at once, without a ReadIndex, naming what is wrong with it.
    const refusal = notOurs(req.id);
    if (refusal !== null) {
      resp.errorCode = ErrorCode.LEASE_NOT_FOUND;
      resp.errorMessage = refusal;
      return resp;
    }
    const receivedAt = keeper.now();
    try {
      await raft.readIndex();
    } catch (err) {
      const a = errorAnswer(err);
      resp.errorCode = a.errorCode;
      resp.errorMessage = a.errorMessage;
      resp.leaderAddress = a.leaderAddress;
      return resp;
    }
    resp.ttlSeconds = keeper.keepAlive(req.id, receivedAt);
    return resp;
  };

  return {
    lease: unaryHandler<LeaseReq, LeaseResp>(async (req, call) => {
      if (o.access.enabled) {
        const caller = o.access.callerOf(call);
        if (req.action === LeaseAction.LEASE_REVOKE) {
          const lease = stateMachine.leaseTable().get(req.id);
          const empty = Buffer.alloc(0);
          o.access.requireKeys(
            caller,
            [...(lease?.keys ?? [])].map((k) => ({
              kind: 'write' as const,
              start: Buffer.from(k, 'latin1'),
              end: empty,
              what: `a key of lease ${formatLeaseId(req.id)}`,
            })),
          );
        }
        // Any lease call needs a user (the revoke of keys also their write permission, above).
        o.access.requireKeys(caller, []);
      }
      return answer(req);
    }, o.logger),
    leaseKeepAlive: (call) => {
      let inFlight = 0;
      // The client ended its side: the stream ends once every keep-alive sent is answered.
      let clientEnded = false;
      const endWhenAnswered = (): void => {
        if (clientEnded && inFlight === 0 && !call.writableEnded) call.end();
      };
      call.on('data', (req: LeaseKeepAliveReq) => {
        if (++inFlight > keepAlivesInFlightMax) {
          call.emit('error', {
            code: grpc.status.RESOURCE_EXHAUSTED,
            details: `more than ${keepAlivesInFlightMax} keep-alives unanswered on one stream`,
          });
          return;
        }
        keepAliveAnswer(req)
          .then(
            (resp) => {
              if (!call.cancelled && !call.writableEnded) call.write(resp);
            },
            (err: unknown) => {
              const failure = failureStatus(err, o.logger, 'LeaseKeepAlive');
              call.emit('error', { code: failure.status, details: failure.details });
            },
          )
          .finally(() => {
            inFlight--;
            endWhenAnswered();
          });
      });
      call.on('end', () => {
        clientEnded = true;
        endWhenAnswered();
      });
      call.on('error', () => undefined);
    },
  };
}
