// Jest configuration for @eraftkv/server-kit; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'server-kit', rootDir: __dirname };
