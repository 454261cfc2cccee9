// Proves that the lint rule keeping @eraftkv/raft pure (eslint/raft-purity.mjs) fires, and that
// the repository's lint configuration applies it to every file of the package.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as publicApi from '../src';

const root = path.resolve(__dirname, '../../..');
const eslintBin = path.join(root, 'node_modules/eslint/bin/eslint.js');

interface LintMessage {
  ruleId: string | null;
  message: string;
}
interface LintResult {
  filePath: string;
  messages: LintMessage[];
}

function lintFixture(name: string): LintMessage[] {
  const file = path.join('packages/raft/test/lint-fixtures', name);
  let out: string;
  try {
    out = execFileSync(process.execPath, [eslintBin, '--no-ignore', '--format', 'json', file], {
      cwd: root,
      encoding: 'utf8',
    });
  } catch (err) {
    // eslint exits 1 when it reports errors; the JSON report is still on stdout.
    out = (err as { stdout: string }).stdout;
  }
  const results = JSON.parse(out) as LintResult[];
  expect(results).toHaveLength(1);
  return results[0].messages;
}

describe('raft purity lint rule', () => {
  it('rejects Math.random() in the core', () => {
    const messages = lintFixture('uses-math-random.ts');
    expect(messages.map((m) => m.ruleId)).toContain('no-restricted-properties');
    expect(messages.find((m) => m.ruleId === 'no-restricted-properties')?.message).toMatch(/Rng/);
  });

  it('rejects importing node:fs in the core', () => {
    const messages = lintFixture('imports-node-fs.ts');
    expect(messages.map((m) => m.ruleId)).toContain('no-restricted-imports');
  });

  it('accepts a core file that takes its randomness from the caller', () => {
    expect(lintFixture('pure.ts')).toEqual([]);
  });

  it.each(['packages/raft/src/raft.ts', 'packages/raft/src/simulation/simulation.ts'])(
    'is applied by the repository configuration to every file of packages/raft/src (%s)',
    (file) => {
      const config = JSON.parse(
        execFileSync(process.execPath, [eslintBin, '--print-config', file], {
          cwd: root,
          encoding: 'utf8',
        }),
      ) as { rules: Record<string, unknown[]> };
      for (const rule of [
        'no-restricted-imports',
        'no-restricted-globals',
        'no-restricted-properties',
        'no-restricted-syntax',
      ]) {
        expect(config.rules[rule]?.[0]).toBe(2);
      }
      const globals = JSON.stringify(config.rules['no-restricted-globals']);
      for (const name of ['setTimeout', 'setInterval', 'Date', 'process', 'console']) {
        expect(globals).toContain(`"${name}"`);
      }
    },
  );
});

describe('@eraftkv/raft package boundary', () => {
  it('depends on no other package', () => {
    const manifest = JSON.parse(
      readFileSync(path.join(root, 'packages/raft/package.json'), 'utf8'),
    ) as Record<string, unknown>;
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.peerDependencies).toBeUndefined();
  });

  it('keeps Raft, Progress, Inflights and RaftLog behind RawNode', () => {
    const exported = Object.keys(publicApi);
    expect(exported).toContain('RawNode');
    expect(exported).toContain('describeReady');
    for (const internal of ['Raft', 'Progress', 'Inflights', 'RaftLog', 'MembershipHistory']) {
      expect(exported).not.toContain(internal);
    }
  });
});
