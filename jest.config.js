// Root Jest configuration: one project per package (see jest.base.js for the shared settings).
module.exports = {
  projects: ['<rootDir>/packages/*/jest.config.js', '<rootDir>/scripts/jest.config.js'],
  testTimeout: 60000,
};
