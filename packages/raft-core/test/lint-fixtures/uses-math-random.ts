// Lint fixture: breaks the raft-core purity rule on purpose (ambient randomness).
export function electionTimeoutTicks(base: number): number {
  return base + Math.floor(Math.random() * base);
}
