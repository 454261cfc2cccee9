// SeededRng: the deterministic source of election jitter and simulation faults. A seed must
// replay exactly, or recorded simulation seeds stop reproducing their runs.
import { SeededRng } from '../src/rng';

function draws(rng: SeededRng, count: number, bound: number): number[] {
  return Array.from({ length: count }, () => rng.nextInt(bound));
}

describe('SeededRng', () => {
  it('produces the same sequence for the same seed', () => {
    expect(draws(new SeededRng(7), 50, 1000)).toEqual(draws(new SeededRng(7), 50, 1000));
  });

  it('produces the pinned SplitMix32 outputs (recorded seeds depend on them)', () => {
    // Computed independently from the algorithm: state += 0x9e3779b9, then the SplitMix32 mix.
    const rng = new SeededRng(42);
    expect([rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]).toEqual([
      939911724, 3948730756, 321366731,
    ]);
    const zero = new SeededRng(0);
    expect([zero.nextUint32(), zero.nextUint32()]).toEqual([2462723854, 1020716019]);
  });

  it('produces different sequences for different seeds', () => {
    const one = draws(new SeededRng(1), 20, 1_000_000);
    const two = draws(new SeededRng(2), 20, 1_000_000);
    expect(one).not.toEqual(two);
    // Not merely shifted or mostly equal: nearly every position differs.
    const same = one.filter((value, i) => value === two[i]).length;
    expect(same).toBeLessThan(2);
  });

  it('uses the seed modulo 2^32', () => {
    expect(draws(new SeededRng(-1), 10, 1000)).toEqual(draws(new SeededRng(0xffffffff), 10, 1000));
  });

  it('keeps nextInt within [0, bound) and integral', () => {
    const rng = new SeededRng(3);
    for (const bound of [1, 2, 3, 10, 17, 1000, 2 ** 31, 2 ** 32]) {
      for (const value of draws(rng, 200, bound)) {
        expect(Number.isInteger(value)).toBe(true);
        expect(value).toBeGreaterThanOrEqual(0);
        expect(value).toBeLessThan(bound);
      }
    }
  });

  it('always answers 0 for bound 1', () => {
    expect(new Set(draws(new SeededRng(9), 100, 1))).toEqual(new Set([0]));
  });

  it('reaches every value of a small bound', () => {
    expect(new Set(draws(new SeededRng(11), 600, 6))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
    'rejects the bound %p with a RangeError',
    (bound) => {
      const rng = new SeededRng(1);
      expect(() => rng.nextInt(bound)).toThrow(RangeError);
      expect(() => rng.nextInt(bound)).toThrow(
        `rng bound must be a positive integer, got ${bound}`,
      );
    },
  );

  it('does not advance the sequence on a rejected bound', () => {
    const rng = new SeededRng(5);
    expect(() => rng.nextInt(0)).toThrow(RangeError);
    expect(rng.nextInt(1000)).toBe(new SeededRng(5).nextInt(1000));
  });

  it('keeps nextFloat within [0, 1)', () => {
    const rng = new SeededRng(13);
    for (let i = 0; i < 500; i++) {
      const value = rng.nextFloat();
      expect(value).toBeGreaterThanOrEqual(0);
      expect(value).toBeLessThan(1);
    }
  });

  it('never takes a chance of 0 and always takes a chance of 1', () => {
    const rng = new SeededRng(17);
    for (let i = 0; i < 100; i++) {
      expect(rng.chance(0)).toBe(false);
      expect(rng.chance(1)).toBe(true);
    }
  });
});
