// The chaos suite's randomness: @eraftkv/raft's SeededRng, with the choices the suite makes. One seed
// decides which faults happen in which order and what every client does (the timing of a real
// cluster still varies from run to run).
import { SeededRng } from '@eraftkv/raft';

export class ChaosRng extends SeededRng {
  /** An integer in [0, bound). */
  int(bound: number): number {
    return this.nextInt(bound);
  }

  /** A float in [0, 1). */
  float(): number {
    return this.nextFloat();
  }

  /** An integer in [min, max]. */
  between(min: number, max: number): number {
    return min + this.nextInt(max - min + 1);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('nothing to pick from');
    return items[this.nextInt(items.length)];
  }

  /** `count` distinct items (all of them if there are fewer). */
  sample<T>(items: readonly T[], count: number): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      [copy[i], copy[j]] = [copy[j], copy[i]];
    }
    return copy.slice(0, count);
  }
}
