// Jest configuration for @eraftkv/raft-server; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'raft-server', rootDir: __dirname };
