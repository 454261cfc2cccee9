// Jest configuration for @eraftkv/cli; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'cli', rootDir: __dirname };
