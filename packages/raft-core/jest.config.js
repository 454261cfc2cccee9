// Jest configuration for @eraftkv/raft-core; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'raft-core', rootDir: __dirname };
