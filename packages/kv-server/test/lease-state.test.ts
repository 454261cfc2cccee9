// Leases in the data state machine on real RocksDB: grants and their ids, attaching keys by puts,
// refusing unknown leases, revokes deleting the keys (changes watchers see), slots frozen for a
// move (their leased keys named, a revoke held off), and the same leases after a restart or a
// snapshot.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, type KvOpPair } from '@eraftkv/protocol';
import type { Entry } from '@eraftkv/raft';
import { EntryType } from '@eraftkv/raft';
import { DataStateMachine, defaultKvLimits, type KvApplyResult } from '../src';
import { encodeLeaseGrant, encodeLeaseRevoke } from '../src/kv-commands';
import { isSlotMark } from '../src/watch-history';
import {
  b,
  config,
  configEntry,
  del,
  get,
  keyInSlot,
  put,
  request,
  tempDir,
  writeEntry,
} from './common';

const slotCount = 8;
const allSlots = [0, 1, 2, 3, 4, 5, 6, 7];
const groupFactor = 2 ** 32;

const entry = (index: number, data: Buffer): Entry => ({
  index,
  term: 1,
  type: EntryType.Normal,
  data,
});

describe('leases in the data state machine', () => {
  let root: string;
  const open: DataStateMachine[] = [];
  let next = 0;

  beforeAll(async () => {
    root = await tempDir('lease');
  });
  afterAll(async () => {
    for (const sm of open) await sm.close();
    await rm(root, { recursive: true, force: true });
  });

  async function fresh(name = `sm-${++next}`): Promise<DataStateMachine> {
    const sm = await DataStateMachine.open({
      path: join(root, name),
      dedupWindowEntries: 1000,
      groupId: 3,
    });
    open.push(sm);
    if ((await sm.appliedIndex()) === 0)
      await sm.apply([configEntry(1, config(1, slotCount, allSlots))]);
    return sm;
  }

  async function applyNext(sm: DataStateMachine, data: Buffer): Promise<KvApplyResult | undefined> {
    const [result] = await sm.apply([entry((await sm.appliedIndex()) + 1, data)]);
    return result;
  }

  const grant = async (sm: DataStateMachine, ttlSeconds: number): Promise<number> => {
    const result = await applyNext(sm, encodeLeaseGrant({ ttlSeconds }));
    if (result?.kind !== 'lease') throw new Error(`not granted: ${JSON.stringify(result)}`);
    return result.id;
  };

  const write = async (
    sm: DataStateMachine,
    ops: KvOpPair[],
  ): Promise<KvApplyResult | undefined> => {
    const index = (await sm.appliedIndex()) + 1;
    const [result] = await sm.apply([writeEntry(index, request(ops))]);
    return result;
  };

  const withLease = (op: KvOpPair, lease: number): KvOpPair => ({ ...op, lease });

  const values = async (sm: DataStateMachine, keys: string[]): Promise<(string | null)[]> => {
    const result = await sm.read(
      keys.map((k) => get(k)),
      defaultKvLimits,
    );
    if (result.kind !== 'read') throw new Error(result.kind);
    return result.ops.map((op) => (op.found ? Buffer.from(op.value).toString() : null));
  };

  it('grants leases whose ids carry the group and the grant index', async () => {
    const sm = await fresh();
    const id = await grant(sm, 30);
    expect(id).toBe(3 * groupFactor + 2);
    expect(sm.leaseTable().get(id)?.ttlSeconds).toBe(30);
    expect(
      sm
        .leaseTable()
        .all()
        .map((l) => l.id),
    ).toEqual([id]);
  });

  it('attaches keys by puts, detaches them by puts without it or deletes, and refuses unknown leases', async () => {
    const sm = await fresh();
    const id = await grant(sm, 30);
    expect(
      (await write(sm, [withLease(put('a', '1'), id), withLease(put('b', '1'), id)]))?.kind,
    ).toBe('applied');
    expect([...(sm.leaseTable().get(id)?.keys ?? [])].sort()).toEqual(['a', 'b']);
    await write(sm, [put('a', '2')]);
    await write(sm, [del('b')]);
    expect([...(sm.leaseTable().get(id)?.keys ?? [])]).toEqual([]);
    // An unknown lease, or another group's, refuses the whole request.
    const unknown = await write(sm, [put('c', '1'), withLease(put('d', '1'), id + 1)]);
    expect(unknown?.kind === 'rejected' && unknown.message).toMatch(
      /kvs\[1\]: lease .* is not held/,
    );
    const foreign = await write(sm, [withLease(put('d', '1'), 5 * groupFactor + 2)]);
    expect(foreign?.kind === 'rejected' && foreign.message).toMatch(
      /belongs to group 5, but the key is in group 3/,
    );
    expect(await values(sm, ['c', 'd'])).toEqual([null, null]);
    expect(ErrorCode.LEASE_NOT_FOUND).toBeGreaterThan(0);
  });

  it('revokes a lease: its keys are deleted, each a change at the revoke revision', async () => {
    const sm = await fresh();
    const id = await grant(sm, 30);
    const other = await grant(sm, 30);
    await write(sm, [
      withLease(put('x', '1'), id),
      withLease(put('y', '2'), id),
      withLease(put('z', '3'), other),
    ]);
    const result = await applyNext(sm, encodeLeaseRevoke({ id }));
    expect(result).toMatchObject({ kind: 'lease', found: true, id });
    const revision = (result as { revision: number }).revision;
    expect(await values(sm, ['x', 'y', 'z'])).toEqual([null, null, '3']);
    expect(sm.leaseTable().get(id)).toBeUndefined();
    const history = await sm.watchHistory(
      { start: b(''), end: null },
      revision,
      1 << 20,
      () => undefined,
    );
    if (history.kind !== 'changes') throw new Error('compacted');
    expect(
      history.items
        .filter((c) => !isSlotMark(c))
        .map((c) => [c.type, isSlotMark(c) ? '' : c.key.toString(), c.revision]),
    ).toEqual([
      ['delete', 'x', revision],
      ['delete', 'y', revision],
    ]);
    // A second revoke finds nothing.
    expect(await applyNext(sm, encodeLeaseRevoke({ id }))).toMatchObject({
      kind: 'lease',
      found: false,
    });
  });

  it('names leased keys of moving slots, and revokes a lease only once none of its keys is frozen', async () => {
    const sm = await fresh();
    const id = await grant(sm, 30);
    const frozen = keyInSlot(1, slotCount, 'f').toString();
    const kept = keyInSlot(2, slotCount, 'k').toString();
    await write(sm, [withLease(put(frozen, 'v'), id), withLease(put(kept, 'v'), id)]);
    // What a move's source checks before it lets slots go.
    expect(sm.leasedKeysIn([1, 3])).toEqual({
      count: 1,
      first: [{ key: Buffer.from(frozen), lease: id, slot: 1 }],
    });
    expect(sm.leasedKeysIn([3, 4])).toEqual({ count: 0, first: [] });
    // Slot 1 frozen for a move: the revoke changes nothing and says SLOT_MIGRATING.
    await sm.apply([
      configEntry((await sm.appliedIndex()) + 1, config(2, slotCount, [0, 2, 3, 4, 5, 6, 7], [1])),
    ]);
    const refused = await applyNext(sm, encodeLeaseRevoke({ id }));
    expect(refused).toMatchObject({ kind: 'wrong-shard', migrating: true });
    expect(refused?.kind === 'wrong-shard' ? refused.message : '').toContain(
      `lease ${id.toString(16).padStart(16, '0')} holds key "${frozen}" of slot 1, frozen for a move`,
    );
    expect(sm.leaseTable().get(id)?.keys.size).toBe(2);
    expect(await values(sm, [kept])).toEqual(['v']);
    // The move rolled back: both keys are there, and the revoke deletes them.
    await sm.apply([
      configEntry((await sm.appliedIndex()) + 1, config(3, slotCount, [0, 1, 2, 3, 4, 5, 6, 7])),
    ]);
    expect(await values(sm, [frozen, kept])).toEqual(['v', 'v']);
    expect(await applyNext(sm, encodeLeaseRevoke({ id }))).toMatchObject({
      kind: 'lease',
      found: true,
    });
    expect(await values(sm, [frozen, kept])).toEqual([null, null]);
    expect(sm.leaseTable().size()).toBe(0);
  });

  it('holds the same leases after a restart and on a replica that installs a snapshot', async () => {
    const name = `sm-${++next}`;
    const sm = await fresh(name);
    const id = await grant(sm, 7);
    await write(sm, [withLease(put('p', '1'), id)]);
    const file = join(root, `snap-${++next}`);
    const index = await sm.writeSnapshot(file);
    const copy = await fresh();
    await copy.restoreSnapshot(file, index);
    expect(copy.leaseTable().get(id)).toEqual({ id, ttlSeconds: 7, keys: new Set(['p']) });
    await sm.close();
    open.splice(open.indexOf(sm), 1);
    const reopened = await fresh(name);
    expect(reopened.leaseTable().get(id)).toEqual({ id, ttlSeconds: 7, keys: new Set(['p']) });
    expect((await reopened.stateDigest()).digest).toBe((await copy.stateDigest()).digest);
  });
});
