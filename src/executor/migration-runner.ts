// Runs one plan step against a Hypervisor: look at the real state (adopt, skip or continue), pre-check both
// ends (pre-check.ts), start the migration, watch it with the Watchdog (migration-watch.ts), then verify and
// report (migration-finisher.ts). No Redis here: the worker around it owns queues, slots and history, so a
// runner on the simulator's virtual clock is deterministic.
import { pino, type Logger } from 'pino';
import { StepSkipped, errorCode, errorMessage } from '../domain/errors.js';
import type {
  MigrationHandle,
  MigrationJob,
  MigrationOutcome,
  MigrationRequest,
  VmInfo,
  VmPresence,
} from '../hypervisor/hypervisor.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import { BlockDestination } from './block-destination.js';
import { CallTimeout, callWithTimeout } from './call-timeout.js';
import type { ExecutorOptions } from './executor-options.js';
import { MigrationFinisher } from './migration-finisher.js';
import {
  END_SETTLE_MS,
  END_SETTLE_POLL_MS,
  MigrationStartError,
  diskGiB,
  isTransient,
  listedVm,
  type MigrationJobData,
  type MigrationReport,
  type RunHooks,
  type RunnerHypervisor,
  type WatchContext,
} from './migration-step.js';
import { MigrationWatch } from './migration-watch.js';
import { PreCheck } from './pre-check.js';
import { Watchdog } from './watchdog.js';
import { watchdogSchedule, type WatchdogSchedule } from './watchdog-schedule.js';

export {
  MigrationStartError,
  RunnerDetached,
  isTransient,
  type MigrationJobData,
  type MigrationProgress,
  type MigrationReport,
  type RunHooks,
  type RunOutcome,
  type RunPhase,
  type RunnerHypervisor,
  type WatchdogRecord,
} from './migration-step.js';

/** How a watch starts: its handle (null when adopted or unknown), when it started, the link share, hooks. */
interface WatchStart {
  handle: MigrationHandle | null;
  adopted: boolean;
  startedAtMs: number;
  bandwidthMiBps?: number | null;
  hooks?: RunHooks;
}

/**
 * A migration at its end, seen from the hosts: the source holds the VM paused (switched over, not yet let
 * go), or the destination holds it paused (not resumed yet) while the source no longer runs it. A post-copy
 * that failed is no end that settles by itself (it waits for `drover recover`), and a source that runs the
 * VM is no end at all.
 */
function migrationEnding(presences: readonly VmPresence[], from: string, to: string): boolean {
  if (presences.some((p) => p.postCopy === 'failed')) return false;
  const source = presences.find((p) => p.hostId === from);
  const dest = presences.find((p) => p.hostId === to);
  if (source?.state === 'running') return false;
  return source?.state === 'paused' || dest?.state === 'paused';
}

export interface MigrationRunnerDeps {
  hypervisor: RunnerHypervisor;
  options: ExecutorOptions;
  logger?: Logger;
  metrics?: DroverMetrics;
}

export class MigrationRunner {
  private readonly hv: RunnerHypervisor;
  private readonly options: ExecutorOptions;
  private readonly log: Logger;
  private readonly preCheck: PreCheck;
  private readonly watcher: MigrationWatch;
  private readonly finisher: MigrationFinisher;

  constructor(deps: MigrationRunnerDeps) {
    this.hv = deps.hypervisor;
    this.options = deps.options;
    this.log = deps.logger ?? pino({ level: 'silent' });
    this.preCheck = new PreCheck(this.hv, this.options, this.log);
    this.watcher = new MigrationWatch(this.hv, this.options, deps.metrics);
    this.finisher = new MigrationFinisher(this.hv, this.options, deps.metrics);
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

  /** The context of one watched migration, with a new watchdog on the schedule from when it started. */
  private watchContext(
    job: MigrationJobData,
    vm: { memMiB: number },
    schedule: WatchdogSchedule,
    start: WatchStart,
    log: Logger,
  ): WatchContext {
    return {
      job,
      vm: { memMiB: vm.memMiB },
      schedule,
      watchdog: new Watchdog(schedule, start.startedAtMs, {
        stuckAfterMs: this.options.stuckAfterMs,
        abortRetryMs: this.options.abortRetryMs,
      }),
      handle: start.handle,
      adopted: start.adopted,
      startedAtMs: start.startedAtMs,
      bandwidthMiBps: start.bandwidthMiBps ?? null,
      hooks: start.hooks ?? {},
      log,
    };
  }

  /** Watches the migration to its end, then decides, verifies and reports. */
  private async watchAndFinish(ctx: WatchContext): Promise<MigrationReport> {
    const end = await this.watcher.watch(ctx);
    return this.finisher.finish(ctx, end.settled, end.records, end.stuckReason);
  }

  /** Decides, verifies and reports a migration that was not (or no longer) watched. */
  private finishUnwatched(
    ctx: WatchContext,
    settled: MigrationOutcome | null,
    stuckReason: string | null = null,
  ): Promise<MigrationReport> {
    return this.finisher.finish(ctx, settled, [], stuckReason);
  }

  private vmInfo(hostId: string, vmId: string): Promise<VmInfo | null> {
    return listedVm(this.hv, this.options.callTimeoutMs, hostId, vmId);
  }

  /**
   * Runs (or adopts) the step. Resolves with a report for completed, aborted, failed and stuck migrations;
   * throws StepSkipped when the world changed, MigrationStartError when it could not start, RunnerDetached
   * when the signal stopped it.
   */
  async run(job: MigrationJobData, hooks: RunHooks = {}): Promise<MigrationReport> {
    const { step } = job;
    const log = this.log.child({ module: 'executor', planId: job.planId, vm: step.vm });
    // A resumed job may find the earlier attempt's migration at its very end (the source paused or gone, the
    // destination taking over): every answer that races that end is a fact about where the VM is, so look
    // again until it settles, for a bounded time, before deciding what this step still has to do.
    const settleUntil = this.hv.clock.now() + END_SETTLE_MS;
    let presences: VmPresence[];
    let srcJob: MigrationJob | null;
    for (;;) {
      presences = await this.call('locateVm', this.hv.locateVm(step.vm));
      srcJob = null;
      if (presences.some((p) => p.hostId === step.from)) {
        try {
          srcJob = await this.call('jobStats', this.hv.jobStats(step.from, step.vm));
        } catch (err) {
          // Gone from the source between the two answers: the VM moved (a migration just ended). Look again.
          if (errorCode(err) === 'no_domain' && this.hv.clock.now() < settleUntil) continue;
          // The source's monitor does not answer. An earlier attempt may have started a migration that is
          // running behind it: watch it (as stuck) rather than start anything. Otherwise retry later.
          if (!(err instanceof CallTimeout) || !hooks.resumed) throw err;
          log.warn({ err: errorMessage(err) }, 'source does not answer; watching the earlier attempt blind');
          return this.watchAdopted(
            job,
            Math.max(1, step.predicted.transferMiB),
            () => hooks.startedAtMs ?? this.hv.clock.now(),
            hooks,
            log,
          );
        }
      }
      const ending =
        hooks.resumed === true &&
        step.kind !== 'offline' &&
        srcJob?.type !== 'active' &&
        migrationEnding(presences, step.from, step.to);
      if (!ending || this.hv.clock.now() >= settleUntil) break;
      log.info({ presences }, "the earlier attempt's migration is ending: waiting for it to settle");
      await this.hv.clock.sleep(END_SETTLE_POLL_MS);
    }

    // 1. A migration of this VM already in flight from the source: adopt it, never start a second one.
    if (srcJob !== null && srcJob.type === 'active') {
      const { elapsedMs, memTotalMiB } = srcJob;
      log.info({ elapsedMs }, 'adopting a migration already in flight');
      return this.watchAdopted(job, memTotalMiB, () => this.hv.clock.now() - elapsedMs, hooks, log);
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
    const { vm, blockPrepared, storageVerified } = await this.preCheck.run(job, presences, hooks);
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
    // The watchdog starts with the call: its deadline holds while the call waits for the job to show.
    const early = this.watchContext(
      job,
      vm,
      schedule,
      { handle: null, adopted: false, startedAtMs, bandwidthMiBps: bandwidth, hooks },
      log,
    );
    const calling = this.call('migrate', this.hv.migrate(request), this.options.migrateCallTimeoutMs);
    const earlyRecords = step.kind === 'offline' ? [] : await this.watcher.beforeHandle(early, calling);
    let handle: MigrationHandle;
    try {
      handle = await calling;
    } catch (err) {
      return this.afterFailedStart(job, schedule, vm, err, startedAtMs, hooks, log);
    }
    if (step.kind === 'offline') return this.finishOffline(job, schedule, vm, handle, startedAtMs, log);
    const report = await this.watchAndFinish({ ...early, handle, earlyRecords });
    // A block migration that did not go, with the VM back on its source only: the disks made for it go too.
    if (blockPrepared && report.outcome !== 'completed' && report.problems.length === 0)
      await new BlockDestination(this.hv, {
        callTimeoutMs: this.options.callTimeoutMs,
        logger: this.log,
      }).releaseDisks(step.to, blockPrepared);
    return report;
  }

  /**
   * Watches a migration of the step's VM that this run did not start (adopted). The VM's figures from the
   * source are a nicety: without them (the source busy with the migration, or not answering) `fallbackMemMiB`
   * serves. `startedAtMs` is read once they are in.
   */
  private async watchAdopted(
    job: MigrationJobData,
    fallbackMemMiB: number,
    startedAtMs: () => number,
    hooks: RunHooks,
    log: Logger,
  ): Promise<MigrationReport> {
    const vm = await this.vmInfo(job.step.from, job.step.vm).catch(() => null);
    const memMiB = vm?.memMiB ?? fallbackMemMiB;
    const schedule = this.scheduleFor(job, memMiB, diskGiB(vm));
    return this.watchAndFinish(
      this.watchContext(
        job,
        { memMiB },
        schedule,
        { handle: null, adopted: true, startedAtMs: startedAtMs(), hooks },
        log,
      ),
    );
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
      const bandwidthMiBps = hooks.bandwidthShareMiBps?.() ?? null;
      return this.watchAndFinish(
        this.watchContext(
          job,
          vm,
          schedule,
          { handle: null, adopted: true, startedAtMs, bandwidthMiBps, hooks },
          log,
        ),
      );
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
    const ctx = this.watchContext(
      job,
      vm,
      schedule,
      { handle: null, adopted: false, startedAtMs: calledAtMs },
      log,
    );
    return this.finishUnwatched(ctx, { result: 'completed', error: null, stats: null });
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
    const ctx = this.watchContext(
      job,
      { memMiB },
      schedule,
      { handle: null, adopted: true, startedAtMs },
      log,
    );
    return this.finishUnwatched(ctx, { result: 'completed', error: null, stats });
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
    const ctx = this.watchContext(job, vm, schedule, { handle, adopted: false, startedAtMs }, log);
    if (settled?.result === 'completed') {
      const presences = await this.call('locateVm', this.hv.locateVm(job.step.vm)).catch(() => []);
      const problems: string[] = [];
      if (!presences.some((p) => p.hostId === job.step.to && p.persistent))
        problems.push(`not defined on ${job.step.to}`);
      if (presences.some((p) => p.hostId === job.step.from))
        problems.push(`still defined on ${job.step.from}`);
      const report = await this.finishUnwatched(ctx, settled);
      report.problems = problems;
      return report;
    }
    return this.finishUnwatched(ctx, settled, settled === null ? 'offline migration did not end' : null);
  }
}
