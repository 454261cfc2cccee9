// Proves the simulation's checkers: each deliberately broken Raft variant must be caught within
// a bounded number of seeds. A checker that never fires would make the simulation worthless.
import type { LogStorage } from '../../src/storage';
import type { Raft } from '../../src/raft';
import type { RaftConfig } from '../../src/config';
import { runSimulation, simulationOptionsFor } from '../../src/simulation';
import {
  DoubleVoteRaft,
  EvenQuorumRaft,
  PreviousTermCommitRaft,
  StaleTermAppendRaft,
} from './broken-variants';

type Variant = new (config: RaftConfig, storage: LogStorage) => Raft;

/** Runs seeds 1..seedsMax until one finds a violation; returns it. */
function firstViolation(variant: Variant, nodes: number, seedsMax: number) {
  for (let seed = 1; seed <= seedsMax; seed++) {
    const r = runSimulation({
      ...simulationOptionsFor(seed, nodes),
      createRaft: (config, storage) => new variant(config, storage),
    });
    if (r.violation !== null) return { seed, violation: r.violation };
  }
  return null;
}

describe('the simulation catches broken Raft variants', () => {
  it.each<[string, Variant, number, number, RegExp]>([
    ['granting two votes in one term', DoubleVoteRaft, 3, 20, /election safety/],
    [
      'committing a previous-term entry by counting replicas',
      PreviousTermCommitRaft,
      3,
      300,
      /leader completeness|state-machine safety/,
    ],
    [
      'counting half the voters as a quorum',
      EvenQuorumRaft,
      3,
      60,
      /leader completeness|state-machine safety|log matching/,
    ],
    [
      'accepting appends from a stale term',
      StaleTermAppendRaft,
      3,
      20,
      /refused|Raft|safety|matching/,
    ],
  ])('%s', (_name, variant, nodes, seedsMax, expected) => {
    const found = firstViolation(variant, nodes, seedsMax);
    expect(found).not.toBeNull();
    expect(found?.violation).toMatch(expected);
  });

  it('counting a node that lost its disk as the member it was (no incarnation checks)', () => {
    let found: string | null = null;
    for (let seed = 1; seed <= 40 && found === null; seed += 2) {
      const r = runSimulation({ ...simulationOptionsFor(seed, 3), checkIncarnations: false });
      found = r.violation;
    }
    expect(found).toMatch(/lost-entries|leader completeness|election safety|state-machine safety/);
    // The same seeds with the checks the runtime's peers make find nothing, and lose disks.
    let disksLost = 0;
    for (let seed = 1; seed <= 40; seed += 2) {
      const r = runSimulation(simulationOptionsFor(seed, 3));
      expect(r.violation).toBeNull();
      disksLost += r.disksLost;
    }
    expect(disksLost).toBeGreaterThan(5);
  });

  it('electing a node that lost its disk, by voters holding the old configuration it learned from a snapshot (no candidate incarnation check)', () => {
    // Seed 2839: node 4 loses its disk, is removed and added back; the leader's snapshot (taken
    // before the removal) gives it an old configuration in which it is a voter, and a member that
    // still holds that configuration votes for it: two leaders in one term. The voter's check of
    // the candidate's incarnation is what prevents it (the runtime's peer service makes it too).
    const unchecked = runSimulation({
      ...simulationOptionsFor(2839, 3),
      checkCandidateIncarnations: false,
    });
    expect(unchecked.violation).toMatch(/election safety/);
    expect(unchecked.disksLost).toBeGreaterThan(0);
    expect(runSimulation(simulationOptionsFor(2839, 3)).violation).toBeNull();
  });
});
