// A fake meta node on 127.0.0.1 (real gRPC) for the client's tests: it answers
// ClusterConfigChange with the topology a test sets (groups, their servers and slots, a config
// version over `slotCount` slots) and counts the ShardsQuery requests. With it, what the suites
// against fake kv nodes share: clients that retry fast, and keys of chosen slots.
import {
  ChangeType,
  ErrorCode,
  slotOfKey,
  SlotStatus,
  type ClusterConfigChangeReq,
  type ClusterConfigChangeResp,
  type ERaftKvServer,
} from '@eraftkv/protocol';
import { startFakeERaftKv, type StartedServer } from '@eraftkv/test-support';
import { EraftKvClient } from '../src';

export const slotCount = 16;

export interface FakeMeta {
  address: string;
  server: StartedServer | null;
  queries: number;
  /** group id -> { servers, slots } */
  groups: Map<number, { servers: string[]; slots: number[] }>;
  version: number;
  requests: ClusterConfigChangeReq[];
}

export async function startMeta(): Promise<FakeMeta> {
  const fake: FakeMeta = {
    address: '',
    server: null,
    queries: 0,
    groups: new Map(),
    version: 1,
    requests: [],
  };
  const topology = (): ClusterConfigChangeResp => ({
    success: true,
    shardGroup: [
      {
        id: 0,
        slots: [],
        servers: [{ id: 1, address: fake.address, serverStatus: 0 }],
        leaderId: 1,
      },
      ...[...fake.groups].map(([id, g]) => ({
        id,
        slots: g.slots.map((s) => ({
          id: s,
          slotStatus: SlotStatus.Running,
          statusModifyTime: 0,
          targetShardId: 0,
        })),
        servers: g.servers.map((address, i) => ({ id: i + 1, address, serverStatus: 0 })),
        leaderId: 0,
      })),
    ],
    configVersion: fake.version,
    errorCode: ErrorCode.OK,
    leaderAddress: '',
    errorMessage: '',
    slotCount,
    leaderId: 1,
    slotMoveKeysCopied: 0,
    slotMoveBytesCopied: 0,
    authRevision: 0,
  });
  const impl: Partial<ERaftKvServer> = {
    clusterConfigChange: (call, callback) => {
      fake.requests.push(call.request);
      if (call.request.changeType === ChangeType.ShardsQuery) fake.queries++;
      if (
        call.request.changeType === ChangeType.ShardJoin &&
        fake.groups.has(call.request.shardId)
      ) {
        callback(null, {
          ...topology(),
          success: false,
          errorCode: ErrorCode.GROUP_EXISTS,
          errorMessage: 'group 1 exists',
        });
        return;
      }
      callback(null, topology());
    },
  };
  fake.server = await startFakeERaftKv(impl, { what: 'the fake meta node' });
  fake.address = fake.server.address;
  return fake;
}

/**
 * A client of `meta` with a 3 s deadline, 500 ms attempts and fast retries, added to `clients`
 * for the suite to close in afterAll.
 */
export function fastClient(meta: FakeMeta, clients: EraftKvClient[]): EraftKvClient {
  const client = new EraftKvClient({
    endpoints: [meta.address],
    deadlineMs: 3000,
    attemptTimeoutMs: 500,
    backoff: { baseMs: 5, maxMs: 20 },
  });
  clients.push(client);
  return client;
}

/** A key whose slot is in `slots`. */
export function keyInSlots(slots: readonly number[]): string {
  for (let i = 0; ; i++)
    if (slots.includes(slotOfKey(Buffer.from(`k${i}`), slotCount))) return `k${i}`;
}

/** The next `count` items of `it`; fails when it ends before. */
export async function next<T>(it: AsyncIterator<T>, count: number): Promise<T[]> {
  const items: T[] = [];
  while (items.length < count) {
    const r = await it.next();
    if (r.done === true) throw new Error(`the iterable ended after ${items.length} items`);
    items.push(r.value);
  }
  return items;
}
