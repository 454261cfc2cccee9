// The kv server's own RPCs (docs/servers-contract.md, "ProcessRWOperation"): client reads and
// writes, and the meta leader's SlotMove hand-over. Malformed input is INVALID_ARGUMENT before
// anything is read or proposed; routing outcomes travel as error codes with the leader's address
// and the applied config version; overload and stops become gRPC statuses; both through
// server-kit's error mapping, as everywhere.
import * as grpc from '@grpc/grpc-js';
import {
  ChangeType,
  ClientOpType,
  ErrorCode,
  ReadConsistency,
  type ClientOperationReq,
  type ClientOperationResp,
  type ClusterConfigChangeReq,
  type ClusterConfigChangeResp,
  type ERaftKvServer,
  type KvOpPair,
  type SlotExportReq,
  type SlotExportResp,
  type SlotImportReq,
  type SlotImportResp,
} from '@eraftkv/protocol';
import {
  anonymousCaller,
  errorAnswer,
  failureStatus,
  unaryHandler,
  type AccessControl,
  type Caller,
  type KeyAccess,
  type MemberAuthenticator,
} from '@eraftkv/server-kit';
import {
  AccessDeniedError,
  BusyError,
  InvalidArgumentError,
  LimitExceededError,
  type Logger,
  type PeerCall,
  type RaftServer,
} from '@eraftkv/raft-server';
import type { ConfigWatcher } from './config-watcher';
import type { DataStateMachine, KvApplyResult } from './data-state-machine';
import type { SlotImporter } from './slot-importer';
import { encodeClientRequest } from './kv-commands';
import { checkEntrySize, validateClientRequest, type KvLimits } from './request-validation';

export interface KvServiceOptions {
  readonly groupId: number;
  readonly raft: RaftServer<KvApplyResult>;
  readonly stateMachine: DataStateMachine;
  readonly watcher: ConfigWatcher;
  readonly importer: SlotImporter;
  readonly limits: KvLimits;
  /** Where errors that become INTERNAL (bugs) are logged. */
  readonly logger: Logger;
  /** Counts a request answered SLOT_MIGRATING (its slot frozen by a move; clients retry it). */
  readonly onSlotMigrating?: () => void;
  /**
   * With peer TLS, the calls of other groups' servers are taken only from their peer
   * certificates: the SlotMove hand-over and SlotImport from a meta node (group 0), SlotExport
   * from a member of any group (the target's leader), since they freeze slots and copy data.
   */
  readonly authenticateMember?: MemberAuthenticator;
  /** With auth enabled, what each user may read and write (checked before anything is done). */
  readonly access?: AccessControl;
}

export type KvServiceHandlers = Pick<
  ERaftKvServer,
  | 'processRwOperation'
  | 'processRwOperationStream'
  | 'clusterConfigChange'
  | 'slotExport'
  | 'slotImport'
  | 'auth'
>;

/** The most a chunk of a slot move's export may carry, and what it carries when not told. */
const exportBudgetBytesMax = 4 * 1024 * 1024;
const exportBudgetBytesDefault = 1024 * 1024;

/** How long a SlotImport call runs at most when its caller set no deadline. */
const importCallMsMax = 60_000;

/** Requests one stream may have in flight before more are refused with RESOURCE_EXHAUSTED. */
const streamRequestsInFlightMax = 4096;

interface Outcome {
  readonly ops?: KvOpPair[];
  readonly errorCode?: ErrorCode;
  readonly errorMessage?: string;
  /** Overrides of the leader hint (from a NotLeaderError, which knows best). */
  readonly leaderId?: number;
  readonly leaderAddress?: string;
  /** The group's revision the request produced or saw. */
  readonly revision?: number;
}

const emptyKey = Buffer.alloc(0);
const toTheEnd = Buffer.from([0]);

function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** The keys each operation of a (valid) request reads or writes, for the auth check. */
export function keyAccessesOf(req: ClientOperationReq): KeyAccess[] {
  return req.kvs.map((op, i) => {
    const what = `kvs[${i}] (${ClientOpType[op.opType] ?? String(op.opType)})`;
    const start = bufferOf(op.key);
    switch (op.opType) {
      case ClientOpType.Put:
      case ClientOpType.Del:
        return { kind: 'write', start, end: emptyKey, what };
      case ClientOpType.Scan:
        // An empty end means to the end of the key space.
        return {
          kind: 'read',
          start,
          end: op.endKey.length === 0 ? toTheEnd : bufferOf(op.endKey),
          what,
        };
      default:
        return { kind: 'read', start, end: emptyKey, what };
    }
  });
}

export function kvServiceHandlers(options: KvServiceOptions): KvServiceHandlers {
  const { raft, stateMachine, limits, groupId } = options;

  const callerOf = (call: PeerCall): Caller => options.access?.callerOf(call) ?? anonymousCaller;

  /** Refuses a call that does not come from a member of `group` (null: any; with peer TLS). */
  const memberOnly = (call: PeerCall, group: number | null, method: string): void => {
    const problem = options.authenticateMember?.(call, group) ?? null;
    if (problem !== null)
      throw new AccessDeniedError(
        problem.kind,
        `${method} is for ${group === 0 ? 'the meta group' : 'cluster members'}: ${problem.message}`,
      );
  };

  /** A wrong-shard result: SLOT_MIGRATING (counted) while the slot moves, else WRONG_SHARD. */
  const notServed = (result: { migrating: boolean; message: string }): Outcome => {
    if (result.migrating) options.onSlotMigrating?.();
    return {
      errorCode: result.migrating ? ErrorCode.SLOT_MIGRATING : ErrorCode.WRONG_SHARD,
      errorMessage: result.message,
    };
  };

  /** Every response names the group, the applied config version and the leader. */
  const respond = (outcome: Outcome): ClientOperationResp => {
    const leaderId = outcome.leaderId ?? raft.leaderId();
    return {
      ops: outcome.ops ?? [],
      errorCode: outcome.errorCode ?? ErrorCode.OK,
      leaderAddress: outcome.leaderAddress ?? raft.addressOf(leaderId),
      configVersion: stateMachine.configVersion(),
      errorMessage: outcome.errorMessage ?? '',
      leaderId,
      groupId,
      requestId: 0,
      statusCode: 0,
      revision: outcome.revision ?? 0,
    };
  };

  /** A RaftServer refusal as a routing answer (other errors are rethrown by errorAnswer). */
  const refused = (err: unknown): ClientOperationResp => {
    const a = errorAnswer(err);
    return respond({
      errorCode: a.errorCode,
      errorMessage: a.errorMessage,
      leaderId: a.leaderId,
      leaderAddress: a.leaderAddress,
    });
  };

  const read = async (req: ClientOperationReq): Promise<ClientOperationResp> => {
    if (req.readConsistency === ReadConsistency.LINEARIZABLE) {
      // A follower refuses at once (NOT_LEADER with the leader's address); the leader resolves
      // once its applied state includes every write acknowledged before this read began.
      try {
        await raft.readIndex();
      } catch (err) {
        return refused(err);
      }
    }
    let result;
    try {
      result = await stateMachine.read(req.kvs, limits, req.configVersion);
    } catch (err) {
      return refused(err);
    }
    switch (result.kind) {
      case 'read':
        return respond({ ops: result.ops, revision: result.revision });
      case 'wrong-shard':
        return respond(notServed(result));
      case 'snapshotting':
        return respond({ errorCode: ErrorCode.SNAPSHOTTING, errorMessage: result.message });
      case 'stale-config':
        return respond({ errorCode: ErrorCode.STALE_SERVER_CONFIG, errorMessage: result.message });
      case 'too-large':
        throw new LimitExceededError(result.message);
    }
  };

  const write = async (req: ClientOperationReq): Promise<ClientOperationResp> => {
    const entry = encodeClientRequest(req);
    checkEntrySize(entry.length, limits);
    let result: KvApplyResult | undefined;
    try {
      result = await raft.propose(entry);
    } catch (err) {
      return refused(err);
    }
    if (result === undefined) throw new Error('a client request was applied without a result');
    switch (result.kind) {
      case 'applied':
        return respond({ ops: result.ops, revision: result.revision });
      case 'wrong-shard':
        return respond(notServed(result));
      case 'rejected':
        throw new InvalidArgumentError(result.message);
      case 'config':
      case 'auth':
      case 'moved':
      case 'check':
      case 'lease':
        throw new Error(`a client request was applied as a ${result.kind} entry`);
    }
  };

  /**
   * Read requests with a Scan being served. Each may hold a response of up to
   * limits.responseBytesMax and keeps applies waiting while it reads, so their number is bounded:
   * beyond it a scan is RESOURCE_EXHAUSTED, which clients retry with backoff.
   */
  let scanRequestsInFlight = 0;
  const scanRead = async (req: ClientOperationReq): Promise<ClientOperationResp> => {
    if (scanRequestsInFlight >= limits.scanRequestsInFlightMax) {
      throw new BusyError(
        `${scanRequestsInFlight} scan requests are already being served by this node (--scan-requests-in-flight-max); retry with backoff`,
      );
    }
    scanRequestsInFlight++;
    try {
      return await read(req);
    } finally {
      scanRequestsInFlight--;
    }
  };

  /**
   * Refuses a request whose keys its user may not touch. A refusal is decided again once if the
   * meta group had a newer table (a grant made just before the request), never an acceptance.
   */
  const checkAccess = async (req: ClientOperationReq, caller: Caller): Promise<void> => {
    const access = options.access;
    if (access === undefined || !access.enabled) return;
    const accesses = keyAccessesOf(req);
    try {
      access.requireKeys(caller, accesses);
    } catch (err) {
      if (!(err instanceof AccessDeniedError) || !(await options.watcher.refreshAuth())) throw err;
      access.requireKeys(caller, accesses);
    }
  };

  const handle = async (
    req: ClientOperationReq,
    caller: () => Caller,
  ): Promise<ClientOperationResp> => {
    const kind = validateClientRequest(req, limits);
    if (options.access?.enabled === true) await checkAccess(req, caller());
    switch (kind) {
      case 'read':
        return read(req);
      case 'scan':
        return scanRead(req);
      case 'write':
        return write(req);
    }
  };

  /** What a unary call would have ended with, as a response on the stream. */
  const failedOnStream = (err: unknown, requestId: number, method: string): ClientOperationResp => {
    const { status, details } = failureStatus(err, options.logger, method);
    return { ...respond({ errorMessage: details }), requestId, statusCode: status };
  };

  return {
    processRwOperation: unaryHandler<ClientOperationReq, ClientOperationResp>(
      (req, call) => handle(req, () => callerOf(call)),
      options.logger,
    ),
    processRwOperationStream: (call) => {
      // One stream, one connection, one certificate: its caller is found once, when needed.
      let caller: Caller | null = null;
      const streamCaller = (): Caller => (caller ??= callerOf(call));
      let inFlight = 0;
      let ended = false;
      const finishIfDone = (): void => {
        if (ended && inFlight === 0) call.end();
      };
      call.on('data', (req: ClientOperationReq) => {
        if (inFlight >= streamRequestsInFlightMax) {
          const busy = new BusyError(
            `${streamRequestsInFlightMax} requests are already in flight on this stream; wait for answers`,
          );
          call.write(failedOnStream(busy, req.requestId, call.getPath()));
          return;
        }
        inFlight++;
        const answer = (resp: ClientOperationResp): void => {
          inFlight--;
          try {
            if (!call.cancelled && !call.writableEnded) call.write(resp);
            finishIfDone();
          } catch (err) {
            // Writing the answer failed: nobody is left to answer, the error is only logged.
            failureStatus(err, options.logger, call.getPath());
          }
        };
        let handling: Promise<ClientOperationResp>;
        try {
          handling = handle(req, streamCaller);
        } catch (err) {
          handling = Promise.reject(err instanceof Error ? err : new Error(String(err)));
        }
        handling.then(
          (resp) => {
            // respond() built this answer for this request alone: it is stamped in place.
            resp.requestId = req.requestId;
            resp.statusCode = 0;
            answer(resp);
          },
          (err: unknown) => answer(failedOnStream(err, req.requestId, call.getPath())),
        );
      });
      call.on('end', () => {
        ended = true;
        finishIfDone();
      });
      call.on('error', () => {
        ended = true;
      });
    },
    clusterConfigChange: unaryHandler<ClusterConfigChangeReq, ClusterConfigChangeResp>(
      async (req, call) => {
        memberOnly(call, 0, 'the SlotMove hand-over');
        if (req.changeType !== ChangeType.SlotMove) {
          throw new InvalidArgumentError(
            `a kv server answers only the SlotMove hand-over of the meta leader, not ${ChangeType[req.changeType] ?? String(req.changeType)}; send topology requests to the meta group`,
          );
        }
        return options.watcher.handOver(req);
      },
      options.logger,
    ),
    slotExport: unaryHandler<SlotExportReq, SlotExportResp>(async (req, call) => {
      memberOnly(call, null, 'SlotExport');
      if (req.sourceShardId !== groupId) {
        throw new InvalidArgumentError(
          `source_shard_id ${req.sourceShardId} is not this group (${groupId})`,
        );
      }
      const budget = req.budgetBytes === 0 ? exportBudgetBytesDefault : req.budgetBytes;
      if (budget < 0 || budget > exportBudgetBytesMax)
        throw new InvalidArgumentError(`budget_bytes must be in [0, ${exportBudgetBytesMax}]`);
      try {
        const chunk = await stateMachine.exportSlots({
          source: groupId,
          version: req.configVersion,
          slots: req.slots,
          nextSlot: req.nextSlot,
          afterKey: req.afterKey,
          dedupAfter: req.dedupAfter,
          budgetBytes: budget,
        });
        return { errorCode: ErrorCode.OK, errorMessage: '', chunk };
      } catch (err) {
        const answer = errorAnswer(err);
        return { errorCode: answer.errorCode, errorMessage: answer.errorMessage, chunk: undefined };
      }
    }, options.logger),
    auth: (_call, callback) =>
      callback({
        code: grpc.status.UNIMPLEMENTED,
        details: 'this is a kv server; send user, role and permission requests to the meta group',
      }),
    slotImport: unaryHandler<SlotImportReq, SlotImportResp>(async (req, call) => {
      memberOnly(call, 0, 'SlotImport');
      const asked = call.getDeadline();
      const askedMs = asked instanceof Date ? asked.getTime() : asked;
      const deadline = Math.min(
        Number.isFinite(askedMs) ? askedMs : Infinity,
        Date.now() + importCallMsMax,
      );
      try {
        return await options.importer.import(req, deadline);
      } catch (err) {
        const answer = errorAnswer(err);
        return {
          errorCode: answer.errorCode,
          errorMessage: answer.errorMessage,
          leaderAddress: answer.leaderAddress,
          done: false,
          keys: 0,
          bytes: 0,
        };
      }
    }, options.logger),
  };
}
