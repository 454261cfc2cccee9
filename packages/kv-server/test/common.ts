// Helpers shared by the kv-server tests: temp dirs, log entries for the state machine, a promise
// wrapper around the generated gRPC client, and a fake meta group.
import * as grpc from '@grpc/grpc-js';
import { startFakeERaftKv, type StartedServer } from '@eraftkv/test-support';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ChangeType,
  ClientOperationReq,
  ClientOpType,
  ClusterConfigChangeResp,
  ERaftKvClient,
  ErrorCode,
  HandleServerType,
  KvOpPair,
  ShardGroup,
  slotOfKey,
  SlotStatus,
  type ClientOperationResp,
  type ClusterConfigChangeReq,
} from '@eraftkv/protocol';
import { EntryType, type Entry } from '@eraftkv/raft';
import { encodeClientRequest, encodeConfig, type AppliedConfig } from '../src';

export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `eraftkv-kv-${prefix}-`));
}

// -------------------------------------------------------------------------------------------------
// Requests and log entries
// -------------------------------------------------------------------------------------------------

export const b = (text: string): Buffer => Buffer.from(text, 'utf8');

export const put = (key: Buffer | string, value: Buffer | string): KvOpPair =>
  KvOpPair.fromPartial({
    opType: ClientOpType.Put,
    key: typeof key === 'string' ? b(key) : key,
    value: typeof value === 'string' ? b(value) : value,
  });

export const get = (key: Buffer | string): KvOpPair =>
  KvOpPair.fromPartial({ opType: ClientOpType.Get, key: typeof key === 'string' ? b(key) : key });

export const del = (key: Buffer | string): KvOpPair =>
  KvOpPair.fromPartial({ opType: ClientOpType.Del, key: typeof key === 'string' ? b(key) : key });

export const scan = (start: Buffer | string, end: Buffer | string = '', limit = 0): KvOpPair =>
  KvOpPair.fromPartial({
    opType: ClientOpType.Scan,
    key: typeof start === 'string' ? b(start) : start,
    endKey: typeof end === 'string' ? b(end) : end,
    limit,
  });

export function request(
  ops: KvOpPair[],
  fields: Partial<ClientOperationReq> = {},
): ClientOperationReq {
  return ClientOperationReq.fromPartial({ ...fields, kvs: ops });
}

export function writeEntry(index: number, req: ClientOperationReq): Entry {
  return { index, term: 1, type: EntryType.Normal, data: encodeClientRequest(req) };
}

export function configEntry(index: number, config: AppliedConfig): Entry {
  return { index, term: 1, type: EntryType.Normal, data: encodeConfig(config) };
}

export function noopEntry(index: number): Entry {
  return { index, term: 1, type: EntryType.NoOp, data: new Uint8Array() };
}

/**
 * A config owning `running` (status Running) and `migrating` (status Migrating), and taking
 * `importing` (status Importing) from another group.
 */
export function config(
  version: number,
  slotCount: number,
  running: readonly number[],
  migrating: readonly number[] = [],
  importing: readonly number[] = [],
): AppliedConfig {
  return {
    version,
    slotCount,
    slots: [
      ...running.map((id) => ({ id, status: 'Running' as const })),
      ...migrating.map((id) => ({ id, status: 'Migrating' as const })),
      ...importing.map((id) => ({ id, status: 'Importing' as const })),
    ],
    servers: [],
  };
}

/** A key (with `prefix`) whose slot is `slot`. */
export function keyInSlot(slot: number, slotCount: number, prefix = 'key'): Buffer {
  for (let i = 0; i < 100_000; i++) {
    const key = b(`${prefix}-${i}`);
    if (slotOfKey(key, slotCount) === slot) return key;
  }
  throw new Error(`no key with prefix ${prefix} found in slot ${slot}`);
}

// -------------------------------------------------------------------------------------------------
// gRPC
// -------------------------------------------------------------------------------------------------

export function kvClient(address: string): ERaftKvClient {
  return new ERaftKvClient(address, grpc.credentials.createInsecure());
}

export function processRw(
  client: ERaftKvClient,
  req: ClientOperationReq,
  deadlineMs = 10_000,
): Promise<ClientOperationResp> {
  return new Promise((resolve, reject) =>
    client.processRwOperation(
      req,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, resp) => (err ? reject(err) : resolve(resp)),
    ),
  );
}

/**
 * A meta group of one in-process gRPC server that answers ShardsQuery, ServerJoin and
 * ServerLeave (DataServer) from a topology the test controls; every change bumps the version.
 */
export class FakeMeta {
  private server: StartedServer | null = null;
  address = '';
  configVersion = 0;
  slotCount = 0;
  groups: ShardGroup[] = [];
  readonly requests: ClusterConfigChangeReq[] = [];

  async start(): Promise<void> {
    this.server = await startFakeERaftKv(
      { clusterConfigChange: (call, callback) => callback(null, this.answer(call.request)) },
      { what: 'the fake meta group' },
    );
    this.address = this.server.address;
  }

  /** Sets the topology (a new version). `slots` per group: [id, status]. */
  setTopology(slotCount: number, groups: { id: number; slots: [number, SlotStatus][] }[]): number {
    this.slotCount = slotCount;
    const servers = new Map(this.groups.map((g) => [g.id, g.servers]));
    this.groups = groups.map((g) =>
      ShardGroup.fromPartial({
        id: g.id,
        slots: g.slots.map(([id, slotStatus]) => ({ id, slotStatus })),
        servers: servers.get(g.id) ?? [],
      }),
    );
    return ++this.configVersion;
  }

  group(id: number): ShardGroup | undefined {
    return this.groups.find((g) => g.id === id);
  }

  private answer(req: ClusterConfigChangeReq): ClusterConfigChangeResp {
    this.requests.push(req);
    const reply = (fields: Partial<ClusterConfigChangeResp>): ClusterConfigChangeResp =>
      ClusterConfigChangeResp.fromPartial({
        success: true,
        configVersion: this.configVersion,
        slotCount: this.slotCount,
        shardGroup: this.groups,
        ...fields,
      });
    if (this.configVersion === 0)
      return reply({ success: false, errorCode: ErrorCode.NOT_INITIALIZED });
    switch (req.changeType) {
      case ChangeType.ShardsQuery:
        return reply({});
      case ChangeType.ServerJoin:
      case ChangeType.ServerLeave: {
        const group = this.group(req.shardId);
        const server = req.server;
        if (group === undefined || req.handleServerType !== HandleServerType.DataServer)
          return reply({ success: false, errorCode: ErrorCode.GROUP_NOT_FOUND });
        if (server === undefined) return reply({ success: false, errorCode: ErrorCode.REJECTED });
        const exists = group.servers.some((s) => s.id === server.id);
        if (req.changeType === ChangeType.ServerJoin) {
          if (exists) return reply({ success: false, errorCode: ErrorCode.NODE_EXISTS });
          group.servers.push(server);
        } else {
          if (!exists) return reply({ success: false, errorCode: ErrorCode.NODE_NOT_FOUND });
          group.servers = group.servers.filter((s) => s.id !== server.id);
        }
        this.configVersion++;
        return reply({});
      }
      default:
        return reply({ success: false, errorCode: ErrorCode.REJECTED, errorMessage: 'not faked' });
    }
  }

  async stop(): Promise<void> {
    await this.server?.close();
  }
}
