// What a kv group's log carries (docs/servers-contract.md): the first byte of a normal entry says
// what follows. Kind 1 is a client write request (the rest is a protobuf ClientOperationReq);
// kind 2 is the group's config as the leader learned it from the meta group (the rest is the
// JSON of AppliedConfig). Config travels in the log, not beside it, so that every replica decides
// slot ownership for every write at the same point of the log. Kinds 3-5 move slots with their
// data (docs/slot-migration.md): 3 begins an import (JSON of ImportBegin), 4 is one chunk of it
// (a protobuf SlotMoveChunk), 5 deletes keys of slots the group does not serve (JSON of Drop).
// Kind 6 is the cluster's users, roles and permissions as the leader fetched them from the meta
// group (JSON of AuthTableJson): every replica checks requests against the same table.
import {
  ClientOperationReq,
  encodeMessage,
  SlotMoveChunk,
  ReadConsistency,
  SlotStatus,
  slotCountMax,
  type ShardGroup,
} from '@eraftkv/protocol';
import { InvalidArgumentError } from '@eraftkv/raft-server';
import { AuthTable, authTableBytesMax } from '@eraftkv/server-kit';

export enum CommandKind {
  ClientRequest = 1,
  Config = 2,
  ImportBegin = 3,
  ImportChunk = 4,
  Drop = 5,
  Auth = 6,
  /** A consistency check: every replica digests its state at this entry's index (HashKv). */
  Check = 7,
  /** Grants a lease (JSON of LeaseGrant); its id is the group's and the entry's index. */
  LeaseGrant = 8,
  /** Revokes a lease and deletes its keys (JSON of LeaseRevoke): asked, or its TTL ran out. */
  LeaseRevoke = 9,
}

export interface LeaseGrant {
  readonly ttlSeconds: number;
}

export interface LeaseRevoke {
  readonly id: number;
}

/** The longest TTL a lease can be granted with (the record holds a u32). */
export const leaseTtlSecondsMax = 0xffff_ffff;

/** The start of an import: the target takes `slots` from group `source` for the move begun at `version`. */
export interface ImportBegin {
  readonly source: number;
  readonly version: number;
  readonly slots: readonly number[];
}

/** Deletes at most `limit` keys of `slots`, which the group must neither serve nor import. */
export interface Drop {
  readonly slots: readonly number[];
  readonly limit: number;
}

/** The most keys one Drop may delete (one apply batch). */
export const dropKeysMax = 4096;

/** The status of a slot as a kv group stores it: the SlotStatus names of the wire contract. */
export type SlotStatusName = 'Running' | 'Migrating' | 'Importing' | 'Init';

export interface ConfigSlot {
  readonly id: number;
  readonly status: SlotStatusName;
}

export interface ConfigServer {
  readonly id: number;
  readonly address: string;
}

/**
 * The group's record in the topology at `version`: the slots the meta group lists for this group
 * (a slot is served only while its status is Running) and the servers it records. Slots and
 * servers are kept sorted by id so that equal configs encode to equal bytes.
 */
export interface AppliedConfig {
  readonly version: number;
  readonly slotCount: number;
  readonly slots: readonly ConfigSlot[];
  readonly servers: readonly ConfigServer[];
}

/** A decoded log command: what the state machine applies. */
export type KvCommand =
  | { readonly kind: CommandKind.ClientRequest; readonly request: ClientOperationReq }
  | { readonly kind: CommandKind.Config; readonly config: AppliedConfig }
  | { readonly kind: CommandKind.ImportBegin; readonly begin: ImportBegin }
  | { readonly kind: CommandKind.ImportChunk; readonly chunk: SlotMoveChunk }
  | { readonly kind: CommandKind.Drop; readonly drop: Drop }
  | { readonly kind: CommandKind.Auth; readonly table: AuthTable }
  | { readonly kind: CommandKind.Check }
  | { readonly kind: CommandKind.LeaseGrant; readonly grant: LeaseGrant }
  | { readonly kind: CommandKind.LeaseRevoke; readonly revoke: LeaseRevoke };

/** A log entry that cannot be decoded. Every replica reaches the same verdict on the same bytes. */
export class CommandDecodeError extends Error {
  override name = 'CommandDecodeError';
}

const statusNames: Record<SlotStatusName, SlotStatus> = {
  Running: SlotStatus.Running,
  Migrating: SlotStatus.Migrating,
  Importing: SlotStatus.Importing,
  Init: SlotStatus.Init,
};

export function slotStatusName(status: SlotStatus): SlotStatusName {
  switch (status) {
    case SlotStatus.Running:
      return 'Running';
    case SlotStatus.Migrating:
      return 'Migrating';
    case SlotStatus.Importing:
      return 'Importing';
    case SlotStatus.Init:
      return 'Init';
    case SlotStatus.UNRECOGNIZED:
    default:
      throw new InvalidArgumentError(`unknown slot status ${String(status)}`);
  }
}

export function slotStatusFromName(name: SlotStatusName): SlotStatus {
  return statusNames[name];
}

/**
 * Encodes a client write request. Only the fields a write needs are kept (ids and, per op, the
 * type, key, value and op_sign): response-only fields a client may have filled in would only
 * take room in every replica's log.
 */
export function encodeClientRequest(req: ClientOperationReq): Buffer {
  const kept: ClientOperationReq = {
    opTimestamp: 0,
    clientId: req.clientId,
    commandId: req.commandId,
    kvs: req.kvs.map((op) => ({
      opType: op.opType,
      key: op.key,
      value: op.value,
      success: false,
      opSign: op.opSign,
      endKey: emptyBytes,
      limit: 0,
      found: false,
      kvs: [],
      more: false,
      deleted: 0,
      lease: op.lease,
    })),
    readConsistency: ReadConsistency.LINEARIZABLE,
    configVersion: 0,
    requestId: 0,
  };
  return encodeMessage(ClientOperationReq, kept, CommandKind.ClientRequest);
}

const emptyBytes = Buffer.alloc(0);

/** Encodes a config entry (canonical: sorted slots and servers, fixed key order). */
export function encodeConfig(config: AppliedConfig): Buffer {
  const canonical = normalizeConfig(config);
  return Buffer.concat([
    Buffer.from([CommandKind.Config]),
    Buffer.from(JSON.stringify(canonical), 'utf8'),
  ]);
}

export function decodeCommand(data: Uint8Array): KvCommand {
  if (data.length === 0) throw new CommandDecodeError('empty command');
  const body = data.subarray(1);
  switch (data[0] as CommandKind) {
    case CommandKind.ClientRequest: {
      let request: ClientOperationReq;
      try {
        request = ClientOperationReq.decode(body);
      } catch (err) {
        throw new CommandDecodeError(`client request does not decode: ${(err as Error).message}`);
      }
      return { kind: CommandKind.ClientRequest, request };
    }
    case CommandKind.Config:
      return { kind: CommandKind.Config, config: parseConfigJson(Buffer.from(body).toString()) };
    case CommandKind.ImportBegin:
      return { kind: CommandKind.ImportBegin, begin: parseImportBegin(body) };
    case CommandKind.ImportChunk: {
      let chunk: SlotMoveChunk;
      try {
        chunk = SlotMoveChunk.decode(body);
      } catch (err) {
        throw new CommandDecodeError(`import chunk does not decode: ${(err as Error).message}`);
      }
      return { kind: CommandKind.ImportChunk, chunk };
    }
    case CommandKind.Drop:
      return { kind: CommandKind.Drop, drop: parseDrop(body) };
    case CommandKind.Auth:
      return { kind: CommandKind.Auth, table: parseAuthTable(body) };
    case CommandKind.Check:
      if (body.length !== 0)
        throw new CommandDecodeError(`a check entry carries no body, not ${body.length} bytes`);
      return { kind: CommandKind.Check };
    case CommandKind.LeaseGrant: {
      const o = parseJsonObject(body, 'lease grant');
      if (
        !isNonNegativeInteger(o.ttlSeconds) ||
        o.ttlSeconds < 1 ||
        o.ttlSeconds > leaseTtlSecondsMax
      )
        throw new CommandDecodeError(
          `lease grant TTL must be in [1, ${leaseTtlSecondsMax}] seconds, got ${String(o.ttlSeconds)}`,
        );
      return { kind: CommandKind.LeaseGrant, grant: { ttlSeconds: o.ttlSeconds } };
    }
    case CommandKind.LeaseRevoke: {
      const o = parseJsonObject(body, 'lease revoke');
      if (!isNonNegativeInteger(o.id) || o.id < 1)
        throw new CommandDecodeError(`lease revoke id must be positive, got ${String(o.id)}`);
      return { kind: CommandKind.LeaseRevoke, revoke: { id: o.id } };
    }
    default:
      throw new CommandDecodeError(`unknown command kind ${data[0]}`);
  }
}

/** Encodes a consistency check entry (no body: its index is what it names). */
export function encodeCheck(): Buffer {
  return Buffer.from([CommandKind.Check]);
}

/** Encodes the auth table (its JSON as the meta group sent it, checked on decode). */
export function encodeAuth(table: AuthTable): Buffer {
  return jsonCommand(CommandKind.Auth, table.toJson());
}

/** The auth table of an entry or of the stored record; CommandDecodeError if it is malformed. */
export function parseAuthTable(body: Uint8Array): AuthTable {
  // The meta group never builds a larger table; a larger one is damaged or not from it.
  if (body.length > authTableBytesMax)
    throw new CommandDecodeError(
      `auth table of ${body.length} bytes is larger than ${authTableBytesMax}`,
    );
  try {
    return AuthTable.fromJson(JSON.parse(Buffer.from(body).toString('utf8')) as unknown);
  } catch (err) {
    throw new CommandDecodeError(`auth table does not decode: ${(err as Error).message}`);
  }
}

export function encodeImportBegin(begin: ImportBegin): Buffer {
  const slots = sortedSlots(begin.slots, 'import');
  return jsonCommand(CommandKind.ImportBegin, {
    source: begin.source,
    version: begin.version,
    slots,
  });
}

export function encodeImportChunk(chunk: SlotMoveChunk): Buffer {
  return encodeMessage(SlotMoveChunk, chunk, CommandKind.ImportChunk);
}

export function encodeLeaseGrant(grant: LeaseGrant): Buffer {
  return jsonCommand(CommandKind.LeaseGrant, { ttlSeconds: grant.ttlSeconds });
}

export function encodeLeaseRevoke(revoke: LeaseRevoke): Buffer {
  return jsonCommand(CommandKind.LeaseRevoke, { id: revoke.id });
}

export function encodeDrop(drop: Drop): Buffer {
  if (!isNonNegativeInteger(drop.limit) || drop.limit < 1 || drop.limit > dropKeysMax)
    throw new CommandDecodeError(`drop limit must be in [1, ${dropKeysMax}], got ${drop.limit}`);
  return jsonCommand(CommandKind.Drop, {
    slots: sortedSlots(drop.slots, 'drop'),
    limit: drop.limit,
  });
}

function jsonCommand(kind: CommandKind, body: object): Buffer {
  return Buffer.concat([Buffer.from([kind]), Buffer.from(JSON.stringify(body), 'utf8')]);
}

function parseJsonObject(body: Uint8Array, what: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch (err) {
    throw new CommandDecodeError(`${what} is not JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new CommandDecodeError(`${what} is not an object`);
  return raw as Record<string, unknown>;
}

/** Slot ids ascending, each once, each below slotCountMax; at least one. */
function sortedSlots(slots: unknown, what: string): number[] {
  if (!Array.isArray(slots) || slots.length === 0)
    throw new CommandDecodeError(`${what} slots must be a non-empty array`);
  const out = (slots as unknown[]).map((slot) => {
    if (!isNonNegativeInteger(slot) || slot >= slotCountMax)
      throw new CommandDecodeError(`${what} slot ${String(slot)} is not below ${slotCountMax}`);
    return slot;
  });
  out.sort((a, b) => a - b);
  for (let i = 1; i < out.length; i++) {
    if (out[i] === out[i - 1]) throw new CommandDecodeError(`${what} lists slot ${out[i]} twice`);
  }
  return out;
}

function parseImportBegin(body: Uint8Array): ImportBegin {
  const o = parseJsonObject(body, 'import begin');
  if (!isNonNegativeInteger(o.source) || o.source < 1)
    throw new CommandDecodeError(
      `import source must be a positive group id, got ${String(o.source)}`,
    );
  if (!isNonNegativeInteger(o.version) || o.version < 1)
    throw new CommandDecodeError(`import version must be positive, got ${String(o.version)}`);
  return { source: o.source, version: o.version, slots: sortedSlots(o.slots, 'import') };
}

function parseDrop(body: Uint8Array): Drop {
  const o = parseJsonObject(body, 'drop');
  if (!isNonNegativeInteger(o.limit) || o.limit < 1 || o.limit > dropKeysMax)
    throw new CommandDecodeError(
      `drop limit must be in [1, ${dropKeysMax}], got ${String(o.limit)}`,
    );
  return { slots: sortedSlots(o.slots, 'drop'), limit: o.limit };
}

/** Parses and checks the JSON of an AppliedConfig (a log entry or the stored copy). */
export function parseConfigJson(text: string): AppliedConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CommandDecodeError(`config is not JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null)
    throw new CommandDecodeError('config is not an object');
  const o = raw as Record<string, unknown>;
  const version = o.version;
  const slotCount = o.slotCount;
  if (!isNonNegativeInteger(version) || version < 1)
    throw new CommandDecodeError(
      `config version must be a positive integer, got ${String(version)}`,
    );
  if (!isNonNegativeInteger(slotCount) || slotCount < 1 || slotCount > slotCountMax)
    throw new CommandDecodeError(
      `config slotCount must be an integer in [1, ${slotCountMax}], got ${String(slotCount)}`,
    );
  if (!Array.isArray(o.slots) || !Array.isArray(o.servers))
    throw new CommandDecodeError('config slots and servers must be arrays');
  const slots = (o.slots as unknown[]).map((s): ConfigSlot => {
    const slot = s as Record<string, unknown>;
    if (!isNonNegativeInteger(slot.id) || slot.id >= slotCount)
      throw new CommandDecodeError(`config slot id ${String(slot.id)} is not below ${slotCount}`);
    if (typeof slot.status !== 'string' || !(slot.status in statusNames))
      throw new CommandDecodeError(
        `config slot ${slot.id} has unknown status ${String(slot.status)}`,
      );
    return { id: slot.id, status: slot.status as SlotStatusName };
  });
  const servers = (o.servers as unknown[]).map((s): ConfigServer => {
    const server = s as Record<string, unknown>;
    if (!isNonNegativeInteger(server.id) || typeof server.address !== 'string')
      throw new CommandDecodeError('config servers must be {id, address}');
    return { id: server.id, address: server.address };
  });
  return normalizeConfig({ version, slotCount, slots, servers });
}

/** Sorts and de-duplicates; a slot listed twice is a malformed config. */
function normalizeConfig(config: AppliedConfig): AppliedConfig {
  const slots = [...config.slots]
    .map((s) => ({ id: s.id, status: s.status }))
    .sort((a, b) => a.id - b.id);
  for (let i = 1; i < slots.length; i++) {
    if (slots[i].id === slots[i - 1].id)
      throw new CommandDecodeError(`config lists slot ${slots[i].id} twice`);
  }
  const servers = [...config.servers]
    .map((s) => ({ id: s.id, address: s.address }))
    .sort((a, b) => a.id - b.id);
  return { version: config.version, slotCount: config.slotCount, slots, servers };
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * The config of group `groupId` at `version` from the meta group's topology: the group's record
 * (its slots and servers), or an empty record when the topology has no such group (it owns
 * nothing yet, or any more).
 */
export function configFromTopology(options: {
  readonly groupId: number;
  readonly version: number;
  readonly slotCount: number;
  readonly groups: readonly ShardGroup[];
}): AppliedConfig {
  const record = options.groups.find((g) => g.id === options.groupId);
  // Slots other groups are moving to this one: listed Importing (kept through gc, not served).
  const importing = options.groups
    .filter((g) => g.id !== options.groupId)
    .flatMap((g) => g.slots)
    .filter((s) => s.slotStatus === SlotStatus.Migrating && s.targetShardId === options.groupId)
    .map((s) => ({ id: s.id, status: 'Importing' as const }));
  const config: AppliedConfig = {
    version: options.version,
    slotCount: options.slotCount,
    slots: [
      ...(record?.slots ?? []).map((s) => ({ id: s.id, status: slotStatusName(s.slotStatus) })),
      ...importing,
    ],
    servers: (record?.servers ?? []).map((s) => ({ id: s.id, address: s.address })),
  };
  // The same checks as on apply, so that a config the replicas would refuse never enters the log.
  return parseConfigJson(JSON.stringify(config));
}
