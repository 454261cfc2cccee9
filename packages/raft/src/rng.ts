// Randomness is an input of the core: the caller injects an Rng, so that a seeded simulation
// replays exactly and the runtime can use a strong source.

export interface Rng {
  /** A uniformly distributed integer in [0, bound). */
  nextInt(bound: number): number;
}

/**
 * A small, fast, seedable generator (SplitMix32-style mixing of a 32-bit counter). Good enough for
 * election jitter and simulations; not for anything secret.
 */
export class SeededRng implements Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The next 32-bit unsigned value. */
  nextUint32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }

  nextInt(bound: number): number {
    if (!(bound >= 1) || !Number.isInteger(bound)) {
      throw new RangeError(`rng bound must be a positive integer, got ${bound}`);
    }
    return this.nextUint32() % bound;
  }

  /** A float in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.nextFloat() < p;
  }
}
