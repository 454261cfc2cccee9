// A data dir belongs to one node: its identity (cluster, kind, group, node id, incarnation) is
// written when it is created and checked at every start.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirError, identityFileName, openNodeIdentity, type NodeClaim } from '../src';

const kv: NodeClaim = { clusterId: 'eraftkv', kind: 'kv', groupId: 1, nodeId: 2 };

describe('openNodeIdentity', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'eraftkv-identity-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('creates the identity of a new data dir once, with a random incarnation', async () => {
    const dir = join(root, 'kv-1-2');
    const first = await openNodeIdentity(dir, kv);
    expect(first.created).toBe(true);
    expect(first.identity).toMatchObject(kv);
    expect(first.identity.incarnation).toBeGreaterThan(0);
    expect(first.identity.incarnation).toBeLessThan(2 ** 47);
    const again = await openNodeIdentity(dir, kv);
    expect(again).toEqual({ identity: first.identity, created: false });
    // Another data dir of the same node is another incarnation.
    const other = await openNodeIdentity(join(root, 'kv-1-2-again'), kv);
    expect(other.identity.incarnation).not.toBe(first.identity.incarnation);
  });

  it('refuses a data dir of another kind, naming both', async () => {
    const dir = join(root, 'd');
    await openNodeIdentity(dir, kv);
    const meta: NodeClaim = { clusterId: 'eraftkv', kind: 'meta', groupId: 0, nodeId: 2 };
    await expect(openNodeIdentity(dir, meta)).rejects.toThrow(DataDirError);
    await expect(openNodeIdentity(dir, meta)).rejects.toThrow(
      `data dir ${dir} belongs to kv node 2 of group 1 in cluster "eraftkv" (identity.json), not to meta node 2 of group 0 in cluster "eraftkv": it is a kv data dir, not meta (eraftkv-meta)`,
    );
  });

  it('refuses another --group, --id or --cluster-id, naming the flag and both values', async () => {
    const dir = join(root, 'd');
    await openNodeIdentity(dir, kv);
    await expect(openNodeIdentity(dir, { ...kv, groupId: 3 })).rejects.toThrow(
      "--group is 3, the data dir's is 1",
    );
    await expect(openNodeIdentity(dir, { ...kv, nodeId: 9 })).rejects.toThrow(
      "--id is 9, the data dir's is 2",
    );
    await expect(openNodeIdentity(dir, { ...kv, clusterId: 'other' })).rejects.toThrow(
      '--cluster-id is "other", the data dir\'s is "eraftkv"',
    );
  });

  it('refuses a data dir that holds state but no identity', async () => {
    const dir = join(root, 'old');
    await mkdir(join(dir, 'raft-log'), { recursive: true });
    await expect(openNodeIdentity(dir, kv)).rejects.toThrow(
      `data dir ${dir} holds a node's state (raft-log) but no identity.json`,
    );
  });

  it('names the file and the field of a damaged identity', async () => {
    const dir = join(root, 'd');
    await openNodeIdentity(dir, kv);
    const path = join(dir, identityFileName);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, 20));
    await expect(openNodeIdentity(dir, kv)).rejects.toThrow(`${path} is not valid JSON`);
    const record = JSON.parse(text) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...record, incarnation: -4 }));
    await expect(openNodeIdentity(dir, kv)).rejects.toThrow(
      `${path}: field "incarnation" must be a positive integer below 2^47, found -4`,
    );
    await writeFile(path, JSON.stringify({ ...record, kind: 'storage' }));
    await expect(openNodeIdentity(dir, kv)).rejects.toThrow(
      `${path}: field "kind" must be "meta" or "kv", found "storage"`,
    );
  });
});
