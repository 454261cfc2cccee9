// How topology commands travel in the meta group's log: the data of a NORMAL entry is the UTF-8
// JSON of one TopologyCommand, discriminated by its "kind" field, for example
//
//   {"kind":"shard-join","group":{"id":1,"servers":[{"id":1,"address":"127.0.0.1:7088"}]},
//    "request":{"clientId":"ctl-4f2a","commandId":7}}
//
// JSON keeps the log readable with any tool and lets a later version add kinds and fields. The
// decoder checks every field: a malformed entry can only come from a bug or from a newer binary
// in the group, and applying a guess would make replicas diverge, so it throws (which stops the
// node, saying which entry is at fault).
import type { ErrorCode } from '@eraftkv/protocol';
import { authCommandFromJson, authCommandToJson } from '@eraftkv/server-kit';
import type {
  GroupRecord,
  RequestId,
  ServerRecord,
  StoredOutcome,
  TopologyCommand,
} from './topology';

export function encodeCommand(command: TopologyCommand): Buffer {
  const json =
    command.kind === 'auth' ? { ...command, change: authCommandToJson(command.change) } : command;
  return Buffer.from(JSON.stringify(json), 'utf8');
}

export class CommandDecodeError extends Error {
  override name = 'CommandDecodeError';
}

type Json = Record<string, unknown>;

function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CommandDecodeError(`${what} is not an object`);
  }
  return value as Json;
}

function integer(o: Json, field: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw new CommandDecodeError(`field "${field}" is not a safe integer`);
  }
  return v;
}

function string(o: Json, field: string): string {
  const v = o[field];
  if (typeof v !== 'string') throw new CommandDecodeError(`field "${field}" is not a string`);
  return v;
}

function boolean(o: Json, field: string): boolean {
  const v = o[field];
  if (typeof v !== 'boolean') throw new CommandDecodeError(`field "${field}" is not a boolean`);
  return v;
}

function array(o: Json, field: string): unknown[] {
  const v = o[field];
  if (!Array.isArray(v)) throw new CommandDecodeError(`field "${field}" is not an array`);
  return v;
}

function request(o: Json): RequestId | null {
  if (o.request === null) return null;
  const r = object(o.request, 'field "request"');
  return { clientId: string(r, 'clientId'), commandId: integer(r, 'commandId') };
}

function server(value: unknown): ServerRecord {
  const s = object(value, 'a server');
  return { id: integer(s, 'id'), address: string(s, 'address') };
}

function group(value: unknown): GroupRecord {
  const g = object(value, 'field "group"');
  return { id: integer(g, 'id'), servers: array(g, 'servers').map(server) };
}

function outcome(value: unknown): StoredOutcome | null {
  if (value === null) return null;
  const f = object(value, 'field "failure"');
  return { code: integer(f, 'code') as ErrorCode, message: string(f, 'message') };
}

function slotIds(o: Json, field: string): number[] {
  return array(o, field).map((v) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
      throw new CommandDecodeError(`field "${field}" holds a non-integer`);
    }
    return v;
  });
}

/** Decodes the data of a NORMAL entry; throws CommandDecodeError naming the entry. */
export function decodeCommand(data: Uint8Array, index: number): TopologyCommand {
  try {
    const o = object(JSON.parse(Buffer.from(data).toString('utf8')) as unknown, 'the command');
    const kind = string(o, 'kind');
    switch (kind) {
      case 'cluster-init':
        return {
          kind,
          slotCount: integer(o, 'slotCount'),
          dedupWindowEntries: integer(o, 'dedupWindowEntries'),
          request: request(o),
        };
      case 'shard-join':
        return { kind, group: group(o.group), request: request(o) };
      case 'shard-leave':
        return { kind, groupId: integer(o, 'groupId'), request: request(o) };
      case 'server-join':
        return {
          kind,
          groupId: integer(o, 'groupId'),
          server: server(o.server),
          request: request(o),
        };
      case 'server-leave':
        return {
          kind,
          groupId: integer(o, 'groupId'),
          serverId: integer(o, 'serverId'),
          request: request(o),
        };
      case 'slot-move-begin':
        return {
          kind,
          target: integer(o, 'target'),
          slots: slotIds(o, 'slots'),
          nowMs: integer(o, 'nowMs'),
          request: request(o),
        };
      case 'slot-move-finish':
        return {
          kind,
          target: integer(o, 'target'),
          moves: array(o, 'moves').map((m) => {
            const move = object(m, 'a move');
            return { slot: integer(move, 'slot'), sinceVersion: integer(move, 'sinceVersion') };
          }),
          commit: boolean(o, 'commit'),
          failure: outcome(o.failure),
          nowMs: integer(o, 'nowMs'),
          request: request(o),
        };
      case 'auth':
        return { kind, change: authCommandFromJson(o.change), request: request(o) };
      default:
        throw new CommandDecodeError(`unknown command kind "${kind}"`);
    }
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CommandDecodeError(
      `log entry ${index} is not a valid topology command (${reason}); a bug or a newer eraftkv-meta wrote it`,
    );
  }
}
