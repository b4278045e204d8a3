// The predictor as the planner and the executor use it: a snapshot VM, a link and a policy in, a Prediction
// out (with the reason when the VM cannot be moved), corrected by the VM's own migration history.
import type { MigrationKind, Prediction } from '../../domain/plan.js';
import type { Policy } from '../../domain/policy.js';
import type { Vm } from '../../domain/snapshot.js';
import type { VmHistory } from '../../domain/history.js';
import {
  chooseTechnique,
  simulateMigration,
  type PrecopyLimits,
  type PrecopyOutcome,
} from './precopy-model.js';
import { switchoverWho, type SwitchoverCost } from './switchover.js';

export interface LinkShare {
  /** The migration link's bandwidth (the slower end of source and destination). */
  bandwidthMiBps: number;
  /** Migrations sharing that link at once; each gets bandwidth / concurrency. */
  concurrency: number;
}

export interface VmForecast {
  prediction: Prediction;
  /** Pre-copy passes before the switch-over. */
  iterations: number;
  roundsS: number[];
  /** Bandwidth the model used: the share, divided by the history correction when that is above 1. */
  effectiveBandwidthMiBps: number;
  /** The history correction factor applied (1 without history). */
  correction: number;
  /** Set when the VM is predicted not to finish: the reason, with its numbers. */
  reason?: string;
}

/**
 * The model's limits from the policy. A migration must fit in maxDurationS less the policy's safety margin:
 * duration predictions are good to some tens of percent, so one predicted to need nearly all the time allowed
 * is as likely to be cut off as to finish, and it is not planned.
 */
export function precopyLimits(policy: Policy): PrecopyLimits {
  const m = policy.migration;
  return {
    maxIterations: m.maxIterations,
    maxDurationS: m.maxDurationS * (1 - m.durationMarginPct / 100),
    setupS: m.setupS,
    switchoverOverheadMs: m.switchoverOverheadMs,
    postCopySwitchoverMs: m.postCopySwitchoverMs,
  };
}

/**
 * The dirty rate the model plans with: the one migration.plannedDirtyRate names (the typical rate by default,
 * else the peak), the other when that one was not measured, else what the policy says to assume; null when
 * none of these is known.
 */
export function plannedDirtyMiBps(vm: Vm, policy: Policy): number | null {
  const measured =
    policy.migration.plannedDirtyRate === 'peak'
      ? (vm.dirtyPeakMiBps ?? vm.dirtyMiBps)
      : (vm.dirtyMiBps ?? vm.dirtyPeakMiBps);
  return measured ?? policy.migration.assumeDirtyMiBpsWhenUnknown;
}

/**
 * Memory round 0 has to send. QEMU sends never-written (zero) pages as a flag of a few bytes, so what crosses
 * the wire in round 0 is close to the memory the guest has actually written, which `memUsedMiB` measures;
 * without a measurement, the whole `memMiB` (the safe upper bound).
 */
export function round0MiB(vm: Vm): number {
  return vm.memUsedMiB !== null && vm.memUsedMiB > 0 ? Math.min(vm.memUsedMiB, vm.memMiB) : vm.memMiB;
}

/**
 * What one QEMU migration stream does besides sending data, as drover assumes it (the simulator's
 * QEMU_MIGRATION_COSTS holds the same numbers and their sources): the migration thread scans never-written
 * (zero) pages at about 4 GiB/s, and one stream (no multifd) sends at most about 1,120 MiB/s (~9.4 Gbit/s),
 * whatever its share of a faster link.
 */
export const ZERO_PAGE_SCAN_MIBPS = 4096;
export const STREAM_MAX_MIBPS = 1120;

const HISTORY_SAMPLES = 5;
const MIN_CORRECTION = 0.5;
const MAX_CORRECTION = 4;

/**
 * How much slower (above 1) or faster (below 1) this VM's migrations ran than modelled: the median over its
 * last completed migrations (up to 5) of measured / predicted duration times the correction that prediction
 * already carried, clamped to [0.5, 4]; 1 without usable history. Multiplying by the earlier correction makes
 * the factor converge on the model's real error for this VM instead of compounding. Records without a
 * prediction are modelled again from their own inputs (round 0 taken as at most what the migration sent).
 */
export function historyCorrection(history: VmHistory | undefined, policy: Policy): number {
  if (!history) return 1;
  const ratios: number[] = [];
  const limits = { ...precopyLimits(policy), maxDurationS: Number.POSITIVE_INFINITY };
  for (let i = history.records.length - 1; i >= 0 && ratios.length < HISTORY_SAMPLES; i -= 1) {
    const r = history.records[i];
    if (!r || r.result !== 'completed' || !(r.measuredDurationS > 0) || r.kind === 'offline') continue;
    if (r.predictedDurationS !== null && r.predictedDurationS > 0 && r.predictionCorrection !== undefined) {
      ratios.push((r.measuredDurationS / r.predictedDurationS) * r.predictionCorrection);
      continue;
    }
    let modelS: number | null = null;
    if (r.bandwidthMiBps !== null && r.bandwidthMiBps > 0) {
      const out = simulateMigration(
        {
          memMiB: r.transferMiB > 0 ? Math.min(r.memMiB, r.transferMiB) : r.memMiB,
          dirtyMiBps: r.dirtyMiBps ?? 0,
          bandwidthMiBps: r.bandwidthMiBps,
          downtimeBudgetMs: Math.max(r.downtimeMs ?? 0, policy.vms.defaultDowntimeBudgetMs),
        },
        limits,
        'precopy',
      );
      if (out.converges) modelS = out.durationS;
    }
    modelS ??= r.predictedDurationS;
    if (modelS !== null && modelS > 0) ratios.push(r.measuredDurationS / modelS);
  }
  if (ratios.length === 0) return 1;
  ratios.sort((a, b) => a - b);
  const mid = Math.floor(ratios.length / 2);
  const median =
    ratios.length % 2 === 1 ? (ratios[mid] ?? 1) : ((ratios[mid - 1] ?? 1) + (ratios[mid] ?? 1)) / 2;
  return Math.min(MAX_CORRECTION, Math.max(MIN_CORRECTION, median));
}

const MIN_DIRTY_FACTOR = 0.25;
const MAX_DIRTY_FACTOR = 4;

/**
 * How fast this VM dirties memory while it migrates compared with the rate the planner measures: the median
 * over its last migrations (up to 5, completed or not) that went past round 0 of the rate QEMU reported over
 * the rate planned, times the factor that plan already carried; clamped to [0.25, 4]; 1 without usable
 * history. A guest slowed by dirty logging, or a measurement window that hides how often a small working set
 * is rewritten, shows here.
 */
export function historyDirtyFactor(history: VmHistory | undefined): number {
  if (!history) return 1;
  const ratios: number[] = [];
  for (let i = history.records.length - 1; i >= 0 && ratios.length < HISTORY_SAMPLES; i -= 1) {
    const r = history.records[i];
    if (!r || r.kind === 'offline' || r.iterations < 2) continue;
    const planned = r.plannedDirtyMiBps;
    if (planned === undefined || planned === null || !(planned > 0)) continue;
    if (r.dirtyMiBps === null || !(r.dirtyMiBps > 0)) continue;
    ratios.push((r.dirtyMiBps / planned) * (r.plannedDirtyFactor ?? 1));
  }
  if (ratios.length === 0) return 1;
  ratios.sort((a, b) => a - b);
  const mid = Math.floor(ratios.length / 2);
  const median =
    ratios.length % 2 === 1 ? (ratios[mid] ?? 1) : ((ratios[mid - 1] ?? 1) + (ratios[mid] ?? 1)) / 2;
  return Math.min(MAX_DIRTY_FACTOR, Math.max(MIN_DIRTY_FACTOR, median));
}

export interface PredictOptions {
  kind: MigrationKind;
  downtimeBudgetMs: number;
  history?: VmHistory | undefined;
  /** Overrides the policy's technique permissions (e.g. the executor asking "plain pre-copy only"). */
  allowAutoConverge?: boolean;
  allowPostCopy?: boolean;
  /**
   * The switch-over cost learnt for this VM and host pair (SwitchoverBook); without it, the policy's
   * migration.switchoverOverheadMs.
   */
  switchover?: SwitchoverCost | undefined;
}

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toString() : String(Math.round(n * 10) / 10));

/** Predicts one VM's migration over a link share. */
export function predictVmMigration(
  vm: Vm,
  link: LinkShare,
  policy: Policy,
  opts: PredictOptions,
): VmForecast {
  const switchover: SwitchoverCost = opts.switchover ?? {
    ms: policy.migration.switchoverOverheadMs,
    source: 'policy',
    samples: 0,
  };
  const limits = { ...precopyLimits(policy), switchoverOverheadMs: switchover.ms };
  const correction = historyCorrection(opts.history, policy);
  const share = link.bandwidthMiBps / Math.max(1, link.concurrency);
  if (opts.kind === 'offline' || vm.state === 'shutoff') {
    // Only the definition moves.
    return {
      prediction: { converges: true, durationS: limits.setupS, downtimeMs: 0, transferMiB: 0 },
      iterations: 0,
      roundsS: [],
      effectiveBandwidthMiBps: share,
      correction,
    };
  }
  const measuredDirty = plannedDirtyMiBps(vm, policy);
  const dirtyFactor = historyDirtyFactor(opts.history);
  const dirty = measuredDirty === null ? null : measuredDirty * dirtyFactor;
  const bw = Math.min(share, STREAM_MAX_MIBPS) / Math.max(1, correction);
  if (dirty === null) {
    return {
      prediction: { converges: false, durationS: 0, downtimeMs: 0, transferMiB: 0 },
      iterations: 0,
      roundsS: [],
      effectiveBandwidthMiBps: bw,
      correction,
      reason: 'dirty rate not measured (set migration.assumeDirtyMiBpsWhenUnknown to plan such VMs)',
    };
  }
  const out: PrecopyOutcome = chooseTechnique(
    {
      memMiB: round0MiB(vm),
      zeroMiB: vm.memMiB - round0MiB(vm),
      zeroScanMiBps: ZERO_PAGE_SCAN_MIBPS,
      dirtyMiBps: dirty,
      bandwidthMiBps: bw,
      downtimeBudgetMs: opts.downtimeBudgetMs,
      diskMiB: opts.kind === 'block' ? (vm.diskMiB ?? 0) : 0,
    },
    limits,
    {
      allowAutoConverge: opts.allowAutoConverge ?? policy.migration.allowAutoConverge,
      allowPostCopy: opts.allowPostCopy ?? policy.migration.allowPostCopy,
    },
  );
  // A VM that migrated faster than modelled keeps the bandwidth for the convergence test, but its duration
  // is scaled down (correction < 1 only ever shortens the estimate).
  const durationS = correction < 1 ? out.durationS * correction : out.durationS;
  const prediction: Prediction = {
    converges: out.converges,
    durationS: round(durationS, 2),
    downtimeMs: round(out.downtimeMs, 1),
    transferMiB: round(out.transferMiB, 0),
  };
  if (out.technique !== 'precopy') prediction.technique = out.technique;
  if (out.technique !== 'post-copy') {
    // QEMU pauses the guest only once the rest fits in the max downtime, which is at most the budget less
    // the switch-over: a migration predicted not to converge in time still cannot pause longer than that.
    const lastRoundMs = Math.max(
      0,
      Math.min(out.downtimeMs - switchover.ms, opts.downtimeBudgetMs - switchover.ms),
    );
    prediction.switchoverMs = round(switchover.ms, 1);
    prediction.lastRoundMs = round(lastRoundMs, 1);
    prediction.downtimeMs = round(expectedDowntimeMs(switchover, lastRoundMs), 1);
  }
  if (correction !== 1) prediction.correction = round(correction, 3);
  prediction.dirtyMiBps = round(dirty, 1);
  if (dirtyFactor !== 1) prediction.dirtyFactor = round(dirtyFactor, 3);
  const forecast: VmForecast = {
    prediction,
    iterations: out.iterations,
    roundsS: out.roundsS,
    effectiveBandwidthMiBps: bw,
    correction,
  };
  if (!out.converges && out.technique !== 'post-copy' && opts.downtimeBudgetMs <= switchover.ms) {
    // No bandwidth or technique helps: the fixed part of the pause alone is over the budget.
    forecast.reason = `budget ${fmt(opts.downtimeBudgetMs)} ms, ${switchoverWho(switchover.source)} alone takes ${fmt(switchover.ms)} ms`;
  } else if (!out.converges) {
    let reason = out.failure ?? 'does not converge';
    if (link.concurrency > 1)
      reason += ` (${fmt(link.bandwidthMiBps)} MiB/s link shared by ${link.concurrency} migrations)`;
    if (correction > 1) reason += ` (bandwidth corrected by x${fmt(correction)} from this VM's history)`;
    if (dirtyFactor !== 1)
      reason += ` (dirty rate x${fmt(dirtyFactor)} the measured one, as this VM dirtied while migrating before)`;
    forecast.reason = reason;
  }
  return forecast;
}

/**
 * The downtime to expect: the learnt switch-over plus the modelled last round, both as the pair's history
 * splits them (SwitchoverCost.typicalMs and lastRoundFactor) when it does; else the planned cost plus the
 * whole last round at the link share, an upper bound.
 */
export function expectedDowntimeMs(switchover: SwitchoverCost, lastRoundMs: number): number {
  return (switchover.typicalMs ?? switchover.ms) + (switchover.lastRoundFactor ?? 1) * lastRoundMs;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export interface PredictiveWatchdogPlan {
  converges: boolean;
  technique: 'precopy' | 'auto-converge' | 'post-copy';
  expectedDurationS: number;
  expectedIterations: number;
  /** Abort when the migration is still running this long after it started. */
  deadlineS: number;
  /** A stall: remaining memory reaching no new low for this long. */
  stallWindowS: number;
  downtimeBudgetMs: number;
  /** Why it is predicted not to finish, when it is. */
  reason?: string;
}

/**
 * What the `predictive` watchdog profile needs for one VM on one link: the expected duration, a deadline
 * (expected x deadlineFactor + deadlineMarginS) and a stall window (stallRounds x the longest predicted
 * round after round 0, at least minStallWindowS).
 */
export function predictiveWatchdogPlan(
  vm: Vm,
  link: LinkShare,
  policy: Policy,
  opts: PredictOptions,
): PredictiveWatchdogPlan {
  const f = predictVmMigration(vm, link, policy, opts);
  const p = policy.watchdog.predictive;
  const later = f.roundsS.slice(1);
  const longestRoundS = later.length > 0 ? Math.max(...later) : (f.roundsS[0] ?? 0) / 4;
  const expected = f.prediction.durationS;
  const plan: PredictiveWatchdogPlan = {
    converges: f.prediction.converges,
    technique: f.prediction.technique ?? 'precopy',
    expectedDurationS: expected,
    expectedIterations: f.iterations,
    deadlineS: round(expected * p.deadlineFactor + p.deadlineMarginS, 1),
    stallWindowS: round(Math.max(p.minStallWindowS, p.stallRounds * longestRoundS), 1),
    downtimeBudgetMs: opts.downtimeBudgetMs,
  };
  if (f.reason !== undefined) plan.reason = f.reason;
  return plan;
}
