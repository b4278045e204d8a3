// Runs one plan step against a Hypervisor: look at the real state (adopt, skip or continue), pre-check both
// ends, start the migration, watch it with the Watchdog, then verify and report. No Redis here: the worker
// around it owns queues, slots and history, so a runner on the simulator's virtual clock is deterministic.
import { pino, type Logger } from 'pino';
import { DroverError, StepSkipped, errorCode, errorMessage } from '../domain/errors.js';
import type { Step } from '../domain/plan.js';
import {
  type HypervisorEvents,
  type MigrationControl,
  type MigrationJob,
  type MigrationHandle,
  type MigrationOutcome,
  type MigrationRequest,
  type Sampling,
  type VmInfo,
  type VmControl,
  type VmPresence,
  type VolumeStorage,
} from '../hypervisor/hypervisor.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import { BlockDestination, type BlockPreparation } from './block-destination.js';
import { CallTimeout, callWithTimeout } from './call-timeout.js';
import type { ExecutionPolicy, ExecutorOptions } from './executor-options.js';
import { applyRecoveryAction, gatherEvidence, type VmEvidence } from './recovery.js';
import { StorageCheck } from './storage-check.js';
import { Watchdog, type AbortReason, type WatchdogAction } from './watchdog.js';
import { watchdogSchedule, type PredictiveForecast, type WatchdogSchedule } from './watchdog-schedule.js';

/** What a migration job carries (BullMQ job data; plain JSON). */
export interface MigrationJobData {
  planId: string;
  step: Step;
  policy: ExecutionPolicy;
  /** The planner's predictive watchdog forecast for this step, when it made one. */
  forecast?: PredictiveForecast | null;
  enqueuedAt: string;
}

export type RunPhase = 'pre-check' | 'starting' | 'migrating' | 'post-copy' | 'aborting' | 'finishing';

/** Progress as BullMQ shows it (job.progress). */
export interface MigrationProgress {
  vmId: string;
  from: string;
  to: string;
  phase: RunPhase;
  percent: number;
  remainingMiB: number;
  iteration: number;
  expectedDowntimeMs: number;
  maxDowntimeMs: number;
  bandwidthMiBps: number | null;
  elapsedS: number;
  stuck: boolean;
  adopted: boolean;
}

export type RunOutcome = 'completed' | 'aborted' | 'failed' | 'stuck';

export interface WatchdogRecord {
  atMs: number;
  action: WatchdogAction;
  /** Error of the hypervisor call that carried the action out, if it failed. */
  error: string | null;
}

export interface MigrationReport {
  planId: string;
  vmId: string;
  from: string;
  to: string;
  kind: Step['kind'];
  outcome: RunOutcome;
  reason: string;
  /** True when this run took over a migration another worker had started. */
  adopted: boolean;
  startedAtMs: number;
  endedAtMs: number;
  durationS: number;
  downtimeMs: number | null;
  iterations: number;
  transferMiB: number;
  memMiB: number;
  /** The guest's dirty rate in the last migration job seen (MiB/s), when there were any. */
  dirtyMiBps: number | null;
  maxDowntimeMs: number;
  downtimeBudgetMs: number;
  bandwidthMiBps: number | null;
  profile: WatchdogSchedule['profile'];
  abortReason: AbortReason | null;
  watchdog: WatchdogRecord[];
  /** Verification after the end: empty when the VM is where it should be and nowhere else. */
  problems: string[];
  /** Evidence gathered after an abort, failure or stuck state. */
  evidence: VmEvidence | null;
}

export interface RunHooks {
  /** Stops watching without touching the migration (shutdown; the next worker adopts it). */
  signal?: AbortSignal;
  /** Called on every poll; keep it cheap and non-blocking (the worker throttles Redis writes). */
  onProgress?: (progress: MigrationProgress) => void;
  /** Polled every loop: non-null asks the watchdog to abort. */
  abortRequested?: () => AbortReason | null;
  /** This migration's current share of the links (MiB/s), or null for no cap. */
  bandwidthShareMiBps?: () => number | null;
  /** Right before the migration call (the worker records that a migration is starting). */
  beforeMigrate?: () => Promise<void>;
  /** Clock time of the migration call and of each abort (benchmarks). */
  onMigrateCall?: (atMs: number) => void;
  onAbortIssued?: (atMs: number, reason: AbortReason) => void;
  /** An earlier attempt of this job may have started the migration (the worker knows from Redis). */
  resumed?: boolean;
  /** When that earlier attempt called migrate (clock ms), if known. */
  startedAtMs?: number;
  /** drover's own host state (maintenance, disabled): the destination must be active. */
  isHostActive?: (hostId: string) => Promise<boolean>;
}

/** The runner stopped watching because its signal was aborted; the migration itself was left alone. */
export class RunnerDetached extends DroverError {
  constructor() {
    super('runner_detached', 'stopped watching the migration (shutdown); it continues without this worker');
    this.name = 'RunnerDetached';
  }
}

/** The migration could not be started; `transient` failures are worth a retry. */
export class MigrationStartError extends DroverError {
  readonly transient: boolean;
  constructor(message: string, transient: boolean, options?: { cause?: unknown }) {
    super(transient ? 'migration_start_failed' : 'migration_refused', message, options);
    this.name = 'MigrationStartError';
    this.transient = transient;
  }
}

const TRANSIENT_CODES = new Set([
  'host_unreachable',
  'call_timeout',
  'operation_failed',
  'migration_start_failed',
]);

/** Whether an error (possibly one that crossed Redis) is worth retrying. */
export function isTransient(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && TRANSIENT_CODES.has(code);
}

/**
 * The hypervisor roles a migration step uses: sampling and inventory (pre-checks, adoption), migration control
 * and its events, VM control (recovery after an abort) and volumes (block migration). Everything but close().
 */
export type RunnerHypervisor = Sampling & MigrationControl & VmControl & VolumeStorage & HypervisorEvents;

export interface MigrationRunnerDeps {
  hypervisor: RunnerHypervisor;
  options: ExecutorOptions;
  logger?: Logger;
  metrics?: DroverMetrics;
}

interface WatchContext {
  job: MigrationJobData;
  vm: { memMiB: number };
  schedule: WatchdogSchedule;
  watchdog: Watchdog;
  handle: MigrationHandle | null;
  adopted: boolean;
  startedAtMs: number;
  bandwidthMiBps: number | null;
  hooks: RunHooks;
  log: Logger;
}

export class MigrationRunner {
  private readonly hv: RunnerHypervisor;
  private readonly options: ExecutorOptions;
  private readonly log: Logger;
  private readonly metrics: DroverMetrics | undefined;
  /** What the pre-check prepared on a block migration's destination, by VM, until run() takes it. */
  private readonly blockPrepared = new Map<string, BlockPreparation>();
  /** VMs whose disks the pre-check proved to be on storage both ends share, until run() takes it. */
  private readonly storageVerified = new Set<string>();

  constructor(deps: MigrationRunnerDeps) {
    this.hv = deps.hypervisor;
    this.options = deps.options;
    this.log = deps.logger ?? pino({ level: 'silent' });
    this.metrics = deps.metrics;
  }

  private call<T>(name: string, promise: Promise<T>, timeoutMs = this.options.callTimeoutMs): Promise<T> {
    return callWithTimeout(this.hv.clock, name, timeoutMs, promise);
  }

  /** The watchdog schedule this job will follow (also what `drover watchdog schedule` shows). */
  scheduleFor(job: MigrationJobData, memMiB: number, diskGiB = 0): WatchdogSchedule {
    const p = job.policy;
    return watchdogSchedule({
      profile: p.profile,
      memMiB,
      diskGiB,
      kind: job.step.kind,
      downtimeBudgetMs: job.step.downtimeBudgetMs ?? p.defaultDowntimeBudgetMs,
      allowAutoConverge: p.allowAutoConverge,
      allowPostCopy: p.allowPostCopy,
      prediction: job.step.predicted,
      forecast: job.forecast ?? null,
      predictive: p.predictive,
      nova: p.nova,
      kubevirt: p.kubevirt,
    });
  }

  /**
   * Runs (or adopts) the step. Resolves with a report for completed, aborted, failed and stuck migrations;
   * throws StepSkipped when the world changed, MigrationStartError when it could not start, RunnerDetached
   * when the signal stopped it.
   */
  async run(job: MigrationJobData, hooks: RunHooks = {}): Promise<MigrationReport> {
    const { step } = job;
    const log = this.log.child({ module: 'executor', planId: job.planId, vm: step.vm });
    const presences = await this.call('locateVm', this.hv.locateVm(step.vm));
    let srcJob: MigrationJob | null = null;
    if (presences.some((p) => p.hostId === step.from)) {
      try {
        srcJob = await this.call('jobStats', this.hv.jobStats(step.from, step.vm));
      } catch (err) {
        // The source's monitor does not answer. An earlier attempt may have started a migration that is
        // running behind it: watch it (as stuck) rather than start anything. Otherwise retry later.
        if (!(err instanceof CallTimeout) || !hooks.resumed) throw err;
        log.warn({ err: errorMessage(err) }, 'source does not answer; watching the earlier attempt blind');
        const vm = await this.vmInfo(step.from, step.vm).catch(() => null);
        const memMiB = vm?.memMiB ?? Math.max(1, step.predicted.transferMiB);
        const schedule = this.scheduleFor(job, memMiB, diskGiB(vm));
        const startedAtMs = hooks.startedAtMs ?? this.hv.clock.now();
        return this.watch({
          job,
          vm: { memMiB },
          schedule,
          watchdog: this.newWatchdog(schedule, startedAtMs),
          handle: null,
          adopted: true,
          startedAtMs,
          bandwidthMiBps: null,
          hooks,
          log,
        });
      }
    }

    // 1. A migration of this VM already in flight from the source: adopt it, never start a second one.
    if (srcJob !== null && srcJob.type === 'active') {
      const vm = await this.vmInfo(step.from, step.vm);
      const schedule = this.scheduleFor(job, vm?.memMiB ?? srcJob.memTotalMiB, diskGiB(vm));
      const startedAtMs = this.hv.clock.now() - srcJob.elapsedMs;
      const watchdog = this.newWatchdog(schedule, startedAtMs);
      log.info({ elapsedMs: srcJob.elapsedMs }, 'adopting a migration already in flight');
      return this.watch({
        job,
        vm: { memMiB: vm?.memMiB ?? srcJob.memTotalMiB },
        schedule,
        watchdog,
        handle: null,
        adopted: true,
        startedAtMs,
        bandwidthMiBps: null,
        hooks,
        log,
      });
    }

    // 2. Already on the destination: an earlier attempt finished it (or the world moved it there).
    const onDest = presences.find((p) => p.hostId === step.to && p.state === 'running');
    const onSource = presences.find((p) => p.hostId === step.from && p.state !== 'shutoff');
    if (onDest && !onSource && step.kind !== 'offline') {
      // An earlier attempt's migration (the worker's run record says one was started) that completed: its
      // outcome, adopted. Without such an attempt the world moved the VM, and the step has nothing to do.
      if (hooks.resumed) return this.finishAdoptedCompletion(job, log);
      throw new StepSkipped(`${step.vm} already runs on ${step.to}`);
    }

    // 3. Pre-checks on both ends, just before migrating.
    const vm = await this.preCheck(job, presences, hooks);
    const prepared = this.blockPrepared.get(step.vm);
    this.blockPrepared.delete(step.vm);
    const storageVerified = this.storageVerified.delete(step.vm);
    const schedule = this.scheduleFor(job, vm.memMiB, diskGiB(vm));
    const bandwidth = hooks.bandwidthShareMiBps?.() ?? null;
    const request: MigrationRequest = {
      vmId: step.vm,
      from: step.from,
      to: step.to,
      kind: step.kind,
      maxDowntimeMs: schedule.initialMaxDowntimeMs,
      bandwidthMiBps: bandwidth,
      autoConverge: schedule.autoConverge,
      postCopy: schedule.postCopy,
      incremental: step.kind === 'block' && job.policy.blockCopy === 'incremental',
      ...(storageVerified ? { storageVerified: true } : {}),
    };
    await hooks.beforeMigrate?.();
    const startedAtMs = this.hv.clock.now();
    hooks.onMigrateCall?.(startedAtMs);
    log.info({ request }, 'starting migration');
    let handle: MigrationHandle;
    try {
      handle = await this.call('migrate', this.hv.migrate(request), this.options.migrateCallTimeoutMs);
    } catch (err) {
      return this.afterFailedStart(job, schedule, vm, err, startedAtMs, hooks, log);
    }
    if (step.kind === 'offline') return this.finishOffline(job, schedule, vm, handle, startedAtMs, log);
    const report = await this.watch({
      job,
      vm,
      schedule,
      watchdog: this.newWatchdog(schedule, startedAtMs),
      handle,
      adopted: false,
      startedAtMs,
      bandwidthMiBps: bandwidth,
      hooks,
      log,
    });
    // A block migration that did not go, with the VM back on its source only: the disks made for it go too.
    if (prepared && report.outcome !== 'completed' && report.problems.length === 0)
      await new BlockDestination(this.hv, {
        callTimeoutMs: this.options.callTimeoutMs,
        logger: this.log,
      }).releaseDisks(step.to, prepared);
    return report;
  }

  private newWatchdog(schedule: WatchdogSchedule, startedAtMs: number): Watchdog {
    return new Watchdog(schedule, startedAtMs, {
      stuckAfterMs: this.options.stuckAfterMs,
      abortRetryMs: this.options.abortRetryMs,
    });
  }

  private async vmInfo(hostId: string, vmId: string): Promise<VmInfo | null> {
    const vms = await this.call('listVms', this.hv.listVms(hostId));
    return vms.find((v) => v.id === vmId) ?? null;
  }

  /** Both ends, now: source still holds the VM, destination active with room, CPU and storage fit. */
  private async preCheck(job: MigrationJobData, presences: VmPresence[], hooks: RunHooks): Promise<VmInfo> {
    const { step, policy } = job;
    const here = presences.find((p) => p.hostId === step.from);
    if (!here) {
      // Not seen on the source: gone, or the source does not answer (worth a retry, not a skip).
      try {
        await this.call('sampleHost', this.hv.sampleHost(step.from));
      } catch (err) {
        throw new MigrationStartError(`source ${step.from} does not answer: ${errorMessage(err)}`, true, {
          cause: err,
        });
      }
      throw new StepSkipped(`${step.vm} is no longer on ${step.from}`);
    }
    if (step.kind === 'offline') {
      if (here.state !== 'shutoff')
        throw new StepSkipped(`${step.vm} is ${here.state} on ${step.from}, not shut off`);
    } else if (here.state !== 'running') {
      throw new StepSkipped(`${step.vm} is ${here.state} on ${step.from}, not running`);
    }
    const elsewhere = presences.filter(
      (p) => p.hostId !== step.from && (p.state === 'running' || p.state === 'paused'),
    );
    if (elsewhere.length > 0) {
      throw new StepSkipped(
        `${step.vm} is also ${elsewhere.map((p) => `${p.state} on ${p.hostId}`).join(', ')}`,
      );
    }
    const vm = await this.vmInfo(step.from, step.vm);
    if (!vm) throw new StepSkipped(`${step.vm} is not listed on ${step.from}`);

    const hosts = await this.call('listHosts', this.hv.listHosts());
    if (!hosts.some((h) => h.id === step.to))
      throw new StepSkipped(`destination ${step.to} is not a known host`);
    if (hooks.isHostActive && !(await hooks.isHostActive(step.to))) {
      throw new StepSkipped(`destination ${step.to} is not active`);
    }
    let sample;
    try {
      sample = await this.call('sampleHost', this.hv.sampleHost(step.to));
    } catch (err) {
      throw new StepSkipped(`destination ${step.to} does not answer: ${errorMessage(err)}`, { cause: err });
    }
    if (step.kind !== 'offline') {
      const freeMiB = sample.memTotalMiB - sample.memUsedMiB - this.options.memReserveMiB;
      if (freeMiB < vm.memMiB) {
        throw new StepSkipped(
          `destination ${step.to} has ${Math.round(freeMiB)} MiB free, ${step.vm} needs ${vm.memMiB} MiB`,
        );
      }
      const compatible = await this.call('cpuCompatible', this.hv.cpuCompatible(step.vm, step.from, step.to));
      if (!compatible) {
        throw new StepSkipped(`${step.to} cannot run the CPU model ${vm.cpuModel ?? '?'} of ${step.vm}`);
      }
    }
    if (step.kind === 'live') {
      const local = vm.disks.filter((d) => !d.shared);
      if (local.length > 0) {
        throw new StepSkipped(
          `live migration needs shared storage; local disks: ${local.map((d) => d.target).join(', ')}`,
        );
      }
    }
    if (step.kind === 'block') {
      if (!policy.allowBlockMigration) throw new StepSkipped('the policy forbids block migration');
      const shared = vm.disks.filter((d) => d.shared);
      if (shared.length > 0) {
        throw new StepSkipped(
          `block migration would copy shared disks onto themselves: ${shared.map((d) => d.target).join(', ')}`,
        );
      }
    }
    // What the configuration says about the disks, proven on both ends (throws StorageCheckError).
    const proof = await new StorageCheck(this.hv, {
      callTimeoutMs: this.options.callTimeoutMs,
      logger: this.log,
    }).verify({ vm, from: step.from, to: step.to, kind: step.kind });
    if (step.kind === 'live' && proof.shared.length > 0) this.storageVerified.add(step.vm);
    if (step.kind === 'block') {
      const prep = new BlockDestination(this.hv, {
        callTimeoutMs: this.options.callTimeoutMs,
        logger: this.log,
      });
      this.blockPrepared.set(
        step.vm,
        await prep.prepare({ vm, from: step.from, to: step.to, mode: policy.blockCopy }),
      );
    }
    return vm;
  }

  /** The migrate call failed or timed out: it may still have started; look before deciding. */
  private async afterFailedStart(
    job: MigrationJobData,
    schedule: WatchdogSchedule,
    vm: VmInfo,
    err: unknown,
    calledAtMs: number,
    hooks: RunHooks,
    log: Logger,
  ): Promise<MigrationReport> {
    const { step } = job;
    let stats: MigrationJob | null = null;
    try {
      stats = await this.call('jobStats', this.hv.jobStats(step.from, step.vm));
    } catch (inner) {
      // Gone from the source: the answer raced the end of a migration that may have completed.
      if (errorCode(inner) === 'no_domain') {
        const landed = await this.landedOnDestination(job, schedule, vm, calledAtMs, log);
        if (landed) return landed;
      }
      // The monitor does not answer either: the migration may well be running behind it. Watch it.
      if (!(inner instanceof CallTimeout) || !(err instanceof CallTimeout)) {
        throw new MigrationStartError(
          `migration start failed (${errorMessage(err)}) and its state is unknown (${errorMessage(inner)})`,
          true,
          { cause: err },
        );
      }
    }
    if (stats === null || stats.type === 'active') {
      log.warn({ err: errorMessage(err) }, 'migrate call failed but the migration may run: watching it');
      const startedAtMs = stats === null ? calledAtMs : this.hv.clock.now() - stats.elapsedMs;
      return this.watch({
        job,
        vm,
        schedule,
        watchdog: this.newWatchdog(schedule, startedAtMs),
        handle: null,
        adopted: true,
        startedAtMs,
        bandwidthMiBps: hooks.bandwidthShareMiBps?.() ?? null,
        hooks,
        log,
      });
    }
    // No job on the source any more: where the VM runs says whether the call's error raced a completion
    // (a refusal of the request itself moved nothing).
    const code = errorCode(err);
    if (code !== 'invalid_argument' && code !== 'migrate_unsafe' && code !== 'cpu_incompatible') {
      const landed = await this.landedOnDestination(job, schedule, vm, calledAtMs, log);
      if (landed) return landed;
    }
    if (
      code === 'no_domain' ||
      code === 'operation_invalid' ||
      code === 'migrate_unsafe' ||
      code === 'cpu_incompatible'
    ) {
      throw new StepSkipped(`the hypervisor refused the migration: ${errorMessage(err)}`, { cause: err });
    }
    throw new MigrationStartError(
      `migration did not start: ${errorMessage(err)}`,
      isTransient(err) || err instanceof CallTimeout,
      {
        cause: err,
      },
    );
  }

  /**
   * After a migrate call that failed: when the VM runs on the destination and nowhere else, the migration
   * this run started completed (the error raced its end). Null otherwise.
   */
  private async landedOnDestination(
    job: MigrationJobData,
    schedule: WatchdogSchedule,
    vm: VmInfo,
    calledAtMs: number,
    log: Logger,
  ): Promise<MigrationReport | null> {
    const { step } = job;
    if (step.kind === 'offline' || step.from === step.to) return null;
    const presences = await this.call('locateVm', this.hv.locateVm(step.vm)).catch(() => null);
    const live = (presences ?? []).filter((p) => p.state !== 'shutoff');
    if (live.length !== 1 || live[0]?.hostId !== step.to || live[0].state !== 'running') return null;
    log.info({}, 'the migrate call failed but the VM runs on the destination: it completed');
    return this.finish(
      {
        job,
        vm,
        schedule,
        watchdog: this.newWatchdog(schedule, calledAtMs),
        handle: null,
        adopted: false,
        startedAtMs: calledAtMs,
        bandwidthMiBps: null,
        hooks: {},
        log,
      },
      { result: 'completed', error: null, stats: null },
      [],
      null,
    );
  }

  private async watch(ctx: WatchContext): Promise<MigrationReport> {
    const { job, watchdog, hooks, log } = ctx;
    const { step } = job;
    const clock = this.hv.clock;
    const records: WatchdogRecord[] = [];
    let settled: MigrationOutcome | null = null;
    let wake = new AbortController();
    const wakeUp = (): void => wake.abort();
    ctx.handle?.done.then(
      (o) => {
        settled = o;
        wakeUp();
      },
      () => undefined,
    );
    const unsubscribe = this.hv.subscribe((event) => {
      if (event.vmId !== step.vm) return;
      if (event.kind === 'job-completed' || event.kind === 'lifecycle') wakeUp();
    });
    let operatorAbortSent = false;
    let inactivePolls = 0;
    let stuckCounted = false;
    let firstAbortAtMs: number | null = null;
    let bandwidth = ctx.bandwidthMiBps;
    let endReason: string | null = null;
    let stuckEnd = false;
    this.metrics?.migrationsRunning.inc();
    if (ctx.adopted) {
      for (const a of watchdog.catchUp(clock.now())) await this.carryOut(ctx, a, records);
    }
    try {
      for (;;) {
        if (hooks.signal?.aborted) throw new RunnerDetached();
        if (settled !== null) break;
        // Decisions due by time (deadline, a stall window run out) act before the next poll's round trip.
        for (const action of watchdog.tick(clock.now())) {
          if (action.kind === 'abort' && firstAbortAtMs === null) firstAbortAtMs = clock.now();
          await this.carryOut(ctx, action, records);
        }
        const now = clock.now();
        let stats: MigrationJob | null = null;
        let error: string | undefined;
        try {
          stats = await this.call('jobStats', this.hv.jobStats(step.from, step.vm));
        } catch (err) {
          // The VM left the source: the migration is over (the outcome is read from the hosts).
          if (errorCode(err) === 'no_domain') break;
          error = errorMessage(err);
        }
        if (settled !== null) break;
        if (stats !== null && stats.type !== 'active') {
          inactivePolls++;
          // Adopted (no handle): the job is over. With a handle: give `done` a few polls to settle.
          if (ctx.handle === null || inactivePolls >= 3) break;
        } else {
          inactivePolls = 0;
        }
        const actions = watchdog.observe(
          error === undefined ? { atMs: now, job: stats } : { atMs: now, job: stats, error },
        );
        const operator = hooks.abortRequested?.() ?? null;
        if (operator !== null && !operatorAbortSent) {
          operatorAbortSent = true;
          actions.push(...watchdog.requestAbort(now));
        }
        for (const action of actions) {
          if (action.kind === 'stuck') stuckCounted = true;
          if (action.kind === 'unstuck') stuckCounted = false;
          if (action.kind === 'abort' && firstAbortAtMs === null) firstAbortAtMs = now;
          await this.carryOut(ctx, action, records);
        }
        const share = hooks.bandwidthShareMiBps?.() ?? null;
        if (share !== null && share !== bandwidth && watchdog.state.phase !== 'aborting') {
          try {
            await this.call('setMaxBandwidth', this.hv.setMaxBandwidth(step.from, step.vm, share));
            bandwidth = share;
          } catch (err) {
            log.warn({ err: errorMessage(err) }, 'could not change the bandwidth cap');
          }
        }
        hooks.onProgress?.(this.progress(ctx, stats, bandwidth));
        const s = watchdog.state;
        if (firstAbortAtMs !== null && clock.now() - firstAbortAtMs >= this.options.abortSettleMs) {
          endReason = `abort issued ${Math.round((clock.now() - firstAbortAtMs) / 1000)} s ago has not ended the migration`;
          stuckEnd = true;
          break;
        }
        if (
          s.stuck &&
          clock.now() - s.lastAnswerAtMs >= this.options.stuckGiveUpMs &&
          clock.now() - s.startedAtMs >= ctx.schedule.deadlineMs
        ) {
          endReason = `no answer from ${step.from} for ${Math.round((clock.now() - s.lastAnswerAtMs) / 1000)} s`;
          stuckEnd = true;
          break;
        }
        if (wake.signal.aborted) wake = new AbortController();
        // Sleep until the next poll or the watchdog's next due moment, whichever comes first (a timer on
        // the clock: a deadline between polls fires at its moment).
        const dueAtMs = watchdog.nextDueAtMs();
        const sleepMs =
          dueAtMs === null
            ? this.options.pollIntervalMs
            : Math.max(1, Math.min(this.options.pollIntervalMs, dueAtMs - clock.now()));
        try {
          await clock.sleep(sleepMs, AbortSignal.any([wake.signal, ...(hooks.signal ? [hooks.signal] : [])]));
        } catch {
          // woken early by an event, the end of the migration or the signal: the loop looks again
          if (wake.signal.aborted) wake = new AbortController();
        }
      }
    } finally {
      unsubscribe();
      this.metrics?.migrationsRunning.dec();
      if (stuckCounted) this.metrics?.migrationsStuck.dec();
    }
    if (ctx.handle !== null && settled === null && !stuckEnd) {
      try {
        settled = await this.call('migration end', ctx.handle.done, this.options.abortSettleMs);
      } catch {
        // the end is determined from the evidence below
      }
    }
    return this.finish(ctx, settled, records, stuckEnd ? endReason : null);
  }

  private async carryOut(
    ctx: WatchContext,
    action: WatchdogAction,
    records: WatchdogRecord[],
  ): Promise<void> {
    const { step } = ctx.job;
    const now = this.hv.clock.now();
    const record: WatchdogRecord = { atMs: now, action, error: null };
    records.push(record);
    this.metrics?.watchdogActions.inc({ action: action.kind, profile: ctx.schedule.profile });
    const log = ctx.log;
    try {
      switch (action.kind) {
        case 'set-max-downtime':
          log.info({ maxDowntimeMs: action.maxDowntimeMs, reason: action.reason }, 'raising max downtime');
          await this.call('setMaxDowntime', this.hv.setMaxDowntime(step.from, step.vm, action.maxDowntimeMs));
          break;
        case 'auto-converge':
          log.info({ graceMs: action.graceMs }, 'stalled: waiting for auto-converge to throttle the guest');
          break;
        case 'post-copy':
          log.warn({ reason: action.reason }, 'switching to post-copy');
          await this.call('startPostCopy', this.hv.startPostCopy(step.from, step.vm));
          break;
        case 'abort':
          log.warn(
            { reason: action.reason, repeat: action.repeat, lastJob: ctx.watchdog.state.lastJob },
            'aborting migration',
          );
          ctx.hooks.onAbortIssued?.(now, action.reason);
          await this.call('abortJob', this.hv.abortJob(step.from, step.vm));
          break;
        case 'stuck':
          this.metrics?.migrationsStuck.inc();
          log.error(
            { silentMs: action.silentMs, lastJob: ctx.watchdog.state.lastJob, host: step.from },
            'migration stuck: the source does not answer progress calls',
          );
          break;
        case 'unstuck':
          this.metrics?.migrationsStuck.dec();
          log.warn({ silentMs: action.silentMs }, 'migration answers again');
          break;
      }
    } catch (err) {
      record.error = errorMessage(err);
      log.warn(
        { action: action.kind, err: record.error },
        'watchdog action failed; it is retried by the next poll if still needed',
      );
    }
  }

  private progress(
    ctx: WatchContext,
    stats: MigrationJob | null,
    bandwidth: number | null,
  ): MigrationProgress {
    const s = ctx.watchdog.state;
    const last = stats ?? s.lastJob;
    const total = last ? last.memTotalMiB + last.diskTotalMiB : 0;
    const remaining = last ? last.memRemainingMiB + last.diskRemainingMiB : 0;
    const phase: RunPhase =
      s.phase === 'aborting' ? 'aborting' : s.phase === 'post-copy' ? 'post-copy' : 'migrating';
    return {
      vmId: ctx.job.step.vm,
      from: ctx.job.step.from,
      to: ctx.job.step.to,
      phase,
      percent:
        total > 0 ? Math.round(Math.min(100, Math.max(0, (1 - remaining / total) * 100)) * 10) / 10 : 0,
      remainingMiB: Math.round(remaining * 10) / 10,
      iteration: last?.iteration ?? 0,
      expectedDowntimeMs: last?.downtimeMs ?? 0,
      maxDowntimeMs: s.maxDowntimeMs,
      bandwidthMiBps: bandwidth,
      elapsedS: Math.round((this.hv.clock.now() - ctx.startedAtMs) / 100) / 10,
      stuck: s.stuck,
      adopted: ctx.adopted,
    };
  }

  /** Decides the outcome from the handle and the evidence; verifies; repairs only what the evidence proves. */
  private async finish(
    ctx: WatchContext,
    settled: MigrationOutcome | null,
    records: WatchdogRecord[],
    stuckReason: string | null,
  ): Promise<MigrationReport> {
    const { job, watchdog, log } = ctx;
    const { step } = job;
    const abortReason = watchdog.state.abortReason;
    let outcome: RunOutcome;
    let reason: string;
    let stats: MigrationJob | null = settled?.stats ?? null;

    if (stuckReason !== null) {
      outcome = 'stuck';
      reason = stuckReason;
    } else if (settled !== null) {
      outcome =
        settled.result === 'completed' ? 'completed' : abortReason !== null ? 'aborted' : settled.result;
      reason = settled.result === 'completed' ? 'completed' : (settled.error ?? settled.result);
    } else {
      // No handle (adopted) or it never settled: the hosts say how it ended.
      const presences = await this.call('locateVm', this.hv.locateVm(step.vm)).catch(() => null);
      const runningOn = (presences ?? []).filter((p) => p.state === 'running').map((p) => p.hostId);
      if (runningOn.length === 1 && runningOn[0] === step.to) {
        outcome = 'completed';
        reason = 'completed (seen on the destination)';
      } else if (runningOn.length === 1 && runningOn[0] === step.from) {
        outcome = abortReason !== null ? 'aborted' : 'failed';
        reason =
          abortReason !== null ? `aborted: ${abortReason}` : 'the migration ended with the VM on the source';
      } else {
        outcome = 'stuck';
        reason = `the migration ended with the VM running on [${runningOn.join(', ')}]`;
      }
    }
    if (outcome === 'aborted' && abortReason !== null)
      reason = `aborted: ${abortReason}${settled?.error ? ` (${settled.error})` : ''}`;

    if (outcome === 'completed' && stats === null) {
      stats =
        (await this.call('completedJobStats', this.hv.completedJobStats(step.to, step.vm)).catch(
          () => null,
        )) ??
        (await this.call('completedJobStats', this.hv.completedJobStats(step.from, step.vm)).catch(
          () => null,
        ));
    }
    const problems: string[] = [];
    let evidence: VmEvidence | null = null;
    if (outcome === 'completed') {
      problems.push(...(await this.verifyOnDestination(job)));
    } else {
      evidence = await this.confirmOnSource(ctx, outcome, settled, problems);
      if (evidence?.diagnosis !== 'ok' && outcome !== 'stuck') {
        log.error({ evidence }, 'after the migration ended the VM is not running on its source only');
      }
    }
    const last = stats ?? watchdog.state.lastJob;
    const lastActive = watchdog.state.lastJob?.type === 'active' ? watchdog.state.lastJob : null;
    const endedAtMs = this.hv.clock.now();
    const report: MigrationReport = {
      planId: job.planId,
      vmId: step.vm,
      from: step.from,
      to: step.to,
      kind: step.kind,
      outcome,
      reason,
      adopted: ctx.adopted,
      startedAtMs: ctx.startedAtMs,
      endedAtMs,
      durationS: (endedAtMs - ctx.startedAtMs) / 1000,
      downtimeMs: outcome === 'completed' && stats !== null ? stats.downtimeMs : null,
      iterations: last ? last.iteration + 1 : 0,
      transferMiB: last ? last.memProcessedMiB + last.diskProcessedMiB : 0,
      memMiB: ctx.vm.memMiB,
      dirtyMiBps: lastActive ? Math.round(lastActive.dirtyMiBps * 10) / 10 : null,
      maxDowntimeMs: watchdog.state.maxDowntimeMs,
      downtimeBudgetMs: ctx.schedule.downtimeBudgetMs ?? job.policy.defaultDowntimeBudgetMs,
      bandwidthMiBps: ctx.bandwidthMiBps,
      profile: ctx.schedule.profile,
      abortReason,
      watchdog: records,
      problems,
      evidence,
    };
    this.observe(report);
    log.info(
      {
        outcome,
        reason,
        durationS: report.durationS,
        downtimeMs: report.downtimeMs,
        iterations: report.iterations,
        problems,
      },
      'migration ended',
    );
    return report;
  }

  /** After a completion: the VM runs on the destination only, is defined there and not on the source. */
  private async verifyOnDestination(job: MigrationJobData): Promise<string[]> {
    const { step } = job;
    const problems: string[] = [];
    let presences: VmPresence[] | null = null;
    // A slow answer is no verdict: on a loaded host the location calls can take longer than one call
    // timeout, so ask up to three times before reporting that the end could not be verified.
    for (let attempt = 1; presences === null; attempt++) {
      try {
        presences = await this.call('locateVm', this.hv.locateVm(step.vm));
      } catch (err) {
        if (!(err instanceof CallTimeout) || attempt >= 3) return [`could not verify: ${errorMessage(err)}`];
      }
    }
    const dest = presences.find((p) => p.hostId === step.to);
    if (!dest || dest.state !== 'running') problems.push(`not running on ${step.to}`);
    else if (!dest.persistent) problems.push(`not defined (persistent) on ${step.to}`);
    for (const p of presences) {
      if (p.hostId === step.to) continue;
      if (p.state === 'shutoff') problems.push(`still defined on ${p.hostId}`);
      else problems.push(`also ${p.state} on ${p.hostId}`);
    }
    return problems;
  }

  /**
   * After an abort or failure: confirm the VM runs on the source and nothing is left on the destination.
   * Repairs only what the evidence proves (a leftover paused copy; paused on both ends with a proven outcome).
   */
  private async confirmOnSource(
    ctx: WatchContext,
    outcome: RunOutcome,
    settled: MigrationOutcome | null,
    problems: string[],
  ): Promise<VmEvidence | null> {
    const { step } = ctx.job;
    const hint = {
      from: step.from,
      to: step.to,
      outcome: settled === null ? null : settled.result,
      postCopy: ctx.watchdog.state.phase === 'post-copy' || (ctx.watchdog.state.lastJob?.postCopy ?? false),
    } as const;
    let evidence: VmEvidence;
    try {
      evidence = await gatherEvidence(this.hv, step.vm, this.options.callTimeoutMs, hint);
    } catch (err) {
      problems.push(`could not gather evidence: ${errorMessage(err)}`);
      return null;
    }
    if (outcome !== 'stuck') {
      for (const action of evidence.actions.filter((a) => !a.forcing)) {
        try {
          ctx.log.warn({ action }, 'recovering from evidence');
          await applyRecoveryAction(this.hv, step.vm, action, this.options.callTimeoutMs);
        } catch (err) {
          problems.push(`recovery ${action.kind} on ${action.hostId} failed: ${errorMessage(err)}`);
        }
      }
      if (evidence.actions.some((a) => !a.forcing)) {
        evidence = await gatherEvidence(this.hv, step.vm, this.options.callTimeoutMs, hint).catch(
          () => evidence,
        );
      }
    }
    const runningSrc = evidence.hosts.find((h) => h.hostId === step.from && h.state === 'running');
    const onDest = evidence.hosts.find((h) => h.hostId === step.to && h.state !== 'shutoff');
    if (!runningSrc) problems.push(`not running on the source ${step.from}`);
    if (onDest) problems.push(`still ${onDest.state} on the destination ${step.to}`);
    return evidence;
  }

  private async finishAdoptedCompletion(job: MigrationJobData, log: Logger): Promise<MigrationReport> {
    const { step } = job;
    const stats =
      (await this.call('completedJobStats', this.hv.completedJobStats(step.to, step.vm)).catch(() => null)) ??
      (await this.call('completedJobStats', this.hv.completedJobStats(step.from, step.vm)).catch(() => null));
    const vm = await this.vmInfo(step.to, step.vm).catch(() => null);
    const memMiB = vm?.memMiB ?? (stats ? stats.memTotalMiB : 0);
    const schedule = this.scheduleFor(job, Math.max(1, memMiB));
    const now = this.hv.clock.now();
    const startedAtMs = now - (stats?.elapsedMs ?? 0);
    log.info({}, 'the migration of an earlier attempt finished while no worker watched it');
    return this.finish(
      {
        job,
        vm: { memMiB },
        schedule,
        watchdog: this.newWatchdog(schedule, startedAtMs),
        handle: null,
        adopted: true,
        startedAtMs,
        bandwidthMiBps: null,
        hooks: {},
        log,
      },
      { result: 'completed', error: null, stats },
      [],
      null,
    );
  }

  private async finishOffline(
    job: MigrationJobData,
    schedule: WatchdogSchedule,
    vm: VmInfo,
    handle: MigrationHandle,
    startedAtMs: number,
    log: Logger,
  ): Promise<MigrationReport> {
    let settled: MigrationOutcome | null = null;
    try {
      settled = await this.call('offline migration', handle.done, this.options.migrateCallTimeoutMs);
    } catch {
      // determined from the evidence
    }
    const ctx: WatchContext = {
      job,
      vm,
      schedule,
      watchdog: this.newWatchdog(schedule, startedAtMs),
      handle,
      adopted: false,
      startedAtMs,
      bandwidthMiBps: null,
      hooks: {},
      log,
    };
    if (settled?.result === 'completed') {
      const presences = await this.call('locateVm', this.hv.locateVm(job.step.vm)).catch(() => []);
      const problems: string[] = [];
      if (!presences.some((p) => p.hostId === job.step.to && p.persistent))
        problems.push(`not defined on ${job.step.to}`);
      if (presences.some((p) => p.hostId === job.step.from))
        problems.push(`still defined on ${job.step.from}`);
      const report = await this.finish(ctx, settled, [], null);
      report.problems = problems;
      return report;
    }
    return this.finish(ctx, settled, [], settled === null ? 'offline migration did not end' : null);
  }

  private observe(report: MigrationReport): void {
    const m = this.metrics;
    if (!m) return;
    m.migrations.inc({ result: report.outcome, kind: report.kind });
    m.migrationDurationSeconds.observe({ result: report.outcome }, report.durationS);
    if (m.perVmSeries && report.outcome === 'completed') m.vmMigrations.inc({ vm: report.vmId });
    if (report.downtimeMs !== null) {
      m.migrationDowntimeSeconds.observe(report.downtimeMs / 1000);
      if (report.downtimeBudgetMs > 0) {
        m.migrationDowntimeOverBudgetRatio.observe(report.downtimeMs / report.downtimeBudgetMs);
        // Initialised at 0 by the first measured downtime, so a rate() over it works before any overrun.
        m.migrationDowntimeOverBudget.inc(
          { kind: report.kind },
          report.downtimeMs > report.downtimeBudgetMs ? 1 : 0,
        );
      }
    }
  }
}

function diskGiB(vm: VmInfo | null): number {
  if (!vm) return 0;
  return vm.disks.filter((d) => !d.shared).reduce((sum, d) => sum + (d.capacityMiB ?? 0), 0) / 1024;
}
