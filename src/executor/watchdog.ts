// The watchdog of one migration: a pure state machine over (time, job-stats samples, schedule).
// It does no I/O and never waits: the migration runner feeds it samples and carries out the actions it returns,
// so every decision can be tested on a virtual clock or with hand-made samples.
import type { MigrationJob } from '../hypervisor/hypervisor.js';
import type { WatchdogSchedule } from './watchdog-schedule.js';

export type AbortReason = 'deadline' | 'stalled' | 'operator';

export type WatchdogAction =
  | { kind: 'set-max-downtime'; maxDowntimeMs: number; reason: 'timed' | 'stalled' }
  | { kind: 'auto-converge'; graceMs: number }
  | { kind: 'post-copy'; reason: 'stalled' | 'predicted' }
  | { kind: 'abort'; reason: AbortReason; repeat: boolean }
  /**
   * The post-copy migration sent nothing for this long (a link down): the guest waits on the destination for
   * pages. Reported (stuck), never paused or aborted: TCP carries the stream on once the link is back.
   */
  | { kind: 'post-copy-stalled'; stalledMs: number }
  /** A stalled post-copy sends again, after this long. */
  | { kind: 'post-copy-moving'; stalledMs: number }
  | { kind: 'stuck'; reason: 'unresponsive'; silentMs: number }
  | { kind: 'unstuck'; silentMs: number };

/** One poll: the migration job when the call answered in time, else null with why. */
export interface WatchdogSample {
  /** Clock time of the reading (ms). */
  atMs: number;
  job: MigrationJob | null;
  /** Why `job` is null (the call timed out or failed). */
  error?: string;
  /** When the answer arrived (ms; default atMs): what it proves is known from then on. */
  answeredAtMs?: number;
}

export interface WatchdogOptions {
  /** No answer for this long marks the migration stuck (unresponsive monitor). */
  stuckAfterMs: number;
  /** Re-issue an abort that has not taken effect after this long. */
  abortRetryMs: number;
  /** A fall in remaining data counts as progress only when larger than this fraction of the best so far. */
  progressEpsilon: number;
  /** In post-copy, no byte sent for this long marks the migration stalled. */
  postCopyStallMs: number;
}

export const DEFAULT_WATCHDOG_OPTIONS: WatchdogOptions = {
  stuckAfterMs: 5_000,
  abortRetryMs: 5_000,
  progressEpsilon: 0.01,
  postCopyStallMs: 10_000,
};

const RECENT_SAMPLES = 4;

export type WatchdogPhase = 'watching' | 'auto-converge' | 'post-copy' | 'aborting';

/** What the watchdog knows; exposed read-only for progress reports, logs and tests. */
export interface WatchdogState {
  phase: WatchdogPhase;
  startedAtMs: number;
  maxDowntimeMs: number;
  nextTimedStep: number;
  nextStallStep: number;
  /** Lowest progress level seen (MiB): a round level, or a sample for the kubevirt profile. */
  bestRemainingMiB: number | null;
  /** Highest and lowest remaining data seen in the current round (MiB). */
  roundPeakMiB: number | null;
  roundLowMiB: number;
  lastProgressAtMs: number;
  lastProgressIteration: number;
  iteration: number;
  lastAnswerAtMs: number;
  stuck: boolean;
  abortReason: AbortReason | null;
  abortIssuedAtMs: number | null;
  /**
   * The moment the abort fell due: the deadline, the end of the stall window or the answer that showed the
   * rounds a stall also needs, whichever came later; the request's moment for an operator's abort.
   */
  abortDueAtMs: number | null;
  /** When an answer first showed the rounds without progress a stall needs (null: not yet). */
  stallRoundsAtMs: number | null;
  autoConvergeSinceMs: number | null;
  /** Highest auto-converge throttle seen (percent): while QEMU keeps raising it, the migration progresses. */
  throttlePct: number;
  stalls: number;
  lastJob: MigrationJob | null;
  /** Data sent by the migration (MiB) when last seen growing in post-copy, what was left then, and when. */
  postCopySentMiB: number;
  postCopyRemainingMiB: number;
  postCopySentAtMs: number | null;
  /** The post-copy stream sends nothing (reported stalled, not yet moving again). */
  postCopyStalled: boolean;
}

export class Watchdog {
  readonly schedule: WatchdogSchedule;
  readonly options: WatchdogOptions;
  private s: WatchdogState;
  /** Remaining data of the last few samples (MiB), for round levels when rounds are shorter than a poll. */
  private readonly recent: number[] = [];

  /** `startedAtMs`: when the migration started (for an adopted one: now minus its elapsed time). */
  constructor(schedule: WatchdogSchedule, startedAtMs: number, options: Partial<WatchdogOptions> = {}) {
    this.schedule = schedule;
    this.options = { ...DEFAULT_WATCHDOG_OPTIONS, ...options };
    this.s = {
      phase: 'watching',
      startedAtMs,
      maxDowntimeMs: schedule.initialMaxDowntimeMs,
      nextTimedStep: 0,
      nextStallStep: 0,
      bestRemainingMiB: null,
      roundPeakMiB: null,
      roundLowMiB: Number.POSITIVE_INFINITY,
      lastProgressAtMs: startedAtMs,
      lastProgressIteration: 0,
      iteration: 0,
      lastAnswerAtMs: startedAtMs,
      stuck: false,
      abortReason: null,
      abortIssuedAtMs: null,
      abortDueAtMs: null,
      stallRoundsAtMs: null,
      autoConvergeSinceMs: null,
      throttlePct: 0,
      stalls: 0,
      lastJob: null,
      postCopySentMiB: 0,
      postCopyRemainingMiB: Number.POSITIVE_INFINITY,
      postCopySentAtMs: null,
      postCopyStalled: false,
    };
  }

  get state(): Readonly<WatchdogState> {
    return this.s;
  }

  /** Max downtime to request when the migration starts. */
  get initialMaxDowntimeMs(): number {
    return this.schedule.initialMaxDowntimeMs;
  }

  /**
   * For an adopted migration: timed steps already due are applied at once (returned as actions) instead
   * of being replayed one by one.
   */
  catchUp(nowMs: number): WatchdogAction[] {
    return this.timedSteps(nowMs);
  }

  /** An operator (or the executor) asked for this migration to stop. */
  requestAbort(nowMs: number): WatchdogAction[] {
    return this.abort(nowMs, 'operator');
  }

  /**
   * Decisions due by time alone, from what the samples so far showed: a timed step, the deadline, a stall
   * whose window has run out. The runner calls it when the timer set from `nextDueAtMs` fires, so these act at
   * their moment rather than at the next poll.
   */
  tick(nowMs: number): WatchdogAction[] {
    const s = this.s;
    if (s.phase === 'aborting' || s.phase === 'post-copy') return [];
    const actions = this.timedSteps(nowMs);
    const deadline = this.checkDeadline(nowMs);
    if (deadline.length > 0) return [...actions, ...deadline];
    // A stall is judged on answers: while the monitor is silent only the deadline holds.
    if (!s.stuck && s.lastJob?.type === 'active') actions.push(...this.checkStall(nowMs));
    return actions;
  }

  /**
   * The next moment a decision falls due without a new sample (clock ms), or null: the next timed step, the
   * deadline, and the end of the stall window when the rounds it also needs have already passed.
   */
  nextDueAtMs(): number | null {
    const s = this.s;
    if (s.phase === 'aborting' || s.phase === 'post-copy') return null;
    let due = s.startedAtMs + this.schedule.deadlineMs;
    const timed = this.schedule.timedSteps[s.nextTimedStep];
    if (timed !== undefined) due = Math.min(due, s.startedAtMs + timed.atMs);
    if (
      !s.stuck &&
      s.lastJob?.type === 'active' &&
      s.iteration - s.lastProgressIteration >= this.schedule.stallMinIterations
    ) {
      const windowMs =
        s.phase === 'auto-converge' ? this.schedule.autoConvergeGraceMs : this.schedule.stallWindowMs;
      due = Math.min(due, s.lastProgressAtMs + windowMs);
    }
    return due;
  }

  /**
   * The executor held this migration back for `ms` (it set up beside one still ending and sent nothing): its
   * deadline, timed steps and stall window count from later by that much, as if it had started then.
   */
  postpone(ms: number): void {
    if (!(ms > 0)) return;
    this.s.startedAtMs += ms;
    this.s.lastProgressAtMs += ms;
  }

  /** Feeds one poll result; returns what to do now (possibly nothing). */
  observe(sample: WatchdogSample): WatchdogAction[] {
    const now = sample.atMs;
    const s = this.s;
    const actions: WatchdogAction[] = [];

    if (sample.job === null) {
      const silentMs = now - s.lastAnswerAtMs;
      if (!s.stuck && silentMs >= this.options.stuckAfterMs) {
        s.stuck = true;
        actions.push({ kind: 'stuck', reason: 'unresponsive', silentMs });
      }
      // The deadline holds even when the monitor does not answer.
      actions.push(...this.checkDeadline(now));
      return actions;
    }

    if (s.stuck) {
      s.stuck = false;
      actions.push({ kind: 'unstuck', silentMs: now - s.lastAnswerAtMs });
    }
    s.lastAnswerAtMs = now;
    const stats = sample.job;
    s.lastJob = stats;
    if (stats.type !== 'active') return actions;

    if (stats.postCopy && s.phase !== 'post-copy' && s.phase !== 'aborting') s.phase = 'post-copy';

    if (s.phase === 'aborting') {
      if (s.abortIssuedAtMs !== null && now - s.abortIssuedAtMs >= this.options.abortRetryMs) {
        s.abortIssuedAtMs = now;
        actions.push({ kind: 'abort', reason: s.abortReason ?? 'operator', repeat: true });
      }
      return actions;
    }

    this.trackProgress(now, stats);
    if (
      s.stallRoundsAtMs === null &&
      s.iteration - s.lastProgressIteration >= this.schedule.stallMinIterations
    )
      s.stallRoundsAtMs = sample.answeredAtMs ?? now;
    // In post-copy the guest already runs on the destination: nothing to escalate, never abort. A stream that
    // sends nothing any more is reported, and reported again when it moves.
    if (s.phase === 'post-copy')
      return stats.postCopy ? [...actions, ...this.checkPostCopy(now, stats)] : actions;
    // The planner predicted that only post-copy finishes this VM: switch once round 0 has sent the memory,
    // rather than waiting for pre-copy to stall and the deadline to run out.
    if (this.schedule.postCopyAfterRound0 && s.phase === 'watching' && stats.iteration >= 1) {
      s.phase = 'post-copy';
      return [...actions, { kind: 'post-copy', reason: 'predicted' }];
    }
    actions.push(...this.timedSteps(now));
    const deadline = this.checkDeadline(now);
    if (deadline.length > 0) return [...actions, ...deadline];
    actions.push(...this.checkStall(now));
    return actions;
  }

  /**
   * Progress. Remaining data is a sawtooth: it falls while a round sends and jumps back at each sync, so a
   * single sample says little. The `kubevirt` profile follows KubeVirt's rule (any new low of remaining
   * data). The others judge at iteration granularity: when a round ends, its level (the highest remaining
   * seen in it and in the last few samples) must be a new low; round 0 progresses while it keeps falling.
   */
  private trackProgress(now: number, stats: MigrationJob): void {
    const s = this.s;
    const remaining = stats.memRemainingMiB + stats.diskRemainingMiB;
    const eps = this.options.progressEpsilon;
    const iteration = stats.iteration;
    if (this.schedule.profile === 'kubevirt') {
      s.iteration = Math.max(s.iteration, iteration);
      const best = s.bestRemainingMiB;
      if (best === null || remaining < best * (1 - eps)) {
        s.bestRemainingMiB = remaining;
        this.markProgress(now);
      }
      return;
    }
    // Auto-converge ramps its throttle up every other round while remaining data stays high: each new step
    // is QEMU still converging the guest, not a stall.
    if (stats.autoConvergeThrottlePct > s.throttlePct) {
      s.throttlePct = stats.autoConvergeThrottlePct;
      s.iteration = Math.max(s.iteration, iteration);
      this.markProgress(now);
    }
    if (iteration > s.iteration || s.roundPeakMiB === null) {
      if (s.roundPeakMiB !== null) {
        const level = Math.max(s.roundPeakMiB, ...this.recent);
        const best = s.bestRemainingMiB;
        if (best === null || s.iteration === 0 || level < best * (1 - eps)) {
          s.bestRemainingMiB = level;
          s.iteration = iteration;
          this.markProgress(now);
        }
      }
      s.iteration = Math.max(s.iteration, iteration);
      s.roundPeakMiB = remaining;
      s.roundLowMiB = remaining;
    } else {
      s.roundPeakMiB = Math.max(s.roundPeakMiB, remaining);
      if (iteration === 0 && remaining < s.roundLowMiB * (1 - eps)) {
        s.roundLowMiB = remaining;
        this.markProgress(now);
      }
    }
    this.recent.push(remaining);
    if (this.recent.length > RECENT_SAMPLES) this.recent.shift();
  }

  private checkPostCopy(now: number, job: MigrationJob): WatchdogAction[] {
    const s = this.s;
    const sent = job.memProcessedMiB + job.diskProcessedMiB;
    const remaining = job.memRemainingMiB + job.diskRemainingMiB;
    // Moving: more bytes sent, or less data left (either counter alone may stand still on some hypervisors).
    if (s.postCopySentAtMs === null || sent > s.postCopySentMiB || remaining < s.postCopyRemainingMiB) {
      const stalledMs = s.postCopySentAtMs === null ? 0 : now - s.postCopySentAtMs;
      s.postCopySentMiB = sent;
      s.postCopyRemainingMiB = remaining;
      s.postCopySentAtMs = now;
      if (!s.postCopyStalled) return [];
      s.postCopyStalled = false;
      return [{ kind: 'post-copy-moving', stalledMs }];
    }
    const stalledMs = now - s.postCopySentAtMs;
    if (s.postCopyStalled || remaining === 0 || stalledMs < this.options.postCopyStallMs) return [];
    s.postCopyStalled = true;
    return [{ kind: 'post-copy-stalled', stalledMs }];
  }

  private markProgress(now: number): void {
    this.s.lastProgressAtMs = now;
    this.s.lastProgressIteration = this.s.iteration;
    this.s.stallRoundsAtMs = null;
  }

  private timedSteps(now: number): WatchdogAction[] {
    const s = this.s;
    if (s.phase === 'aborting' || s.phase === 'post-copy') return [];
    let due: number | null = null;
    while (s.nextTimedStep < this.schedule.timedSteps.length) {
      const step = this.schedule.timedSteps[s.nextTimedStep];
      if (step === undefined || now - s.startedAtMs < step.atMs) break;
      due = step.maxDowntimeMs;
      s.nextTimedStep++;
    }
    if (due === null || due <= s.maxDowntimeMs) return [];
    s.maxDowntimeMs = due;
    return [{ kind: 'set-max-downtime', maxDowntimeMs: due, reason: 'timed' }];
  }

  private checkDeadline(now: number): WatchdogAction[] {
    const s = this.s;
    if (s.phase === 'aborting' || s.phase === 'post-copy') return [];
    if (now - s.startedAtMs < this.schedule.deadlineMs) return [];
    return this.abort(now, 'deadline', s.startedAtMs + this.schedule.deadlineMs);
  }

  private abort(now: number, reason: AbortReason, dueAtMs = now): WatchdogAction[] {
    const s = this.s;
    // After the switch to post-copy the guest runs on the destination: aborting would lose it.
    if (s.phase === 'aborting' || s.phase === 'post-copy') return [];
    s.phase = 'aborting';
    s.abortReason = reason;
    s.abortIssuedAtMs = now;
    s.abortDueAtMs = dueAtMs;
    return [{ kind: 'abort', reason, repeat: false }];
  }

  private stalled(now: number): boolean {
    const s = this.s;
    const windowMs =
      s.phase === 'auto-converge' ? this.schedule.autoConvergeGraceMs : this.schedule.stallWindowMs;
    return (
      now - s.lastProgressAtMs >= windowMs &&
      s.iteration - s.lastProgressIteration >= this.schedule.stallMinIterations
    );
  }

  /** A fresh window starts after each escalation: the new setting gets its chance. */
  private restartWindow(now: number): void {
    this.s.lastProgressAtMs = now;
    this.s.lastProgressIteration = this.s.iteration;
    this.s.stallRoundsAtMs = null;
  }

  private checkStall(now: number): WatchdogAction[] {
    const s = this.s;
    if (!this.stalled(now)) return [];
    s.stalls++;
    const budget = this.schedule.downtimeBudgetMs;
    while (s.phase === 'watching' && s.nextStallStep < this.schedule.stallSteps.length) {
      const raw = this.schedule.stallSteps[s.nextStallStep++] ?? 0;
      const value = budget === null ? raw : Math.min(raw, budget);
      if (value > s.maxDowntimeMs) {
        s.maxDowntimeMs = value;
        this.restartWindow(now);
        return [{ kind: 'set-max-downtime', maxDowntimeMs: value, reason: 'stalled' }];
      }
    }
    // Timed steps still to come are part of the ladder too: wait for them before going further.
    if (s.phase === 'watching' && s.nextTimedStep < this.schedule.timedSteps.length) {
      this.restartWindow(now);
      return [];
    }
    if (s.phase === 'watching' && this.schedule.autoConvergeGraceMs > 0) {
      s.phase = 'auto-converge';
      s.autoConvergeSinceMs = now;
      this.restartWindow(now);
      return [{ kind: 'auto-converge', graceMs: this.schedule.autoConvergeGraceMs }];
    }
    if (this.schedule.postCopyOnStall) {
      s.phase = 'post-copy';
      return [{ kind: 'post-copy', reason: 'stalled' }];
    }
    if (this.schedule.abortOnStall) {
      const windowMs =
        s.phase === 'auto-converge' ? this.schedule.autoConvergeGraceMs : this.schedule.stallWindowMs;
      const provenAtMs = Math.max(s.lastProgressAtMs + windowMs, s.stallRoundsAtMs ?? s.lastProgressAtMs);
      return this.abort(now, 'stalled', provenAtMs);
    }
    this.restartWindow(now);
    return [];
  }
}
