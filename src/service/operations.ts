// What the daemon offers operators, independent of HTTP: the API routes and the CLI speak these shapes.
import { z } from 'zod';
import { MIGRATION_KINDS, PlanSchema, SpreadSchema, type PlanReason } from '../domain/plan.js';
import { HOST_STATES, type Snapshot } from '../domain/snapshot.js';
import { nonEmptyString, oneOf } from '../domain/validation.js';
import type { AuditEntry } from './audit-log.js';
import { AUTOMATION_LEVELS, SCHEDULABLE_STRATEGIES } from './config.js';
import { PlanRecordSchema, type PlanRecord, type PlanStatus } from './plan-store.js';

// The answers are zod schemas too: the types below are derived from them, and the OpenAPI document
// (src/service/openapi.ts) describes the API with them, so the document says what the handlers return.

const nullableNumber = () => z.number().nullable();

export const HostViewSchema = z.strictObject({
  id: z.string(),
  state: oneOf(HOST_STATES),
  /** Its last sample is older than collector.staleAfterS. */
  stale: z.boolean(),
  cpus: z.number(),
  memMiB: z.number(),
  cpuPct: nullableNumber(),
  memUsedMiB: nullableNumber(),
  memPct: nullableNumber(),
  /** VMs on it in the latest snapshot. */
  vms: z.number(),
  labels: z.record(z.string(), z.string()),
});
export type HostView = z.output<typeof HostViewSchema>;

export const MigrationViewSchema = z.strictObject({
  vm: z.string(),
  vmName: z.string().nullable(),
  from: z.string(),
  to: z.string(),
  kind: oneOf(MIGRATION_KINDS),
  planId: z.string().nullable(),
  /** queued | running | completed | aborted | failed | skipped (an abort answers removed | aborting) */
  state: z.string(),
  startedAt: z.string().nullable(),
  elapsedS: nullableNumber(),
  totalMiB: nullableNumber(),
  remainingMiB: nullableNumber(),
  iteration: nullableNumber(),
  bandwidthMiBps: nullableNumber(),
  etaS: nullableNumber(),
  /** Measured switch-over downtime (completed migrations). */
  downtimeMs: nullableNumber(),
  /** The VM's downtime budget (from the plan step or the policy). */
  downtimeBudgetMs: nullableNumber(),
  /** Why it ended as it did (abort reason, skip reason, failure), null while running or when completed. */
  reason: z.string().nullable(),
});
export type MigrationView = z.output<typeof MigrationViewSchema>;

/** GET|POST /v1/automation */
export const AutomationViewSchema = z.strictObject({
  level: oneOf(AUTOMATION_LEVELS),
  /** Paused: scheduled runs plan nothing and new plans wait for approval; running plans finish. */
  paused: z.boolean(),
  /** Who paused or resumed last (`api:<token name>`), and when; null when never changed. */
  changedBy: z.string().nullable(),
  changedAt: z.string().nullable(),
  note: z.string().nullable(),
});
export type AutomationView = z.output<typeof AutomationViewSchema>;

/** GET /v1/quarantines: a VM the planner and the executor leave alone until `until`. */
export const QuarantineViewSchema = z.strictObject({
  vm: z.string(),
  vmName: z.string().nullable(),
  /** Failures to converge in a row (each doubles the next quarantine, up to the policy's maximum). */
  failures: z.number(),
  until: z.string().nullable(),
});
export type QuarantineView = z.output<typeof QuarantineViewSchema>;

/** POST /v1/quarantines/:vm: the quarantine in force after an operator's add. */
export const QuarantineAddedSchema = QuarantineViewSchema.extend({
  until: z.string(),
  /** The end the add asked for (now + forS). */
  requestedUntil: z.string(),
  /**
   * True when the VM was already quarantined past `requestedUntil`: that longer quarantine is kept and
   * `until` is its end. An add never shortens a quarantine.
   */
  keptLonger: z.boolean(),
});
export type QuarantineAdded = z.output<typeof QuarantineAddedSchema>;

export const ClusterViewSchema = z.strictObject({
  /** The process that answered. */
  instance: z.string(),
  leader: z.strictObject({ instance: z.string(), token: z.number() }).nullable(),
  automation: oneOf(AUTOMATION_LEVELS),
  /** Automation paused by an operator (drover pause). */
  paused: z.boolean(),
  snapshotTakenAt: z.string().nullable(),
  snapshotAgeS: nullableNumber(),
  spread: SpreadSchema.nullable(),
  hosts: z.array(HostViewSchema),
  migrations: z.array(MigrationViewSchema),
  pendingPlans: z.number(),
});
export type ClusterView = z.output<typeof ClusterViewSchema>;

const CheckSchema = z.strictObject({ ok: z.boolean(), detail: z.string() });

export const ReadyViewSchema = z.strictObject({
  ready: z.boolean(),
  checks: z.record(z.string(), CheckSchema),
});
export type ReadyView = z.output<typeof ReadyViewSchema>;

/** GET /healthz */
export const HealthViewSchema = z.strictObject({
  status: oneOf(['ok', 'degraded'] as const),
  checks: z.strictObject({ redis: CheckSchema }),
});

/** POST /v1/plans */
export const CreatePlanBodySchema = z.strictObject({
  reason: oneOf(['rebalance', 'drain'] as const),
  /** The host to drain (reason drain only). */
  host: nonEmptyString().max(256).optional(),
  /**
   * The strategy a rebalance plans with (default balance). An operator's rebalance is not held back by the
   * strategy's hold time; when one was in force, `plan.hold.overriddenBy` names the caller.
   */
  strategy: z
    .string({ error: (i) => `expected a strategy name, got ${JSON.stringify(i.input)}` })
    .max(64)
    .refine((name) => SCHEDULABLE_STRATEGIES.includes(name), {
      error: (i) => `expected one of ${SCHEDULABLE_STRATEGIES.join(' | ')}, got ${JSON.stringify(i.input)}`,
    })
    .optional(),
  /** Only compute and return the plan; store and run nothing. */
  dryRun: z
    .boolean({ error: (i) => `expected true or false, got ${JSON.stringify(i.input)}` })
    .default(false),
});
export type CreatePlanBody = z.output<typeof CreatePlanBodySchema>;

/** POST /v1/hosts/:id/drain */
export const DrainBodySchema = z.strictObject({
  dryRun: z
    .boolean({ error: (i) => `expected true or false, got ${JSON.stringify(i.input)}` })
    .default(false),
  /**
   * Move what can move even when some VMs cannot leave (they stay, each with its reason); by default a
   * drain that cannot complete moves nothing.
   */
  partial: z
    .boolean({ error: (i) => `expected true or false, got ${JSON.stringify(i.input)}` })
    .default(false),
});

/** POST /v1/hosts/:id/activate */
export const ActivateBodySchema = z.strictObject({
  /** Cancel the host's running drain first; without it, activating a host that is draining is refused. */
  cancelDrain: z
    .boolean({ error: (i) => `expected true or false, got ${JSON.stringify(i.input)}` })
    .default(false),
});

/** POST /v1/automation */
export const AutomationBodySchema = z.strictObject({
  paused: z.boolean({ error: (i) => `expected true or false, got ${JSON.stringify(i.input)}` }),
  note: z.string().max(500).optional(),
});

/** POST /v1/plans/:id/approve|cancel, /v1/migrations/:vm/abort, /v1/quarantines/:vm/lift */
export const NoteBodySchema = z.strictObject({ note: z.string().max(500).optional() });

/** POST /v1/quarantines/:vm: leave a VM alone for `forS` seconds (at most 30 days). */
export const QUARANTINE_MAX_S = 30 * 24 * 3600;
export const QuarantineBodySchema = z.strictObject({
  forS: z.number().int().positive().max(QUARANTINE_MAX_S),
  reason: z.string().max(500).optional(),
});

export const CreatedPlanSchema = z.strictObject({
  /** Null for a dry run. */
  record: PlanRecordSchema.nullable(),
  plan: PlanSchema,
  /** True when the host was draining already: this is that drain's plan, not a new one. */
  existing: z.boolean().optional(),
});
export type CreatedPlan = z.output<typeof CreatedPlanSchema>;

/** Everything an operator can ask the daemon; `by` names the caller (`api:<token name>`). */
export interface Operations {
  cluster(): Promise<ClusterView>;
  ready(): Promise<ReadyView>;
  latestSnapshot(): Promise<Snapshot | null>;
  listPlans(filter: { status?: PlanStatus | undefined; limit?: number | undefined }): Promise<PlanRecord[]>;
  getPlan(id: string): Promise<PlanRecord>;
  createPlan(
    request: { reason: PlanReason; host?: string; dryRun: boolean; partial?: boolean; strategy?: string },
    by: string,
  ): Promise<CreatedPlan>;
  approvePlan(id: string, by: string, note?: string): Promise<PlanRecord>;
  cancelPlan(id: string, by: string, note?: string): Promise<PlanRecord>;
  listHosts(): Promise<HostView[]>;
  getHost(id: string): Promise<HostView>;
  drainHost(id: string, dryRun: boolean, by: string, partial?: boolean): Promise<CreatedPlan>;
  activateHost(id: string, by: string, cancelDrain?: boolean): Promise<HostView>;
  listMigrations(): Promise<MigrationView[]>;
  getMigration(vm: string): Promise<MigrationView>;
  abortMigration(vm: string, by: string): Promise<MigrationView>;
  automation(): Promise<AutomationView>;
  setPaused(paused: boolean, by: string, note?: string): Promise<AutomationView>;
  listQuarantines(): Promise<QuarantineView[]>;
  liftQuarantine(vm: string, by: string): Promise<QuarantineView>;
  addQuarantine(vm: string, forS: number, by: string): Promise<QuarantineAdded>;
  /** Appends to the audit trail (the API calls it for every change it was asked for). */
  audit(entry: AuditEntry): Promise<void>;
  listAudit(limit: number): Promise<AuditEntry[]>;
}
