// Watching one running migration: polls its job, feeds the Watchdog, carries out what it decides (max
// downtime, post-copy, abort), follows the link share, reports progress, and wakes early on the hypervisor's
// events and on the watchdog's due moments. It decides nothing about the end; the finisher does.
import { errorCode, errorMessage } from '../domain/errors.js';
import type {
  HypervisorEvents,
  MigrationControl,
  MigrationJob,
  MigrationOutcome,
} from '../hypervisor/hypervisor.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import { callWithTimeout } from './call-timeout.js';
import type { ExecutorOptions } from './executor-options.js';
import {
  RunnerDetached,
  type MigrationProgress,
  type RunPhase,
  type WatchContext,
  type WatchdogRecord,
} from './migration-step.js';
import type { WatchdogAction } from './watchdog.js';

/** The hypervisor roles a watch uses: the job, its controls, and events to wake on. */
export type WatchHypervisor = MigrationControl & HypervisorEvents;

/** How each watchdog report moves drover_migrations_stuck (an unresponsive monitor, a stalled post-copy). */
const STUCK_DELTA: Partial<Record<WatchdogAction['kind'], 1 | -1>> = {
  stuck: 1,
  unstuck: -1,
  'post-copy-stalled': 1,
  'post-copy-moving': -1,
};

/** How a watch ended: the handle's outcome when it settled, the watchdog's records, why it gave up (stuck). */
export interface WatchEnd {
  settled: MigrationOutcome | null;
  records: WatchdogRecord[];
  /** Set when the watch gave up on a migration that does not end (an abort that did not take, no answers). */
  stuckReason: string | null;
}

/** The job has moved data or moves it now: its set-up is over. */
function movesData(job: MigrationJob): boolean {
  return job.memProcessedMiB > 0 || job.diskProcessedMiB > 0 || job.transferMiBps > 0;
}

export class MigrationWatch {
  constructor(
    private readonly hv: WatchHypervisor,
    private readonly options: ExecutorOptions,
    private readonly metrics: DroverMetrics | undefined,
  ) {}

  private call<T>(name: string, promise: Promise<T>, timeoutMs = this.options.callTimeoutMs): Promise<T> {
    return callWithTimeout(this.hv.clock, name, timeoutMs, promise);
  }

  /**
   * Watches until the migration ends, the watchdog gives up on it (stuck) or the signal stops the watch
   * (RunnerDetached). Resolves with what the end needs to decide the outcome.
   */
  async watch(ctx: WatchContext): Promise<WatchEnd> {
    const { job, watchdog, hooks, log } = ctx;
    const { step } = job;
    const clock = this.hv.clock;
    const records: WatchdogRecord[] = [...(ctx.earlyRecords ?? [])];
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
    const unsubscribeHv = this.hv.subscribe((event) => {
      if (event.vmId !== step.vm) return;
      if (event.kind === 'job-completed' || event.kind === 'lifecycle') wakeUp();
    });
    const unsubscribeShare = hooks.onShareChange?.(wakeUp);
    const unsubscribe = (): void => {
      unsubscribeHv();
      unsubscribeShare?.();
    };
    let operatorAbortSent = false;
    let inactivePolls = 0;
    /** Reports of this migration counted in drover_migrations_stuck (an unresponsive monitor, a stalled post-copy). */
    let stuckCounted = 0;
    let firstAbortAtMs: number | null = records.find((r) => r.action.kind === 'abort')?.atMs ?? null;
    let bandwidth = ctx.bandwidthMiBps;
    let endReason: string | null = null;
    let stuckEnd = false;
    let sending = false;
    let heldSinceMs: number | null = null;
    this.metrics?.migrationsRunning.inc();
    if (ctx.adopted) {
      for (const a of watchdog.catchUp(clock.now())) await this.carryOut(ctx, a, records);
    }
    try {
      for (;;) {
        if (hooks.signal?.aborted) throw new RunnerDetached();
        if (settled !== null) break;
        // Held back past its set-up: that time is the executor's, not the migration's.
        if (heldSinceMs !== null) {
          const t = clock.now();
          watchdog.postpone(t - heldSinceMs);
          heldSinceMs = t;
        }
        // Decisions due by time (deadline, a stall window run out) act before the next poll's round trip.
        for (const action of watchdog.tick(clock.now())) {
          if (action.kind === 'abort' && firstAbortAtMs === null) firstAbortAtMs = clock.now();
          await this.carryOut(ctx, action, records);
        }
        const now = clock.now();
        let stats: MigrationJob | null = null;
        let error: string | undefined;
        try {
          stats = await this.pollWithTimer(ctx, records, (at) => {
            firstAbortAtMs ??= at;
          });
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
        const answeredAtMs = clock.now();
        if (!sending && stats !== null && stats.type === 'active' && movesData(stats)) {
          sending = true;
          hooks.onSending?.();
        }
        if (sending && (hooks.heldBack?.() ?? false)) heldSinceMs ??= now;
        else heldSinceMs = null;
        const actions = watchdog.observe(
          error === undefined
            ? { atMs: now, job: stats, answeredAtMs }
            : { atMs: now, job: stats, error, answeredAtMs },
        );
        const operator = hooks.abortRequested?.() ?? null;
        if (operator !== null && !operatorAbortSent) {
          operatorAbortSent = true;
          actions.push(...watchdog.requestAbort(now));
        }
        for (const action of actions) {
          const stuck = STUCK_DELTA[action.kind] ?? 0;
          if (stuck !== 0) {
            stuckCounted += stuck;
            this.metrics?.migrationsStuck.inc(stuck);
          }
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
      if (stuckCounted > 0) this.metrics?.migrationsStuck.dec(stuckCounted);
    }
    if (ctx.handle !== null && settled === null && !stuckEnd) {
      try {
        settled = await this.call('migration end', ctx.handle.done, this.options.abortSettleMs);
      } catch {
        // the end is determined from the evidence below
      }
    }
    return { settled, records, stuckReason: stuckEnd ? endReason : null };
  }

  /**
   * While the migrate call waits for its job to show on the source (seconds on a busy host), the deadline
   * holds: a timer on the clock fires at it and the abort goes out then, not once the call has answered.
   * Returns what was carried out.
   */
  async beforeHandle(ctx: WatchContext, calling: Promise<unknown>): Promise<WatchdogRecord[]> {
    const records: WatchdogRecord[] = [];
    await this.carryOutWhileWaiting(ctx, calling, records);
    return records;
  }

  /**
   * One job-stats poll. A poll can take long on a busy host (a slow monitor answers in seconds): the
   * watchdog's due moment (deadline, a stall window run out) does not wait for it. A timer on the clock
   * fires at that moment and what falls due is carried out while the question is still in flight.
   */
  private async pollWithTimer(
    ctx: WatchContext,
    records: WatchdogRecord[],
    onAbort: (atMs: number) => void,
  ): Promise<MigrationJob> {
    const { step } = ctx.job;
    const poll = this.call('jobStats', this.hv.jobStats(step.from, step.vm));
    await this.carryOutWhileWaiting(ctx, poll, records, onAbort);
    return poll;
  }

  /**
   * Until `pending` settles, a timer on the clock fires at each of the watchdog's due moments and what
   * falls due is carried out then. Ends when `pending` settles, when nothing is due any more, or when a
   * due moment brings no action (a stall needs a new answer to decide: the caller waits for it).
   */
  private async carryOutWhileWaiting(
    ctx: WatchContext,
    pending: Promise<unknown>,
    records: WatchdogRecord[],
    onAbort?: (atMs: number) => void,
  ): Promise<void> {
    const { watchdog } = ctx;
    const clock = this.hv.clock;
    const answered = pending.then(
      () => true,
      () => true,
    );
    for (;;) {
      const dueAtMs = watchdog.nextDueAtMs();
      if (dueAtMs === null) return;
      const cancel = new AbortController();
      const fired = clock.sleep(Math.max(0, dueAtMs - clock.now()), cancel.signal).then(
        () => false,
        () => false,
      );
      const done = await Promise.race([answered, fired]);
      cancel.abort();
      if (done) return;
      const actions = watchdog.tick(clock.now());
      for (const action of actions) {
        if (action.kind === 'abort') onAbort?.(clock.now());
        await this.carryOut(ctx, action, records);
      }
      if (actions.length === 0) return;
    }
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
        case 'post-copy-stalled':
          // Counted stuck, left alone: pausing it would end the migration failed with the guest split, and
          // libvirt may then stop the destination's copy before it has seen the stream break (the guest's
          // newest memory with it; seen on the lab). Over TCP the stream carries on once the link is back.
          log.error(
            { stalledMs: action.stalledMs, lastJob: ctx.watchdog.state.lastJob },
            'post-copy sends nothing: the guest waits on the destination for its memory until the stream moves again',
          );
          break;
        case 'post-copy-moving':
          log.warn({ stalledMs: action.stalledMs }, 'post-copy sends again');
          break;
        case 'abort':
          log.warn(
            { reason: action.reason, repeat: action.repeat, lastJob: ctx.watchdog.state.lastJob },
            'aborting migration',
          );
          ctx.hooks.onAbortIssued?.(now, action.reason, ctx.watchdog.state.abortDueAtMs ?? now);
          await this.call('abortJob', this.hv.abortJob(step.from, step.vm));
          break;
        case 'stuck':
          log.error(
            { silentMs: action.silentMs, lastJob: ctx.watchdog.state.lastJob, host: step.from },
            'migration stuck: the source does not answer progress calls',
          );
          break;
        case 'unstuck':
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
      throttlePct: last?.autoConvergeThrottlePct ?? 0,
      bandwidthMiBps: bandwidth,
      elapsedS: Math.round((this.hv.clock.now() - ctx.startedAtMs) / 100) / 10,
      stuck: s.stuck,
      adopted: ctx.adopted,
    };
  }
}
