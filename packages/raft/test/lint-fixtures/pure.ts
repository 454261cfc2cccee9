// Lint fixture: obeys the raft purity rule (randomness comes from the caller).
export interface Rng {
  nextInt(bound: number): number;
}

export function electionTimeoutTicks(base: number, rng: Rng): number {
  return base + rng.nextInt(base);
}
