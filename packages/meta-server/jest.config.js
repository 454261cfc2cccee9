// Jest configuration for @eraftkv/meta-server; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'meta-server', rootDir: __dirname };
