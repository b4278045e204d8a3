import { defineConfig } from 'vitest/config';

// Three projects: `unit` (everything that needs at most Redis), `cluster` (the Redis-heavy tests again on a
// Redis Cluster) and `lab` (tests against real libvirt daemons and QEMU guests from test/lab/lab.sh, brought up
// once by its global setup and run one file at a time).
export default defineConfig({
  test: {
    pool: 'forks',
    // scripts/test.sh runs unit + cluster and lab as two processes, each with its own report (joined afterwards).
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
        // The tests of drover's Redis paths again on a 3-primary Redis Cluster: BullMQ queues and workers (the
        // executor's jobs), plans, drains, the leader lease, the collector's stores and membership, the
        // migration slots, and the whole service's API. Tests that start their own Redis or need a single
        // server's URL stay in `unit` only.
        extends: true,
        test: {
          name: 'cluster',
          include: [
            'test/executor/executor.test.ts',
            'test/executor/slot-store.test.ts',
            'test/service/plan-store.test.ts',
            'test/service/leader-election.test.ts',
            'test/service/drain-gauges.test.ts',
            'test/collector/stores.test.ts',
            'test/collector/collector-store.test.ts',
            'test/api/api.test.ts',
          ],
          globalSetup: ['test/support/global-cluster.ts'],
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
