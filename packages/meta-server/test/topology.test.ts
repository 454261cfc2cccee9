// The topology model as a specification: every command, every error code, config versions,
// request dedup and determinism.
import { ErrorCode, SlotStatus } from '@eraftkv/protocol';
import {
  CommandDecodeError,
  decodeCommand,
  encodeCommand,
  Topology,
  TopologyInvariantError,
  type CommandOutcome,
  type RequestId,
  type TopologyCommand,
} from '../src';

const noRequest = null;

function init(
  slotCount = 16,
  dedupWindowEntries = 100,
  request: RequestId | null = null,
): TopologyCommand {
  return { kind: 'cluster-init', slotCount, dedupWindowEntries, request };
}

function join(
  id: number,
  addresses: string[] = [],
  request: RequestId | null = null,
): TopologyCommand {
  return {
    kind: 'shard-join',
    group: { id, servers: addresses.map((address, i) => ({ id: i + 1, address })) },
    request,
  };
}

function begin(
  target: number,
  slots: number[],
  request: RequestId | null = null,
  nowMs = 1000,
): TopologyCommand {
  return { kind: 'slot-move-begin', target, slots, nowMs, request };
}

function finish(
  target: number,
  moves: readonly { slot: number; sinceVersion: number }[],
  commit: boolean,
  request: RequestId | null = null,
): TopologyCommand {
  return {
    kind: 'slot-move-finish',
    target,
    moves,
    commit,
    failure: commit ? null : { code: ErrorCode.SLOT_NOT_EMPTY, message: 'slot 1 holds keys' },
    nowMs: 2000,
    request,
  };
}

function expectOk(outcome: CommandOutcome): CommandOutcome {
  expect({ code: outcome.code, message: outcome.message }).toEqual({
    code: ErrorCode.OK,
    message: '',
  });
  return outcome;
}

function expectError(outcome: CommandOutcome, code: ErrorCode, message?: RegExp): void {
  expect(ErrorCode[outcome.code]).toBe(ErrorCode[code]);
  if (message) expect(outcome.message).toMatch(message);
}

/** A topology with 16 slots and groups 1 and 2 (servers a:1, b:1 / c:1). */
function twoGroups(): Topology {
  const t = Topology.empty();
  expectOk(t.apply(init()));
  expectOk(t.apply(join(1, ['a:1', 'b:1'])));
  expectOk(t.apply(join(2, ['c:1'])));
  return t;
}

describe('Topology', () => {
  describe('ClusterInit', () => {
    it('starts uninitialized at config version 0', () => {
      const t = Topology.empty();
      expect(t.initialized).toBe(false);
      expect(t.slotCount).toBe(0);
      expect(t.configVersion).toBe(0);
    });

    it('initializes with 1024 slots when slot_count is 0', () => {
      const t = Topology.empty();
      expectOk(t.apply(init(0)));
      expect(t.initialized).toBe(true);
      expect(t.slotCount).toBe(1024);
      expect(t.configVersion).toBe(1);
      expect(t.slot(1023)).toEqual({
        owner: 0,
        status: SlotStatus.Running,
        modifiedMs: 0,
        move: null,
      });
    });

    it('refuses a second ClusterInit with ALREADY_INITIALIZED and changes nothing', () => {
      const t = Topology.empty();
      t.apply(init(16));
      expectError(t.apply(init(32)), ErrorCode.ALREADY_INITIALIZED, /16 slots/);
      expect(t.slotCount).toBe(16);
      expect(t.configVersion).toBe(1);
    });

    it('rejects slot counts outside [1, 65536]', () => {
      const t = Topology.empty();
      expectError(t.apply(init(65537)), ErrorCode.REJECTED, /slot count/);
      expectError(t.apply(init(-1)), ErrorCode.REJECTED, /slot count/);
      expect(t.initialized).toBe(false);
      expectOk(t.apply(init(65536)));
    });

    it('refuses every change before ClusterInit with NOT_INITIALIZED', () => {
      const t = Topology.empty();
      const commands: TopologyCommand[] = [
        join(1),
        { kind: 'shard-leave', groupId: 1, request: noRequest },
        { kind: 'server-join', groupId: 1, server: { id: 1, address: 'a:1' }, request: noRequest },
        { kind: 'server-leave', groupId: 1, serverId: 1, request: noRequest },
        begin(1, [0]),
        finish(1, [{ slot: 0, sinceVersion: 1 }], true),
      ];
      for (const c of commands) expectError(t.apply(c), ErrorCode.NOT_INITIALIZED);
      expect(t.configVersion).toBe(0);
    });
  });

  describe('ShardJoin and ShardLeave', () => {
    it('adds a group with its servers sorted by id', () => {
      const t = Topology.empty();
      t.apply(init());
      expectOk(
        t.apply({
          kind: 'shard-join',
          group: {
            id: 3,
            servers: [
              { id: 2, address: 'b:1' },
              { id: 1, address: 'a:1' },
            ],
          },
          request: noRequest,
        }),
      );
      expect(t.group(3)?.servers).toEqual([
        { id: 1, address: 'a:1' },
        { id: 2, address: 'b:1' },
      ]);
      expect(t.groupIds()).toEqual([3]);
    });

    it('refuses a group id that exists with GROUP_EXISTS', () => {
      const t = twoGroups();
      const before = t.configVersion;
      expectError(t.apply(join(1, ['x:1'])), ErrorCode.GROUP_EXISTS, /group 1/);
      expect(t.group(1)?.servers.map((s) => s.address)).toEqual(['a:1', 'b:1']);
      expect(t.configVersion).toBe(before);
    });

    it('rejects a group with a repeated server id or address', () => {
      const t = twoGroups();
      expectError(
        t.apply({
          kind: 'shard-join',
          group: {
            id: 5,
            servers: [
              { id: 1, address: 'a:1' },
              { id: 1, address: 'b:1' },
            ],
          },
          request: noRequest,
        }),
        ErrorCode.REJECTED,
        /twice/,
      );
      expect(t.group(5)).toBeUndefined();
    });

    it('removes a group without slots', () => {
      const t = twoGroups();
      expectOk(t.apply({ kind: 'shard-leave', groupId: 2, request: noRequest }));
      expect(t.groupIds()).toEqual([1]);
    });

    it('refuses to remove a missing group with GROUP_NOT_FOUND', () => {
      const t = twoGroups();
      expectError(
        t.apply({ kind: 'shard-leave', groupId: 9, request: noRequest }),
        ErrorCode.GROUP_NOT_FOUND,
      );
    });

    it('refuses to remove a group that owns slots with GROUP_HAS_SLOTS', () => {
      const t = twoGroups();
      t.apply(begin(1, [3, 4]));
      expectError(
        t.apply({ kind: 'shard-leave', groupId: 1, request: noRequest }),
        ErrorCode.GROUP_HAS_SLOTS,
        /2 slot\(s\) \(3-4\)/,
      );
      expect(t.group(1)).toBeDefined();
    });

    it('refuses to remove a group that slots are moving to with GROUP_HAS_SLOTS', () => {
      const t = twoGroups();
      t.apply(begin(1, [3]));
      expect(t.apply(begin(2, [3])).moving).toHaveLength(1);
      expectError(
        t.apply({ kind: 'shard-leave', groupId: 2, request: noRequest }),
        ErrorCode.GROUP_HAS_SLOTS,
        /moving to group 2/,
      );
    });
  });

  describe('ServerJoin and ServerLeave (DataServer records)', () => {
    it('records a server in a group and drops it again', () => {
      const t = twoGroups();
      expectOk(
        t.apply({
          kind: 'server-join',
          groupId: 2,
          server: { id: 7, address: 'd:1' },
          request: noRequest,
        }),
      );
      expect(t.group(2)?.servers).toEqual([
        { id: 1, address: 'c:1' },
        { id: 7, address: 'd:1' },
      ]);
      expectOk(t.apply({ kind: 'server-leave', groupId: 2, serverId: 1, request: noRequest }));
      expect(t.group(2)?.servers).toEqual([{ id: 7, address: 'd:1' }]);
    });

    it('refuses a server id the group records with NODE_EXISTS', () => {
      const t = twoGroups();
      expectError(
        t.apply({
          kind: 'server-join',
          groupId: 1,
          server: { id: 2, address: 'z:1' },
          request: noRequest,
        }),
        ErrorCode.NODE_EXISTS,
        /server 2 at b:1/,
      );
    });

    it('refuses to drop a server the group does not record with NODE_NOT_FOUND', () => {
      const t = twoGroups();
      expectError(
        t.apply({ kind: 'server-leave', groupId: 1, serverId: 9, request: noRequest }),
        ErrorCode.NODE_NOT_FOUND,
      );
    });

    it('refuses server changes of a missing group with GROUP_NOT_FOUND', () => {
      const t = twoGroups();
      expectError(
        t.apply({
          kind: 'server-join',
          groupId: 9,
          server: { id: 1, address: 'z:1' },
          request: noRequest,
        }),
        ErrorCode.GROUP_NOT_FOUND,
      );
      expectError(
        t.apply({ kind: 'server-leave', groupId: 9, serverId: 1, request: noRequest }),
        ErrorCode.GROUP_NOT_FOUND,
      );
    });
  });

  describe('SlotMove', () => {
    it('names refused slots as ranges', () => {
      const t = twoGroups();
      expectError(
        t.apply(begin(1, [20, 18, 17, 16, 30, 40, 41])),
        ErrorCode.REJECTED,
        /^slot\(s\) 16-18,20,30,40-41 are outside \[0, 16\)/,
      );
      const many = Array.from({ length: 20 }, (_, i) => 100 + 2 * i);
      expectError(
        t.apply(begin(1, many)),
        ErrorCode.REJECTED,
        /^slot\(s\) 100,102,104,106,108,110,112,114 and 12 more are outside/,
      );
    });

    it('assigns slots without an owner at once: nothing to check, nothing left moving', () => {
      const t = twoGroups();
      const v = t.configVersion;
      const outcome = expectOk(t.apply(begin(1, [0, 1, 2], null, 1234)));
      expect(outcome.moving).toEqual([]);
      expect(t.slot(1)).toEqual({
        owner: 1,
        status: SlotStatus.Running,
        modifiedMs: 1234,
        move: null,
      });
      expect(t.slotsOwnedBy(1).map((s) => s.slot)).toEqual([0, 1, 2]);
      expect(t.configVersion).toBe(v + 1);
    });

    it('marks owned slots Migrating with their target, owner unchanged', () => {
      const t = twoGroups();
      t.apply(begin(1, [0, 1]));
      const v = t.configVersion;
      const outcome = expectOk(t.apply(begin(2, [1, 0, 5])));
      expect(outcome.moving).toEqual([
        { slot: 0, source: 1, target: 2, sinceVersion: v + 1 },
        { slot: 1, source: 1, target: 2, sinceVersion: v + 1 },
      ]);
      expect(t.slot(0)).toEqual({
        owner: 1,
        status: SlotStatus.Migrating,
        modifiedMs: 1000,
        move: { target: 2, sinceVersion: v + 1 },
      });
      // The unowned slot in the same request is assigned directly.
      expect(t.slot(5).owner).toBe(2);
      expect(t.configVersion).toBe(v + 1);
      expect(t.migratingSlots().map((m) => m.slot)).toEqual([0, 1]);
    });

    it('commits a move: owner = target, status Running, version grows', () => {
      const t = twoGroups();
      t.apply(begin(1, [0, 1]));
      const moving = t.apply(begin(2, [0, 1])).moving;
      const v = t.configVersion;
      expectOk(t.apply(finish(2, moving, true)));
      expect(t.slot(0)).toEqual({
        owner: 2,
        status: SlotStatus.Running,
        modifiedMs: 2000,
        move: null,
      });
      expect(t.slotsOwnedBy(2).map((s) => s.slot)).toEqual([0, 1]);
      expect(t.configVersion).toBe(v + 1);
    });

    it("rolls a move back: owner unchanged, status Running, the source's error is the answer", () => {
      const t = twoGroups();
      t.apply(begin(1, [0, 1]));
      const moving = t.apply(begin(2, [0, 1])).moving;
      const v = t.configVersion;
      expectError(t.apply(finish(2, moving, false)), ErrorCode.SLOT_NOT_EMPTY, /holds keys/);
      expect(t.slot(0)).toEqual({
        owner: 1,
        status: SlotStatus.Running,
        modifiedMs: 2000,
        move: null,
      });
      expect(t.migratingSlots()).toEqual([]);
      expect(t.configVersion).toBe(v + 1);
    });

    it('refuses a slot already moving elsewhere with REJECTED, changing none of the slots', () => {
      const t = twoGroups();
      expectOk(t.apply(join(3)));
      t.apply(begin(1, [0, 1]));
      t.apply(begin(2, [1]));
      const before = JSON.stringify(t.toRecords());
      expectError(
        t.apply(begin(3, [0, 1])),
        ErrorCode.REJECTED,
        /slot 1 is already moving from group 1 to group 2/,
      );
      expect(JSON.stringify(t.toRecords())).toBe(before);
    });

    it('hands back the moving slots again when the same move is requested again (resume)', () => {
      const t = twoGroups();
      t.apply(begin(1, [0]));
      const first = t.apply(begin(2, [0])).moving;
      const v = t.configVersion;
      expect(t.apply(begin(2, [0])).moving).toEqual(first);
      expect(t.configVersion).toBe(v);
    });

    it('ignores a finish decided for another move of the slot', () => {
      const t = twoGroups();
      t.apply(begin(1, [0]));
      const moving = t.apply(begin(2, [0])).moving;
      const stale = moving.map((m) => ({ slot: m.slot, sinceVersion: m.sinceVersion - 1 }));
      const v = t.configVersion;
      expectError(t.apply(finish(2, stale, true)), ErrorCode.REJECTED, /no longer moving/);
      expect(t.slot(0).status).toBe(SlotStatus.Migrating);
      expect(t.configVersion).toBe(v);
    });

    it('does not change the version when every slot already belongs to the target', () => {
      const t = twoGroups();
      t.apply(begin(1, [0, 1]));
      const v = t.configVersion;
      expectOk(t.apply(begin(1, [0, 1])));
      expect(t.configVersion).toBe(v);
    });

    it('refuses a missing target with GROUP_NOT_FOUND and slots out of range with REJECTED', () => {
      const t = twoGroups();
      expectError(t.apply(begin(9, [0])), ErrorCode.GROUP_NOT_FOUND);
      expectError(t.apply(begin(1, [16])), ErrorCode.REJECTED, /outside \[0, 16\)/);
      expect(t.slotsOwnedBy(1)).toEqual([]);
    });
  });

  describe('config_version', () => {
    it('grows by exactly one with every change and not with refusals', () => {
      const t = Topology.empty();
      const versions: number[] = [];
      const step = (c: TopologyCommand): void => {
        t.apply(c);
        versions.push(t.configVersion);
      };
      step(init()); // 1
      step(join(1, ['a:1'])); // 2
      step(join(1, ['a:1'])); // refused: 2
      step(join(2)); // 3
      step({ kind: 'server-join', groupId: 2, server: { id: 1, address: 'b:1' }, request: null }); // 4
      step({ kind: 'server-leave', groupId: 2, serverId: 1, request: null }); // 5
      step(begin(1, [0])); // 6
      step({ kind: 'shard-leave', groupId: 1, request: null }); // refused: 6
      step({ kind: 'shard-leave', groupId: 2, request: null }); // 7
      expect(versions).toEqual([1, 2, 2, 3, 4, 5, 6, 6, 7]);
    });

    it('grows with meta membership changes once initialized', () => {
      const t = Topology.empty();
      t.noteMetaMembershipChange();
      expect(t.configVersion).toBe(0);
      t.apply(init());
      t.noteMetaMembershipChange();
      expect(t.configVersion).toBe(2);
    });
  });

  describe('request dedup', () => {
    const r = (commandId: number, clientId = 'client-a'): RequestId => ({ clientId, commandId });

    it('applies a request once and answers a retry with the remembered outcome', () => {
      const t = twoGroups();
      expectOk(t.apply(join(5, ['e:1'], r(1))));
      const v = t.configVersion;
      const retry = t.apply(join(5, ['e:1'], r(1)));
      expect(retry).toEqual({ code: ErrorCode.OK, message: '', deduplicated: true, moving: [] });
      expect(t.configVersion).toBe(v);
      // The same command id from another client is another request.
      expectError(t.apply(join(5, ['e:1'], r(1, 'client-b'))), ErrorCode.GROUP_EXISTS);
    });

    it('remembers refusals too, so a retry gets the same answer', () => {
      const t = twoGroups();
      expectError(
        t.apply({ kind: 'shard-leave', groupId: 9, request: r(2) }),
        ErrorCode.GROUP_NOT_FOUND,
      );
      expect(t.apply(join(9, [], null)).code).toBe(ErrorCode.OK);
      const retry = t.apply({ kind: 'shard-leave', groupId: 9, request: r(2) });
      expect(retry.deduplicated).toBe(true);
      expectError(retry, ErrorCode.GROUP_NOT_FOUND);
      expect(t.group(9)).toBeDefined();
    });

    it('remembers a slot move only when it is finished', () => {
      const t = twoGroups();
      t.apply(begin(1, [0]));
      const moving = t.apply(begin(2, [0], r(3))).moving;
      expect(moving).toHaveLength(1);
      expect(t.remembered(r(3))).toBeUndefined();
      expectOk(t.apply(finish(2, moving, true, r(3))));
      expect(t.remembered(r(3))).toEqual({ code: ErrorCode.OK, message: '' });
      const retry = t.apply(begin(2, [0], r(3)));
      expect(retry.deduplicated).toBe(true);
      expect(retry.moving).toEqual([]);
    });

    it('keeps only the newest requests of the window', () => {
      const t = Topology.empty();
      expectOk(t.apply(init(16, 3)));
      for (let id = 1; id <= 4; id++) expectOk(t.apply(join(id, [], r(id))));
      expect(t.dedupSize).toBe(3);
      expect(t.remembered(r(1))).toBeUndefined();
      expect(t.remembered(r(4))).toBeDefined();
      // Request 1 fell out of the window: a retry is applied again (and now refused).
      expectError(t.apply(join(1, [], r(1))), ErrorCode.GROUP_EXISTS);
      expect(t.apply(join(4, [], r(4))).deduplicated).toBe(true);
      expect(t.toRecords().dedup.map((d) => d.commandId)).toEqual([3, 4, 1]);
    });
  });

  describe('determinism and records', () => {
    /** A long, varied command sequence from a seeded generator. */
    function commands(seed: number, count: number): TopologyCommand[] {
      let x = seed;
      const next = (bound: number): number => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return x % bound;
      };
      const out: TopologyCommand[] = [init(64, 20)];
      for (let i = 0; i < count; i++) {
        const request = next(3) === 0 ? null : { clientId: `c${next(3)}`, commandId: next(40) + 1 };
        const group = next(5) + 1;
        switch (next(6)) {
          case 0:
            out.push(join(group, [`h${next(9)}:1`], request));
            break;
          case 1:
            out.push({ kind: 'shard-leave', groupId: group, request });
            break;
          case 2:
            out.push({
              kind: 'server-join',
              groupId: group,
              server: { id: next(4) + 1, address: `s${next(9)}:1` },
              request,
            });
            break;
          case 3:
            out.push({ kind: 'server-leave', groupId: group, serverId: next(4) + 1, request });
            break;
          case 4:
            out.push(begin(group, [next(64), next(64), next(64)], request, i));
            break;
          default:
            out.push(
              finish(
                group,
                [{ slot: next(64), sinceVersion: next(i + 2) }],
                next(2) === 0,
                request,
              ),
            );
        }
      }
      return out;
    }

    it('reaches the same state and the same answers from the same commands', () => {
      const a = Topology.empty();
      const b = Topology.empty();
      const list = commands(7, 2000);
      const answersA = list.map((c) => a.apply(c));
      // The second replica gets the commands through the log encoding.
      const answersB = list.map((c, i) => b.apply(decodeCommand(encodeCommand(c), i + 1)));
      expect(answersB).toEqual(answersA);
      expect(JSON.stringify(b.toRecords())).toBe(JSON.stringify(a.toRecords()));
      expect(a.configVersion).toBeGreaterThan(10);
      a.assertInvariants();
    });

    it('rebuilds an equal state from its records', () => {
      const a = Topology.empty();
      for (const c of commands(11, 500)) a.apply(c);
      const copy = Topology.fromRecords(
        JSON.parse(JSON.stringify(a.toRecords())) as ReturnType<Topology['toRecords']>,
      );
      expect(copy.toRecords()).toEqual(a.toRecords());
      // And both go on identically.
      for (const c of commands(12, 300).slice(1)) expect(copy.apply(c)).toEqual(a.apply(c));
      expect(copy.toRecords()).toEqual(a.toRecords());
    });

    it('refuses records that break an invariant', () => {
      const t = twoGroups();
      t.apply(begin(1, [0]));
      const records = t.toRecords();
      const orphan = { ...records, groups: records.groups.filter((g) => g.id !== 1) };
      expect(() => Topology.fromRecords(orphan)).toThrow(TopologyInvariantError);
      expect(() =>
        Topology.fromRecords({ ...records, slots: [{ ...records.slots[0], slot: 99 }] }),
      ).toThrow(/outside/);
    });

    it('reports exactly the records a command changed', () => {
      const t = twoGroups();
      t.takeChanges();
      t.apply(begin(1, [2, 3], { clientId: 'x', commandId: 1 }));
      const changes = t.takeChanges();
      expect([...changes.slots.keys()]).toEqual([2, 3]);
      expect(changes.groups.size).toBe(0);
      expect(changes.config?.configVersion).toBe(t.configVersion);
      expect(changes.dedupPut.map((d) => d.commandId)).toEqual([1]);
      const none = t.takeChanges();
      expect(none.config).toBeNull();
      expect(none.slots.size).toBe(0);
    });
  });
});

describe('topology command codec', () => {
  it('round-trips every command kind', () => {
    const all: TopologyCommand[] = [
      init(0, 5, { clientId: 'c', commandId: 1 }),
      join(2, ['a:1']),
      { kind: 'shard-leave', groupId: 2, request: null },
      { kind: 'server-join', groupId: 2, server: { id: 3, address: 'b:2' }, request: null },
      { kind: 'server-leave', groupId: 2, serverId: 3, request: null },
      begin(2, [1, 2]),
      finish(2, [{ slot: 1, sinceVersion: 4 }], false),
    ];
    for (const c of all) expect(decodeCommand(encodeCommand(c), 1)).toEqual(c);
  });

  it('refuses a malformed entry, naming its index', () => {
    expect(() => decodeCommand(Buffer.from('{"kind":"shard-leave"}'), 42)).toThrow(
      CommandDecodeError,
    );
    expect(() => decodeCommand(Buffer.from('{"kind":"shard-leave"}'), 42)).toThrow(
      /log entry 42.*groupId/,
    );
    expect(() => decodeCommand(Buffer.from('{"kind":"teleport","request":null}'), 7)).toThrow(
      /unknown command kind "teleport"/,
    );
    expect(() => decodeCommand(Buffer.from('not json'), 8)).toThrow(/log entry 8/);
  });
});
