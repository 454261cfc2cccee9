// eraftkv-ctl, the built binary, against a cluster started the way `npm start` starts it: the
// data commands and their exit codes, membership on a kv group, a second kv group taking over an
// empty slot range, and a bench that keeps going while its leader is killed; leases, whose keys
// a slot move leaves where they are.
import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EraftKvClient } from '@eraftkv/client';
import { ClientOpType, ErrorCode, ReadConsistency, slotOfKey } from '@eraftkv/protocol';
import {
  freePorts,
  initializeCluster,
  repositoryDir,
  waitUntil,
  type LocalCluster,
} from '../local-cluster';
import { BareClients, fastTiming, op, startTestCluster } from './helpers';

jest.setTimeout(240_000);

const ctlBin = join(repositoryDir, 'packages/cli/bin/eraftkv-ctl.js');

interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The cluster under test: a command that times out prints the end of its nodes' logs. */
let logsOf: LocalCluster | null = null;

async function ctl(
  endpoints: readonly string[],
  args: readonly string[],
  timeoutMs = 60_000,
): Promise<CtlResult> {
  const result = await new Promise<CtlResult>((resolve) => {
    execFile(
      process.execPath,
      [ctlBin, '--endpoints', endpoints.join(','), ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
  if (result.code === -1 && logsOf !== null) {
    const tails = await Promise.all(
      logsOf.allSpecs().map(async (s) => {
        const text = await readFile(logsOf!.logPath(s.name), 'utf8').catch(() => '');
        return `--- ${s.name}.log (end)\n${text.split('\n').slice(-60).join('\n')}`;
      }),
    );
    console.log(
      `eraftkv-ctl ${args.join(' ')} timed out after ${timeoutMs} ms\n${tails.join('\n')}`,
    );
  }
  return result;
}

/**
 * Runs eraftkv-ctl with its stdout (or stderr) reader gone from the start, as in
 * `eraftkv-ctl group list | head -0`: every write to that stream fails with EPIPE.
 */
function ctlWithClosedReader(
  endpoints: readonly string[],
  args: readonly string[],
  closed: 'stdout' | 'stderr',
): Promise<{ code: number | null; signal: NodeJS.Signals | null; other: string }> {
  const child = spawn(process.execPath, [ctlBin, '--endpoints', endpoints.join(','), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  child[closed].destroy();
  let other = '';
  const open = closed === 'stdout' ? child.stderr : child.stdout;
  open.on('data', (d: Buffer) => (other += d.toString()));
  return new Promise((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, other })),
  );
}

describe('eraftkv-ctl against a local cluster', () => {
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  let client: EraftKvClient;
  let endpoints: string[];

  beforeAll(async () => {
    ({ cluster, cleanup } = await startTestCluster({ kvGroups: 2 }));
    logsOf = cluster;
    endpoints = cluster.metaEndpoints();
    client = new EraftKvClient({ endpoints, deadlineMs: 20_000 });
    await initializeCluster(client, cluster);
  });
  afterAll(async () => {
    client.close();
    await cleanup();
  });

  it('puts, gets, deletes and scans, with json output and etcdctl exit codes', async () => {
    const put = await ctl(endpoints, ['put', 'hello', 'world']);
    expect(put).toMatchObject({ code: 0, stdout: 'OK\n' });
    expect(await ctl(endpoints, ['get', 'hello'])).toMatchObject({ code: 0, stdout: 'world\n' });
    const json = await ctl(endpoints, ['get', 'hello', '-w', 'json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ key: 'hello', found: true, value: 'world' });
    // An empty value is a value, not a missing key.
    expect((await ctl(endpoints, ['put', 'empty', ''])).code).toBe(0);
    expect(await ctl(endpoints, ['get', 'empty'])).toMatchObject({ code: 0, stdout: '\n' });
    // A missing key: nothing on stdout, "key not found" on stderr, exit 1; json says found: false.
    const missing = await ctl(endpoints, ['get', 'nope']);
    expect(missing).toMatchObject({ code: 1, stdout: '', stderr: 'key not found\n' });
    const missingJson = await ctl(endpoints, ['get', 'nope', '-w', 'json']);
    expect(missingJson.code).toBe(1);
    expect(JSON.parse(missingJson.stdout)).toEqual({ key: 'nope', found: false });
    for (const k of ['scan-a', 'scan-b', 'scan-c', 'scan-d'])
      expect((await ctl(endpoints, ['put', k, `v-${k}`])).code).toBe(0);
    const scan = await ctl(endpoints, ['scan', 'scan-', 'scan-z', '-w', 'json']);
    expect(scan.code).toBe(0);
    const parsed = JSON.parse(scan.stdout) as {
      count: number;
      more: boolean;
      kvs: { key: string; value: string }[];
    };
    expect(parsed.kvs.map((kv) => kv.key)).toEqual(['scan-a', 'scan-b', 'scan-c', 'scan-d']);
    expect(parsed.kvs[2].value).toBe('v-scan-c');
    const limited = await ctl(endpoints, ['scan', 'scan-', '--limit', '2']);
    expect(limited.stdout).toBe('scan-a\nv-scan-a\nscan-b\nv-scan-b\n');
    expect(await ctl(endpoints, ['del', 'scan-a'])).toMatchObject({ code: 0, stdout: '1\n' });
    expect(await ctl(endpoints, ['del', 'scan-a'])).toMatchObject({ code: 0, stdout: '0\n' });
    const table = await ctl(endpoints, ['group', 'list', '-w', 'table']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/GROUP.*SERVERS.*SLOTS/);
    // Bad arguments: 128. Invalid input (a key over the 4 KiB limit): 3. No cluster there: 2.
    expect((await ctl(endpoints, ['put', 'only-a-key'])).code).toBe(128);
    expect((await ctl(endpoints, ['frobnicate'])).code).toBe(128);
    const tooLong = await ctl(endpoints, ['put', 'k'.repeat(5000), 'v']);
    expect(tooLong.code).toBe(3);
    expect(tooLong.stderr).toMatch(/key/i);
    const unreachable = await ctl(['127.0.0.1:1'], ['get', 'hello', '--command-timeout', '1s']);
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toMatch(/check that the cluster is running/);
  });

  it('exits quietly, as after SIGPIPE, when the reader of its output goes away', async () => {
    // `eraftkv-ctl group list | head -3` used to die of an unhandled EPIPE with a stack trace.
    const list = await ctlWithClosedReader(endpoints, ['group', 'list'], 'stdout');
    expect(list).toEqual({ code: 141, signal: null, other: '' });
    const missing = await ctlWithClosedReader(endpoints, ['get', 'no-such-key'], 'stderr');
    expect(missing).toEqual({ code: 141, signal: null, other: '' });
  });

  it('says at once, with exit code 2, that every endpoint refused the connection', async () => {
    const dead = (await freePorts(2)).map((p) => `127.0.0.1:${p}`);
    const started = Date.now();
    const result = await ctl(dead, ['get', 'hello']);
    // The default --command-timeout is 5 s; refused connections need not wait for it.
    expect(Date.now() - started).toBeLessThan(4000);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/every meta endpoint refused the connection/);
    for (const e of dead) expect(result.stderr).toContain(e);
  });

  it('adds a learner to a kv group (promoted automatically), transfers leadership and removes a member', async () => {
    const joining = await cluster.planJoiningKvNode(1, 4, fastTiming);
    await cluster.start(joining.name);
    const added = await ctl(endpoints, [
      'member',
      'add',
      '--group',
      '1',
      '4',
      joining.grpcAddress,
      '--learner',
      '-w',
      'json',
    ]);
    expect(added.code).toBe(0);
    await waitUntil(
      async () => {
        const list = await ctl(endpoints, ['member', 'list', '--group', '1', '-w', 'json']);
        const members = (JSON.parse(list.stdout) as { members: { id: number; learner: boolean }[] })
          .members;
        return members.some((m) => m.id === 4 && !m.learner);
      },
      30_000,
      'node 4 to be promoted to voter',
    );
    const before = JSON.parse(
      (await ctl(endpoints, ['member', 'list', '--group', '1', '-w', 'json'])).stdout,
    ) as { leaderId: number };
    const target = before.leaderId === 2 ? 3 : 2;
    const transfer = await ctl(endpoints, ['leader', 'transfer', '--group', '1', String(target)]);
    expect(transfer.code).toBe(0);
    const after = JSON.parse(
      (await ctl(endpoints, ['member', 'list', '--group', '1', '-w', 'json'])).stdout,
    ) as { leaderId: number };
    expect(after.leaderId).toBe(target);
    const removed = await ctl(endpoints, ['member', 'remove', '--group', '1', '4']);
    expect(removed.code).toBe(0);
    const final = JSON.parse(
      (await ctl(endpoints, ['member', 'list', '--group', '1', '-w', 'json'])).stdout,
    ) as { members: { id: number }[] };
    expect(final.members.map((m) => m.id).sort()).toEqual([1, 2, 3]);
    await cluster.signal(joining.name, 'SIGTERM');
    // The data still flows through the group.
    expect((await ctl(endpoints, ['put', 'after-membership', 'ok'])).code).toBe(0);
  });

  it('moves a slot range to a second kv group, and back and out again with its keys', async () => {
    const view = await client.cluster();
    const slotCount = view.slotCount;
    // A window of 64 slots that none of the keys written so far falls into.
    const written = ['hello', 'empty', 'scan-a', 'scan-b', 'scan-c', 'scan-d', 'after-membership'];
    const used = new Set(written.map((k) => slotOfKey(Buffer.from(k), slotCount)));
    let first = 0;
    while ([...used].some((slot) => slot >= first && slot < first + 64)) first++;
    const range = `${first}-${first + 63}`;
    const inRange = (k: string): boolean => {
      const slot = slotOfKey(Buffer.from(k), slotCount);
      return slot >= first && slot < first + 64;
    };
    const moved = await ctl(endpoints, ['slot', 'move', '2', range, '-w', 'json']);
    expect(moved.code).toBe(0);
    const groups = (JSON.parse(moved.stdout) as { groups: { id: number; slotCount: number }[] })
      .groups;
    expect(groups.find((g) => g.id === 2)?.slotCount).toBe(64);
    // Keys in the moved range now live in group 2; the others stay in group 1.
    // Eight keys of the moved range and eight of the rest (each ctl call is a process: few).
    const candidates = Array.from({ length: 5000 }, (_, i) => `route-${i}`);
    const keys = [
      ...candidates.filter(inRange).slice(0, 8),
      ...candidates.filter((k) => !inRange(k)).slice(0, 8),
    ];
    expect(keys.filter(inRange)).toHaveLength(8);
    for (const k of keys) expect((await ctl(endpoints, ['put', k, `v-${k}`])).code).toBe(0);
    for (const k of keys) expect((await ctl(endpoints, ['get', k])).stdout).toBe(`v-${k}\n`);
    // Ask a node of group 2 directly (serializable, its local state): it holds the keys of the
    // moved range and refuses the others with WRONG_SHARD.
    const bare = new BareClients();
    try {
      const node = cluster.layout.kv.get(2)![0].grpcAddress;
      const mine = keys.find(inRange)!;
      const theirs = keys.find((k) => !inRange(k))!;
      const serializable = ReadConsistency.SERIALIZABLE;
      await waitUntil(
        async () => {
          const r = await bare.rw(node, {
            kvs: [op(ClientOpType.Get, mine)],
            readConsistency: serializable,
          });
          return r.errorCode === ErrorCode.OK && r.ops[0].found;
        },
        10_000,
        `group 2 to hold ${mine}`,
      );
      const other = await bare.rw(node, {
        kvs: [op(ClientOpType.Get, theirs)],
        readConsistency: serializable,
      });
      expect(other.errorCode).toBe(ErrorCode.WRONG_SHARD);
    } finally {
      bare.closeAll();
    }
    // A range that now holds data moves back with its keys, and out again (the next test wants
    // slots in both groups).
    for (const group of ['1', '2']) {
      const again = await ctl(endpoints, [
        'slot',
        'move',
        group,
        range,
        '--command-timeout',
        '60s',
      ]);
      expect(again.stderr).toBe('');
      expect(again.code).toBe(0);
      // The summary counts the keys copied: the eight of the range (and their bytes).
      expect(again.stdout).toMatch(/moved 64 slot\(s\) to group \d in [\d.]+ s: 8 keys \(\d+ B\)/);
      for (const k of keys.filter(inRange)) {
        expect((await ctl(endpoints, ['get', k])).stdout).toBe(`v-${k}\n`);
      }
    }
  });

  it('scans past the servers per-answer bound up to --limit, and says so when the limit stops it', async () => {
    // 12,000 keys over both groups: more than one answer of a server carries (10,000 pairs).
    const view = await client.cluster();
    const groupOf = new Map<number, number>();
    for (const g of view.groups) for (const slot of g.slots) groupOf.set(slot, g.id);
    const byGroup = new Map<number, string[]>();
    const keyOf = (i: number): string => `page-${String(i).padStart(5, '0')}`;
    for (let i = 0; i < 12_000; i++) {
      const group = groupOf.get(slotOfKey(Buffer.from(keyOf(i)), view.slotCount)) ?? 0;
      const keys = byGroup.get(group) ?? [];
      keys.push(keyOf(i));
      byGroup.set(group, keys);
    }
    expect([...byGroup.keys()].sort()).toEqual([1, 2]);
    for (const keys of byGroup.values()) {
      for (let i = 0; i < keys.length; i += 128) {
        await client.batch(keys.slice(i, i + 128).map((key) => ({ type: 'put', key, value: 'v' })));
      }
    }
    const all = await ctl(endpoints, [
      'scan',
      'page-',
      'page.',
      '--limit',
      '100000',
      '--keys-only',
    ]);
    expect(all.code).toBe(0);
    expect(all.stderr).toBe('');
    const lines = all.stdout.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(12_000);
    expect(lines[0]).toBe(keyOf(0));
    expect(lines[11_999]).toBe(keyOf(11_999));

    const cut = await ctl(endpoints, ['scan', 'page-', 'page.', '--limit', '11000', '--keys-only']);
    expect(cut.code).toBe(0);
    expect(cut.stdout.split('\n').filter((l) => l !== '')).toHaveLength(11_000);
    expect(cut.stderr).toBe(`more keys remain after ${keyOf(10_999)}; use --limit\n`);

    const json = await ctl(endpoints, ['scan', 'page-', 'page.', '--limit', '11000', '-w', 'json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { count: number; more: boolean };
    expect([parsed.count, parsed.more]).toEqual([11_000, true]);
    const whole = await ctl(endpoints, [
      'scan',
      'page-',
      'page.',
      '--limit',
      '12000',
      '-w',
      'json',
    ]);
    expect(JSON.parse(whole.stdout)).toMatchObject({ count: 12_000, more: false });
  });

  it('completes a bench while the kv leader is killed, and every acknowledged write is there', async () => {
    const total = 3000;
    const bench = ctl(
      endpoints,
      [
        'bench',
        'put',
        '--clients',
        '16',
        '--total',
        String(total),
        '--prefix',
        'kill-',
        '--command-timeout',
        '15s',
        '-w',
        'json',
      ],
      120_000,
    );
    // Kill group 1's leader once the bench is under way.
    await waitUntil(
      async () => (await client.get('kill-200').catch(() => undefined)) !== undefined,
      30_000,
      'the bench to write',
    );
    const members = await client.members(1);
    const leader = cluster.layout.kv.get(1)!.find((n) => n.id === members.leaderId)!;
    await cluster.signal(leader.name, 'SIGKILL');
    const result = await bench;
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { ok: number; errors: number };
    expect(summary).toMatchObject({ ok: total, errors: 0 });
    // Every write the bench saw acknowledged is readable (linearizably, through the new leader).
    const scan = await client.scan('kill-', 'kill.', { limit: 10_000 });
    expect(scan.kvs.length).toBe(total);
    await cluster.start(leader.name);
  });

  it('grants a lease, puts a key with it, keeps its slot from moving away, and deletes the key on revoke', async () => {
    const key = 'lease-ctl/session';
    const granted = await ctl(endpoints, ['lease', 'grant', '60', '--key', key]);
    expect(granted.stderr).toBe('');
    const id = /^lease ([0-9a-f]{16}) granted with TTL\(60s\)\n$/.exec(granted.stdout)?.[1];
    expect(id).toBeDefined();
    const group = parseInt(id!.slice(0, 8), 16);
    const view = await client.cluster();
    const slot = slotOfKey(Buffer.from(key), view.slotCount);
    expect(view.groups.find((g) => g.slots.includes(slot))?.id).toBe(group);
    expect((await ctl(endpoints, ['put', key, 'alive', '--lease', id!])).code).toBe(0);
    const ttl = await ctl(endpoints, ['lease', 'timetolive', id!, '--keys']);
    expect(ttl.stdout).toMatch(
      new RegExp(
        `^lease ${id} granted with TTL\\(60s\\), remaining\\(\\d+s\\), attached keys\\(\\[${key}\\]\\)\\n$`,
      ),
    );
    expect((await ctl(endpoints, ['lease', 'list'])).stdout).toContain(`${id}\n`);
    expect((await ctl(endpoints, ['lease', 'keep-alive', '--once', id!])).stdout).toBe(
      `lease ${id} keepalived with TTL(60)\n`,
    );

    // A lease belongs to its group: a move of the key's slot to the other group rolls back,
    // naming the key and the lease, and the key stays where it was, still leased.
    const other = group === 1 ? '2' : '1';
    const refused = await ctl(endpoints, ['slot', 'move', other, String(slot)], 120_000);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('rolled back');
    expect(refused.stderr).toContain(`"${key}" (slot ${slot}, lease ${id})`);
    expect(refused.stderr).toContain('Revoke those leases or move other slots');
    const after = await client.cluster();
    expect(after.groups.find((g) => g.slots.includes(slot))?.id).toBe(group);
    expect((await ctl(endpoints, ['get', key])).stdout).toBe('alive\n');
    expect((await ctl(endpoints, ['lease', 'timetolive', id!, '--keys'])).stdout).toContain(
      `attached keys([${key}])`,
    );

    // The revoke deletes the key; then the slot moves (and comes back for the next test).
    expect((await ctl(endpoints, ['lease', 'revoke', id!])).stdout).toBe(`lease ${id} revoked\n`);
    const gone = await ctl(endpoints, ['get', key]);
    expect(gone).toEqual({ code: 1, stdout: '', stderr: 'key not found\n' });
    expect((await ctl(endpoints, ['lease', 'timetolive', id!])).stdout).toBe(
      `lease ${id} already expired\n`,
    );
    for (const to of [other, String(group)]) {
      const moved = await ctl(endpoints, ['slot', 'move', to, String(slot)], 120_000);
      expect(moved.stderr).toBe('');
      expect(moved.code).toBe(0);
    }
  });

  it('balances slots between the groups with their keys, and drains a group before it goes', async () => {
    const keysBefore = (await client.scan('', undefined, { limit: 100_000 })).kvs.length;
    const plan = await ctl(endpoints, ['balance', '-w', 'json']);
    expect(plan.code).toBe(0);
    const planned = JSON.parse(plan.stdout) as { apply: boolean; moves: { to: number }[] };
    expect(planned.apply).toBe(false);
    expect(planned.moves.length).toBeGreaterThan(0);
    // Nothing moved on a dry run.
    const dry = await client.cluster();
    const applied = await ctl(endpoints, ['balance', '--apply'], 120_000);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const even = await client.cluster();
    expect(even.configVersion).toBeGreaterThan(dry.configVersion);
    expect(even.groups.filter((g) => g.id !== 0).map((g) => g.slots.length)).toEqual([512, 512]);
    // Group 2 owns slots: removing it is refused with the way out.
    const refused = await ctl(endpoints, ['group', 'remove', '2']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('balance --drain');
    // A key of group 2 attached to a lease holds its slot there: the plan says so, the drain
    // moves every other slot and then fails, naming the slot; once the lease is revoked, the
    // drain finishes.
    let leasedKey = '';
    for (let i = 0; leasedKey === ''; i++) {
      const slot = slotOfKey(Buffer.from(`drain-lease/${i}`), even.slotCount);
      if (even.groups.find((g) => g.id === 2)?.slots.includes(slot)) leasedKey = `drain-lease/${i}`;
    }
    const leasedSlot = slotOfKey(Buffer.from(leasedKey), even.slotCount);
    const { id: leaseId } = await client.leaseGrant(600, { key: leasedKey });
    await client.put(leasedKey, 'held', { lease: leaseId });
    const leaseHex = leaseId.toString(16).padStart(16, '0');
    const drainPlan = await ctl(endpoints, ['balance', '--drain', '2']);
    expect(drainPlan.code).toBe(0);
    expect(drainPlan.stdout).toContain(
      `slots ${leasedSlot} of group 2 hold leased keys and stay (leases ${leaseHex})\n`,
    );
    expect(drainPlan.stderr).toContain(`group 2 cannot be emptied: slots ${leasedSlot} hold keys`);
    const drainJson = await ctl(endpoints, ['balance', '--drain', '2', '-w', 'json']);
    expect((JSON.parse(drainJson.stdout) as { pinned: unknown }).pinned).toEqual([
      { group: 2, slots: String(leasedSlot) },
    ]);
    const held = await ctl(endpoints, ['balance', '--drain', '2', '--apply'], 120_000);
    expect(held.code).toBe(1);
    expect(held.stderr).toContain('revoke those leases');
    expect((await client.cluster()).groups.find((g) => g.id === 2)?.slots).toEqual([leasedSlot]);
    await client.leaseRevoke(leaseId);
    const drained = await ctl(endpoints, ['balance', '--drain', '2', '--apply'], 120_000);
    expect(drained.stderr).toBe('');
    expect(drained.code).toBe(0);
    const after = await client.cluster();
    expect(after.groups.find((g) => g.id === 2)?.slots).toEqual([]);
    expect((await client.scan('', undefined, { limit: 100_000 })).kvs.length).toBe(keysBefore);
    // Group 2's replicas drop the keys they gave away (through their log, after the move), and
    // endpoint status --slots shows it: no slot holds keys there, while group 1 holds some.
    const holding = async (): Promise<{ groupId: number; slotsWithKeys: number[] }[]> =>
      JSON.parse(
        (await ctl(endpoints, ['endpoint', 'status', '--cluster', '--slots', '-w', 'json'])).stdout,
      ) as { groupId: number; serverType: string; slotsWithKeys: number[] }[];
    const final = await waitUntil(
      async () => {
        const nodes = await holding();
        return nodes.filter((n) => n.groupId === 2).every((n) => n.slotsWithKeys.length === 0)
          ? nodes
          : undefined;
      },
      30_000,
      "group 2's replicas to drop the keys of the slots they gave away",
      500,
    );
    expect(final.filter((n) => n.groupId === 2)).toHaveLength(3);
    expect(final.filter((n) => n.groupId === 1).every((n) => n.slotsWithKeys.length > 0)).toBe(
      true,
    );
    const table = await ctl(endpoints, [
      'endpoint',
      'status',
      '--cluster',
      '--slots',
      '-w',
      'table',
    ]);
    expect(table.stdout).toContain('SLOTS WITH KEYS');
  });
});
