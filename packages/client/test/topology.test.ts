import { ErrorCode, slotOfKey, SlotStatus, type ClusterConfigChangeResp } from '@eraftkv/protocol';
import { backoffMs, formatSlotRanges, parseSlotRanges, Topology } from '../src';

function answer(
  groups: { id: number; slots: number[]; migrating?: number[]; to?: Record<number, number> }[],
  slotCount = 8,
): ClusterConfigChangeResp {
  return {
    success: true,
    shardGroup: groups.map((g) => ({
      id: g.id,
      slots: g.slots.map((id) => ({
        id,
        slotStatus: g.migrating?.includes(id) ? SlotStatus.Migrating : SlotStatus.Running,
        statusModifyTime: 0,
        targetShardId: g.to?.[id] ?? 0,
      })),
      servers: [{ id: 1, address: `127.0.0.1:${7000 + g.id}`, serverStatus: 0 }],
      leaderId: 0,
    })),
    configVersion: 3,
    errorCode: ErrorCode.OK,
    leaderAddress: '',
    errorMessage: '',
    slotCount,
    leaderId: 0,
    slotMoveKeysCopied: 0,
    slotMoveBytesCopied: 0,
    authRevision: 0,
  };
}

describe('Topology', () => {
  it('routes a key to the group that owns its slot, and to 0 when none does', () => {
    const t = new Topology(
      answer([
        { id: 0, slots: [] },
        { id: 1, slots: [0, 1, 2, 3] },
        { id: 2, slots: [4, 5, 6] },
      ]),
    );
    for (const key of ['a', 'b', 'hello', 'user:42', '']) {
      const slot = slotOfKey(Buffer.from(key), 8);
      const expected = slot <= 3 ? 1 : slot <= 6 ? 2 : 0;
      expect(t.groupOf(Buffer.from(key))).toBe(expected);
    }
    expect(t.dataGroups().map((g) => g.id)).toEqual([1, 2]);
    expect(t.version).toBe(3);
    expect(t.initialized()).toBe(true);
  });

  it('records migrating slots and where each goes', () => {
    const t = new Topology(
      answer([{ id: 1, slots: [0, 1, 2, 3], migrating: [3, 1, 2], to: { 1: 3, 2: 2, 3: 3 } }]),
    );
    expect(t.groups.get(1)?.migratingSlots).toEqual([1, 2, 3]);
    expect(t.groups.get(1)?.migratingTo).toEqual([
      { target: 2, slots: [2] },
      { target: 3, slots: [1, 3] },
    ]);
    // Migrating slots still route to their owner until the move commits.
    expect(t.groupOf(Buffer.from('a'))).toBe(slotOfKey(Buffer.from('a'), 8) <= 3 ? 1 : 0);
  });
});

describe('slot ranges', () => {
  it('parses ranges and single slots and formats them back', () => {
    expect(parseSlotRanges('0-3,7, 9-10')).toEqual([0, 1, 2, 3, 7, 9, 10]);
    expect(formatSlotRanges([0, 1, 2, 3, 7, 9, 10])).toBe('0-3,7,9-10');
    expect(formatSlotRanges([])).toBe('');
  });

  it('refuses nonsense with a message that says why', () => {
    expect(() => parseSlotRanges('5-2')).toThrow(/backwards/);
    expect(() => parseSlotRanges('a-b')).toThrow(/not a slot or a range/);
    expect(() => parseSlotRanges('1000-1024', 1024)).toThrow(/slots 0-1023/);
    expect(() => parseSlotRanges('')).toThrow(/no slots/);
  });
});

describe('backoff', () => {
  it('grows exponentially up to the cap, with full jitter', () => {
    const o = { baseMs: 10, maxMs: 100 };
    expect(backoffMs(1, o, () => 0.999)).toBe(10);
    expect(backoffMs(3, o, () => 0.999)).toBe(40);
    expect(backoffMs(10, o, () => 0.999)).toBe(100);
    expect(backoffMs(10, o, () => 0)).toBe(0);
    expect(backoffMs(4, o, () => 0.5)).toBe(40);
  });
});
