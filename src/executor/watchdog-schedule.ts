// Watchdog profiles: what the watchdog of one migration will do, and when, before the migration starts.
// Pure: the formulas of the `predictive`, `nova` and `kubevirt` profiles turned into a WatchdogSchedule.
import { z } from 'zod';
import { DroverError } from '../domain/errors.js';
import type { MigrationKind, Prediction } from '../domain/plan.js';
import { oneOf, positiveInt, positiveNumber } from '../domain/validation.js';

export const WATCHDOG_PROFILES = ['predictive', 'nova', 'kubevirt'] as const;
export type WatchdogProfile = (typeof WATCHDOG_PROFILES)[number];

/**
 * Tuning of the profiles. The field names and defaults are the policy's `watchdog` section
 * (src/domain/policy.ts); nova's and kubevirt's defaults are their projects' documented ones.
 */
export const PredictiveTuningSchema = z.strictObject({
  /** Deadline = predicted duration x factor + margin. */
  deadlineFactor: positiveNumber().default(2),
  deadlineMarginS: z.number().min(0).default(30),
  /** Stall window = this many predicted rounds, at least minStallWindowS. */
  stallRounds: positiveNumber().default(3),
  minStallWindowS: positiveNumber().default(10),
  /** Steps from the initial max downtime up to the VM's downtime budget. */
  downtimeRaiseSteps: z.number().int().min(0).default(3),
  /** A stall also needs this many completed pre-copy rounds without progress. */
  stallMinIterations: z.number().int().min(0).default(2),
  /** How long QEMU's auto-converge throttle gets to bite once the downtime ladder is exhausted. */
  autoConvergeGraceS: positiveNumber().default(30),
  /** Floor of the initial max downtime (ms). */
  minInitialDowntimeMs: positiveNumber().default(50),
});
export type PredictiveTuning = z.output<typeof PredictiveTuningSchema>;

export const NovaTuningSchema = z.strictObject({
  completionTimeoutPerGiBS: positiveNumber().default(800),
  maxDowntimeMs: positiveNumber().default(500),
  downtimeSteps: positiveInt().default(10),
  downtimeDelayPerGiBS: positiveNumber().default(75),
});
export type NovaTuning = z.output<typeof NovaTuningSchema>;

export const KubevirtTuningSchema = z.strictObject({
  completionTimeoutPerGiBS: positiveNumber().default(150),
  progressTimeoutS: positiveNumber().default(150),
  maxDowntimeMs: positiveNumber().default(900),
});
export type KubevirtTuning = z.output<typeof KubevirtTuningSchema>;

/** The planner's own watchdog forecast for this VM and link, when it made one (predictiveWatchdogPlan). */
export interface PredictiveForecast {
  deadlineS: number;
  stallWindowS: number;
  /** How long the migration is expected to take on its link share (what the deadline is derived from). */
  expectedDurationS?: number;
}

export const WatchdogScheduleInputSchema = z.strictObject({
  profile: oneOf(WATCHDOG_PROFILES),
  memMiB: positiveNumber(),
  /** Disk data copied by a block migration (GiB); 0 for live migrations. */
  diskGiB: z.number().min(0).default(0),
  kind: oneOf(['live', 'block', 'offline'] as const).default('live'),
  /** The VM's downtime budget: no step ever sets max downtime above it. */
  downtimeBudgetMs: positiveNumber().nullable().default(null),
  allowAutoConverge: z.boolean().default(false),
  allowPostCopy: z.boolean().default(false),
});
export type WatchdogScheduleInput = z.input<typeof WatchdogScheduleInputSchema> & {
  /** The planner's prediction for this VM and link (the `predictive` profile needs it). */
  prediction?: Prediction | null;
  /** Deadline and stall window the planner computed; else derived from `prediction` and the tuning. */
  forecast?: PredictiveForecast | null;
  predictive?: Partial<PredictiveTuning>;
  nova?: Partial<NovaTuning>;
  kubevirt?: Partial<KubevirtTuning>;
};

/** A max-downtime change at a fixed time after the migration started. */
export interface TimedDowntimeStep {
  atMs: number;
  maxDowntimeMs: number;
}

export interface WatchdogSchedule {
  profile: WatchdogProfile;
  /** GiB of data the profile's formulas count (nova's data_gb; kubevirt's bytes / 10^9 rounded up). */
  dataGiB: number;
  /** Max downtime the migration starts with (ms). */
  initialMaxDowntimeMs: number;
  /** Max-downtime changes at fixed times (nova's ladder). */
  timedSteps: TimedDowntimeStep[];
  /** Max-downtime values applied one per detected stall (predictive ladder). */
  stallSteps: number[];
  /** Remaining data must fall within this window... */
  stallWindowMs: number;
  /** ...and within this many completed pre-copy rounds (0: time only). */
  stallMinIterations: number;
  /** Once the ladders are exhausted and it still stalls: wait for auto-converge this long (0 = not used). */
  autoConvergeGraceMs: number;
  /** Then switch to post-copy (only when the policy allows it). */
  postCopyOnStall: boolean;
  /**
   * Switch to post-copy as soon as round 0 is over: the planner predicted that this VM finishes only with
   * post-copy (predictive profile, post-copy allowed).
   */
  postCopyAfterRound0: boolean;
  /** Then abort (profiles that give up on a stall). */
  abortOnStall: boolean;
  /** Abort at this time after the start, whatever the progress. */
  deadlineMs: number;
  downtimeBudgetMs: number | null;
  /** The switch-over cost the prediction counted; every max downtime set is at most budget - this. */
  switchoverMs: number;
  /** Start the migration with auto-converge armed (QEMU throttles only once it sees no convergence). */
  autoConverge: boolean;
  /** Start the migration with post-copy allowed (the watchdog decides when to switch). */
  postCopy: boolean;
}

const MiB_PER_GiB = 1024;

function capped(ms: number, budgetMs: number | null): number {
  return budgetMs === null ? ms : Math.min(ms, budgetMs);
}

/**
 * Nova's `data_gb`: RAM in GiB, at least 2, plus the disk GiB of a block migration.
 * (Nova counts each disk as at least 2 GiB; drover receives one disk total and applies the same floor to it.)
 */
export function novaDataGiB(memMiB: number, diskGiB: number, kind: MigrationKind): number {
  const ramGiB = Math.max(2, memMiB / MiB_PER_GiB);
  const disk = kind === 'block' && diskGiB > 0 ? Math.max(2, diskGiB) : 0;
  return ramGiB + disk;
}

/**
 * Nova's downtime ladder (live_migration_downtime 500 ms, _steps 10, _delay 75 s):
 * delay = int(75 s x data_gb); step i in 0..10 at t = delay x i sets int(base + offset x i) ms,
 * base = 500 / 10, offset = (500 - base) / 10.
 */
export function novaDowntimeSteps(
  dataGiB: number,
  tuning: NovaTuning = NovaTuningSchema.parse({}),
): TimedDowntimeStep[] {
  const downtimeMs = tuning.maxDowntimeMs;
  const steps = tuning.downtimeSteps;
  const delayS = Math.trunc(tuning.downtimeDelayPerGiBS * dataGiB);
  const base = downtimeMs / steps;
  const offset = (downtimeMs - base) / steps;
  const out: TimedDowntimeStep[] = [];
  for (let i = 0; i <= steps; i++) {
    out.push({ atMs: delayS * i * 1000, maxDowntimeMs: Math.trunc(base + offset * i) });
  }
  return out;
}

/** Nova's completion timeout: 800 s per GiB of data_gb. */
export function novaDeadlineMs(dataGiB: number, perGiBS = 800): number {
  return perGiBS * dataGiB * 1000;
}

/** KubeVirt counts data in decimal GB, rounded up. */
export function kubevirtDataGB(memMiB: number, diskGiB: number, kind: MigrationKind): number {
  const bytes = memMiB * 1024 * 1024 + (kind === 'block' ? diskGiB * 1024 ** 3 : 0);
  return Math.ceil(bytes / 1e9);
}

/** KubeVirt: completion timeout 150 s x ceil(bytes / 10^9). */
export function kubevirtDeadlineMs(dataGB: number, perGBS = 150): number {
  return perGBS * dataGB * 1000;
}

export class WatchdogProfileError extends DroverError {
  constructor(message: string) {
    super('watchdog_profile', message);
    this.name = 'WatchdogProfileError';
  }
}

/** Turns a profile and one migration's facts into the schedule the watchdog follows. */
export function watchdogSchedule(rawInput: WatchdogScheduleInput): WatchdogSchedule {
  const input = WatchdogScheduleInputSchema.parse({
    profile: rawInput.profile,
    memMiB: rawInput.memMiB,
    diskGiB: rawInput.diskGiB,
    kind: rawInput.kind,
    downtimeBudgetMs: rawInput.downtimeBudgetMs,
    allowAutoConverge: rawInput.allowAutoConverge,
    allowPostCopy: rawInput.allowPostCopy,
  });
  // QEMU's max downtime bounds only the last round it sends while paused; the switch-over cost the planner
  // learnt for this VM and pair comes on top. The max downtime any step sets is the budget less that cost,
  // so the downtime QEMU reports stays within the budget (at least 1 ms: the planner skips VMs whose budget
  // the cost alone exceeds).
  const switchoverMs = rawInput.prediction?.switchoverMs ?? 0;
  const budget = input.downtimeBudgetMs === null ? null : Math.max(1, input.downtimeBudgetMs - switchoverMs);
  const common = {
    downtimeBudgetMs: input.downtimeBudgetMs,
    switchoverMs,
    autoConverge: input.allowAutoConverge,
    postCopy: input.allowPostCopy,
    postCopyOnStall: input.allowPostCopy,
    postCopyAfterRound0: false,
  };
  switch (input.profile) {
    case 'nova': {
      const tuning = NovaTuningSchema.parse(rawInput.nova ?? {});
      const dataGiB = novaDataGiB(input.memMiB, input.diskGiB, input.kind);
      const steps = novaDowntimeSteps(dataGiB, tuning).map((s) => ({
        atMs: s.atMs,
        maxDowntimeMs: capped(s.maxDowntimeMs, budget),
      }));
      const first = steps[0]?.maxDowntimeMs ?? 50;
      // Drop steps that would not change anything once capped by the budget.
      const timedSteps: TimedDowntimeStep[] = [];
      let last = first;
      for (const s of steps.slice(1)) {
        if (s.maxDowntimeMs > last) timedSteps.push(s);
        last = Math.max(last, s.maxDowntimeMs);
      }
      const deadlineMs = novaDeadlineMs(dataGiB, tuning.completionTimeoutPerGiBS);
      return {
        ...common,
        profile: 'nova',
        dataGiB,
        initialMaxDowntimeMs: first,
        timedSteps,
        stallSteps: [],
        // Nova does not abort on a stall (its progress timeout is off by default); a stall only leads to
        // post-copy when allowed. The window is one downtime-step delay.
        stallWindowMs: Math.max(Math.trunc(tuning.downtimeDelayPerGiBS * dataGiB) * 1000, 1000),
        stallMinIterations: 2,
        autoConvergeGraceMs: 0,
        abortOnStall: false,
        deadlineMs,
      };
    }
    case 'kubevirt': {
      const tuning = KubevirtTuningSchema.parse(rawInput.kubevirt ?? {});
      const dataGB = kubevirtDataGB(input.memMiB, input.diskGiB, input.kind);
      return {
        ...common,
        profile: 'kubevirt',
        dataGiB: dataGB,
        initialMaxDowntimeMs: capped(tuning.maxDowntimeMs, budget),
        timedSteps: [],
        stallSteps: [],
        stallWindowMs: tuning.progressTimeoutS * 1000,
        stallMinIterations: 0,
        autoConvergeGraceMs: 0,
        abortOnStall: true,
        deadlineMs: kubevirtDeadlineMs(dataGB, tuning.completionTimeoutPerGiBS),
      };
    }
    case 'predictive': {
      const tuning = PredictiveTuningSchema.parse(rawInput.predictive ?? {});
      const prediction = rawInput.prediction ?? null;
      if (prediction === null) {
        throw new WatchdogProfileError(
          'the predictive profile needs the planner prediction for this migration (durationS, downtimeMs)',
        );
      }
      const predictedMs = prediction.durationS * 1000;
      const forecast = rawInput.forecast ?? null;
      // Without the planner's per-round forecast, a tenth of the predicted duration stands in for a round.
      const deadlineMs =
        forecast !== null
          ? forecast.deadlineS * 1000
          : predictedMs * tuning.deadlineFactor + tuning.deadlineMarginS * 1000;
      const stallWindowMs =
        forecast !== null
          ? forecast.stallWindowS * 1000
          : Math.max(tuning.minStallWindowS * 1000, (tuning.stallRounds * predictedMs) / 10);
      const lastRoundMs = prediction.lastRoundMs ?? Math.max(0, prediction.downtimeMs - switchoverMs);
      const initial = Math.ceil(capped(Math.max(tuning.minInitialDowntimeMs, lastRoundMs * 1.2), budget));
      const top = budget ?? Math.max(initial, 500);
      const stallSteps: number[] = [];
      for (let i = 1; i <= tuning.downtimeRaiseSteps; i++) {
        const value = Math.round(initial + ((top - initial) * i) / tuning.downtimeRaiseSteps);
        const prev = stallSteps[stallSteps.length - 1] ?? initial;
        if (value > prev) stallSteps.push(value);
      }
      return {
        ...common,
        profile: 'predictive',
        dataGiB: novaDataGiB(input.memMiB, input.diskGiB, input.kind),
        initialMaxDowntimeMs: initial,
        timedSteps: [],
        stallSteps,
        stallWindowMs,
        stallMinIterations: tuning.stallMinIterations,
        autoConvergeGraceMs: input.allowAutoConverge ? tuning.autoConvergeGraceS * 1000 : 0,
        abortOnStall: true,
        postCopyAfterRound0: input.allowPostCopy && prediction.technique === 'post-copy',
        deadlineMs,
      };
    }
  }
}

/** One line of a schedule as an operator reads it. */
export interface ScheduleEntry {
  /** Seconds after the migration started; null for entries that fire on a condition. */
  atS: number | null;
  when: string;
  action: 'set-max-downtime' | 'auto-converge' | 'post-copy' | 'abort';
  maxDowntimeMs?: number;
  detail: string;
}

/** Lists what the watchdog will do, timed actions in order of time, then the stall ladder, then the deadline. */
export function describeSchedule(schedule: WatchdogSchedule): ScheduleEntry[] {
  const out: ScheduleEntry[] = [];
  const windowS = schedule.stallWindowMs / 1000;
  const stallWhen =
    schedule.stallMinIterations > 0
      ? `on stall (no fall in remaining data for ${windowS} s and ${schedule.stallMinIterations} rounds)`
      : `on stall (no fall in remaining data for ${windowS} s)`;
  out.push({
    atS: 0,
    when: 'start',
    action: 'set-max-downtime',
    maxDowntimeMs: schedule.initialMaxDowntimeMs,
    detail: `start with max downtime ${schedule.initialMaxDowntimeMs} ms${
      schedule.autoConverge ? ', auto-converge armed' : ''
    }${schedule.postCopy ? ', post-copy allowed' : ''}`,
  });
  for (const step of schedule.timedSteps) {
    out.push({
      atS: step.atMs / 1000,
      when: `at ${step.atMs / 1000} s`,
      action: 'set-max-downtime',
      maxDowntimeMs: step.maxDowntimeMs,
      detail: `raise max downtime to ${step.maxDowntimeMs} ms`,
    });
  }
  schedule.stallSteps.forEach((ms, i) => {
    out.push({
      atS: null,
      when: `${stallWhen}, stall ${i + 1}`,
      action: 'set-max-downtime',
      maxDowntimeMs: ms,
      detail: `raise max downtime to ${ms} ms`,
    });
  });
  if (schedule.postCopyAfterRound0) {
    out.push({
      atS: null,
      when: 'after round 0',
      action: 'post-copy',
      detail: 'switch to post-copy: the planner predicted that pre-copy alone does not finish this VM',
    });
  }
  if (schedule.autoConvergeGraceMs > 0) {
    out.push({
      atS: null,
      when: `${stallWhen}, ladder exhausted`,
      action: 'auto-converge',
      detail: `give auto-converge ${schedule.autoConvergeGraceMs / 1000} s to throttle the guest`,
    });
  }
  if (schedule.postCopyOnStall) {
    out.push({
      atS: null,
      when: `${stallWhen}, ladder exhausted`,
      action: 'post-copy',
      detail: 'switch to post-copy (never aborted afterwards)',
    });
  } else if (schedule.abortOnStall) {
    out.push({
      atS: null,
      when: `${stallWhen}, ladder exhausted`,
      action: 'abort',
      detail: 'abort; the VM keeps running on the source',
    });
  }
  out.push({
    atS: schedule.deadlineMs / 1000,
    when: `at ${schedule.deadlineMs / 1000} s`,
    action: 'abort',
    detail: 'deadline: abort whatever the progress; the VM keeps running on the source',
  });
  return out;
}
