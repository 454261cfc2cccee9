// Jest configuration for @eraftkv/client; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'client', rootDir: __dirname };
