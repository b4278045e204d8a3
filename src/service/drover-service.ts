// The daemon's operations, composed from the collector's stores, the planner, the executor and the plan
// store. The HTTP API and the scheduled runs both go through here. Built by the composition root (main.ts).
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock } from '../domain/clock.js';
import { DroverError, errorMessage } from '../domain/errors.js';
import type { VmHistory } from '../domain/history.js';
import type { Plan, PlanReason } from '../domain/plan.js';
import type { Policy } from '../domain/policy.js';
import { spreadOf, type Host, type Snapshot } from '../domain/snapshot.js';
import type { HostStateStore } from '../collector/host-state-store.js';
import type { SnapshotStore } from '../collector/snapshot-store.js';
import type { DroverHostState } from '../collector/snapshot-builder.js';
import { executionPolicyFromPolicy } from '../executor/executor-options.js';
import type { Executor, MigrationStatus } from '../executor/executor.js';
import type { HistoryStore } from '../executor/history-store.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import { skipReason } from '../metrics/skip-reason.js';
import { planDrain } from '../planner/index.js';
import { planInput, type RebalanceInput } from './plan-input.js';
import type { AuditEntry, AuditLog } from './audit-log.js';
import type { AutomationStore } from './automation-store.js';
import type { AutomationLevel } from './config.js';
import type { HoldStore } from './hold-store.js';
import type { LeaderElection } from './leader-election.js';
import { stepForecasts } from './step-forecasts.js';
import type { PlannerThread } from './planner-thread.js';
import type {
  AutomationView,
  ClusterView,
  CreatedPlan,
  HostView,
  MigrationView,
  Operations,
  QuarantineAdded,
  QuarantineView,
  ReadyView,
} from './operations.js';
import { newPlanId } from './plan-id.js';
import {
  DrainUnderWay,
  FINAL_PLAN_STATUSES,
  PlanConflict,
  initialStatus,
  planExpired,
  type PlanRecord,
  type PlanStatus,
  type PlanStore,
} from './plan-store.js';

export interface DroverServiceDeps {
  instance: string;
  redis: Redis;
  clock: Clock;
  snapshots: SnapshotStore;
  hostStates: HostStateStore;
  plans: PlanStore;
  executor: Executor;
  history?: HistoryStore;
  election: LeaderElection;
  policy: () => Policy;
  automation: { level: AutomationLevel; planMaxAgeS: number };
  /** Pause and resume (drover pause), shared by every process through Redis. */
  automationState: AutomationStore;
  audit: AuditLog;
  metrics?: DroverMetrics;
  log?: Logger;
  /** When each strategy's last executed plan ran (the hold time). */
  holds: HoldStore;
  /** Plans rebalances of large clusters off the event loop; without it every plan is made in place. */
  plannerThread?: PlannerThread;
}

/** A running plan with no queued or running job is closed once this long has passed since it started. */
const ENQUEUE_SETTLE_MS = 10_000;

/** VMs whose migration history is read from Redis in one go. */
const HISTORY_READ_VMS = 500;
const WAITING_STATES = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children']);
const FINISHED_STATES = new Set(['completed', 'failed']);

function notFound(what: string): DroverError {
  return new DroverError('not_found', what);
}

function memPct(host: Host): number | null {
  if (host.memUsedMiB === null) return null;
  return Math.round((host.memUsedMiB / host.memMiB) * 1000) / 10;
}

/** A job's end state in drover's words (completed / aborted / failed / skipped / stuck), or its queue state. */
function migrationState(status: MigrationStatus): string {
  if (status.state === 'completed' && status.result) return status.result.status;
  return status.state === 'active' ? 'running' : status.state;
}

function reasonOf(status: MigrationStatus): string | null {
  const result = status.result;
  if (result?.status === 'skipped') return result.reason;
  if (result && 'report' in result && result.report.outcome !== 'completed') return result.report.reason;
  return status.failedReason;
}

export class DroverService implements Operations {
  constructor(private readonly deps: DroverServiceDeps) {}

  // ------------------------------------------------------------------------------------------ reading

  async latestSnapshot(): Promise<Snapshot | null> {
    return this.deps.snapshots.readLatest();
  }

  private async requireSnapshot(): Promise<Snapshot> {
    const snapshot = await this.latestSnapshot();
    if (!snapshot) throw new DroverError('no_snapshot', 'no snapshot has been taken yet; try again shortly');
    return snapshot;
  }

  private snapshotAgeS(snapshot: Snapshot): number {
    return Math.max(0, (this.deps.clock.now() - Date.parse(snapshot.takenAt)) / 1000);
  }

  async listHosts(): Promise<HostView[]> {
    const snapshot = await this.latestSnapshot();
    if (!snapshot) return [];
    const states = await this.deps.hostStates.all();
    const vmsPerHost = new Map<string, number>();
    for (const vm of snapshot.vms) vmsPerHost.set(vm.host, (vmsPerHost.get(vm.host) ?? 0) + 1);
    return snapshot.hosts.map((h) => ({
      id: h.id,
      // drover's own state as set now (drain/activate) wins over the snapshot's, which may be older.
      state: h.state === 'down' ? 'down' : (states[h.id] ?? 'active'),
      stale: h.stale ?? false,
      cpus: h.cpus,
      memMiB: h.memMiB,
      cpuPct: h.cpuPct,
      memUsedMiB: h.memUsedMiB,
      memPct: memPct(h),
      vms: vmsPerHost.get(h.id) ?? 0,
      labels: h.labels ?? {},
    }));
  }

  async getHost(id: string): Promise<HostView> {
    const host = (await this.listHosts()).find((h) => h.id === id);
    if (!host) throw notFound(`no host ${id} in the latest snapshot`);
    return host;
  }

  async listMigrations(): Promise<MigrationView[]> {
    const [jobs, snapshot] = await Promise.all([this.deps.executor.list(), this.latestSnapshot()]);
    const names = new Map((snapshot?.vms ?? []).map((v) => [v.id, v.name]));
    const views = jobs.map((j): MigrationView => {
      const p = j.progress;
      const report = j.result && 'report' in j.result ? j.result.report : null;
      const ended = j.state === 'completed' || j.state === 'failed';
      // Measured while it copies (what is left at the rate seen); before that, the expected duration less the
      // time it has run (the forecast the daemon made for the step when it queued it).
      const eta = ended
        ? null
        : p && p.bandwidthMiBps && p.bandwidthMiBps > 0
          ? Math.round((p.remainingMiB / p.bandwidthMiBps) * 10) / 10
          : Math.round(Math.max(0, j.expectedDurationS - (p?.elapsedS ?? 0)) * 10) / 10;
      const totalMiB = p && p.percent > 0 && p.percent < 100 ? p.remainingMiB / (1 - p.percent / 100) : null;
      return {
        vm: j.vmId,
        vmName: names.get(j.vmId) ?? null,
        from: j.from,
        to: j.to,
        kind: j.kind as MigrationView['kind'],
        planId: j.planId,
        state: migrationState(j),
        startedAt: j.startedAtMs === null ? null : new Date(j.startedAtMs).toISOString(),
        elapsedS: report ? report.durationS : (p?.elapsedS ?? null),
        totalMiB: totalMiB === null ? null : Math.round(totalMiB),
        remainingMiB: ended ? null : p ? Math.round(p.remainingMiB) : null,
        iteration: p?.iteration ?? null,
        bandwidthMiBps: ended ? null : (p?.bandwidthMiBps ?? null),
        etaS: ended ? null : eta,
        downtimeMs: report?.downtimeMs ?? null,
        downtimeBudgetMs: report?.downtimeBudgetMs ?? null,
        reason: reasonOf(j),
      };
    });
    // Running first, then waiting, then finished.
    const rank = (s: string) => (s === 'running' ? 0 : WAITING_STATES.has(s) ? 1 : 2);
    return views.sort((a, b) => rank(a.state) - rank(b.state) || a.vm.localeCompare(b.vm));
  }

  async getMigration(vm: string): Promise<MigrationView> {
    const found = (await this.listMigrations()).find((m) => m.vm === vm || m.vmName === vm);
    if (!found) throw notFound(`no migration of ${vm}`);
    return found;
  }

  async cluster(): Promise<ClusterView> {
    const [snapshot, hosts, migrations, leader, pending, paused] = await Promise.all([
      this.latestSnapshot(),
      this.listHosts(),
      this.listMigrations(),
      this.deps.election.leader(),
      this.deps.plans.list({ status: 'pending' }),
      this.deps.automationState.paused(),
    ]);
    this.deps.metrics?.automationPaused.set(paused ? 1 : 0);
    return {
      instance: this.deps.instance,
      leader: leader ? { instance: leader.instance, token: leader.token } : null,
      automation: this.deps.automation.level,
      paused,
      snapshotTakenAt: snapshot?.takenAt ?? null,
      snapshotAgeS: snapshot ? Math.round(this.snapshotAgeS(snapshot) * 10) / 10 : null,
      spread: snapshot ? spreadOf(snapshot) : null,
      hosts,
      migrations: migrations.filter(
        (m) => !FINISHED_STATES.has(m.state) && m.state !== 'aborted' && m.state !== 'skipped',
      ),
      pendingPlans: pending.length,
    };
  }

  async ready(): Promise<ReadyView> {
    const checks: ReadyView['checks'] = {};
    try {
      await this.deps.redis.ping();
      checks.redis = { ok: true, detail: 'ping answered' };
    } catch (err) {
      checks.redis = { ok: false, detail: errorMessage(err) };
    }
    if (checks.redis.ok) {
      try {
        const snapshot = await this.latestSnapshot();
        const age = snapshot ? this.snapshotAgeS(snapshot) : null;
        const hosts = snapshot?.hosts.length ?? 0;
        const ok = age !== null && age <= this.deps.automation.planMaxAgeS && hosts > 0;
        checks.snapshot = {
          ok,
          detail:
            age === null
              ? 'no snapshot yet'
              : `newest snapshot is ${Math.round(age)} s old with ${hosts} host(s)`,
        };
      } catch (err) {
        checks.snapshot = { ok: false, detail: errorMessage(err) };
      }
    }
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  }

  async listPlans(filter: {
    status?: PlanStatus | undefined;
    limit?: number | undefined;
  }): Promise<PlanRecord[]> {
    return this.deps.plans.list({
      ...(filter.status !== undefined ? { status: filter.status } : {}),
      limit: filter.limit ?? 50,
    });
  }

  async getPlan(id: string): Promise<PlanRecord> {
    return this.deps.plans.require(id);
  }

  // ------------------------------------------------------------------------------------------ planning

  /**
   * Makes a plan from the latest snapshot (no side effects). A rebalance plans with `how.strategy` (default
   * balance) under its hold time: `apply` leaves the plan empty inside the hold (the schedule), an
   * `overriddenBy` plans anyway and the plan says who (an operator's request).
   */
  async computePlan(
    reason: PlanReason,
    host?: string,
    partial = false,
    how: RebalanceHow = { hold: 'apply' },
  ): Promise<Plan> {
    // drover's own host states as set now (drain, activate) win over the snapshot's, which may be older:
    // a host put in maintenance after the snapshot was taken is never a destination.
    const snapshot = withHostStates(await this.requireSnapshot(), await this.deps.hostStates.all());
    const age = this.snapshotAgeS(snapshot);
    if (age > this.deps.automation.planMaxAgeS) {
      throw new DroverError(
        'snapshot_stale',
        `the newest snapshot is ${Math.round(age)} s old (automation.planMaxAgeS is ${this.deps.automation.planMaxAgeS})`,
      );
    }
    const policy = this.deps.policy();
    const now = this.deps.clock.now();
    const vmIds = snapshot.vms.map((v) => v.id);
    const history = this.deps.history ? await historyOf(this.deps.history, vmIds) : undefined;
    const opts = { now, history };
    if (reason === 'drain') {
      if (host === undefined) throw new DroverError('invalid_input', 'a drain needs a host');
      if (!snapshot.hosts.some((h) => h.id === host))
        throw notFound(`no host ${host} in the latest snapshot`);
      // The drained host is in maintenance from now on, whatever the snapshot (taken before) says.
      const drained: Snapshot = {
        ...snapshot,
        hosts: snapshot.hosts.map((h) => (h.id === host ? { ...h, state: 'maintenance' } : h)),
      };
      return planDrain(drained, policy, [host], { ...opts, allowPartial: partial });
    }
    const strategy = how.strategy ?? 'balance';
    const input: RebalanceInput = {
      strategy,
      snapshot,
      policy,
      now,
      history,
      lastExecutedAtMs: await this.deps.holds.lastExecutedAt(strategy),
      overrideHold: how.hold === 'apply' ? undefined : how.hold.overriddenBy,
    };
    if (this.deps.plannerThread) return this.deps.plannerThread.rebalance(input);
    return planInput(input);
  }

  async createPlan(
    request: { reason: PlanReason; host?: string; dryRun: boolean; partial?: boolean; strategy?: string },
    by: string,
  ): Promise<CreatedPlan> {
    const drain = request.reason === 'drain' && !request.dryRun ? (request.host ?? null) : null;
    // One drain per host: a host already being drained answers with that drain's plan.
    if (drain !== null) {
      const open = await this.deps.plans.openDrain(drain);
      if (open) return { record: open, plan: open.plan, existing: true };
    }
    // An operator's rebalance is not held back by the hold time; the plan says when one was overridden.
    const plan = await this.computePlan(request.reason, request.host, request.partial ?? false, {
      hold: { overriddenBy: by },
      ...(request.strategy !== undefined ? { strategy: request.strategy } : {}),
    });
    if (request.dryRun) return { record: null, plan };
    if (drain !== null) await this.deps.hostStates.set(drain, 'maintenance');
    try {
      const record = await this.store(plan, by, null, request.host);
      return { record, plan: record.plan };
    } catch (err) {
      // Another request stored a drain of this host first (decided in Redis): its plan is the answer.
      if (!(err instanceof DrainUnderWay)) throw err;
      const open = await this.deps.plans.require(err.planId);
      return { record: open, plan: open.plan, existing: true };
    }
  }

  /**
   * Stores a plan in the status its automation level gives it and starts it when approved. `fenced` plans
   * (the leader's scheduled ones) are stored only while this process still leads.
   */
  async store(plan: Plan, by: string, fenced: 'fenced' | null, host?: string): Promise<PlanRecord> {
    const fence = fenced ? this.deps.election.fence() : null;
    if (fenced && !fence)
      throw new DroverError('not_leader', 'lost the leader lease before storing the plan');
    // While automation is paused nothing new starts on its own: every plan waits for an operator's approval.
    const paused = await this.deps.automationState.paused();
    const status = paused ? 'pending' : initialStatus(plan.reason, this.deps.automation.level);
    // Unique under concurrency (the planner's id is only the time): see plan-id.ts.
    plan = { ...plan, id: newPlanId(plan.reason, Date.parse(plan.createdAt)) };
    let record = await this.deps.plans.create(
      plan,
      {
        status,
        createdBy: by,
        automation: this.deps.automation.level,
        ...(host !== undefined ? { host } : {}),
      },
      fence,
    );
    this.deps.metrics?.plans.inc({
      reason: plan.reason,
      outcome: status === 'approved' ? 'auto_approved' : 'pending',
    });
    this.countSkipped(plan);
    this.deps.log?.info(
      {
        module: 'service',
        planId: plan.id,
        reason: plan.reason,
        steps: plan.steps.length,
        status,
        by,
        ...(paused ? { paused } : {}),
      },
      'plan stored',
    );
    if (status === 'approved') record = await this.start(record, by);
    return record;
  }

  /** drover_plan_skipped_vms_total: the VMs a plan the service acts on left where they are, by kind of reason. */
  private countSkipped(plan: Plan): void {
    for (const s of plan.skipped) this.deps.metrics?.planSkippedVms.inc({ reason: skipReason(s.why) });
  }

  /** Hands an approved plan to the executor. */
  private async start(record: PlanRecord, by: string): Promise<PlanRecord> {
    const { plan } = record;
    if (plan.steps.length === 0) {
      await this.deps.plans.transition(plan.id, 'running', by);
      return this.deps.plans.transition(plan.id, 'completed', by, plan.note ?? 'no moves');
    }
    const running = await this.deps.plans.transition(plan.id, 'running', by);
    try {
      const policy = this.deps.policy();
      const history = this.deps.history
        ? await this.deps.history.getMany(plan.steps.map((s) => s.vm))
        : undefined;
      const forecasts = stepForecasts(plan, await this.latestSnapshot(), policy, history);
      const result = await this.deps.executor.enqueuePlan(plan, executionPolicyFromPolicy(policy), forecasts);
      this.deps.log?.info(
        {
          module: 'service',
          planId: plan.id,
          enqueued: result.enqueued.length,
          alreadyQueued: result.alreadyQueued,
        },
        'plan handed to the executor',
      );
      if (result.enqueued.length > 0)
        await this.deps.holds.recordExecuted(strategyOf(plan), this.deps.clock.now());
      if (result.enqueued.length === 0) {
        // Every VM already had a migration queued by another plan: this one has nothing left to run.
        const note = `no steps of its own: ${result.alreadyQueued.length} VM(s) already queued by other plans`;
        this.deps.metrics?.plans.inc({ reason: plan.reason, outcome: 'completed' });
        return await this.deps.plans.transition(plan.id, 'completed', by, note);
      }
    } catch (err) {
      await this.deps.plans.transition(plan.id, 'failed', by, `could not enqueue: ${errorMessage(err)}`);
      throw err;
    }
    return running;
  }

  async approvePlan(id: string, by: string, note?: string): Promise<PlanRecord> {
    const record = await this.deps.plans.require(id);
    if (
      record.status === 'pending' &&
      planExpired(record.plan, this.deps.clock.now(), this.deps.automation.planMaxAgeS)
    ) {
      await this.deps.plans.transition(id, 'expired', by, 'snapshot too old at approval');
      this.deps.metrics?.plans.inc({ reason: record.plan.reason, outcome: 'expired' });
      throw new DroverError(
        'plan_expired',
        `plan ${id} was made from a snapshot older than ${this.deps.automation.planMaxAgeS} s; make a new one`,
      );
    }
    const approved = await this.deps.plans.transition(id, 'approved', by, note);
    this.deps.metrics?.plans.inc({ reason: record.plan.reason, outcome: 'approved' });
    return this.start(approved, by);
  }

  async cancelPlan(id: string, by: string, note?: string): Promise<PlanRecord> {
    const record = await this.deps.plans.transition(id, 'cancelled', by, note);
    this.deps.metrics?.plans.inc({ reason: record.plan.reason, outcome: 'cancelled' });
    // Steps not started yet are withdrawn; running migrations finish (abort them one by one if needed).
    const jobs = await this.deps.executor.list();
    for (const job of jobs) {
      if (job.planId === id && WAITING_STATES.has(job.state)) await this.deps.executor.abortVm(job.vmId);
    }
    return record;
  }

  // ------------------------------------------------------------------------------------------ hosts

  async drainHost(id: string, dryRun: boolean, by: string, partial = false): Promise<CreatedPlan> {
    return this.createPlan({ reason: 'drain', host: id, dryRun, partial }, by);
  }

  /**
   * Makes a host active again. While a drain of it is open this is refused (409 naming the plan), unless
   * `cancelDrain`: then that plan is cancelled first.
   */
  async activateHost(id: string, by: string, cancelDrain = false): Promise<HostView> {
    const host = await this.getHost(id);
    if (cancelDrain) {
      const open = await this.deps.plans.openDrain(id);
      if (open) {
        try {
          await this.cancelPlan(open.plan.id, by, `host ${id} activated`);
        } catch (err) {
          // It ended meanwhile: nothing left to cancel.
          if (!(err instanceof PlanConflict)) throw err;
        }
      }
    }
    try {
      await this.deps.plans.activateUnlessDraining(id, this.deps.hostStates.key);
    } catch (err) {
      if (err instanceof DrainUnderWay)
        throw new DroverError(
          'conflict',
          `host ${id} is being drained by plan ${err.planId}; cancel that plan first, or activate with cancelDrain: true (drover activate --cancel-drain)`,
        );
      throw err;
    }
    this.deps.metrics?.drainRemainingVms.remove({ host: id });
    this.deps.log?.info({ module: 'service', host: id, by }, 'host activated');
    return { ...host, state: host.state === 'down' ? 'down' : 'active' };
  }

  // ------------------------------------------------------------------------------------------ migrations

  async abortMigration(vm: string, by: string): Promise<MigrationView> {
    const current = await this.getMigration(vm);
    const outcome = await this.deps.executor.abortVm(current.vm);
    if (outcome === 'none')
      throw new DroverError('conflict', `the migration of ${vm} is ${current.state}; nothing to abort`);
    this.deps.log?.info({ module: 'service', vm: current.vm, by, outcome }, 'migration abort requested');
    return { ...current, state: outcome === 'removed' ? 'removed' : 'aborting' };
  }

  // ------------------------------------------------------------------------------------------ runtime controls

  async automation(): Promise<AutomationView> {
    const state = await this.deps.automationState.state();
    this.deps.metrics?.automationPaused.set(state.paused ? 1 : 0);
    return {
      level: this.deps.automation.level,
      paused: state.paused,
      changedBy: state.by,
      changedAt: state.at,
      note: state.note,
    };
  }

  async setPaused(paused: boolean, by: string, note?: string): Promise<AutomationView> {
    await this.deps.automationState.set(paused, by, this.deps.clock.now(), note);
    this.deps.metrics?.automationPaused.set(paused ? 1 : 0);
    this.deps.log?.info(
      { module: 'service', paused, by },
      paused ? 'automation paused' : 'automation resumed',
    );
    return this.automation();
  }

  async listQuarantines(): Promise<QuarantineView[]> {
    const history = this.requireHistory();
    const [records, snapshot] = await Promise.all([history.quarantined(), this.latestSnapshot()]);
    const names = new Map((snapshot?.vms ?? []).map((v) => [v.id, v.name]));
    return records.map((q) => ({
      vm: q.vmId,
      vmName: names.get(q.vmId) ?? null,
      failures: q.failures,
      until: q.until,
    }));
  }

  /** Lifts a VM's quarantine (by id or, from the latest snapshot, by name); 404 when it has none. */
  async liftQuarantine(vm: string, by: string): Promise<QuarantineView> {
    const history = this.requireHistory();
    const snapshot = await this.latestSnapshot();
    const found = snapshot?.vms.find((v) => v.id === vm) ?? snapshot?.vms.find((v) => v.name === vm);
    const vmId = found?.id ?? vm;
    const lifted = await history.lift(vmId);
    if (!lifted) throw notFound(`${vm} is not quarantined`);
    this.deps.log?.info({ module: 'service', vm: vmId, by }, 'quarantine lifted');
    return { vm: vmId, vmName: found?.name ?? null, failures: lifted.failures, until: lifted.until };
  }

  /**
   * Quarantines a known VM (by id or name) for at least `forS` seconds, never shortening a quarantine in
   * force; 404 for a VM the latest snapshot lacks.
   */
  async addQuarantine(vm: string, forS: number, by: string): Promise<QuarantineAdded> {
    const history = this.requireHistory();
    const snapshot = await this.latestSnapshot();
    const found = snapshot?.vms.find((v) => v.id === vm) ?? snapshot?.vms.find((v) => v.name === vm);
    if (!found) throw notFound(`${vm} is not a known VM`);
    const q = await history.hold(found.id, forS);
    this.deps.log?.info(
      { module: 'service', vm: found.id, by, until: q.until, keptLonger: q.keptLonger },
      'quarantine added',
    );
    return {
      vm: found.id,
      vmName: found.name,
      failures: q.failures,
      until: q.until,
      requestedUntil: q.requestedUntil,
      keptLonger: q.keptLonger,
    };
  }

  private requireHistory(): HistoryStore {
    if (!this.deps.history)
      throw new DroverError('invalid_input', 'this drover keeps no migration history, so no quarantines');
    return this.deps.history;
  }

  async audit(entry: AuditEntry): Promise<void> {
    await this.deps.audit.append(entry);
  }

  async listAudit(limit: number): Promise<AuditEntry[]> {
    return this.deps.audit.list(limit);
  }

  // ------------------------------------------------------------------------------------------ upkeep

  /**
   * The leader's scheduled rebalance with a strategy (default balance): plan from the latest snapshot under
   * the strategy's hold time and store it (fenced). Returns what was decided, for the schedule's log line.
   */
  async scheduledRebalance(
    strategy = 'balance',
  ): Promise<{ planId: string | null; steps: number; status: string }> {
    if (await this.deps.automationState.paused()) {
      this.deps.metrics?.automationPaused.set(1);
      return { planId: null, steps: 0, status: 'automation paused' };
    }
    // A rebalance waits while a plan is still running or pending, so plans never pile up.
    const open = await this.deps.plans.list({ limit: 20 });
    const busy = open.find(
      (r) => r.status === 'running' || r.status === 'pending' || r.status === 'approved',
    );
    if (busy) return { planId: busy.plan.id, steps: 0, status: `waiting for ${busy.status} plan` };
    const plan = await this.computePlan('rebalance', undefined, false, { strategy, hold: 'apply' });
    if (plan.steps.length === 0) {
      this.deps.metrics?.plans.inc({ reason: 'rebalance', outcome: plan.hold ? 'held' : 'no_moves' });
      this.countSkipped(plan);
      return { planId: null, steps: 0, status: plan.note ?? 'balanced' };
    }
    const record = await this.store(plan, 'schedule', 'fenced');
    return { planId: plan.id, steps: plan.steps.length, status: record.status };
  }

  /**
   * Plan upkeep: expires pending plans whose snapshot got too old, closes running plans whose jobs all
   * finished, and updates the drain gauges. Runs on the leader.
   */
  async trackPlans(): Promise<{ expired: number; finished: number }> {
    const now = this.deps.clock.now();
    let expired = 0;
    let finished = 0;
    const records = await this.deps.plans.list({ limit: 200 });
    const jobs = records.some((r) => r.status === 'running') ? await this.deps.executor.list() : [];
    for (const record of records) {
      if (FINAL_PLAN_STATUSES.includes(record.status)) continue;
      const { plan } = record;
      try {
        if (record.status === 'pending' && planExpired(plan, now, this.deps.automation.planMaxAgeS)) {
          await this.deps.plans.transition(plan.id, 'expired', 'schedule', 'snapshot too old');
          this.deps.metrics?.plans.inc({ reason: plan.reason, outcome: 'expired' });
          expired++;
        } else if (record.status === 'running') {
          const mine = jobs.filter((j) => j.planId === plan.id);
          const live = mine.some((j) => !FINISHED_STATES.has(j.state));
          const done = plan.steps.every((s) =>
            mine.some((j) => j.vmId === s.vm && FINISHED_STATES.has(j.state)),
          );
          // A step whose VM another plan already had queued has no job of this plan; a finished job may
          // have been replaced by a later plan's. Once nothing of this plan is queued or running, and it
          // has been running long enough for its enqueue to have finished, it is over.
          const runningSince = Date.parse(
            record.events.findLast((e) => e.status === 'running')?.at ?? record.updatedAt,
          );
          const settled = !live && Date.now() - runningSince > ENQUEUE_SETTLE_MS;
          if (done || settled) {
            const results = mine.map(migrationState);
            const count = (r: string) => results.filter((x) => x === r).length;
            const note = `${count('completed')} completed, ${count('aborted')} aborted, ${count('failed') + count('stuck')} failed, ${count('skipped')} skipped`;
            const failed = count('failed') + count('stuck') > 0;
            // The hold time runs from the end of the last plan that moved something.
            if (count('completed') > 0)
              await this.deps.holds.recordExecuted(strategyOf(plan), this.deps.clock.now());
            await this.deps.plans.transition(plan.id, failed ? 'failed' : 'completed', 'schedule', note);
            this.deps.metrics?.plans.inc({ reason: plan.reason, outcome: failed ? 'failed' : 'completed' });
            finished++;
          }
        }
      } catch (err) {
        // Another process changed the plan first: its change stands.
        if (!(err instanceof PlanConflict)) throw err;
      }
    }
    await this.updateDrainGauges();
    this.deps.metrics?.automationPaused.set((await this.deps.automationState.paused()) ? 1 : 0);
    return { expired, finished };
  }

  private async updateDrainGauges(): Promise<void> {
    const metrics = this.deps.metrics;
    if (!metrics) return;
    const states = await this.deps.hostStates.all();
    const draining = Object.entries(states).flatMap(([host, state]) =>
      state === 'maintenance' ? [host] : [],
    );
    if (draining.length === 0) {
      // Nothing to count: no need to read (and, on a large cluster, parse) the snapshot every few seconds.
      metrics.drainRemainingVms.reset();
      return;
    }
    const snapshot = await this.latestSnapshot();
    if (!snapshot) return;
    metrics.drainRemainingVms.reset();
    for (const host of draining)
      metrics.drainRemainingVms.set({ host }, snapshot.vms.filter((v) => v.host === host).length);
  }
}

/**
 * The migration history of the VMs, read a slice at a time: one read of every VM of a large cluster would
 * build, send and parse tens of thousands of Redis commands in one go, holding the event loop meanwhile.
 */
async function historyOf(store: HistoryStore, vmIds: readonly string[]): Promise<Map<string, VmHistory>> {
  const out = new Map<string, VmHistory>();
  for (let at = 0; at < vmIds.length; at += HISTORY_READ_VMS) {
    const part = await store.getMany(vmIds.slice(at, at + HISTORY_READ_VMS));
    for (const [id, h] of part) out.set(id, h);
  }
  return out;
}

/** The strategy that made a plan (plans stored before plans named it: drain for drains, else balance). */
function strategyOf(plan: Plan): string {
  return plan.strategy ?? (plan.reason === 'drain' ? 'drain' : 'balance');
}

/** How a rebalance is planned: with which strategy, and whether its hold time applies. */
export interface RebalanceHow {
  strategy?: string | undefined;
  hold: 'apply' | { overriddenBy: string };
}

/** The snapshot with drover's current host states applied (a host the collector found down stays down). */
function withHostStates(snapshot: Snapshot, states: Readonly<Record<string, DroverHostState>>): Snapshot {
  if (
    !snapshot.hosts.some((h) => h.state !== 'down' && states[h.id] !== undefined && states[h.id] !== h.state)
  )
    return snapshot;
  return {
    ...snapshot,
    hosts: snapshot.hosts.map((h) => (h.state === 'down' ? h : { ...h, state: states[h.id] ?? h.state })),
  };
}
