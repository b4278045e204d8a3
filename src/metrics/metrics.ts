// The one module that imports prom-client: every drover metric, its name, help text and labels.
// Names follow drover_<noun>_<unit>; labels stay bounded (per-VM series only where switched on).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { DROVER_VERSION } from '../domain/version.js';

export interface DroverMetrics {
  readonly registry: Registry;
  /** metrics.perVmSeries: the one switch for series labelled by VM (dirty rate, migrations per VM). */
  readonly perVmSeries: boolean;
  buildInfo: Gauge<'version' | 'node'>;
  // collector
  hostCpuPct: Gauge<'host'>;
  hostMemPct: Gauge<'host'>;
  hostStale: Gauge<'host'>;
  vmDirtyMiBps: Gauge<'vm' | 'host'>;
  collectorSampleSeconds: Histogram<'host'>;
  collectorErrors: Counter<'host' | 'kind'>;
  snapshotAgeSeconds: Gauge;
  collectorOwnedHosts: Gauge;
  collectorCycleSeconds: Histogram;
  dirtyRateProbes: Counter;
  // planner
  clusterSpreadPct: Gauge<'resource'>;
  plans: Counter<'reason' | 'outcome'>;
  planSkippedVms: Counter<'reason'>;
  // executor
  migrations: Counter<'result' | 'kind'>;
  migrationDurationSeconds: Histogram<'result'>;
  migrationDowntimeSeconds: Histogram;
  migrationDowntimeOverBudgetRatio: Histogram;
  migrationDowntimeOverBudget: Counter<'kind'>;
  migrationsRunning: Gauge;
  watchdogActions: Counter<'action' | 'profile'>;
  migrationsStuck: Gauge;
  vmsOnTwoHosts: Gauge;
  vmMigrations: Counter<'vm'>;
  drainRemainingVms: Gauge<'host'>;
  // service
  leader: Gauge;
  automationPaused: Gauge;
  scheduleRuns: Counter<'schedule' | 'outcome'>;
  policyReloads: Counter<'outcome'>;
}

export interface MetricsOptions {
  /** Export per-VM series (dirty rate, migrations per VM). Off by default: they grow with the fleet. */
  perVmSeries?: boolean;
  /** Add Node's process metrics (CPU, memory, event loop lag). */
  processMetrics?: boolean;
}

export function createMetrics(options: MetricsOptions = {}): DroverMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'drover_process_' });
  const registers = [registry];
  const durationBuckets = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600];
  const downtimeBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5];
  const buildInfo = new Gauge({
    name: 'drover_build_info',
    help: 'Always 1; its labels say which drover and which Node.js run',
    labelNames: ['version', 'node'],
    registers,
  });
  buildInfo.set({ version: DROVER_VERSION, node: process.versions.node }, 1);
  const policyReloads = new Counter({
    name: 'drover_policy_reloads_total',
    help: 'Policy reloads by outcome',
    labelNames: ['outcome'],
    registers,
  });
  // At 0 from the start, so increase() in DroverPolicyReloadRejected sees the first rejection.
  for (const outcome of ['applied', 'unchanged', 'rejected']) policyReloads.inc({ outcome }, 0);
  return {
    registry,
    perVmSeries: options.perVmSeries ?? false,
    buildInfo,
    hostCpuPct: new Gauge({
      name: 'drover_host_cpu_percent',
      help: 'Host CPU utilisation, smoothed (0-100)',
      labelNames: ['host'],
      registers,
    }),
    hostMemPct: new Gauge({
      name: 'drover_host_memory_percent',
      help: 'Host memory in use (0-100)',
      labelNames: ['host'],
      registers,
    }),
    hostStale: new Gauge({
      name: 'drover_host_stale',
      help: '1 when the host did not answer its last sample in time',
      labelNames: ['host'],
      registers,
    }),
    vmDirtyMiBps: new Gauge({
      name: 'drover_vm_dirty_mebibytes_per_second',
      help: 'Per-VM dirty page rate (only with per-VM series on)',
      labelNames: ['vm', 'host'],
      registers,
    }),
    collectorSampleSeconds: new Histogram({
      name: 'drover_collector_sample_duration_seconds',
      help: 'Time to sample one host',
      labelNames: ['host'],
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    }),
    collectorErrors: new Counter({
      name: 'drover_collector_errors_total',
      help: 'Sampling errors by host and kind',
      labelNames: ['host', 'kind'],
      registers,
    }),
    snapshotAgeSeconds: new Gauge({
      name: 'drover_snapshot_age_seconds',
      help: 'Age of the newest snapshot',
      registers,
    }),
    collectorOwnedHosts: new Gauge({
      name: 'drover_collector_owned_hosts',
      help: 'Hosts this process sampled in its last cycle (its share among the collectors)',
      registers,
    }),
    collectorCycleSeconds: new Histogram({
      name: 'drover_collector_cycle_duration_seconds',
      help: 'Wall time of one collector cycle (sampling, storing, building the snapshot)',
      buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
      registers,
    }),
    dirtyRateProbes: new Counter({
      name: 'drover_dirty_rate_probes_total',
      help: 'Dirty-rate measurements started',
      registers,
    }),
    clusterSpreadPct: new Gauge({
      name: 'drover_cluster_spread_percent',
      help: 'Spread (max - min) of utilisation over active hosts, in points, from the newest snapshot',
      labelNames: ['resource'],
      registers,
    }),
    plans: new Counter({
      name: 'drover_plans_total',
      help: 'Plans made, by reason and outcome',
      labelNames: ['reason', 'outcome'],
      registers,
    }),
    planSkippedVms: new Counter({
      name: 'drover_plan_skipped_vms_total',
      help: 'VMs the planner skipped, by reason',
      labelNames: ['reason'],
      registers,
    }),
    migrations: new Counter({
      name: 'drover_migrations_total',
      help: 'Migrations by result',
      labelNames: ['result', 'kind'],
      registers,
    }),
    migrationDurationSeconds: new Histogram({
      name: 'drover_migration_duration_seconds',
      help: 'Migration wall time',
      labelNames: ['result'],
      buckets: durationBuckets,
      registers,
    }),
    migrationDowntimeSeconds: new Histogram({
      name: 'drover_migration_downtime_seconds',
      help: 'Measured switch-over downtime',
      buckets: downtimeBuckets,
      registers,
    }),
    migrationDowntimeOverBudgetRatio: new Histogram({
      name: 'drover_migration_downtime_budget_ratio',
      help: 'Measured downtime divided by the VM downtime budget',
      buckets: [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 5],
      registers,
    }),
    migrationDowntimeOverBudget: new Counter({
      name: 'drover_migration_downtime_over_budget_total',
      help: 'Completed migrations whose measured downtime exceeded the VM downtime budget',
      labelNames: ['kind'],
      registers,
    }),
    migrationsRunning: new Gauge({
      name: 'drover_migrations_running',
      help: 'Migrations in progress',
      registers,
    }),
    watchdogActions: new Counter({
      name: 'drover_watchdog_actions_total',
      help: 'Watchdog actions by kind and profile',
      labelNames: ['action', 'profile'],
      registers,
    }),
    migrationsStuck: new Gauge({
      name: 'drover_migrations_stuck',
      help: 'Migrations detected as stuck (unresponsive monitor, paused on both ends, post-copy sending nothing)',
      registers,
    }),
    vmsOnTwoHosts: new Gauge({
      name: 'drover_vms_on_multiple_hosts',
      help: 'VMs running or defined on more than one host',
      registers,
    }),
    vmMigrations: new Counter({
      name: 'drover_vm_migrations_total',
      help: 'Migrations per VM (only with per-VM series on)',
      labelNames: ['vm'],
      registers,
    }),
    drainRemainingVms: new Gauge({
      name: 'drover_drain_remaining_vms',
      help: 'VMs still on a host being drained',
      labelNames: ['host'],
      registers,
    }),
    leader: new Gauge({
      name: 'drover_leader',
      help: '1 on the process that leads planning and scheduling',
      registers,
    }),
    automationPaused: new Gauge({
      name: 'drover_automation_paused',
      help: '1 while an operator has paused automation (drover pause): nothing new is planned or started on its own',
      registers,
    }),
    scheduleRuns: new Counter({
      name: 'drover_schedule_runs_total',
      help: 'Scheduled runs by schedule and outcome',
      labelNames: ['schedule', 'outcome'],
      registers,
    }),
    policyReloads,
  };
}
