// The seeded simulation of the Raft core: hundreds of seeds across 3, 5 and 7 nodes, every fault
// kind, checked after every step. `npm run sim` runs the same thing for as many seeds as asked.
import {
  runSimulation,
  simulatedTermMax,
  simulationOptionsFor,
  type SimulationResult,
} from '../../src/simulation';

function runSeeds(nodes: number, first: number, count: number): SimulationResult[] {
  const results: SimulationResult[] = [];
  for (let seed = first; seed < first + count; seed++) {
    results.push(runSimulation(simulationOptionsFor(seed, nodes)));
  }
  return results;
}

function failures(results: SimulationResult[]): string[] {
  return results
    .filter((r) => r.violation !== null)
    .map(
      (r) =>
        `seed ${r.seed} nodes ${r.nodes}: ${r.violation}\n  replay: npm run sim -- --seed ${r.seed} --nodes ${r.nodes} --trace`,
    );
}

describe('Raft simulation', () => {
  // 160 + 100 + 60 = 320 seeds; half of them (the even ones) are leader-storm runs.
  it.each([
    [3, 160],
    [5, 100],
    [7, 60],
  ])('finds no violation with %i nodes over %i seeds', (nodes, count) => {
    const results = runSeeds(nodes, 1, count);
    expect(failures(results)).toEqual([]);
    // The runs did real work: leaders changed, entries committed, snapshots were installed,
    // members came and went and reads were served.
    const sum = (f: (r: SimulationResult) => number): number =>
      results.reduce((acc, r) => acc + f(r), 0);
    expect(sum((r) => r.leaderChanges)).toBeGreaterThan(count * 3);
    expect(sum((r) => r.committedIndex)).toBeGreaterThan(count * 50);
    expect(sum((r) => r.snapshotsInstalled)).toBeGreaterThan(count);
    expect(sum((r) => r.membershipChanges)).toBeGreaterThan(count);
    expect(sum((r) => r.readsServed)).toBeGreaterThan(count);
    expect(sum((r) => r.disksLost)).toBeGreaterThan(count / 10);
  });

  it('finds no violation in groups that start 2^16 terms below the largest storable term', () => {
    const firstTerm = simulatedTermMax - 2 ** 16;
    const results: SimulationResult[] = [];
    for (let seed = 1; seed <= 40; seed++) {
      results.push(runSimulation({ ...simulationOptionsFor(seed, 3 + 2 * (seed % 2)), firstTerm }));
    }
    expect(failures(results)).toEqual([]);
    expect(results.reduce((acc, r) => acc + r.leaderChanges, 0)).toBeGreaterThan(40 * 3);
    expect(results.reduce((acc, r) => acc + r.committedIndex, 0)).toBeGreaterThan(40 * 50);
  });

  it('replays a seed exactly: same seed, same trace', () => {
    const lines: string[] = [];
    const a = runSimulation({ ...simulationOptionsFor(42, 5), trace: (l) => lines.push(l) });
    const b = runSimulation({ ...simulationOptionsFor(42, 5), hashTrace: true });
    const c = runSimulation({ ...simulationOptionsFor(43, 5), hashTrace: true });
    expect(b.traceHash).toBe(a.traceHash);
    expect(b).toEqual(a);
    expect(c.traceHash).not.toBe(a.traceHash);
    expect(lines.length).toBeGreaterThan(1000);
    expect(a.traceHash).toMatch(/^[0-9a-f]{16}$/);
  });
});
