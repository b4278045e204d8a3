import { defineConfig } from 'vitest/config';
import SlowFirstSequencer from './test/support/slow-first-sequencer.js';

// unit + cluster run two files at a time: most of their time is spent waiting (on spawned `drover` processes,
// simulated migrations, Redis failovers), not computing, so a second file fills the wait. vitest's default
// (one fewer than the CPUs) would be a single file at a time on a 2-core machine.
const UNIT_WORKERS = 2;

// Three projects: `unit` (everything that needs at most Redis), `cluster` (the Redis-heavy tests again on a
// Redis Cluster) and `lab` (tests against real libvirt daemons and QEMU guests from test/lab/lab.sh, brought up
// once by its global setup and run one file at a time).
export default defineConfig({
  test: {
    pool: 'forks',
    sequence: { sequencer: SlowFirstSequencer },
    // scripts/test.sh runs unit + cluster and lab as two processes, each with its own report (joined afterwards).
    reporters: ['default', ['json', { outputFile: process.env.DROVER_TEST_RESULTS ?? '.test-results.json' }]],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts', 'policies/**/*.test.ts'],
          exclude: ['test/lab/**', '**/node_modules/**'],
          // global-build: the `drover` command tests start, compiled once (DROVER_TEST_BIN).
          globalSetup: ['test/support/global-redis.ts', 'test/support/global-build.ts'],
          maxWorkers: UNIT_WORKERS,
          // The fault suite on the simulator runs its eight cases at once (test/faults/faults-sim.test.ts).
          maxConcurrency: 8,
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
          maxWorkers: UNIT_WORKERS,
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts'],
          globalSetup: [
            'test/support/global-redis.ts',
            'test/support/global-build.ts',
            'test/lab/global-lab.ts',
          ],
          fileParallelism: false,
          testTimeout: 90_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
