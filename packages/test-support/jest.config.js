// Jest configuration for @eraftkv/test-support; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'test-support', rootDir: __dirname };
