// Jest configuration for the end-to-end tests in scripts/test: real eraftkv processes started the
// way `npm start` starts them (they run the built binaries, so `npm test` builds first).
const base = require('../jest.base');

module.exports = { ...base, displayName: 'e2e', rootDir: __dirname };
