// Users, roles and key permissions on a cluster with mutual TLS and peer certificates, as real
// processes: auth is enabled only by root and only once root exists; with it on, a read-only role
// cannot write, prefix permissions hold for put, get, del and scan, a batch that straddles
// prefixes is refused whole (nothing of it applied), and a client certificate that is not root
// can change neither topology, membership, leadership nor auth (the issue's attacks, replayed
// with a valid certificate); the group keeps its leader, data and equal digests; the table
// survives kill -9 of every node; a revoke takes effect, and disabling auth opens the cluster.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AccessDeniedError, ClusterError, EraftKvClient } from '@eraftkv/client';
import {
  AppendEntriesReq,
  ChangeType,
  ClientOpType,
  ClientOperationReq,
  ClusterConfigChangeReq,
  HandleServerType,
  prefixRangeEnd,
  type StatusResp,
} from '@eraftkv/protocol';
import { waitUntil } from '@eraftkv/test-support';
import { initializeCluster, type LocalCluster } from '../local-cluster';
import { clientTlsOf, createLocalTls, nodeTlsArgs, type LocalTls } from '../tls-certs';
import { BareClients, fastTiming, op, startTestCluster } from './helpers';
import { sameAppliedIndex as sameAppliedIndexOf } from './helpers';

jest.setTimeout(240_000);

/** Every key with this prefix. */
function prefixed(prefix: string): { key: Buffer; rangeEnd: Buffer } {
  const key = Buffer.from(prefix);
  return { key, rangeEnd: prefixRangeEnd(key) };
}

/** What a promise ended with: 'ok', or the error's class name and message. */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
}

describe('users, roles and key permissions', () => {
  let dir: string;
  let tls: LocalTls;
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  const clients = new Map<string, EraftKvClient>();
  const bares: BareClients[] = [];

  const as = (user: string): EraftKvClient => clients.get(user)!;
  const kvNode = (id: number): string => cluster.layout.kv.get(1)![id - 1].grpcAddress;
  const sameAppliedIndex = (what: string): Promise<StatusResp[]> =>
    sameAppliedIndexOf(as('root'), [1, 2, 3].map(kvNode), what);
  /** Waits until the kv group refuses alice a write outside her grants (its table is applied). */
  const authReached = (what: string): Promise<true> =>
    waitUntil(
      async () =>
        (await outcome(as('alice').put('probe', 'x'))).startsWith('AccessDeniedError')
          ? true
          : undefined,
      20_000,
      what,
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-auth-'));
    const members = [
      ...[1, 2, 3].map((id) => ({ name: `meta-${id}`, group: 0, id })),
      ...[1, 2, 3].map((id) => ({ name: `kv-1-${id}`, group: 1, id })),
    ];
    tls = await createLocalTls(join(dir, 'tls'), members, ['root', 'alice', 'bob', 'mallory']);
    ({ cluster, cleanup } = await startTestCluster({
      dir: join(dir, 'data'),
      kvGroups: 1,
      extraArgs: fastTiming,
      nodeArgs: (name) => nodeTlsArgs(tls, name),
    }));
    for (const user of ['root', 'alice', 'bob', 'mallory']) {
      clients.set(
        user,
        new EraftKvClient({
          endpoints: cluster.metaEndpoints(),
          deadlineMs: 20_000,
          tls: await clientTlsOf(tls, user),
        }),
      );
    }
    await initializeCluster(as('root'), cluster);
    await as('root').put('shared/a', 'one');
    await as('root').put('alice/x', 'mine');
    await as('root').put('other', 'nobody');
  });
  afterAll(async () => {
    for (const c of clients.values()) c.close();
    for (const b of bares) b.closeAll();
    await cleanup?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('enables auth only once root exists, and only from root', async () => {
    const root = as('root').auth;
    expect(await outcome(root.enable())).toMatch(/ClusterError: .*needs a user "root"/);
    await root.addUser('root');
    await root.grantRole('root', 'root');
    // alice holds nothing yet: enabling from her connection would lock her out.
    expect(await outcome(as('alice').auth.enable())).toMatch(
      /only by a user with the role root \(this call comes from user "alice"\)/,
    );
    await root.addRole('reader');
    await root.grantPermission('reader', { type: 'read', ...prefixed('shared/') });
    await root.addRole('alice');
    await root.grantPermission('alice', { type: 'readwrite', ...prefixed('alice/') });
    await root.addUser('alice');
    await root.grantRole('alice', 'reader');
    await root.grantRole('alice', 'alice');
    await root.addUser('bob');
    const enabled = await root.enable();
    expect(enabled.enabled).toBe(true);
    expect(await root.status()).toMatchObject({ enabled: true, caller: 'root' });
    const listing = await root.list();
    expect(listing.users.map((u) => [u.name, u.roles])).toEqual([
      ['alice', ['alice', 'reader']],
      ['bob', []],
      ['root', ['root']],
    ]);
    await authReached('the kv replicas to apply the auth table');
  });

  it('holds a read-only role to reads and prefix permissions to their keys', async () => {
    const alice = as('alice');
    // Reading under shared/ is granted, writing is not.
    expect((await alice.get('shared/a'))?.toString()).toBe('one');
    expect(await outcome(alice.put('shared/a', 'changed'))).toMatch(
      /AccessDeniedError: .*user "alice" may not write key "shared\/a"/,
    );
    await expect(alice.del('shared/a')).rejects.toThrow(AccessDeniedError);
    // Her own prefix: everything.
    await alice.put('alice/y', 'new');
    expect((await alice.get('alice/y'))?.toString()).toBe('new');
    expect(await alice.del('alice/y')).toBe(true);
    expect((await alice.scan('alice/', 'alice0')).kvs.map((kv) => kv.key.toString())).toEqual([
      'alice/x',
    ]);
    expect((await alice.scan('shared/', 'shared0')).kvs).toHaveLength(1);
    // Outside her prefixes: no read, no write, no scan that reaches beyond them.
    expect(await outcome(alice.get('other'))).toMatch(
      /AccessDeniedError: .*may not read key "other"/,
    );
    expect(await outcome(alice.put('other', 'x'))).toMatch(/AccessDeniedError/);
    expect(await outcome(alice.scan('shared/', 'zzz'))).toMatch(
      /may not read keys \["shared\/", "zzz"\)/,
    );
    expect(await outcome(alice.scan('alice/', undefined))).toMatch(
      /may not read keys from "alice\/" on/,
    );
    // A batch that straddles her prefixes is refused whole: nothing of it is applied.
    expect(
      await outcome(
        alice.batch([
          { type: 'put', key: 'alice/straddle', value: '1' },
          { type: 'put', key: 'shared/straddle', value: '2' },
        ]),
      ),
    ).toMatch(
      /AccessDeniedError: .*"shared\/straddle" \(kvs\[1\] \(Put\)\); nothing in the request was done/,
    );
    expect(await as('root').get('alice/straddle')).toBeUndefined();
    expect(await as('root').get('shared/straddle')).toBeUndefined();
    // One inside both grants (a write of hers and a read of shared/) is served.
    await alice.batch([
      { type: 'put', key: 'alice/both', value: '1' },
      { type: 'get', key: 'shared/a' },
    ]);
    expect((await as('root').get('alice/both'))?.toString()).toBe('1');
    // bob is a user without roles; mallory's certificate is valid but names no user.
    expect(await outcome(as('bob').get('shared/a'))).toMatch(
      /AccessDeniedError: .*user "bob" may not read/,
    );
    expect(await outcome(as('mallory').get('shared/a'))).toMatch(
      /AccessDeniedError: .*the client certificate's CN "mallory" is not a user/,
    );
    // The unary RPC says PERMISSION_DENIED as its status, and touches nothing.
    const bare = new BareClients(
      grpc.credentials.createSsl(
        await readFile(tls.caFile),
        await readFile(tls.clients.get('alice')!.keyFile),
        await readFile(tls.clients.get('alice')!.certFile),
      ),
    );
    bares.push(bare);
    const members = await as('root').members(1);
    const leader = bare.get(kvNode(members.leaderId));
    const status = await new Promise<number>((resolve) =>
      leader.processRwOperation(
        ClientOperationReq.fromPartial({ kvs: [op(ClientOpType.Put, 'other', 'forged')] }),
        (err) => resolve(err?.code ?? 0),
      ),
    );
    expect(status).toBe(grpc.status.PERMISSION_DENIED);
    expect((await as('root').get('other'))?.toString()).toBe('nobody');
  });

  it('refuses topology, membership, leadership and auth changes to a client certificate without root', async () => {
    const before = await as('root').members(1);
    const view = await as('root').cluster();
    const alice = as('alice');
    const refusals = {
      'register a group': await outcome(alice.addGroup(9, ['127.0.0.1:1'])),
      'move slots': await outcome(alice.moveSlots(1, [0])),
      'init again': await outcome(alice.initCluster()),
      'add a voter': await outcome(alice.addMember(1, 9, '127.0.0.1:2', false)),
      'remove a member': await outcome(alice.removeMember(1, before.leaderId)),
      'transfer leadership': await outcome(
        alice.transferLeader(1, before.members.find((m) => m.id !== before.leaderId)!.id),
      ),
      'add a meta member': await outcome(alice.addMember(0, 9, '127.0.0.1:3', true)),
      'grant herself root': await outcome(alice.auth.grantRole('alice', 'root')),
      'disable auth': await outcome(alice.auth.disable()),
      'list users': await outcome(alice.auth.list()),
    };
    for (const [what, result] of Object.entries(refusals)) {
      expect({ what, result }).toEqual({
        what,
        result: expect.stringMatching(/^AccessDeniedError: .*needs the role root/) as unknown,
      });
    }
    // The same as a bare ClusterConfigChange (the attack of the issue: a group at a made-up address).
    const bare = bares[0].get(cluster.metaEndpoints()[0]);
    const code = await new Promise<number>((resolve) =>
      bare.clusterConfigChange(
        ClusterConfigChangeReq.fromPartial({
          changeType: ChangeType.ShardJoin,
          handleServerType: HandleServerType.DataServer,
          shardId: 9,
          shardGroup: { id: 9, servers: [{ id: 1, address: '127.0.0.1:9' }] },
        }),
        (err) => resolve(err?.code ?? 0),
      ),
    );
    expect(code).toBe(grpc.status.PERMISSION_DENIED);
    // A forged append with a client certificate is refused as before (peer identity).
    const status = await as('root').status(kvNode(before.leaderId === 1 ? 2 : 1));
    const follower = status.nodeId;
    const forged = await new Promise<number>((resolve) =>
      bares[0].get(kvNode(follower)).appendEntries(
        AppendEntriesReq.fromPartial({
          leaderId: before.leaderId,
          term: status.term,
          prevLogIndex: status.lastLogIndex,
          prevLogTerm: status.term,
          entries: [
            { id: status.lastLogIndex + 1, term: status.term, dataSize: 1, data: Buffer.from('x') },
          ],
          groupId: 1,
          clusterId: 'eraftkv',
          toId: follower,
          toIncarnation: status.incarnation,
        }),
        (err) => resolve(err?.code ?? 0),
      ),
    );
    expect([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED]).toContain(forged);
    // Nothing changed: the same topology and leader, the data intact, replicas equal.
    const after = await as('root').cluster();
    expect(after.configVersion).toBe(view.configVersion);
    expect(after.groups.map((g) => g.id)).toEqual([0, 1]);
    expect((await as('root').members(1)).leaderId).toBe(before.leaderId);
    expect((await as('root').auth.list()).users.find((u) => u.name === 'alice')?.roles).toEqual([
      'alice',
      'reader',
    ]);
    expect((await as('root').get('shared/a'))?.toString()).toBe('one');
    await as('root').put('after-attacks', 'yes');
    const digests = await sameAppliedIndex('every replica at one applied index');
    expect(new Set(digests.map((s) => s.stateDigest)).size).toBe(1);
    // root may do what alice may not.
    const other = before.members.find((m) => m.id !== before.leaderId)!.id;
    await as('root').transferLeader(1, other);
    expect((await as('root').members(1)).leaderId).toBe(other);
  });

  it('keeps the table through kill -9 of every node; a revoke takes effect; disabling opens the cluster', async () => {
    for (const spec of cluster.allSpecs()) await cluster.signal(spec.name, 'SIGKILL');
    await cluster.startAll();
    // Every node restarted from its own data: alice is still held to her grants.
    await waitUntil(
      async () => ((await outcome(as('alice').get('shared/a'))) === 'ok' ? true : undefined),
      60_000,
      'alice to read shared/a after the restart',
    );
    expect(await outcome(as('alice').put('shared/a', 'x'))).toMatch(/AccessDeniedError/);
    expect((await as('root').auth.status()).enabled).toBe(true);
    // A grant is seen by the very next request (a refused request asks the meta group for a
    // newer table before it is refused).
    await as('root').auth.grantPermission('alice', { type: 'write', ...prefixed('fresh/') });
    await as('alice').put('fresh/1', 'granted a moment ago');
    // Revoking "reader" from alice reaches the kv group within about a poll.
    await as('root').auth.revokeRole('alice', 'reader');
    await waitUntil(
      async () =>
        (await outcome(as('alice').get('shared/a'))).startsWith('AccessDeniedError')
          ? true
          : undefined,
      20_000,
      'the revoke to reach the kv group',
    );
    expect((await as('alice').get('alice/x'))?.toString()).toBe('mine');
    // With auth disabled everyone may do everything again, as before auth.
    await as('root').auth.disable();
    await waitUntil(
      async () =>
        (await outcome(as('bob').put('other', 'bob was here'))) === 'ok' ? true : undefined,
      20_000,
      'bob to write once auth is disabled',
    );
    expect((await as('mallory').get('other'))?.toString()).toBe('bob was here');
    expect(await outcome(as('root').auth.list())).toBe('ok');
    await expect(as('root').auth.deleteUser('nobody')).rejects.toThrow(ClusterError);
    await expect(as('bob').auth.status()).resolves.toMatchObject({ enabled: false, caller: 'bob' });
  });
});
