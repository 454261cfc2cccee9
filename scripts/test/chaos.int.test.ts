// The short chaos run of CI: every nemesis (slot moves between two kv groups among them) for about
// a minute against a real cluster, then the history must be linearizable, every replica of a group
// must hold the same state, no replica may keep keys of a slot its group gave away, and no lease may
// expire early or outlive its TTL once left alone. A longer run is
// `npm run chaos -- --duration 600`.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repositoryDir } from '../local-cluster';
import { runScript, suiteResults } from './helpers';

jest.setTimeout(300_000);

interface Summary {
  seed: number;
  verdict: string;
  operations: { ok: number; fail: number; unknown: number; recorded: number };
  faults: Record<string, number>;
  snapshots: { sent: number; installed: number };
  replicas: { node: string; group: number; applied: number; digest: string }[];
  copiesLeft: string[];
  bulk: { keys: number; found: number };
  leases: { leases: number; keepAlives: number; problems: string[] };
  resultsDir: string;
}

describe('chaos (short run)', () => {
  let out: string;
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'eraftkv-chaos-results-'));
  });
  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('stays linearizable and consistent through a minute of every nemesis', async () => {
    const seed = Number(process.env.ERAFTKV_CHAOS_SEED ?? Math.floor(Math.random() * 1_000_000));
    const result = await runScript(
      join(repositoryDir, 'scripts/dist/chaos/run-chaos.js'),
      ['--duration', '60', '--seed', String(seed), '--out', out],
      280_000,
    );
    const { summary, report } = await suiteResults<Summary>(out);
    // On failure, the seed and the report say everything: the report goes to the test's output
    // (the results dir is removed afterwards).
    if (summary.verdict !== 'ok' || result.code !== 0) {
      console.log(`chaos seed ${seed} failed; its report:\n${report.slice(-20_000)}`);
    }
    expect({ seed, verdict: summary.verdict, code: result.code }).toEqual({
      seed,
      verdict: 'ok',
      code: 0,
    });
    expect(report).toMatch(/linearizability .*: ok/);
    expect(summary.operations.ok).toBeGreaterThan(1000);
    expect(summary.operations.recorded).toBeGreaterThan(1000);
    // Every kind of fault really happened.
    for (const kind of [
      'kills',
      'pauses',
      'partitions',
      'transfers',
      'membershipChanges',
      'snapshotsForced',
      'amnesiasRefused',
      'slotMovesCommitted',
    ]) {
      expect({ kind, happened: (summary.faults[kind] ?? 0) > 0 }).toEqual({ kind, happened: true });
    }
    // Each kv group's replicas agree, and no replica keeps keys of a slot its group gave away.
    const groups = [...new Set(summary.replicas.map((r) => r.group))];
    expect(groups.sort()).toEqual([1, 2]);
    for (const g of groups) {
      const replicas = summary.replicas.filter((r) => r.group === g);
      expect(replicas.length).toBeGreaterThanOrEqual(3);
      expect(new Set(replicas.map((r) => r.digest)).size).toBe(1);
    }
    expect(summary.copiesLeft).toEqual([]);
    // The final scan read the bulk keys back (each one's value is checked against its writes by
    // the linearizability check above: an acknowledged write it missed is a violation).
    expect(summary.bulk.found).toBeGreaterThan(0);
    // The lease holders held leases through the faults (none expired early: the verdict).
    expect(summary.leases.leases).toBeGreaterThan(0);
    expect(summary.leases.keepAlives).toBeGreaterThan(0);
  });
});
