// The topology state machine on real RocksDB in a temp dir: applying entries of every type,
// keeping state across a restart, and snapshots written and restored.
import { join } from 'node:path';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { ErrorCode, SlotStatus } from '@eraftkv/protocol';
import { EntryType, type Entry } from '@eraftkv/raft';
import { openRocksEngine, StorageCorruptionError } from '@eraftkv/raft-server';
import { encodeCommand, TopologyStateMachine, type TopologyCommand } from '../src';
import { makeTempDir, removeDir } from './common';

function normal(index: number, command: TopologyCommand): Entry {
  return { index, term: 1, type: EntryType.Normal, data: encodeCommand(command) };
}

function other(index: number, type: EntryType): Entry {
  return { index, term: 1, type, data: new Uint8Array() };
}

const request = (commandId: number): { clientId: string; commandId: number } => ({
  clientId: 'sm-test',
  commandId,
});

/** A batch that initializes, adds two groups and assigns slots (indexes 2..7). */
function firstBatch(): Entry[] {
  return [
    other(2, EntryType.NoOp),
    normal(3, { kind: 'cluster-init', slotCount: 64, dedupWindowEntries: 2, request: request(1) }),
    normal(4, {
      kind: 'shard-join',
      group: { id: 1, servers: [{ id: 1, address: '127.0.0.1:7088' }] },
      request: request(2),
    }),
    normal(5, { kind: 'shard-join', group: { id: 2, servers: [] }, request: request(3) }),
    normal(6, { kind: 'slot-move-begin', target: 1, slots: [0, 1, 2], nowMs: 5, request: null }),
    other(7, EntryType.JoinNoVoteNode),
  ];
}

describe('TopologyStateMachine', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir('eraftkv-meta-sm-');
  });
  afterEach(() => removeDir(dir));

  it('applies every entry type and answers normal entries with their outcome', async () => {
    const sm = await TopologyStateMachine.open(join(dir, 'state'));
    try {
      expect(await sm.appliedIndex()).toBe(0);
      const results = await sm.apply(firstBatch());
      expect(results.map((r) => (r === undefined ? 'none' : ErrorCode[r.code]))).toEqual([
        'none',
        'OK',
        'OK',
        'OK',
        'OK',
        'none',
      ]);
      expect(await sm.appliedIndex()).toBe(7);
      // init, two joins, the slot assignment and the membership entry: five changes.
      expect(sm.topology.configVersion).toBe(5);
      expect(sm.topology.slotsOwnedBy(1).map((s) => s.slot)).toEqual([0, 1, 2]);
      const retry = await sm.apply([
        normal(8, { kind: 'shard-join', group: { id: 2, servers: [] }, request: request(3) }),
      ]);
      expect(retry[0]?.deduplicated).toBe(true);
    } finally {
      await sm.close();
    }
  });

  it('keeps the state and the applied index across a restart', async () => {
    const path = join(dir, 'state');
    const sm = await TopologyStateMachine.open(path);
    await sm.apply(firstBatch());
    const moving = (
      await sm.apply([
        normal(8, { kind: 'slot-move-begin', target: 2, slots: [1], nowMs: 6, request: null }),
      ])
    )[0]?.moving;
    expect(moving).toHaveLength(1);
    // Four requests with a window of 2: the oldest two are deleted from the store too.
    await sm.apply([
      normal(9, {
        kind: 'server-join',
        groupId: 2,
        server: { id: 4, address: 'h:1' },
        request: request(4),
      }),
    ]);
    const records = sm.topology.toRecords();
    expect(records.dedup.map((d) => d.commandId)).toEqual([3, 4]);
    await sm.close();

    const reopened = await TopologyStateMachine.open(path);
    try {
      expect(await reopened.appliedIndex()).toBe(9);
      expect(reopened.topology.toRecords()).toEqual(records);
      expect(reopened.topology.slot(1).status).toBe(SlotStatus.Migrating);
      // It goes on from there.
      const [done] = await reopened.apply([
        normal(10, {
          kind: 'slot-move-finish',
          target: 2,
          moves: (moving ?? []).map((m) => ({ slot: m.slot, sinceVersion: m.sinceVersion })),
          commit: true,
          failure: null,
          nowMs: 7,
          request: null,
        }),
      ]);
      expect(done?.code).toBe(ErrorCode.OK);
      expect(reopened.topology.slot(1)).toEqual({
        owner: 2,
        status: SlotStatus.Running,
        modifiedMs: 7,
        move: null,
      });
    } finally {
      await reopened.close();
    }
  });

  it('refuses to open a damaged record, naming the store and the record', async () => {
    const path = join(dir, 'state');
    const sm = await TopologyStateMachine.open(path);
    await sm.apply(firstBatch());
    await sm.close();
    const raw = await openRocksEngine(path);
    const key = Buffer.from([0x67, 0, 0, 0, 0, 0, 0, 0, 1]);
    const stored = [];
    for await (const [k] of raw.iterate({})) stored.push(k.toString('hex'));
    expect(stored).toContain(key.toString('hex'));
    await raw.write([{ type: 'put', key, value: Buffer.from('{"id": 1, "serv') }], { sync: true });
    await raw.close();
    await expect(TopologyStateMachine.open(path)).rejects.toThrow(
      `${path}: record ${key.toString('hex')} does not parse`,
    );
  });

  it('checks every block before it loads when asked to, and refuses a damaged one naming the store', async () => {
    const path = join(dir, 'state');
    const sm = await TopologyStateMachine.open(path, { verify: true });
    await sm.apply(firstBatch());
    await sm.close();
    // Reopened once, the records sit in an .sst file (RocksDB replays its log into one).
    await (await openRocksEngine(path)).close();
    const sst = (await readdir(path)).filter((f) => f.endsWith('.sst'));
    expect(sst.length).toBeGreaterThan(0);
    // A sound store passes the check and loads.
    await (await TopologyStateMachine.open(path, { verify: true })).close();
    // Bytes flipped inside the data of the file: the load would scan past them unchecked.
    const file = join(path, sst[0]);
    const bytes = await readFile(file);
    for (let i = 0; i < 16; i++) bytes[Math.floor(bytes.length / 4) + i] ^= 0xff;
    await writeFile(file, bytes);
    const err = await TopologyStateMachine.open(path, { verify: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageCorruptionError);
    expect((err as Error).message).toContain(`The meta state in ${path} is damaged`);
    expect((err as Error).message).toContain('member remove --group 0');
  });

  it('keeps the applied index when only no-ops were applied', async () => {
    const path = join(dir, 'state');
    const sm = await TopologyStateMachine.open(path);
    await sm.apply([other(2, EntryType.NoOp), other(3, EntryType.JoinNode)]);
    await sm.close();
    const reopened = await TopologyStateMachine.open(path);
    expect(await reopened.appliedIndex()).toBe(3);
    expect(reopened.topology.initialized).toBe(false);
    await reopened.close();
  });

  it('writes a snapshot that restores the same state into another store', async () => {
    const source = await TopologyStateMachine.open(join(dir, 'a'));
    const target = await TopologyStateMachine.open(join(dir, 'b'));
    try {
      await source.apply(firstBatch());
      // Something the snapshot must replace.
      await target.apply([
        normal(2, { kind: 'cluster-init', slotCount: 8, dedupWindowEntries: 5, request: null }),
      ]);
      const file = join(dir, 'snap.dat');
      expect(await source.writeSnapshot(file)).toBe(7);
      await target.restoreSnapshot(file, 7);
      expect(await target.appliedIndex()).toBe(7);
      expect(target.topology.toRecords()).toEqual(source.topology.toRecords());
    } finally {
      await source.close();
      await target.close();
    }
    // The restored state is on disk, not only in memory.
    const reopened = await TopologyStateMachine.open(join(dir, 'b'));
    expect(await reopened.appliedIndex()).toBe(7);
    expect(reopened.topology.slotCount).toBe(64);
    await reopened.close();
  });

  it('refuses a snapshot for another index or in another format', async () => {
    const sm = await TopologyStateMachine.open(join(dir, 'state'));
    try {
      await sm.apply(firstBatch());
      const file = join(dir, 'snap.dat');
      await sm.writeSnapshot(file);
      await expect(sm.restoreSnapshot(file, 8)).rejects.toThrow(/covers index 7, expected 8/);
      const bogus = join(dir, 'bogus.dat');
      await writeFile(bogus, JSON.stringify({ format: 'something-else', appliedIndex: 7 }));
      await expect(sm.restoreSnapshot(bogus, 7)).rejects.toThrow(/format/);
      expect(await sm.appliedIndex()).toBe(7);
    } finally {
      await sm.close();
    }
  });

  it('stops at a malformed command instead of guessing', async () => {
    const sm = await TopologyStateMachine.open(join(dir, 'state'));
    try {
      await expect(
        sm.apply([
          { index: 2, term: 1, type: EntryType.Normal, data: Buffer.from('{"kind":"x"}') },
        ]),
      ).rejects.toThrow(/log entry 2 is not a valid topology command/);
    } finally {
      await sm.close();
    }
  });
});

describe('TopologyStateMachine auth', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir('eraftkv-meta-auth-');
  });
  afterEach(() => removeDir(dir));

  const authBatch = (from: number): Entry[] =>
    [
      { kind: 'user-add', user: 'root' } as const,
      { kind: 'user-grant-role', user: 'root', role: 'root' } as const,
      { kind: 'role-add', role: 'reader' } as const,
      {
        kind: 'role-grant-permission',
        role: 'reader',
        permission: { key: Buffer.from('app/'), rangeEnd: Buffer.from('app0'), type: 'read' },
      } as const,
      { kind: 'auth-enable' } as const,
    ].map((change, i) => normal(from + i, { kind: 'auth', change, request: null }));

  it('keeps users and roles set up before ClusterInit across a restart and in snapshots', async () => {
    const path = join(dir, 'state');
    const sm = await TopologyStateMachine.open(path);
    try {
      const results = await sm.apply(authBatch(1));
      expect(results.map((r) => r?.code)).toEqual([0, 0, 0, 0, 0]);
      expect(sm.topology.initialized).toBe(false);
      expect(sm.topology.configVersion).toBe(0);
      expect(sm.topology.auth.revision).toBe(5);
      await sm.syncApplied();
    } finally {
      await sm.close();
    }
    const reopened = await TopologyStateMachine.open(path);
    const copy = await TopologyStateMachine.open(join(dir, 'copy'));
    try {
      expect(reopened.topology.auth.enabled).toBe(true);
      expect(reopened.topology.auth.revision).toBe(5);
      expect(
        reopened.topology.auth.permits('nobody', 'read', Buffer.from('app/x'), Buffer.alloc(0)),
      ).toBe(false);
      // A refused change answers REJECTED and changes nothing.
      const [refused] = await reopened.apply([
        normal(6, { kind: 'auth', change: { kind: 'user-delete', user: 'root' }, request: null }),
      ]);
      expect(refused?.code).toBe(ErrorCode.REJECTED);
      expect(refused?.message).toMatch(/cannot be deleted while auth is enabled/);
      expect(reopened.topology.auth.revision).toBe(5);
      await reopened.apply(firstBatch().map((e) => ({ ...e, index: e.index + 5 })));
      const file = join(dir, 'snap.dat');
      const index = await reopened.writeSnapshot(file);
      await copy.restoreSnapshot(file, index);
      expect(copy.topology.toRecords()).toEqual(reopened.topology.toRecords());
      expect(copy.topology.auth.toJson()).toEqual(reopened.topology.auth.toJson());
    } finally {
      await reopened.close();
      await copy.close();
    }
  });

  it('stops at an auth change that does not decode instead of guessing', async () => {
    const sm = await TopologyStateMachine.open(join(dir, 'state'));
    try {
      const data = Buffer.from(
        JSON.stringify({ kind: 'auth', change: { kind: 'root-me' }, request: null }),
      );
      await expect(sm.apply([{ index: 1, term: 1, type: EntryType.Normal, data }])).rejects.toThrow(
        /log entry 1 is not a valid topology command \(the auth change has the unknown kind "root-me"\)/,
      );
    } finally {
      await sm.close();
    }
  });
});
