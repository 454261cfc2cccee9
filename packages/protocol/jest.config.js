// Jest configuration for @eraftkv/protocol; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'protocol', rootDir: __dirname };
