// The lint rule that keeps packages/raft-core/src/core a pure, deterministic state machine:
// no IO, no gRPC, no storage, no metrics, no clocks, no ambient randomness and no process access.
// The runtime around the core owns all of these and passes in what the core needs (an Rng, ticks).
// eslint.config.mjs applies it; packages/raft-core/test/core-purity-lint.test.ts proves it fires.
import { builtinModules } from 'node:module';

// Fixtures that break the rule on purpose. The repository lint ignores them; the rule's own test
// lints them with --no-ignore and expects the errors.
export const raftCoreLintFixtures = 'packages/raft-core/test/lint-fixtures/**/*.ts';

export const raftCoreFiles = ['packages/raft-core/src/core/**/*.ts', raftCoreLintFixtures];

const builtins = builtinModules.filter((name) => !name.startsWith('_'));
const why = 'raft-core/src/core is pure: IO, clocks and randomness belong to the runtime';

export const raftCorePurityRules = {
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
