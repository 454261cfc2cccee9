// The lint rule that keeps packages/raft (the core and its simulation) a pure, deterministic state machine:
// no IO, no gRPC, no storage, no metrics, no clocks, no ambient randomness and no process access.
// The runtime around the core owns all of these and passes in what the core needs (an Rng, ticks).
// eslint.config.mjs applies it; packages/raft/test/core-purity-lint.test.ts proves it fires.
import { builtinModules } from 'node:module';

// Fixtures that break the rule on purpose. The repository lint ignores them; the rule's own test
// lints them with --no-ignore and expects the errors.
export const raftLintFixtures = 'packages/raft/test/lint-fixtures/**/*.ts';

export const raftFiles = ['packages/raft/src/**/*.ts', raftLintFixtures];

const builtins = builtinModules.filter((name) => !name.startsWith('_'));
const why = '@eraftkv/raft is pure: IO, clocks and randomness belong to @eraftkv/raft-server';

export const raftPurityRules = {
  'no-restricted-imports': [
    'error',
    {
      paths: builtins.map((name) => ({ name, message: why })),
      patterns: [
        { group: ['node:*'], message: why },
        { group: ['@grpc/*'], message: why },
        { group: ['rocksdb', 'level-rocksdb', 'level*', 'abstract-level*'], message: why },
        { group: ['prom-client'], message: why },
        { group: ['@eraftkv/*'], message: `${why}; the core depends on nothing but itself` },
      ],
    },
  ],
  'no-restricted-globals': [
    'error',
    ...[
      'setTimeout',
      'setInterval',
      'setImmediate',
      'queueMicrotask',
      'Date',
      'process',
      'console',
      'performance',
      'require',
      'fetch',
    ].map((name) => ({ name, message: why })),
  ],
  'no-restricted-properties': [
    'error',
    { object: 'Math', property: 'random', message: `${why}; use the injected Rng` },
    { object: 'globalThis', message: why },
  ],
  'no-restricted-syntax': [
    'error',
    { selector: 'FunctionDeclaration[async=true]', message: `${why}; the core is synchronous` },
    { selector: 'ArrowFunctionExpression[async=true]', message: `${why}; the core is synchronous` },
    { selector: 'FunctionExpression[async=true]', message: `${why}; the core is synchronous` },
    { selector: 'ImportExpression', message: why },
  ],
};
