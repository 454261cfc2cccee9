// Proves that the lint rule keeping raft-core/src/core pure (eslint/raft-core-purity.mjs) fires,
// and that the repository's lint configuration applies it to every file of the core.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

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
  const file = path.join('packages/raft-core/test/lint-fixtures', name);
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

describe('raft-core purity lint rule', () => {
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

  it('is applied by the repository configuration to every file under src/core', () => {
    const config = JSON.parse(
      execFileSync(
        process.execPath,
        [eslintBin, '--print-config', 'packages/raft-core/src/core/raft.ts'],
        { cwd: root, encoding: 'utf8' },
      ),
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
  });
});
