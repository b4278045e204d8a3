// The switch-over cost learnt from migration history: what a completed migration really kept the guest
// paused on top of the last round the max-downtime setting allowed QEMU to send while paused. QEMU's
// max-downtime bounds only its own estimate of that last round (remaining memory / bandwidth); stopping the
// vCPUs, sending device state and starting the destination come on top, and on some host pairs they are
// most of the downtime. The predictor adds this cost to the last round, and the watchdog sets
// max downtime = budget - cost so that the downtime QEMU really reports stays within the budget.
import type { MigrationRecord, VmHistory } from '../../domain/history.js';

/** Where a learnt cost came from, most specific first. */
export type SwitchoverSource = 'vm-pair' | 'pair' | 'vm' | 'policy';

export interface SwitchoverCost {
  /** The cost planned against the budget: the max downtime QEMU gets is the budget less this. */
  ms: number;
  source: SwitchoverSource;
  /** Completed migrations the figure comes from (0 for the policy's assumption). */
  samples: number;
  /**
   * Set once the pair's history separates the fixed cost from the last round (DowntimeFit): the typical
   * fixed cost, and the share of the modelled last round that really shows in the downtime. The expected
   * downtime is typicalMs + lastRoundFactor x the modelled last round; without them, ms + the last round.
   */
  typicalMs?: number;
  lastRoundFactor?: number;
}

/** What a pair's completed migrations say about how the downtime splits into fixed cost and last round. */
export interface DowntimeFit {
  /**
   * Measured downtime per ms of the last round the model predicted at the link share, in [0, 1]. QEMU sends
   * the last round with its bandwidth cap lifted, so on a link faster than the share it takes a fraction of
   * the modelled time; and the memory left at the switch-over is often well under the most max downtime
   * allows.
   */
  factor: number;
  /** Fixed cost of each sample: measured downtime - factor x modelled last round. Oldest first. */
  residualsMs: number[];
}

/** Recent completed migrations looked at per VM and per host pair. */
const VM_SAMPLES = 5;
const PAIR_SAMPLES = 20;
/** Samples with a modelled last round a pair needs before its downtime is split (fewer: the raw figures). */
const MIN_FIT_SAMPLES = 4;
/** Below this spread of modelled last rounds the factor cannot be told from the fixed cost: it stays 1. */
const MIN_FIT_SPREAD_MS = 20;

interface FitSample {
  lastRoundMs: number;
  downtimeMs: number;
}

/**
 * Least squares of measured downtime on the modelled last round over a pair's samples, the slope clamped to
 * [0, 1] (a last round never costs more than the model's bound at the link share, nor less than nothing);
 * null with too few samples.
 */
export function fitDowntime(samples: readonly FitSample[]): DowntimeFit | null {
  if (samples.length < MIN_FIT_SAMPLES) return null;
  const xs = samples.map((s) => s.lastRoundMs);
  const ys = samples.map((s) => s.downtimeMs);
  const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
  const xm = mean(xs);
  const ym = mean(ys);
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < xs.length; i += 1) {
    const dx = (xs[i] ?? 0) - xm;
    sxy += dx * ((ys[i] ?? 0) - ym);
    sxx += dx * dx;
  }
  const spread = Math.max(...xs) - Math.min(...xs);
  const factor = spread < MIN_FIT_SPREAD_MS || sxx <= 0 ? 1 : Math.min(1, Math.max(0, sxy / sxx));
  return {
    factor,
    residualsMs: samples.map((s) => Math.max(0, s.downtimeMs - factor * s.lastRoundMs)),
  };
}

/** The part of a migration's downtime the model put in its last round, when the record carries it. */
function lastRoundOf(r: MigrationRecord): number | null {
  const x = r.predictedLastRoundMs;
  return x !== undefined && x >= 0 ? x : null;
}

function median(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * What one completed migration says about the switch-over cost: its measured downtime less nothing. The
 * last round it sent while paused is part of that figure, so the sample is an upper bound of the fixed cost;
 * planning with it keeps the next migration's downtime within its budget as long as the cost itself does not
 * grow (cost + a last round below budget - cost stays below the budget). Records without a measured downtime
 * (aborted, offline, adopted without stats) say nothing.
 */
export function switchoverSample(r: MigrationRecord): number | null {
  if (r.result !== 'completed' || r.kind === 'offline') return null;
  if (r.downtimeMs === null || !(r.downtimeMs >= 0)) return null;
  return r.downtimeMs;
}

/** The learnt cost from samples, newest last: the largest of the VM's own recent ones, p90 of a pair's
 * (the largest of a pair's once its downtime is split, DowntimeFit). */
function highest(samples: readonly number[]): number {
  return samples.reduce((a, b) => Math.max(a, b), 0);
}

function p90(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.9 * sorted.length) - 1)] ?? 0;
}

/**
 * Switch-over costs by host pair and by VM, learnt from the fleet's histories (the planner reads them all).
 * `cost(vm, from, to)` answers with the most specific knowledge there is: this VM on this pair (the largest of
 * its last 5), then this pair over all VMs (p90 of the last 20), then this VM on any pair, then the policy.
 */
export class SwitchoverBook {
  private readonly byPair = new Map<string, number[]>();
  private readonly byVmPair = new Map<string, number[]>();
  private readonly byVm = new Map<string, number[]>();
  /** Per pair with enough samples: the split, and each VM's fixed costs on it (newest last). */
  private readonly fits = new Map<string, { fit: DowntimeFit; byVm: Map<string, number[]> }>();

  constructor(
    histories: Iterable<VmHistory>,
    private readonly defaultMs: number,
  ) {
    // Per pair, newest last across VMs: the records' end times order them.
    const pairRecords = new Map<string, { at: number; ms: number }[]>();
    const fitRecords = new Map<string, { at: number; vmId: string; sample: FitSample }[]>();
    for (const h of histories) {
      for (const r of h.records) {
        const ms = switchoverSample(r);
        if (ms === null) continue;
        const pair = pairKey(r.from, r.to);
        push(this.byVmPair, `${h.vmId}\u0000${pair}`, ms);
        push(this.byVm, h.vmId, ms);
        const at = Date.parse(r.endedAt) || 0;
        const list = pairRecords.get(pair) ?? [];
        list.push({ at, ms });
        pairRecords.set(pair, list);
        const lastRoundMs = lastRoundOf(r);
        if (lastRoundMs !== null) {
          const fl = fitRecords.get(pair) ?? [];
          fl.push({ at, vmId: h.vmId, sample: { lastRoundMs, downtimeMs: ms } });
          fitRecords.set(pair, fl);
        }
      }
    }
    for (const [pair, list] of fitRecords) {
      const recent = list.sort((a, b) => a.at - b.at).slice(-PAIR_SAMPLES);
      const fit = fitDowntime(recent.map((x) => x.sample));
      if (fit === null) continue;
      const byVm = new Map<string, number[]>();
      recent.forEach((x, i) => push(byVm, x.vmId, fit.residualsMs[i] ?? 0));
      this.fits.set(pair, { fit, byVm });
    }
    for (const [pair, list] of pairRecords) {
      list.sort((a, b) => a.at - b.at);
      this.byPair.set(
        pair,
        list.slice(-PAIR_SAMPLES).map((x) => x.ms),
      );
    }
  }

  cost(vmId: string, from: string, to: string): SwitchoverCost {
    const pair = pairKey(from, to);
    const split = this.fits.get(pair);
    if (split) {
      // The pair's history separates the fixed cost from the last round: the budget is planned against
      // the highest fixed cost seen (this VM's own recent ones when it has some here, else the pair's), the
      // expected downtime uses the typical one.
      const own = split.byVm.get(vmId)?.slice(-VM_SAMPLES);
      const pool = own && own.length > 0 ? own : split.fit.residualsMs;
      return {
        ms: Math.round(highest(pool)),
        source: own && own.length > 0 ? 'vm-pair' : 'pair',
        samples: pool.length,
        typicalMs: Math.round(median(pool)),
        lastRoundFactor: Math.round(split.fit.factor * 1000) / 1000,
      };
    }
    const vmPair = this.byVmPair.get(`${vmId}\u0000${pair}`);
    if (vmPair && vmPair.length > 0) {
      const recent = vmPair.slice(-VM_SAMPLES);
      return { ms: highest(recent), source: 'vm-pair', samples: recent.length };
    }
    const pairSamples = this.byPair.get(pair);
    if (pairSamples && pairSamples.length > 0)
      return { ms: p90(pairSamples), source: 'pair', samples: pairSamples.length };
    const vm = this.byVm.get(vmId);
    if (vm && vm.length > 0) {
      const recent = vm.slice(-VM_SAMPLES);
      return { ms: highest(recent), source: 'vm', samples: recent.length };
    }
    return { ms: this.defaultMs, source: 'policy', samples: 0 };
  }
}

/** Both directions of a pair share the cost: the same two hosts stop and start the guest. */
function pairKey(a: string, b: string): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
}

function push(map: Map<string, number[]>, key: string, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** How the cost reads in a skip reason: "this VM's switch-over", "this pair's switch-over", ... */
export function switchoverWho(source: SwitchoverSource): string {
  switch (source) {
    case 'vm-pair':
      return "this VM's switch-over on this pair";
    case 'pair':
      return "this pair's switch-over";
    case 'vm':
      return "this VM's switch-over";
    case 'policy':
      return 'the switch-over (policy migration.switchoverOverheadMs)';
  }
}
