// The snapshot store on a real file system: snapshots written locally and received in blocks, and
// which files it keeps. The file the log store refers to must survive anything a concurrent local
// snapshot does.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { SnapshotStore, type SnapshotFile } from '../src/snapshot';

const membership = [{ id: 1, address: '127.0.0.1:1', learner: false, incarnation: 0 }];

async function writeLocal(
  store: SnapshotStore,
  index: number,
  body: string,
): Promise<SnapshotFile> {
  return store.create(
    async (path) => {
      await writeFile(path, body);
      return index;
    },
    () => ({ term: 2, membership }),
  );
}

/** Receives `body` as the leader's snapshot at `index`, in blocks of `blockBytes`. */
async function receive(
  store: SnapshotStore,
  index: number,
  body: Buffer,
  blockBytes: number,
): Promise<SnapshotFile> {
  const meta = { index, term: 3, membership };
  let offset = 0;
  for (;;) {
    const data = body.subarray(offset, offset + blockBytes);
    const isLast = offset + data.length >= body.length;
    const r = await store.receive({
      token: `leader-3-${index}`,
      meta,
      offset,
      data,
      blockCrc32: crc32(data),
      isLast,
      fileSizeBytes: isLast ? body.length : 0,
      fileCrc32: isLast ? crc32(body) : 0,
    });
    if (r.kind === 'complete') return r.file;
    if (r.kind === 'rejected') throw new Error(r.reason);
    offset = r.offset;
  }
}

describe('SnapshotStore', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eraftkv-snapshots-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the newer snapshot in use when an older local one finishes after it', async () => {
    const store = await SnapshotStore.open(dir);
    // A local snapshot of index 100 is being written while the leader's snapshot of 200 arrives
    // and is adopted; the local one finishes afterwards.
    const leaderBody = Buffer.from('leader-state '.repeat(1000));
    const fromLeader = await receive(store, 200, leaderBody, 1024);
    await store.adopt(fromLeader);
    const local = await writeLocal(store, 100, 'local-state');

    await expect(store.adopt(local)).rejects.toThrow(/older than the snapshot in use \(200\)/);
    expect(store.latest()?.meta.index).toBe(200);
    await store.discard(local);
    expect(existsSync(local.path)).toBe(false);
    expect(await readFile(fromLeader.path)).toEqual(leaderBody);
    await expect(store.discard(fromLeader)).rejects.toThrow(/in use/);

    // After a restart the store still finds the leader's snapshot, and only it.
    const reopened = await SnapshotStore.open(dir);
    expect(reopened.find(200, 3)?.sizeBytes).toBe(leaderBody.length);
    expect(reopened.find(100, 2)).toBeUndefined();
  });

  it('replaces the snapshot in use by a newer one and removes the old file once unread', async () => {
    const store = await SnapshotStore.open(dir);
    const first = await writeLocal(store, 100, 'first');
    await store.adopt(first);
    store.acquire(first); // being sent to a follower
    const second = await writeLocal(store, 300, 'second');
    await store.adopt(second);
    expect(existsSync(first.path)).toBe(true);
    await store.release(first);
    expect(existsSync(first.path)).toBe(false);
    expect(existsSync(second.path)).toBe(true);
  });
});
