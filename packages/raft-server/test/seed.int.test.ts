// Data dirs built outside a running node (seedDataDir, what eraftkv-utl snapshot restore does):
// the nodes open them as a group with the seeded membership and state; a damaged snapshot file
// is refused at start, naming it and saying whether the node can do without it.
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { waitFor } from '@eraftkv/test-support';
import { createNodeIdentity, DataDirError, seedDataDir } from '../src';
import { TestCluster } from './cluster';

jest.setTimeout(60_000);

/** The test state machine's snapshot: hex key, hex value per line; applied index 1, one command. */
function seededState(command: string): string {
  const applied = Buffer.alloc(6);
  applied.writeUIntBE(1, 0, 6);
  const key = Buffer.alloc(9);
  key[0] = 0x64;
  key.writeUIntBE(1, 3, 6);
  return [
    `${Buffer.from('m:applied').toString('hex')} ${applied.toString('hex')}`,
    `${key.toString('hex')} ${Buffer.from(command).toString('hex')}`,
  ].join('\n');
}

async function seedGroup(cluster: TestCluster, ids: number[], command: string): Promise<void> {
  const nodes = await Promise.all(ids.map((id) => cluster.bind(id)));
  const membership = [];
  for (const n of nodes) {
    const identity = await createNodeIdentity(n.dataDir, {
      clusterId: 'test',
      kind: 'kv',
      groupId: cluster.groupId,
      nodeId: n.id,
    });
    membership.push({
      id: n.id,
      address: n.address,
      learner: false,
      incarnation: identity.incarnation,
    });
  }
  for (const n of nodes)
    await seedDataDir(n.dataDir, membership, (path) => writeFile(path, seededState(command)));
}

async function snapshotFiles(dataDir: string): Promise<{ dat: string; json: string }> {
  const dir = join(dataDir, 'snapshots');
  const names = await readdir(dir);
  const dat = names.find((n) => n.endsWith('.dat'));
  const json = names.find((n) => n.endsWith('.json'));
  if (dat === undefined || json === undefined) throw new Error(`no snapshot in ${dir}`);
  return { dat: join(dir, dat), json: join(dir, json) };
}

async function flipByte(path: string): Promise<void> {
  const bytes = await readFile(path);
  bytes[Math.floor(bytes.length / 2)] ^= 0x20;
  await writeFile(path, bytes);
}

describe('seeded data dirs', () => {
  let cluster: TestCluster;
  beforeEach(async () => {
    cluster = new TestCluster();
    await cluster.init();
  });
  afterEach(async () => {
    await cluster.close();
  });

  it('open as a group with the seeded membership and state, and go on from there', async () => {
    await seedGroup(cluster, [1, 2, 3], 'seeded');
    await Promise.all([1, 2, 3].map((id) => cluster.start(id, null)));
    const leader = await cluster.waitForLeader();
    expect(
      leader.server
        .status()
        .membership.map((m) => m.id)
        .sort(),
    ).toEqual([1, 2, 3]);
    const index = await leader.server.propose(Buffer.from('after'));
    expect(index).toBeGreaterThan(1);
    for (const n of cluster.running()) {
      await waitFor(async () => ((await n.sm.commands()).length === 2 ? true : undefined), {
        what: `node ${n.id} to apply the new command`,
      });
      expect(await n.sm.commands()).toEqual(['seeded', 'after']);
    }
  });

  it('refuses to seed a data dir twice', async () => {
    await seedGroup(cluster, [1], 'once');
    const node = cluster.nodes.get(1)!;
    await expect(
      createNodeIdentity(node.dataDir, { clusterId: 'test', kind: 'kv', groupId: 7, nodeId: 1 }),
    ).rejects.toThrow('already has an identity');
    await expect(seedDataDir(node.dataDir, [], async () => {})).rejects.toThrow(
      'already holds a raft log',
    );
  });

  it('refuses a damaged snapshot file the node needs, naming it and the remedy', async () => {
    await seedGroup(cluster, [1], 'seeded');
    const node = cluster.nodes.get(1)!;
    const { dat } = await snapshotFiles(node.dataDir);
    await flipByte(dat);
    const opened = cluster.start(1, null);
    await expect(opened).rejects.toThrow(DataDirError);
    await expect(opened).rejects.toThrow(
      new RegExp(
        `snapshot file ${dat} is damaged: its CRC-32 is [0-9a-f]+, [0-9a-f]+ was written\\. This node needs it`,
      ),
    );
  });

  it.each([
    ['not JSON', () => '{"index": 1,'],
    [
      'a field of the wrong type',
      (m: Record<string, unknown>) => JSON.stringify({ ...m, crc32: 'x' }),
    ],
    ['another index', (m: Record<string, unknown>) => JSON.stringify({ ...m, index: 7 })],
    [
      'a broken membership',
      (m: Record<string, unknown>) => JSON.stringify({ ...m, membership: [{ id: 1 }] }),
    ],
  ])('refuses snapshot metadata with %s, naming the file', async (_what, damage) => {
    await seedGroup(cluster, [1], 'seeded');
    const { json } = await snapshotFiles(cluster.nodes.get(1)!.dataDir);
    const meta = JSON.parse(await readFile(json, 'utf8')) as Record<string, unknown>;
    await writeFile(json, damage(meta));
    const opened = cluster.start(1, null);
    await expect(opened).rejects.toThrow(DataDirError);
    await expect(opened).rejects.toThrow(`snapshot metadata ${json} cannot be read`);
  });

  it('refuses a damaged snapshot file the node can do without, and starts once it is moved aside', async () => {
    await seedGroup(cluster, [1], 'seeded');
    await cluster.start(1, null);
    await cluster.waitForLeader();
    await cluster.stop(1);
    const node = cluster.nodes.get(1)!;
    const { dat, json } = await snapshotFiles(node.dataDir);
    await flipByte(dat);
    await expect(cluster.start(1, null)).rejects.toThrow(
      `snapshot file ${dat} is damaged: its CRC-32`,
    );
    await expect(cluster.start(1, null)).rejects.toThrow(
      new RegExp(
        `This node does not need it \\(its state machine has applied \\d+, past the snapshot's 1\\): move ${dat} and ${json} aside`,
      ),
    );
    await rename(dat, `${dat}.damaged`);
    await rename(json, `${json}.damaged`);
    await cluster.start(1, null);
    const leader = await cluster.waitForLeader();
    await leader.server.propose(Buffer.from('after'));
    expect(await node.sm.commands()).toEqual(['seeded', 'after']);
  });
});
