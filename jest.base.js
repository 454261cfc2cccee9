// Shared Jest settings; each package's jest.config.js spreads this and names itself.
// Tests live in packages/<name>/test: *.test.ts (unit), *.sim.test.ts (simulation),
// *.int.test.ts (real processes or real gRPC on 127.0.0.1).
const path = require('node:path');

module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(__dirname, 'tsconfig.jest.json') }],
  },
  // Tests import sibling packages from source, so a unit test never runs against a stale build.
  moduleNameMapper: {
    '^@eraftkv/([a-z-]+)$': path.join(__dirname, 'packages/$1/src/index.ts'),
    '^@eraftkv/([a-z-]+)/([a-z-]+)$': path.join(__dirname, 'packages/$1/src/$2/index.ts'),
  },
};
