// The executor's options (embedded in the service config) and the per-plan execution policy carried by jobs.
import { z } from 'zod';
import { BLOCK_COPY_MODES, type Policy } from '../domain/policy.js';
import { nonEmptyString, oneOf, parseWith, positiveInt, positiveNumber } from '../domain/validation.js';
import {
  KubevirtTuningSchema,
  NovaTuningSchema,
  PredictiveTuningSchema,
  WATCHDOG_PROFILES,
} from './watchdog-schedule.js';

const nonNegativeInt = () => z.number().int().min(0);

export const ConcurrencyLimitsSchema = z.strictObject({
  /** Migrations leaving one host at once. */
  perHostOutbound: positiveInt().default(2),
  /** Migrations arriving on one host at once. */
  perHostInbound: positiveInt().default(2),
  /** Migrations in the whole cluster at once. */
  cluster: positiveInt().default(8),
});
export type ConcurrencyLimits = z.output<typeof ConcurrencyLimitsSchema>;

/** What the policy in force when a plan was enqueued says about running it; travels inside each job. */
export const ExecutionPolicySchema = z.strictObject({
  profile: oneOf(WATCHDOG_PROFILES).default('predictive'),
  allowAutoConverge: z.boolean().default(false),
  allowPostCopy: z.boolean().default(false),
  allowBlockMigration: z.boolean().default(true),
  /** Block migration: copy whole disks (`full`) or only the top image layer (`incremental`). */
  blockCopy: oneOf(BLOCK_COPY_MODES).default('full'),
  /** Budget for steps that carry none (ms). */
  defaultDowntimeBudgetMs: positiveNumber().default(300),
  /** Link bandwidth assumed for hosts that report none (MiB/s). */
  defaultBandwidthMiBps: positiveNumber().default(1150),
  /**
   * A migration's set-up before data flows (s), as the planner assumes it (policy migration.setupS): a
   * migration predicted to end within it hands its slots over to the next step (hand-over.ts); 0: never.
   */
  setupS: z.number().min(0).default(1),
  limits: ConcurrencyLimitsSchema.prefault({}),
  predictive: PredictiveTuningSchema.prefault({}),
  nova: NovaTuningSchema.prefault({}),
  kubevirt: KubevirtTuningSchema.prefault({}),
});
export type ExecutionPolicy = z.output<typeof ExecutionPolicySchema>;

export function parseExecutionPolicy(data: unknown, source = ''): ExecutionPolicy {
  return parseWith(ExecutionPolicySchema, data, source);
}

/** The part of a Policy the executor uses. */
export function executionPolicyFromPolicy(policy: Policy): ExecutionPolicy {
  const w = policy.watchdog;
  return parseExecutionPolicy({
    profile: w.profile,
    allowAutoConverge: policy.migration.allowAutoConverge,
    allowPostCopy: policy.migration.allowPostCopy,
    allowBlockMigration: policy.migration.allowBlockMigration,
    blockCopy: policy.migration.blockCopy,
    defaultDowntimeBudgetMs: policy.vms.defaultDowntimeBudgetMs,
    defaultBandwidthMiBps: policy.migration.defaultBandwidthMiBps,
    setupS: policy.migration.setupS,
    limits: {
      perHostOutbound: policy.limits.perHostConcurrency,
      perHostInbound: policy.limits.perHostConcurrency,
      cluster: policy.limits.perClusterConcurrency,
    },
    predictive: {
      deadlineFactor: w.predictive.deadlineFactor,
      deadlineMarginS: w.predictive.deadlineMarginS,
      stallRounds: w.predictive.stallRounds,
      minStallWindowS: w.predictive.minStallWindowS,
      downtimeRaiseSteps: w.downtimeRaiseSteps,
    },
    nova: w.nova,
    kubevirt: w.kubevirt,
  });
}

/** The executor's own options (the service config embeds this schema). */
export const ExecutorOptionsSchema = z.strictObject({
  /** BullMQ key prefix; hash-tagged so every key of the executor lands in one Redis Cluster slot. */
  prefix: nonEmptyString()
    .default('{drover}')
    .refine((p) => /\{[^}]+\}/.test(p), { error: 'expected a hash-tagged prefix such as {drover}' }),
  queueName: nonEmptyString().default('migrations'),
  /** Watchdog poll interval (ms). */
  pollIntervalMs: positiveInt().default(500),
  /** Every hypervisor call is given up after this long (ms); a monitor that does not answer never blocks. */
  callTimeoutMs: positiveInt().default(2_000),
  /** Starting a migration may take longer than other calls (ms). */
  migrateCallTimeoutMs: positiveInt().default(15_000),
  /** A migration whose progress calls time out this long is marked stuck (ms). */
  stuckAfterMs: positiveInt().default(5_000),
  /** A stuck migration is left to an operator once silent this long past its deadline (ms). */
  stuckGiveUpMs: positiveInt().default(600_000),
  /** Repeat an abort that did not take effect after this long (ms). */
  abortRetryMs: positiveInt().default(5_000),
  /** After an abort, how long to wait for the migration to end before reporting it stuck (ms). */
  abortSettleMs: positiveInt().default(30_000),
  /** Jobs one worker process runs at once (the per-host and cluster limits are enforced apart from this). */
  workerConcurrency: positiveInt().default(16),
  /** Attempts for transient failures (unreachable host, failed start), with exponential back-off. */
  attempts: positiveInt().default(3),
  backoffMs: positiveInt().default(5_000),
  /** Waiting for a free slot re-checks this often (ms, real time). */
  slotRetryMs: positiveInt().default(1_000),
  /** A slot held by a worker that stopped renewing it expires after this long (ms, real time). */
  slotLeaseMs: positiveInt().default(15_000),
  /** BullMQ lock: a crashed worker's job is adopted after about lockDuration + stalledInterval. */
  lockDurationMs: positiveInt().default(3_000),
  stalledIntervalMs: positiveInt().default(1_000),
  maxStalledCount: positiveInt().default(10),
  /** job.updateProgress at most this often (ms, real time). */
  progressIntervalMs: positiveInt().default(1_000),
  /** Memory the destination must keep free beyond the VM's (MiB). */
  memReserveMiB: z.number().min(0).default(0),
  history: z
    .strictObject({
      maxRecords: positiveInt().default(50),
      quarantineBaseS: positiveNumber().default(3600),
      quarantineMaxS: positiveNumber().default(7 * 24 * 3600),
    })
    .prefault({}),
  /** Completed and failed jobs kept for inspection (count). */
  keepJobs: nonNegativeInt().default(200),
});
export type ExecutorOptions = z.output<typeof ExecutorOptionsSchema>;
export type ExecutorOptionsInput = z.input<typeof ExecutorOptionsSchema>;

export function parseExecutorOptions(data: unknown, source = ''): ExecutorOptions {
  return parseWith(ExecutorOptionsSchema, data ?? {}, source);
}
