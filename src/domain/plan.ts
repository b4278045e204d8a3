// The Plan: the planner's output (`drover plan --json` prints exactly this).
import { z } from 'zod';
import {
  isoTime,
  nonEmptyString,
  nonNegativeNumber,
  oneOf,
  parseWith,
  positiveInt,
  positiveNumber,
} from './validation.js';

export const MIGRATION_KINDS = ['live', 'block', 'offline'] as const;
export const PLAN_REASONS = ['rebalance', 'drain'] as const;
export type MigrationKind = (typeof MIGRATION_KINDS)[number];
export type PlanReason = (typeof PLAN_REASONS)[number];

export const PredictionSchema = z.strictObject({
  converges: z.boolean(),
  durationS: nonNegativeNumber(),
  downtimeMs: nonNegativeNumber(),
  transferMiB: nonNegativeNumber(),
  /** The technique the prediction relies on, when plain pre-copy is not enough. */
  technique: oneOf(['precopy', 'auto-converge', 'post-copy'] as const).optional(),
  /** The per-VM correction learnt from this VM's past migrations that the prediction applied (absent: 1). */
  correction: positiveNumber().optional(),
  /** The dirty rate the prediction planned with (MiB/s), for a running VM. */
  dirtyMiBps: nonNegativeNumber().optional(),
  /** How much of that rate came from this VM's past migrations: measured rate x this factor (absent: 1). */
  dirtyFactor: positiveNumber().optional(),
  /**
   * The switch-over cost (ms) in downtimeMs: pausing, device state and restart on top of the last round. The
   * watchdog lets QEMU's last round take at most the budget less this.
   */
  switchoverMs: nonNegativeNumber().optional(),
  /**
   * The last round the model sends while the guest is paused, at the planned link share (ms; at most the
   * max downtime QEMU gets). downtimeMs is the expected downtime: the learnt switch-over plus the part of
   * this round that the pair's history shows really counts.
   */
  lastRoundMs: nonNegativeNumber().optional(),
});

export const StepSchema = z.strictObject({
  vm: nonEmptyString(),
  from: nonEmptyString(),
  to: nonEmptyString(),
  kind: oneOf(MIGRATION_KINDS),
  why: z.string(),
  predicted: PredictionSchema,
  /** The VM's downtime budget (from policy); the watchdog never raises max downtime above it. */
  downtimeBudgetMs: nonNegativeNumber().optional(),
  /**
   * Optional, set by the drain strategy: run this step only while at most this many migrations (itself
   * included) leave its source host, and start no other migration from that host that would make more.
   * `1` runs it alone at the full link; the prediction assumes the link shared this many ways. The executor
   * honours it within its configured limits (the smaller of the two wins).
   */
  concurrency: positiveInt().optional(),
  /**
   * VMs whose steps in the same plan must have completed before this one starts: a step that makes room on
   * this step's destination. The executor holds the step until they have; if one of them ends any other way
   * (failed, aborted, skipped), this step is skipped.
   */
  after: z.array(nonEmptyString()).min(1).optional(),
});

export const SkipSchema = z.strictObject({ vm: nonEmptyString(), why: z.string() });

export const SpreadSchema = z.strictObject({
  cpuSpreadPct: nonNegativeNumber(),
  memSpreadPct: nonNegativeNumber(),
});

/**
 * Set when a hold time was in force for the plan's strategy at planning time: the plan is then empty
 * (held), unless the hold was overridden (a manual request), which `overriddenBy` says.
 */
export const PlanHoldSchema = z.strictObject({
  /** When the last executed plan of this strategy ran. */
  lastExecutedAt: isoTime(),
  holdTimeS: nonNegativeNumber(),
  /** The end of the hold. */
  until: isoTime(),
  /** Who planned anyway (`api:<token name>`); absent: the hold applied and nothing was planned. */
  overriddenBy: nonEmptyString().optional(),
});

export const PlanSchema = z.strictObject({
  id: nonEmptyString(),
  reason: oneOf(PLAN_REASONS),
  /**
   * The strategy that made the plan (balance, drain, consolidate, …); the planner always sets it (plans
   * stored by versions before it were made by drain, or by balance).
   */
  strategy: nonEmptyString().optional(),
  createdAt: isoTime(),
  steps: z.array(StepSchema),
  skipped: z.array(SkipSchema),
  before: SpreadSchema,
  after: SpreadSchema,
  /** Why the planner chose no moves, when it chose none. */
  note: z.string().optional(),
  /** Expected wall time of the whole plan, from the predictions and the concurrency limits. */
  etaS: nonNegativeNumber().optional(),
  /** What the plan's migrations are predicted to copy in all (memory written plus re-sent pages), GiB. */
  transferGiB: nonNegativeNumber().optional(),
  /** The snapshot this plan was made from (its takenAt), so stale plans can expire. */
  snapshotTakenAt: isoTime().optional(),
  hold: PlanHoldSchema.optional(),
});

export type Prediction = z.output<typeof PredictionSchema>;
export type Step = z.output<typeof StepSchema>;
export type Skip = z.output<typeof SkipSchema>;
export type Spread = z.output<typeof SpreadSchema>;
export type Plan = z.output<typeof PlanSchema>;
export type PlanHold = z.output<typeof PlanHoldSchema>;

export function parsePlan(data: unknown, source = ''): Plan {
  return parseWith(PlanSchema, data, source);
}
