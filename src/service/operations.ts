// What the daemon offers operators, independent of HTTP: the API routes and the CLI speak these shapes.
import { z } from 'zod';
import type { MigrationKind, Plan, PlanReason, Spread } from '../domain/plan.js';
import type { HostState, Snapshot } from '../domain/snapshot.js';
import { nonEmptyString, oneOf } from '../domain/validation.js';
import type { AuditEntry } from './audit-log.js';
import type { AutomationLevel } from './config.js';
import type { PlanRecord, PlanStatus } from './plan-store.js';

export interface HostView {
  id: string;
  state: HostState;
  stale: boolean;
  cpus: number;
  memMiB: number;
  cpuPct: number | null;
  memUsedMiB: number | null;
  memPct: number | null;
  vms: number;
  labels: Record<string, string>;
}

export interface MigrationView {
  vm: string;
  vmName: string | null;
  from: string;
  to: string;
  kind: MigrationKind;
  planId: string | null;
  /** queued | running | completed | aborted | failed | skipped */
  state: string;
  startedAt: string | null;
  elapsedS: number | null;
  totalMiB: number | null;
  remainingMiB: number | null;
  iteration: number | null;
  bandwidthMiBps: number | null;
  etaS: number | null;
  /** Measured switch-over downtime (completed migrations). */
  downtimeMs: number | null;
  /** The VM's downtime budget (from the plan step or the policy). */
  downtimeBudgetMs: number | null;
  /** Why it ended as it did (abort reason, skip reason, failure), null while running or when completed. */
  reason: string | null;
}

/** GET|POST /v1/automation */
export interface AutomationView {
  level: AutomationLevel;
  /** Paused: scheduled runs plan nothing and new plans wait for approval; running plans finish. */
  paused: boolean;
  /** Who paused or resumed last (`api:<token name>`), and when; null when never changed. */
  changedBy: string | null;
  changedAt: string | null;
  note: string | null;
}

/** GET /v1/quarantines: a VM the planner and the executor leave alone until `until`. */
export interface QuarantineView {
  vm: string;
  vmName: string | null;
  /** Failures to converge in a row (each doubles the next quarantine, up to the policy's maximum). */
  failures: number;
  until: string | null;
}

export interface ClusterView {
  instance: string;
  leader: { instance: string; token: number } | null;
  automation: AutomationLevel;
  /** Automation paused by an operator (drover pause). */
  paused: boolean;
  snapshotTakenAt: string | null;
  snapshotAgeS: number | null;
  spread: Spread | null;
  hosts: HostView[];
  migrations: MigrationView[];
  pendingPlans: number;
}

export interface ReadyView {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail: string }>;
}

/** POST /v1/plans */
export const CreatePlanBodySchema = z.strictObject({
  reason: oneOf(['rebalance', 'drain'] as const),
  /** The host to drain (reason drain only). */
  host: nonEmptyString().max(256).optional(),
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

export interface CreatedPlan {
  /** Null for a dry run. */
  record: PlanRecord | null;
  plan: Plan;
  /** True when the host was draining already: this is that drain's plan, not a new one. */
  existing?: boolean;
}

/** Everything an operator can ask the daemon; `by` names the caller (`api:<token name>`). */
export interface Operations {
  cluster(): Promise<ClusterView>;
  ready(): Promise<ReadyView>;
  latestSnapshot(): Promise<Snapshot | null>;
  listPlans(filter: { status?: PlanStatus | undefined; limit?: number | undefined }): Promise<PlanRecord[]>;
  getPlan(id: string): Promise<PlanRecord>;
  createPlan(
    request: { reason: PlanReason; host?: string; dryRun: boolean; partial?: boolean },
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
  /** Appends to the audit trail (the API calls it for every change it was asked for). */
  audit(entry: AuditEntry): Promise<void>;
  listAudit(limit: number): Promise<AuditEntry[]>;
}
