// Decoding of the requests a server receives. The generated decoders trust their input in two
// ways that a server must not: a message that does not decode throws (grpc-js then answers
// INTERNAL before any handler runs), and an enum field (proto3 int32) whose varint does not fit
// in 32 bits is silently truncated, so that op_type = 2^32 + 1 reads as Put. The decoders here
// never throw: they return an InvalidRequest that names the message type and what is wrong, and
// they refuse every enum value a request's type does not declare, naming the field.
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  AppendEntriesReq,
  AuthAction,
  AuthReq,
  ChangeType,
  ClientOperationReq,
  ClientOpType,
  ClusterConfigChangeReq,
  HandleServerType,
  IdentifyReq,
  MemberChangeReq,
  MemberChangeType,
  PermissionType,
  ReadConsistency,
  RequestVoteReq,
  ServerStatus,
  SlotStatus,
  SlotExportReq,
  SlotImportReq,
  HashKvReq,
  BackupReq,
  WatchReq,
  LeaseAction,
  LeaseReq,
  LeaseKeepAliveReq,
  SnapshotReq,
  StatusReq,
  TimeoutNowReq,
  TransferLeaderReq,
  type ERaftKvService,
} from './generated/eraftkv';
import { HealthCheckRequest } from './generated/grpc/health/v1/health';
import { slotCountMax } from './slot';

/**
 * A BinaryReader whose int32() returns the whole varint. A valid int32 encoding (at most 5 bytes
 * for a non-negative value, 10 sign-extended bytes for a negative one) decodes to the same number
 * as before; a varint outside the int32 range decodes to its 64-bit value, which no enum declares,
 * instead of to its low 32 bits. Every int32 field of eraftkv.proto is an enum.
 */
export class WideInt32Reader extends BinaryReader {
  constructor(bytes: Uint8Array) {
    super(bytes);
  }

  override int32(): number {
    const start = this.pos;
    const value = this.uint32();
    // Four bytes carry at most 28 bits: always in range, and the path every real enum takes.
    if (this.pos - start < 5) return value;
    this.pos = start;
    return Number(this.int64());
  }
}

/** What a server's deserializer returns for a request it refuses; the handler never sees it. */
export class InvalidRequest {
  constructor(
    /** Names the message type and what is wrong (the field, or the decoder's reason). */
    readonly message: string,
  ) {}
}

/** Decodes `bytes` as a request, or says why it cannot be one. */
export type RequestDecoder<T> = (bytes: Uint8Array) => T | InvalidRequest;

interface Decodable<T> {
  decode(input: BinaryReader | Uint8Array, length?: number): T;
}

/** The declared values of a generated enum (ts-proto's UNRECOGNIZED = -1 is not one). */
interface EnumInfo {
  readonly name: string;
  readonly max: number;
  readonly listing: string;
}

function enumInfo(name: string, values: Record<string, string | number>): EnumInfo {
  const declared = Object.entries(values)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number' && entry[1] >= 0)
    .sort((a, b) => a[1] - b[1]);
  // The check below is a range check; it holds only while the values run 0..n without gaps.
  declared.forEach(([, value], i) => {
    if (value !== i) throw new Error(`enum ${name} is not numbered 0..n; use a set check`);
  });
  return {
    name,
    max: declared.length - 1,
    listing: declared.map(([n, v]) => `${n} (${v})`).join(', '),
  };
}

const clientOpType = enumInfo('ClientOpType', ClientOpType);
const readConsistency = enumInfo('ReadConsistency', ReadConsistency);
const changeType = enumInfo('ChangeType', ChangeType);
const handleServerType = enumInfo('HandleServerType', HandleServerType);
const serverStatus = enumInfo('ServerStatus', ServerStatus);
const slotStatus = enumInfo('SlotStatus', SlotStatus);
const memberChangeType = enumInfo('MemberChangeType', MemberChangeType);
const authAction = enumInfo('AuthAction', AuthAction);
const permissionType = enumInfo('PermissionType', PermissionType);
const leaseAction = enumInfo('LeaseAction', LeaseAction);

/** Null when `value` is a declared value of the enum, else why not (naming `field`). */
function enumProblem(info: EnumInfo, value: number, field: string): string | null {
  // `value >>> 0 === value` holds for integers in [0, 2^32); wide or negative values fail it.
  if (value >>> 0 === value && value <= info.max) return null;
  return `${field} is ${value}, which is not a ${info.name}: use ${info.listing}`;
}

function clientOperationProblem(req: ClientOperationReq): string | null {
  const kvs = req.kvs;
  for (let i = 0; i < kvs.length; i++) {
    // The op type as a plain number: it may be any value the wire carried.
    const t: number = kvs[i].opType;
    if (t >>> 0 !== t || t > clientOpType.max)
      return enumProblem(clientOpType, t, `kvs[${i}].op_type`);
  }
  return enumProblem(readConsistency, req.readConsistency, 'read_consistency');
}

function clusterConfigChangeProblem(req: ClusterConfigChangeReq): string | null {
  const problem =
    enumProblem(changeType, req.changeType, 'change_type') ??
    enumProblem(handleServerType, req.handleServerType, 'handle_server_type');
  if (problem !== null) return problem;
  if (req.server !== undefined) {
    const p = enumProblem(serverStatus, req.server.serverStatus, 'server.server_status');
    if (p !== null) return p;
  }
  const group = req.shardGroup;
  if (group === undefined) return null;
  for (let i = 0; i < group.slots.length; i++) {
    const p = enumProblem(
      slotStatus,
      group.slots[i].slotStatus,
      `shard_group.slots[${i}].slot_status`,
    );
    if (p !== null) return p;
  }
  for (let i = 0; i < group.servers.length; i++) {
    const p = enumProblem(
      serverStatus,
      group.servers[i].serverStatus,
      `shard_group.servers[${i}].server_status`,
    );
    if (p !== null) return p;
  }
  return null;
}

function memberChangeProblem(req: MemberChangeReq): string | null {
  return enumProblem(memberChangeType, req.changeType, 'change_type');
}

function authProblem(req: AuthReq): string | null {
  const problem = enumProblem(authAction, req.action, 'action');
  if (problem !== null || req.permission === undefined) return problem;
  return enumProblem(permissionType, req.permission.permType, 'permission.perm_type');
}

/**
 * A decoder for messages of `type` (its full protobuf name, for messages), refusing the
 * problems `check` finds.
 */
export function requestDecoder<T>(
  type: string,
  message: Decodable<T>,
  check?: (req: T) => string | null,
): RequestDecoder<T> {
  return (bytes) => {
    let req: T;
    try {
      req = message.decode(new WideInt32Reader(bytes));
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      return new InvalidRequest(`the request does not decode as ${type}: ${reason}`);
    }
    const problem = check === undefined ? null : check(req);
    return problem === null ? req : new InvalidRequest(`${type}: ${problem}`);
  };
}

type RequestOf<M> = M extends { requestSerialize: (value: infer R) => Buffer } ? R : never;

/** The ERaftKv service's requests, method by method. */
export type ERaftKvRequestDecoders = {
  readonly [K in keyof typeof ERaftKvService]: RequestDecoder<
    RequestOf<(typeof ERaftKvService)[K]>
  >;
};

const clientOperationDecoder = requestDecoder(
  'eraftkv.ClientOperationReq',
  ClientOperationReq,
  clientOperationProblem,
);

/**
 * One decoder per ERaftKv method. Peer messages are checked further by the transport (which
 * drops and counts what it refuses); client requests have every enum field checked here.
 */
export const eraftKvRequestDecoders: ERaftKvRequestDecoders = {
  requestVote: requestDecoder('eraftkv.RequestVoteReq', RequestVoteReq),
  appendEntries: requestDecoder('eraftkv.AppendEntriesReq', AppendEntriesReq),
  appendEntriesStream: requestDecoder('eraftkv.AppendEntriesReq', AppendEntriesReq),
  snapshot: requestDecoder('eraftkv.SnapshotReq', SnapshotReq),
  timeoutNow: requestDecoder('eraftkv.TimeoutNowReq', TimeoutNowReq),
  identify: requestDecoder('eraftkv.IdentifyReq', IdentifyReq),
  processRwOperation: clientOperationDecoder,
  // A stream answers each request's problems in that request's own response (status_code) and
  // goes on, so its enum values are left to the handler's validation (which sees the whole wide
  // value, never a truncated one); only bytes that do not decode end the stream.
  processRwOperationStream: requestDecoder('eraftkv.ClientOperationReq', ClientOperationReq),
  clusterConfigChange: requestDecoder(
    'eraftkv.ClusterConfigChangeReq',
    ClusterConfigChangeReq,
    clusterConfigChangeProblem,
  ),
  memberChange: requestDecoder('eraftkv.MemberChangeReq', MemberChangeReq, memberChangeProblem),
  transferLeader: requestDecoder('eraftkv.TransferLeaderReq', TransferLeaderReq),
  status: requestDecoder('eraftkv.StatusReq', StatusReq),
  slotExport: requestDecoder('eraftkv.SlotExportReq', SlotExportReq, slotExportProblem),
  slotImport: requestDecoder('eraftkv.SlotImportReq', SlotImportReq, slotImportProblem),
  auth: requestDecoder('eraftkv.AuthReq', AuthReq, authProblem),
  hashKv: requestDecoder('eraftkv.HashKvReq', HashKvReq),
  backup: requestDecoder('eraftkv.BackupReq', BackupReq),
  watch: requestDecoder('eraftkv.WatchReq', WatchReq, watchProblem),
  lease: requestDecoder('eraftkv.LeaseReq', LeaseReq, leaseProblem),
  leaseKeepAlive: requestDecoder('eraftkv.LeaseKeepAliveReq', LeaseKeepAliveReq),
};

/** A lease request: a known action, and ids and a TTL within what storage holds. */
function leaseProblem(req: LeaseReq): string | null {
  const action = enumProblem(leaseAction, req.action, 'action');
  if (action !== null) return action;
  for (const [name, value] of [
    ['group_id', req.groupId],
    ['id', req.id],
    ['ttl_seconds', req.ttlSeconds],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0)
      return `${name}: must be in [0, ${Number.MAX_SAFE_INTEGER}], got ${value}`;
  }
  return null;
}

/** A watch: a group id and a start revision within what a log index can be. */
function watchProblem(req: WatchReq): string | null {
  if (!Number.isSafeInteger(req.groupId) || req.groupId < 0)
    return `group_id: must be in [0, ${Number.MAX_SAFE_INTEGER}], got ${req.groupId}`;
  if (!Number.isSafeInteger(req.startRevision) || req.startRevision < 0)
    return `start_revision: must be in [0, ${Number.MAX_SAFE_INTEGER}], got ${req.startRevision}`;
  return null;
}

/** Group ids and config versions of a slot move: positive and within what storage holds. */
function positiveIdProblem(name: string, value: number): string | null {
  return Number.isSafeInteger(value) && value >= 1 && value <= Number.MAX_SAFE_INTEGER
    ? null
    : `${name}: must be in [1, ${Number.MAX_SAFE_INTEGER}], got ${value}`;
}

/** The largest after_key a SlotExport cursor may carry (a key is far smaller). */
const cursorKeyBytesMax = 64 * 1024;

function slotExportProblem(req: SlotExportReq): string | null {
  return (
    slotListProblem(req) ??
    positiveIdProblem('source_shard_id', req.sourceShardId) ??
    positiveIdProblem('config_version', req.configVersion) ??
    (Number.isSafeInteger(req.nextSlot) && req.nextSlot >= 0 && req.nextSlot <= slotCountMax
      ? null
      : `next_slot: must be in [0, ${slotCountMax}], got ${req.nextSlot}`) ??
    (req.afterKey.length <= cursorKeyBytesMax
      ? null
      : `after_key: at most ${cursorKeyBytesMax} bytes, got ${req.afterKey.length}`) ??
    (Number.isSafeInteger(req.dedupAfter) &&
    req.dedupAfter >= 0 &&
    req.dedupAfter <= Number.MAX_SAFE_INTEGER
      ? null
      : `dedup_after: must be in [0, ${Number.MAX_SAFE_INTEGER}], got ${req.dedupAfter}`) ??
    (Number.isSafeInteger(req.budgetBytes) && req.budgetBytes >= 0
      ? null
      : `budget_bytes: must not be negative, got ${req.budgetBytes}`)
  );
}

function slotImportProblem(req: SlotImportReq): string | null {
  const problem =
    slotListProblem(req) ??
    positiveIdProblem('target_shard_id', req.targetShardId) ??
    positiveIdProblem('source_shard_id', req.sourceShardId) ??
    positiveIdProblem('config_version', req.configVersion);
  if (problem !== null) return problem;
  if (req.sourceShardId === req.targetShardId)
    return `source_shard_id: a group cannot import from itself (${req.sourceShardId})`;
  if (req.sourceAddresses.length === 0) return 'source_addresses: at least one is required';
  const bad = req.sourceAddresses.find((a) => !/^[^\s:]+:\d{1,5}$/.test(a));
  return bad === undefined ? null : `source_addresses: "${bad}" is not host:port`;
}

/** A slot move request names at least one slot, each a valid slot id (the bound of the protocol). */
function slotListProblem(req: { slots: number[] }): string | null {
  if (req.slots.length === 0) return 'slots: at least one slot is required';
  if (req.slots.length > slotCountMax) return `slots: at most ${slotCountMax} slots`;
  for (const slot of req.slots) {
    if (!Number.isSafeInteger(slot) || slot < 0 || slot >= slotCountMax)
      return `slots: slot ${slot} is not in [0, ${slotCountMax})`;
  }
  return null;
}

/** The grpc.health.v1.Health service's requests. */
export const healthRequestDecoders = {
  check: requestDecoder('grpc.health.v1.HealthCheckRequest', HealthCheckRequest),
  watch: requestDecoder('grpc.health.v1.HealthCheckRequest', HealthCheckRequest),
} as const;
