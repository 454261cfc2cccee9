// Moving slots with their data while leaders crash (docs/slot-migration.md, "Crashes"): real
// processes, two kv groups, keys loaded into group 1; a move to group 2 is started and, as soon
// as its slots are Migrating, the leader of the source, then of the target, then of the meta
// group is killed with SIGKILL (and restarted). Each move must end committed or rolled back, with
// no slot left Migrating, every acknowledged key readable with its value, and the scan finding
// every key exactly once.
import { EraftKvClient, type ClusterView } from '@eraftkv/client';
import { waitUntil } from '@eraftkv/test-support';
import { initializeCluster, type LocalCluster } from '../local-cluster';
import { BareClients, startTestCluster } from './helpers';

jest.setTimeout(240_000);

const keyCount = 6000;
const value = (i: number): string => `value-${i}-${'x'.repeat(600)}`;

describe('moving slots with their data while leaders crash', () => {
  let cluster: LocalCluster;
  let cleanup: () => Promise<void>;
  let client: EraftKvClient;
  const bare = new BareClients();

  beforeAll(async () => {
    ({ cluster, cleanup } = await startTestCluster({ kvGroups: 2 }));
    client = new EraftKvClient({ endpoints: cluster.metaEndpoints(), deadlineMs: 30_000 });
    await initializeCluster(client, cluster);
    for (let i = 0; i < keyCount; i += 100) {
      const ops = Array.from({ length: Math.min(100, keyCount - i) }, (_, j) => ({
        type: 'put' as const,
        key: `key-${i + j}`,
        value: value(i + j),
      }));
      await client.kv.batch(ops);
    }
  });
  afterAll(async () => {
    client.close();
    bare.closeAll();
    await cleanup();
  });

  /** The name of the node that leads `addresses`' group, by their Status. */
  async function leaderName(addresses: readonly string[]): Promise<string> {
    const address = await waitUntil(
      async () => {
        for (const a of addresses) {
          const name = cluster.allSpecs().find((s) => s.grpcAddress === a)!.name;
          if (!cluster.isRunning(name)) continue;
          const status = await bare.status(a).catch(() => null);
          if (status?.role === 'leader') return a;
        }
        return undefined;
      },
      20_000,
      'a leader',
    );
    return cluster.allSpecs().find((s) => s.grpcAddress === address)!.name;
  }

  const kvAddresses = (group: number): string[] =>
    cluster.layout.kv.get(group)!.map((n) => n.grpcAddress);

  const migrating = (view: ClusterView): number =>
    view.groups.reduce((n, g) => n + g.migratingSlots.length, 0);

  /**
   * Moves `slots` from group `source` to group `target`, kills `victim()` (a leader) as soon as
   * slots are Migrating, restarts it, and waits until no slot is Migrating. Returns whether every
   * slot ended in the target.
   */
  async function moveWhileKilling(
    source: number,
    target: number,
    slots: readonly number[],
    victim: () => Promise<string>,
  ): Promise<boolean> {
    const name = await victim();
    const moving = client
      .moveSlots(target, slots, { deadlineMs: 120_000 })
      .then(() => 'committed')
      .catch((err: unknown) => `failed: ${(err as Error).message}`);
    await waitUntil(
      async () => migrating(await client.cluster()) > 0 || (await isSettled(moving)),
      30_000,
      'the slots to be Migrating',
      20,
    );
    await cluster.signal(name, 'SIGKILL');
    await cluster.start(name);
    await moving;
    const view = await waitUntil(
      async () => {
        const v = await client.cluster().catch(() => null);
        return v !== null && migrating(v) === 0 ? v : undefined;
      },
      120_000,
      'the move to be committed or rolled back',
    );
    const ownerOf = (slot: number): number =>
      view.groups.find((g) => g.slots.includes(slot))?.id ?? 0;
    const inTarget = slots.filter((slot) => ownerOf(slot) === target).length;
    // Each batch is all or nothing: a slot is in the target or back in its source, never lost.
    for (const slot of slots) expect([source, target]).toContain(ownerOf(slot));
    console.log(
      `move of ${slots.length} slots to group ${target}, ${name} killed mid-move: ${await moving}; ${inTarget} slots now in group ${target}`,
    );
    const owners = new Set(slots.map(ownerOf));
    return owners.size === 1 && owners.has(target);
  }

  async function isSettled(p: Promise<string>): Promise<boolean> {
    const marker = Symbol('pending');
    return (await Promise.race([p, Promise.resolve(marker)])) !== marker;
  }

  /** Every key readable with its value, and a scan that finds each key once. */
  async function expectEveryKey(): Promise<void> {
    for (let i = 0; i < keyCount; i += 97) {
      const got = await client.kv.get(`key-${i}`);
      expect(got?.toString()).toBe(value(i));
    }
    const scan = await client.kv.scan('key-', 'key.', { limit: keyCount + 100 });
    const keys = scan.kvs.map((kv) => Buffer.from(kv.key).toString());
    expect(new Set(keys).size).toBe(keyCount);
    expect(keys).toHaveLength(keyCount);
    for (const kv of scan.kvs) {
      const i = Number(Buffer.from(kv.key).toString().slice(4));
      expect(Buffer.from(kv.value).toString()).toBe(value(i));
    }
  }

  const range = (from: number, to: number): number[] =>
    Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it('survives a kill of the source leader mid-move', async () => {
    await moveWhileKilling(1, 2, range(512, 767), () => leaderName(kvAddresses(1)));
    await expectEveryKey();
  });

  it('survives a kill of the target leader mid-move', async () => {
    await moveWhileKilling(1, 2, range(768, 1023), () => leaderName(kvAddresses(2)));
    await expectEveryKey();
  });

  it('survives a kill of the meta leader mid-move', async () => {
    await moveWhileKilling(2, 1, range(512, 1023), () => leaderName(cluster.metaEndpoints()));
    await expectEveryKey();
    // Writes go on in both groups afterwards.
    await client.kv.put('after-moves', 'yes');
    expect((await client.kv.get('after-moves'))?.toString()).toBe('yes');
  });
});
