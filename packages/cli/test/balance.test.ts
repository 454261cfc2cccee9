// The balance planner: the fewest slot moves that even out slots per kv group, or drain one.
import type { ClusterView } from '@eraftkv/client';
import { slotOfKey } from '@eraftkv/protocol';
import { leasedSlots, leaseLookProgress, planBalance } from '../src/commands/balance';
import { UsageError } from '../src/exit-codes';

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

function view(groups: Record<number, number[]>, slotCount = 1024): ClusterView {
  return {
    configVersion: 7,
    slotCount,
    groups: [0, ...Object.keys(groups).map(Number)].map((id) => ({
      id,
      servers: [],
      slots: id === 0 ? [] : groups[id],
      migratingSlots: [],
      migratingTo: [],
    })),
    slotMoveCopied: { keys: 0, bytes: 0 },
  };
}

describe('planBalance', () => {
  it('gives a new group half of the slots, the highest ones', () => {
    expect(planBalance(view({ 1: range(0, 1023), 2: [] }), null)).toEqual([
      { from: 1, to: 2, slots: range(512, 1023) },
    ]);
  });

  it('splits three ways, the remainder staying with the group that holds most', () => {
    const plan = planBalance(view({ 1: range(0, 1023), 2: [], 3: [] }), null);
    expect(plan).toEqual([
      { from: 1, to: 2, slots: range(342, 682) },
      { from: 1, to: 3, slots: range(683, 1023) },
    ]);
  });

  it('drains a group into the others, and assigns slots without an owner', () => {
    const plan = planBalance(view({ 1: range(0, 499), 2: range(512, 1023), 3: [] }), 2);
    // 12 slots (500-511) have no owner; group 2's 512 slots leave it.
    const moved = plan.flatMap((m) => m.slots);
    expect(new Set(moved).size).toBe(moved.length);
    expect(moved.sort((a, b) => a - b)).toEqual(range(500, 1023));
    expect(plan.every((m) => m.to !== 2)).toBe(true);
    const after = new Map([
      [1, 500],
      [3, 0],
    ]);
    for (const m of plan) after.set(m.to, (after.get(m.to) ?? 0) + m.slots.length);
    expect([...after.values()].sort()).toEqual([512, 512]);
  });

  it('leaves slots that hold leased keys where they are, moving the next highest instead', () => {
    const pinned = new Map([
      [1000, 0x1_0000_0007],
      [1023, 0x1_0000_0009],
    ]);
    expect(planBalance(view({ 1: range(0, 1023), 2: [] }), null, pinned)).toEqual([
      { from: 1, to: 2, slots: [...range(510, 999), ...range(1001, 1022)] },
    ]);
    // A drained group keeps its pinned slots: the plan moves every other one.
    const plan = planBalance(view({ 1: range(0, 511), 2: range(512, 1023) }), 2, pinned);
    const moved = plan.flatMap((m) => m.slots).sort((a, b) => a - b);
    expect(moved).toEqual([...range(512, 999), ...range(1001, 1022)]);
    expect(plan.every((m) => m.from === 2 && m.to === 1)).toBe(true);
  });

  it('plans nothing for a balanced cluster', () => {
    expect(planBalance(view({ 1: range(0, 511), 2: range(512, 1023) }), null)).toEqual([]);
  });

  it('refuses to drain a group that does not exist, or the only one', () => {
    expect(() => planBalance(view({ 1: range(0, 1023) }), 4)).toThrow(UsageError);
    expect(() => planBalance(view({ 1: range(0, 1023) }), 1)).toThrow(
      'there is no other kv group to move slots to',
    );
  });
});

describe('leasedSlots', () => {
  it('maps each slot that holds a leased key to one of its leases, saying how far it came', async () => {
    // 40 leases of group 1; lease n holds key k<n> and, for even n, k<n>b; lease 40 expired
    // between the listing and the look at its keys (no keys).
    const ids = range(1, 40).map((n) => 2 ** 32 + n);
    const keysOf = (id: number): Buffer[] => {
      const n = id - 2 ** 32;
      if (n === 40) return [];
      return n % 2 === 0 ? [Buffer.from(`k${n}`), Buffer.from(`k${n}b`)] : [Buffer.from(`k${n}`)];
    };
    const client = {
      leases: () =>
        Promise.resolve(ids.map((id) => ({ id, group: 1, ttlSeconds: 10, grantedTtlSeconds: 10 }))),
      leaseTimeToLive: (id: number) =>
        Promise.resolve({ id, group: 1, ttlSeconds: 10, grantedTtlSeconds: 10, keys: keysOf(id) }),
    };
    const progress: Array<[number, number]> = [];
    const pinned = await leasedSlots(client, 1024, (looked, leases) =>
      progress.push([looked, leases]),
    );
    expect(progress).toEqual([
      [16, 40],
      [32, 40],
      [40, 40],
    ]);
    const expected = new Map<number, number>();
    for (const id of ids)
      for (const key of keysOf(id)) {
        const slot = slotOfKey(key, 1024);
        if (!expected.has(slot)) expected.set(slot, id);
      }
    expect(expected.size).toBeGreaterThan(30);
    expect(pinned).toEqual(expected);
  });
});

describe('leaseLookProgress', () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => jest.useRealTimers());

  it('says nothing for a look done within half a second', () => {
    const lines: string[] = [];
    const progress = leaseLookProgress((line) => lines.push(line));
    progress(16, 40);
    jest.advanceTimersByTime(499);
    progress(40, 40);
    expect(lines).toEqual([]);
  });

  it('says how far a longer look has come, at most twice a second, and when it is done', () => {
    const lines: string[] = [];
    const progress = leaseLookProgress((line) => lines.push(line));
    progress(16, 100); // at 0 ms
    jest.advanceTimersByTime(600);
    progress(32, 100); // at 600 ms
    jest.advanceTimersByTime(200);
    progress(48, 100); // at 800 ms: under 500 ms since the last line
    jest.advanceTimersByTime(400);
    progress(64, 100); // at 1200 ms
    jest.advanceTimersByTime(100);
    progress(100, 100); // at 1300 ms: done
    expect(lines).toEqual([
      'looking up the keys of leases: 32 of 100\n',
      'looking up the keys of leases: 64 of 100\n',
      'looking up the keys of leases: 100 of 100\n',
    ]);
  });
});
