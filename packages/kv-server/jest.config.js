// Jest configuration for @eraftkv/kv-server; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'kv-server', rootDir: __dirname };
