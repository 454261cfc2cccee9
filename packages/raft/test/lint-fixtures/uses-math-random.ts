// Lint fixture: breaks the raft purity rule on purpose (ambient randomness).
export function electionTimeoutTicks(base: number): number {
  return base + Math.floor(Math.random() * base);
}
