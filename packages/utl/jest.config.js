// Jest configuration for @eraftkv/utl; the shared part lives in jest.base.js at the root.
const base = require('../../jest.base');

module.exports = { ...base, displayName: 'utl', rootDir: __dirname };
