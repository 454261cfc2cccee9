// eraftkv-ctl against a fake node on 127.0.0.1 (real gRPC, no cluster): it is the meta group
// (node 1 of group 0) and the leader of kv group 1 at once, keeps keys in a map, and answers
// Status and grpc.health.v1. What is checked is what a user sees: the lines, tables and JSON
// documents printed, and the exit codes.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BackupChunk,
  ChangeType,
  ClientOperationResp,
  ClientOpType,
  ClusterConfigChangeResp,
  ErrorCode,
  HealthCheckResponse_ServingStatus,
  HealthService,
  SlotStatus,
  StatusResp,
  WatchEventType,
  WatchResp,
  LeaseAction,
  LeaseKeepAliveResp,
  LeaseResp,
  type LeaseKeepAliveReq,
  type LeaseReq,
  type ERaftKvServer,
  type HealthServer,
  type KvOpPair,
} from '@eraftkv/protocol';
import {
  closedAddress,
  startFakeERaftKv,
  waitFor,
  type StartedServer,
} from '@eraftkv/test-support';
import { exitCodes } from '../src';
import { ctl, startCtl, type CtlRun } from './run-ctl';

const slotCount = 16;

/** The cells of a table's header and rows, trimmed (the +---+ rules left out). */
function tableRows(table: string): string[][] {
  return table
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .map((l) =>
      l
        .split('|')
        .map((c) => c.trim())
        .slice(1, -1),
    );
}
const configVersion = 3;

type WatchCall = Parameters<ERaftKvServer['watch']>[0];
/** gRPC status codes (the numbers every gRPC implementation uses). */
const invalidArgument = 3;

class FakeNode {
  readonly data = new Map<string, Buffer>();
  /** Counts the data requests answered: the revision each answer carries. */
  private revision = 0;
  /** The slots a Backup says the group served when it read its part (default: all). */
  backupSlots: number[] | null = null;
  server: StartedServer | null = null;
  /**
   * What the next Watch calls do, in order; past the script a call is answered `created` at
   * revision 0 and held open.
   */
  watchScript: ((call: WatchCall) => void)[] = [];
  readonly watchCalls: WatchCall[] = [];
  /** The leases of group 1: id -> the TTL granted and the keys attached (latin1). */
  readonly leases = new Map<number, { ttlSeconds: number; keys: Set<string> }>();
  readonly leaseRequests: LeaseReq[] = [];
  /** The leases granted so far: lease n of group 1 is the n-th. */
  leasesGranted = 0;

  get address(): string {
    return this.server?.address ?? '';
  }

  async start(): Promise<void> {
    const handlers: Partial<ERaftKvServer> = {
      clusterConfigChange: (call, callback) => {
        const req = call.request;
        if (req.changeType === ChangeType.ShardJoin && req.shardId === 1) {
          callback(null, this.topology({ success: false, errorCode: ErrorCode.GROUP_EXISTS }));
          return;
        }
        callback(null, this.topology({}));
      },
      backup: (call) => {
        const kvs = [...this.data].map(([key, value]) => ({
          key: Buffer.from(key, 'latin1'),
          value,
        }));
        const slots = this.backupSlots ?? Array.from({ length: slotCount }, (_, i) => i);
        call.write(BackupChunk.fromPartial({ index: 9, configVersion, slots, kvs }));
        call.write(
          BackupChunk.fromPartial({ index: 9, configVersion, done: true, keys: kvs.length }),
        );
        call.end();
      },
      watch: (call) => {
        this.watchCalls.push(call);
        const step =
          this.watchScript.shift() ??
          ((c: WatchCall) => c.write(WatchResp.fromPartial({ groupId: 1, created: true })));
        step(call);
      },
      lease: (call, callback) => {
        this.leaseRequests.push(call.request);
        callback(null, this.leaseAnswer(call.request));
      },
      leaseKeepAlive: (call) => {
        call.on('data', (req: LeaseKeepAliveReq) =>
          call.write(
            LeaseKeepAliveResp.fromPartial({
              id: req.id,
              ttlSeconds: this.leases.get(req.id)?.ttlSeconds ?? 0,
            }),
          ),
        );
        call.on('end', () => call.end());
      },
      // ProcessRWOperationStream is left UNIMPLEMENTED: the client falls back to unary calls.
      processRwOperation: (call, callback) => {
        const unknown = call.request.kvs.find((op) => op.lease !== 0 && !this.leases.has(op.lease));
        if (unknown !== undefined) {
          callback({ code: invalidArgument, details: `lease ${unknown.lease} is not held` }, null);
          return;
        }
        callback(
          null,
          ClientOperationResp.fromPartial({
            ops: call.request.kvs.map((op) => this.apply(op)),
            groupId: 1,
            configVersion,
            leaderId: 1,
            revision: ++this.revision,
          }),
        );
      },
      status: (_call, callback) =>
        callback(
          null,
          StatusResp.fromPartial({
            nodeId: 1,
            groupId: 1,
            address: this.address,
            role: 'leader',
            term: 7,
            leaderId: 1,
            leaderAddress: this.address,
            commitIndex: 10,
            appliedIndex: 9,
            membership: {
              members: [
                { id: 1, address: this.address, learner: false, incarnation: 5 },
                { id: 2, address: '127.0.0.1:1', learner: true, incarnation: 0 },
              ],
            },
            version: '0.1.0-test',
            serverType: 'kv',
            clusterId: 'test-cluster',
            dbSizeBytes: 2048,
          }),
        ),
    };
    const health: HealthServer = {
      check: (_call, callback) =>
        callback(null, { status: HealthCheckResponse_ServingStatus.SERVING }),
      watch: (call) => call.end(),
    };
    this.server = await startFakeERaftKv(handlers, {
      what: 'the fake node',
      register: (server) => server.addService(HealthService, health),
    });
  }

  /** Group 0 (meta) is this node; group 1 (kv) is this node too, owning every slot, 15 moving. */
  private topology(fields: Partial<ClusterConfigChangeResp>): ClusterConfigChangeResp {
    const server = { id: 1, address: this.address };
    return ClusterConfigChangeResp.fromPartial({
      success: true,
      configVersion,
      slotCount,
      leaderId: 1,
      shardGroup: [
        { id: 0, servers: [server], leaderId: 1 },
        {
          id: 1,
          servers: [server],
          slots: Array.from({ length: slotCount }, (_, id) => ({
            id,
            slotStatus: id === 15 ? SlotStatus.Migrating : SlotStatus.Running,
            targetShardId: id === 15 ? 2 : 0,
          })),
        },
      ],
      ...fields,
    });
  }

  /** Answers a Lease call as group 1's leader does; a lease has 8 s less left than granted. */
  private leaseAnswer(req: LeaseReq): LeaseResp {
    const info = (id: number, keys: boolean): LeaseResp['leases'][number] => {
      const lease = this.leases.get(id);
      if (lease === undefined) return { id, grantedTtlSeconds: 0, ttlSeconds: -1, keys: [] };
      return {
        id,
        grantedTtlSeconds: lease.ttlSeconds,
        ttlSeconds: Math.max(1, lease.ttlSeconds - 8),
        keys: keys ? [...lease.keys].sort().map((k) => Buffer.from(k, 'latin1')) : [],
      };
    };
    switch (req.action) {
      case LeaseAction.LEASE_GRANT: {
        const id = 2 ** 32 + ++this.leasesGranted;
        this.leases.set(id, { ttlSeconds: req.ttlSeconds, keys: new Set() });
        return LeaseResp.fromPartial({
          groupId: 1,
          revision: ++this.revision,
          leases: [{ id, grantedTtlSeconds: req.ttlSeconds, ttlSeconds: req.ttlSeconds, keys: [] }],
        });
      }
      case LeaseAction.LEASE_REVOKE: {
        const lease = this.leases.get(req.id);
        if (lease === undefined)
          return LeaseResp.fromPartial({
            groupId: 1,
            errorCode: ErrorCode.LEASE_NOT_FOUND,
            revision: ++this.revision,
          });
        for (const key of lease.keys) this.data.delete(key);
        this.leases.delete(req.id);
        return LeaseResp.fromPartial({ groupId: 1, revision: ++this.revision });
      }
      case LeaseAction.LEASE_TIME_TO_LIVE:
        return LeaseResp.fromPartial({ groupId: 1, leases: [info(req.id, req.keys)] });
      case LeaseAction.LEASE_LIST:
        return LeaseResp.fromPartial({
          groupId: 1,
          leases: [...this.leases.keys()].map((id) => info(id, false)),
        });
      default:
        return LeaseResp.fromPartial({ groupId: 1, errorCode: ErrorCode.REJECTED });
    }
  }

  private apply(op: KvOpPair): KvOpPair {
    const key = op.key.toString('latin1');
    switch (op.opType) {
      case ClientOpType.Put:
        this.data.set(key, op.value);
        if (op.lease !== 0) this.leases.get(op.lease)?.keys.add(key);
        return { ...op, success: true };
      case ClientOpType.Get: {
        const value = this.data.get(key);
        return {
          ...op,
          success: true,
          found: value !== undefined,
          value: value ?? Buffer.alloc(0),
        };
      }
      case ClientOpType.Del:
        return { ...op, success: true, deleted: this.data.delete(key) ? 1 : 0 };
      case ClientOpType.Scan: {
        const end = op.endKey.length === 0 ? null : op.endKey.toString('latin1');
        const keys = [...this.data.keys()].filter((k) => k >= key && (end === null || k < end));
        keys.sort();
        const kvs = keys
          .slice(0, op.limit)
          .map((k) => ({ key: Buffer.from(k, 'latin1'), value: this.data.get(k)! }));
        return { ...op, success: true, kvs, more: keys.length > op.limit };
      }
      default:
        return op;
    }
  }
}

describe('eraftkv-ctl against a fake node', () => {
  const node = new FakeNode();
  let unreachable = '';
  /** eraftkv-ctl with --endpoints naming the fake node. */
  const run = (...argv: string[]): Promise<CtlRun> =>
    ctl('--endpoints', node.address, '--command-timeout', '5s', ...argv);

  beforeAll(async () => {
    await node.start();
    unreachable = await closedAddress();
  });
  afterAll(async () => {
    await node.server?.close();
  });
  beforeEach(() => {
    node.data.clear();
    node.leases.clear();
    node.leasesGranted = 0;
  });

  it('puts, gets and deletes, printing plain lines and exiting 0 (get of a missing key: 1)', async () => {
    expect(await run('put', 'hello', 'world')).toEqual({ code: 0, out: 'OK\n', err: '' });
    expect(node.data.get('hello')?.toString()).toBe('world');
    expect(await run('get', 'hello')).toEqual({ code: 0, out: 'world\n', err: '' });
    expect(await run('get', 'nope')).toEqual({
      code: exitCodes.error,
      out: '',
      err: 'key not found\n',
    });
    expect(await run('del', 'hello')).toEqual({ code: 0, out: '1\n', err: '' });
    expect(await run('del', 'hello')).toEqual({ code: 0, out: '0\n', err: '' });
  });

  it('prints one JSON document per command with -w json (binary values in base64 too)', async () => {
    node.data.set('bin', Buffer.from([0xff, 0x00]));
    const put = await run('-w', 'json', 'put', 'k', 'v');
    expect(put.code).toBe(0);
    const putJson = JSON.parse(put.out) as { revision: number };
    expect(putJson).toMatchObject({ ok: true, key: 'k', group: 1 });
    expect(putJson.revision).toBeGreaterThan(0);
    const got = await run('get', 'k', '-w', 'json');
    expect(JSON.parse(got.out)).toEqual({
      key: 'k',
      found: true,
      value: 'v',
      valueBase64: 'dg==',
    });
    const missing = await run('get', 'nope', '-w', 'json');
    // A missing key is still exit code 1, but JSON readers get a document, not a message.
    expect(missing).toEqual({
      code: 1,
      out: '{\n  "key": "nope",\n  "found": false\n}\n',
      err: '',
    });
    // The group and the revision the server answered, one more for each request.
    expect(JSON.parse((await run('del', 'k', '-w', 'json')).out)).toEqual({
      key: 'k',
      deleted: 1,
      group: 1,
      revision: putJson.revision + 3,
    });
    expect((await run('get', 'bin')).out).toBe('base64:/wA=\n');
    expect(JSON.parse((await run('get', 'bin', '-w', 'json')).out)).toMatchObject({
      valueBase64: '/wA=',
    });
  });

  it('saves a backup, and refuses one whose group served other slots than the header lists', async () => {
    node.data.set('saved', Buffer.from('yes'));
    const dir = await mkdtemp(join(tmpdir(), 'eraftkv-ctl-save-'));
    try {
      const saved = await run('snapshot', 'save', join(dir, 'ok.ekv'));
      expect(saved.code).toBe(0);
      expect(saved.out).toMatch(/Snapshot saved at .*ok\.ekv: 1 group, \d+ keys/);
      const status = await run('snapshot', 'status', join(dir, 'ok.ekv'));
      expect(status.out).toContain('cluster "test-cluster"');
      // A slot moved between the header (the cluster view) and the group's part.
      node.backupSlots = Array.from({ length: slotCount - 1 }, (_, i) => i);
      const moved = await run('snapshot', 'save', join(dir, 'moved.ekv'));
      expect(moved.code).toBe(exitCodes.error);
      expect(moved.err).toContain(
        'group 1 served slots 0-14 when its part was read, but 0-15 when the save began: slots moved during the save',
      );
      // Nothing under the name, and no part file left.
      expect(await readdir(dir)).toEqual(['ok.ekv']);
    } finally {
      node.backupSlots = null;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('scans as lines, as a table and as JSON, and says on stderr when --limit cut it short', async () => {
    for (const [k, v] of [
      ['a', '1'],
      ['b', '22'],
      ['c', '3'],
    ])
      node.data.set(k, Buffer.from(v));
    expect(await run('scan', 'a', 'c')).toEqual({ code: 0, out: 'a\n1\nb\n22\n', err: '' });
    expect((await run('scan', 'a', '-w', 'table')).out).toBe(
      [
        '+-----+-------+',
        '| KEY | VALUE |',
        '+-----+-------+',
        '| a   | 1     |',
        '| b   | 22    |',
        '| c   | 3     |',
        '+-----+-------+',
        '',
      ].join('\n'),
    );
    expect(await run('scan', 'a', '--limit', '2', '--keys-only')).toEqual({
      code: 0,
      out: 'a\nb\n',
      err: 'more keys remain after b; use --limit\n',
    });
    const json = await run('scan', 'b', '-w', 'json', '--keys-only');
    expect(json.err).toBe('');
    expect(JSON.parse(json.out)).toEqual({
      count: 2,
      more: false,
      kvs: [
        { key: 'b', keyBase64: 'Yg==' },
        { key: 'c', keyBase64: 'Yw==' },
      ],
    });
  });

  it('lists the groups as lines, as a table and as JSON', async () => {
    const a = node.address;
    expect(await run('group', 'list')).toEqual({
      code: 0,
      out:
        `group 0 (meta): servers 1=${a}; slots -\n` +
        `group 1: servers 1=${a}; slots 0-15 (16); migrating 15 -> 2\n` +
        'config version 3, 16 slots\n',
      err: '',
    });
    const table = await run('group', 'list', '-w', 'table');
    expect(tableRows(table.out)).toEqual([
      ['GROUP', 'SERVERS', 'SLOTS', 'MIGRATING'],
      ['0 (meta)', `1=${a}`, '-', '-'],
      ['1', `1=${a}`, '0-15 (16)', '15 -> 2'],
    ]);
    const lines = table.out.split('\n');
    expect(lines.at(-2)).toBe('config version 3, 16 slots');
    expect(JSON.parse((await run('query_groups', '-w', 'json')).out)).toEqual({
      configVersion: 3,
      slotCount: 16,
      groups: [
        {
          id: 0,
          role: 'meta',
          servers: [{ id: 1, address: a }],
          slots: '',
          slotCount: 0,
          migrating: '',
          migratingTo: [],
        },
        {
          id: 1,
          role: 'kv',
          servers: [{ id: 1, address: a }],
          slots: '0-15',
          slotCount: 16,
          migrating: '15',
          migratingTo: [{ target: 2, slots: '15' }],
        },
      ],
    });
  });

  it('lists the members of a group and marks the leader', async () => {
    const a = node.address;
    expect(await run('member', 'list', '--group', '1')).toEqual({
      code: 0,
      out: `1, ${a}, voter, leader\n2, 127.0.0.1:1, learner\n`,
      err: '',
    });
    const table = await run('member', 'list', '--group', '1', '-w', 'table');
    const rows = tableRows(table.out);
    expect(rows).toEqual([
      ['ID', 'ADDRESS', 'ROLE', 'LEADER', 'INCARNATION'],
      ['1', a, 'voter', 'yes', '5'],
      ['2', '127.0.0.1:1', 'learner', 'no', '0'],
    ]);
    expect(JSON.parse((await run('member', 'list', '--group', '1', '-w', 'json')).out)).toEqual({
      group: 1,
      leaderId: 1,
      members: [
        { id: 1, address: a, learner: false, incarnation: 5, leader: true },
        { id: 2, address: '127.0.0.1:1', learner: true, incarnation: 0, leader: false },
      ],
    });
  });

  it('shows endpoint status per node, and exits 2 when one does not answer', async () => {
    const a = node.address;
    expect(await run('endpoint', 'status')).toEqual({
      code: 0,
      out: `${a}, kv 1, 1, leader, 7, 1, 10, 9, 2.0 kB, 0.1.0-test\n`,
      err: '',
    });
    const both = await ctl(
      '--endpoints',
      `${a},${unreachable}`,
      'endpoint',
      'status',
      '-w',
      'json',
    );
    expect(both.code).toBe(exitCodes.badConnection);
    const docs = JSON.parse(both.out) as Record<string, unknown>[];
    expect(docs).toHaveLength(2);
    expect(docs[0]).toMatchObject({ endpoint: a, nodeId: 1, role: 'leader', term: 7 });
    expect(docs[1]).toEqual({ endpoint: unreachable, error: expect.any(String) as unknown });
  });

  it('checks health with grpc.health.v1, as a table', async () => {
    const health = await run('endpoint', 'health', '-w', 'table');
    expect(health.code).toBe(0);
    const rows = tableRows(health.out);
    expect(rows[0]).toEqual(['ENDPOINT', 'HEALTH', 'TOOK', 'ERROR']);
    expect(rows[1]).toEqual([node.address, 'true', expect.stringMatching(/^\d+ms$/), '']);
  });

  it('exits 1 with the cluster refusal when the cluster says no', async () => {
    const refused = await run('group', 'add', '1', '127.0.0.1:7001');
    expect(refused.code).toBe(exitCodes.error);
    expect(refused.out).toBe('');
    expect(refused.err).toMatch(/^Error: .*\n$/);
    expect(refused.err).toMatch(/exists/i);
  });

  it("watch prints each change in etcdctl's lines until Ctrl-C, then exits 0", async () => {
    const k = Buffer.from('k');
    node.watchScript = [
      (call) => {
        call.write(WatchResp.fromPartial({ groupId: 1, created: true, revision: 9 }));
        call.write(
          WatchResp.fromPartial({
            groupId: 1,
            revision: 11,
            events: [
              { type: WatchEventType.WATCH_PUT, key: k, value: Buffer.from('v1'), revision: 10 },
              {
                type: WatchEventType.WATCH_PUT,
                key: k,
                value: Buffer.from('v2'),
                revision: 11,
                hasPrev: true,
                prevValue: Buffer.from('v1'),
              },
            ],
          }),
        );
        call.write(
          WatchResp.fromPartial({
            groupId: 1,
            revision: 12,
            events: [
              {
                type: WatchEventType.WATCH_DELETE,
                key: k,
                revision: 12,
                hasPrev: true,
                prevValue: Buffer.from('v2'),
              },
            ],
          }),
        );
        call.write(
          WatchResp.fromPartial({
            groupId: 1,
            revision: 13,
            events: [
              {
                type: WatchEventType.WATCH_SLOT_LEFT,
                revision: 13,
                slot: 4,
                configVersion: 8,
                sinceConfigVersion: 2,
              },
            ],
          }),
        );
        call.write(WatchResp.fromPartial({ groupId: 1, revision: 13 }));
      },
    ];
    const listeners = process.listenerCount('SIGINT');
    const watching = startCtl(
      '--endpoints',
      node.address,
      'watch',
      'k',
      '--prev-kv',
      '--progress-notify',
    );
    await waitFor(() => watching.printed().out.includes('progress notify'), {
      what: 'the watch to print the changes',
    });
    const printed =
      'PUT\nk\nv1\n' +
      'PUT\nk\nv1\nk\nv2\n' +
      'DELETE\nk\nv2\nk\n\n' +
      'progress notify: 13 (group 1)\n';
    const noted = 'slot 4 left group 1 at revision 13 (topology version 8)\n';
    expect(watching.printed()).toEqual({ out: printed, err: noted });
    expect(node.watchCalls.at(-1)?.request).toEqual({
      groupId: 1,
      key: k,
      rangeEnd: Buffer.alloc(0),
      startRevision: 0,
      prevKv: true,
      progressNotify: true,
    });
    // Ctrl-C: the watch's own listener ends it (the test process has no other).
    expect(process.listenerCount('SIGINT')).toBe(listeners + 1);
    process.emit('SIGINT', 'SIGINT');
    expect(await watching.done).toEqual({ code: 0, out: printed, err: noted });
    expect(process.listenerCount('SIGINT')).toBe(listeners);
    await waitFor(() => node.watchCalls.at(-1)?.cancelled, { what: 'the stream to be cancelled' });
  });

  it('watch -w json prints one line per answer, keys and values in base64 too', async () => {
    node.watchScript = [
      (call) => {
        call.write(WatchResp.fromPartial({ groupId: 1, created: true, revision: 4 }));
        call.write(
          WatchResp.fromPartial({
            groupId: 1,
            revision: 6,
            events: [
              {
                type: WatchEventType.WATCH_PUT,
                key: Buffer.from('p/a'),
                value: Buffer.from('v'),
                revision: 5,
              },
              {
                type: WatchEventType.WATCH_PUT,
                key: Buffer.from('p/b'),
                value: Buffer.from([0xff, 0x00]),
                revision: 6,
              },
            ],
          }),
        );
      },
    ];
    const watching = startCtl(
      '--endpoints',
      node.address,
      '-w',
      'json',
      'watch',
      'p/',
      '--prefix',
      '--rev',
      '5',
    );
    await waitFor(() => watching.printed().out.split('\n').length > 2, {
      what: 'two lines of JSON',
    });
    process.emit('SIGINT', 'SIGINT');
    const run = await watching.done;
    expect(run.code).toBe(0);
    const lines = run.out.trimEnd().split('\n');
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      { group: 1, revision: 4, created: true, progress: false, events: [], slotMarks: [] },
      {
        group: 1,
        revision: 6,
        created: false,
        progress: false,
        events: [
          {
            type: 'PUT',
            key: 'p/a',
            keyBase64: 'cC9h',
            value: 'v',
            valueBase64: 'dg==',
            revision: 5,
          },
          {
            type: 'PUT',
            key: 'p/b',
            keyBase64: 'cC9i',
            value: Buffer.from([0xff, 0x00]).toString('utf8'),
            valueBase64: '/wA=',
            revision: 6,
          },
        ],
        slotMarks: [],
      },
    ]);
    expect(node.watchCalls.at(-1)?.request).toMatchObject({
      key: Buffer.from('p/'),
      rangeEnd: Buffer.from('p0'),
      startRevision: 5,
    });
  });

  it('watch exits 1 saying the oldest revision that can still be watched when --rev is compacted', async () => {
    node.watchScript = [
      (call) => {
        call.write(WatchResp.fromPartial({ groupId: 1, compactRevision: 50, cancelReason: '' }));
        call.end();
      },
    ];
    expect(await run('watch', 'k', '--rev', '3')).toEqual({
      code: exitCodes.error,
      out: '',
      err:
        'Error: watch of group 1: revision 3 is older than the history the group keeps: the ' +
        'oldest revision that can still be watched is 50; watch again with --rev 50 (the changes ' +
        'before it are gone) or without --rev, from now\n',
    });
  });

  it('watch exits 3 naming the group when the cluster refuses the watch as invalid', async () => {
    node.watchScript = [
      (call) => call.emit('error', { code: invalidArgument, details: 'key: too long' }),
    ];
    const listeners = process.listenerCount('SIGINT');
    expect(await run('watch', 'k')).toEqual({
      code: exitCodes.invalidInput,
      out: '',
      err: 'Error: watch of group 1: key: too long\n',
    });
    // Ctrl-C is the process's own again.
    expect(process.listenerCount('SIGINT')).toBe(listeners);
  });

  it("lease grant, put --lease, timetolive, list and revoke print etcdctl's lines", async () => {
    const id = '0000000100000001';
    expect(await run('lease', 'grant', '60')).toEqual({
      code: 0,
      out: `lease ${id} granted with TTL(60s)\n`,
      err: '',
    });
    expect(node.leaseRequests.at(-1)).toMatchObject({
      action: LeaseAction.LEASE_GRANT,
      groupId: 1,
      ttlSeconds: 60,
    });
    expect(await run('put', 'k1', 'v', '--lease', id)).toEqual({ code: 0, out: 'OK\n', err: '' });
    expect(await run('put', 'k2', 'v', '--lease', `0x${id}`)).toEqual({
      code: 0,
      out: 'OK\n',
      err: '',
    });
    expect([...(node.leases.get(2 ** 32 + 1)?.keys ?? [])]).toEqual(['k1', 'k2']);
    expect(await run('lease', 'timetolive', id)).toEqual({
      code: 0,
      out: `lease ${id} granted with TTL(60s), remaining(52s)\n`,
      err: '',
    });
    expect(await run('lease', 'timetolive', '100000001', '--keys')).toEqual({
      code: 0,
      out: `lease ${id} granted with TTL(60s), remaining(52s), attached keys([k1 k2])\n`,
      err: '',
    });
    expect((await run('lease', 'grant', '5', '--key', 'k3')).out).toBe(
      'lease 0000000100000002 granted with TTL(5s)\n',
    );
    expect(await run('lease', 'list')).toEqual({
      code: 0,
      out: `found 2 leases\n${id}\n0000000100000002\n`,
      err: '',
    });
    expect(tableRows((await run('lease', 'list', '--group', '1', '-w', 'table')).out)).toEqual([
      ['ID', 'GROUP', 'TTL', 'GRANTED TTL'],
      [id, '1', '52', '60'],
      ['0000000100000002', '1', '1', '5'],
    ]);
    expect(await run('lease', 'revoke', id)).toEqual({
      code: 0,
      out: `lease ${id} revoked\n`,
      err: '',
    });
    expect(node.data.has('k1')).toBe(false);
    expect(await run('lease', 'timetolive', id)).toEqual({
      code: 0,
      out: `lease ${id} already expired\n`,
      err: '',
    });
    expect(await run('lease', 'revoke', id)).toEqual({
      code: exitCodes.error,
      out: '',
      err: `Error: lease ${id} not found (never granted, expired or revoked)\n`,
    });
    // The server refuses a put with a lease it does not hold.
    expect(await run('put', 'k1', 'v', '--lease', id)).toEqual({
      code: exitCodes.invalidInput,
      out: '',
      err: `Error: lease ${2 ** 32 + 1} is not held\n`,
    });
  });

  it('prints leases with -w json: ids as numbers and in hex, with their group', async () => {
    const id = 2 ** 32 + 1;
    const idHex = '0000000100000001';
    const asJson = async (...argv: string[]): Promise<unknown> => {
      const r = await run('-w', 'json', ...argv);
      expect({ argv, code: r.code, err: r.err }).toEqual({ argv, code: 0, err: '' });
      return JSON.parse(r.out);
    };
    const granted = (await asJson('lease', 'grant', '60')) as { revision: number };
    expect(granted).toEqual({ id, idHex, group: 1, ttl: 60, revision: granted.revision });
    expect(await asJson('put', 'k', 'v', '--lease', idHex)).toMatchObject({
      ok: true,
      key: 'k',
      group: 1,
      lease: id,
      leaseHex: idHex,
    });
    expect(await asJson('lease', 'timetolive', idHex, '--keys')).toEqual({
      id,
      idHex,
      group: 1,
      ttl: 52,
      grantedTtl: 60,
      keys: ['k'],
      keysBase64: ['aw=='],
    });
    expect(await asJson('lease', 'list')).toEqual({
      count: 1,
      leases: [{ id, idHex, group: 1, ttl: 52, grantedTtl: 60 }],
    });
    expect(await asJson('lease', 'revoke', idHex)).toEqual({
      id,
      idHex,
      group: 1,
      revision: granted.revision + 2,
    });
    expect(await asJson('lease', 'timetolive', idHex)).toMatchObject({ ttl: -1, keys: [] });
  });

  it('lease keep-alive prints a line per answer until Ctrl-C, then exits 0', async () => {
    expect((await run('lease', 'grant', '1')).code).toBe(0);
    const id = '0000000100000001';
    const listeners = process.listenerCount('SIGINT');
    const keeping = startCtl('--endpoints', node.address, 'lease', 'keep-alive', id);
    // A TTL of 1 s: a keep-alive every 333 ms.
    await waitFor(() => keeping.printed().out.split('\n').length > 3, {
      what: 'three keep-alives',
    });
    expect(process.listenerCount('SIGINT')).toBe(listeners + 1);
    process.emit('SIGINT', 'SIGINT');
    const done = await keeping.done;
    expect(done.code).toBe(0);
    expect(done.err).toBe('');
    const lines = done.out.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) expect(line).toBe(`lease ${id} keepalived with TTL(1)`);
    expect(process.listenerCount('SIGINT')).toBe(listeners);

    const json = startCtl('--endpoints', node.address, '-w', 'json', 'lease', 'keep-alive', id);
    await waitFor(() => json.printed().out.includes('\n'), { what: 'a keep-alive' });
    process.emit('SIGINT', 'SIGINT');
    const first = (await json.done).out.split('\n')[0];
    expect(JSON.parse(first)).toEqual({ id: 2 ** 32 + 1, idHex: id, group: 1, ttl: 1 });
  });

  it('lease keep-alive exits 1 once the lease is gone, and --once keeps it alive once', async () => {
    expect((await run('lease', 'grant', '1')).code).toBe(0);
    const id = '0000000100000001';
    expect(await run('lease', 'keep-alive', id, '--once')).toEqual({
      code: 0,
      out: `lease ${id} keepalived with TTL(1)\n`,
      err: '',
    });
    const keeping = startCtl('--endpoints', node.address, 'lease', 'keep-alive', id);
    await waitFor(() => keeping.printed().out.includes('\n'), { what: 'a keep-alive' });
    // Revoked: the next answer says TTL 0.
    node.leases.clear();
    const done = await keeping.done;
    expect(done.code).toBe(exitCodes.error);
    expect(done.err).toBe(`lease ${id} expired or revoked\n`);
    expect(done.out).toMatch(new RegExp(`^(lease ${id} keepalived with TTL\\(1\\)\\n)+$`));
    expect(await run('lease', 'keep-alive', id, '--once')).toEqual({
      code: exitCodes.error,
      out: '',
      err: `lease ${id} expired or revoked\n`,
    });
  });

  it('exits 2 within --command-timeout when no endpoint answers', async () => {
    const started = Date.now();
    const down = await ctl('--endpoints', unreachable, '--command-timeout', '2s', 'get', 'k');
    expect(down.code).toBe(exitCodes.badConnection);
    expect(down.out).toBe('');
    expect(down.err).toMatch(/^Error: .+\n$/);
    expect(down.err).toContain(unreachable);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
