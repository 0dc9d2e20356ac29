/**
 * Jest for the CDK assertion tests. tsconfig's `isolatedModules` makes
 * ts-jest transpile file by file (fast); `tsc --noEmit` in ci.sh does the
 * type checking once for the whole project.
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', diagnostics: false }],
  },
  // Synthesising the stacks takes a few seconds each; the suites share one
  // synthesis per environment (test/synth.ts caches it per worker).
  testTimeout: 120000,
  maxWorkers: 2,
};
