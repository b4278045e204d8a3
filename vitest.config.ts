import { defineConfig } from 'vitest/config';

// Two projects: `unit` (everything that needs at most Redis) and `lab` (tests against real libvirt daemons and
// QEMU guests from test/lab/lab.sh, brought up once by its global setup and run one file at a time).
export default defineConfig({
  test: {
    pool: 'forks',
    // scripts/test.sh runs the two projects as two processes, each with its own report (joined afterwards).
    reporters: ['default', ['json', { outputFile: process.env.DROVER_TEST_RESULTS ?? '.test-results.json' }]],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts', 'policies/**/*.test.ts'],
          exclude: ['test/lab/**', '**/node_modules/**'],
          globalSetup: ['test/support/global-redis.ts'],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts'],
          globalSetup: ['test/support/global-redis.ts', 'test/lab/global-lab.ts'],
          fileParallelism: false,
          testTimeout: 90_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
