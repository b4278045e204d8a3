// The pre-copy convergence model (pure arithmetic, no drover types): round 0 sends the guest's memory, each
// next round resends what the guest dirtied during the previous one (never more than its writable working
// set), and the switch-over happens once the remainder fits in the max downtime at the available bandwidth.
// Variants: auto-converge (vCPU throttling, as QEMU does it) and post-copy (switch after round 0).

export type Technique = 'precopy' | 'auto-converge' | 'post-copy';

export interface PrecopyInput {
  /** Memory sent by round 0. */
  memMiB: number;
  /** Writable working set: the most one round can have to resend. Defaults to memMiB. */
  wssMiB?: number;
  dirtyMiBps: number;
  /** Bandwidth this migration gets (the link's share). */
  bandwidthMiBps: number;
  /**
   * The downtime budget: the switch-over overhead (limits.switchoverOverheadMs) plus the last round sent
   * while paused must fit in it, so the last round gets budget - overhead.
   */
  downtimeBudgetMs: number;
  /** Disk copied before memory (block migration); 0 for shared storage. */
  diskMiB?: number;
  /** Never-written (zero) pages round 0 scans besides memMiB; they cost scan time, not bandwidth. */
  zeroMiB?: number;
  /** Rate the migration thread scans zero pages at (default: instantly). */
  zeroScanMiBps?: number;
}

export interface PrecopyLimits {
  maxIterations: number;
  maxDurationS: number;
  setupS: number;
  switchoverOverheadMs: number;
  postCopySwitchoverMs: number;
}

export interface PrecopyOutcome {
  technique: Technique;
  converges: boolean;
  durationS: number;
  downtimeMs: number;
  transferMiB: number;
  /** Pre-copy passes before the switch-over, round 0 included. */
  iterations: number;
  /** Duration of each pass, round 0 first (the watchdog's stall window comes from these). */
  roundsS: number[];
  /** Largest vCPU throttle auto-converge reached (0..0.99). */
  throttle: number;
  /** Why it does not converge (numbers included), when it does not. */
  failure?: string;
}

/** QEMU's documented auto-converge defaults: throttle 20 %, +10 % a step, at most 99 %, trigger at 50 %. */
export const AUTO_CONVERGE = { initial: 0.2, increment: 0.1, max: 0.99, triggerRatio: 0.5 } as const;

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toString() : String(Math.round(n * 10) / 10));

/** Runs the model for one technique. */
export function simulateMigration(
  input: PrecopyInput,
  limits: PrecopyLimits,
  technique: Technique,
): PrecopyOutcome {
  const bw = input.bandwidthMiBps;
  const mem = input.memMiB;
  const wss = Math.min(input.wssMiB ?? mem, mem);
  const dirty = input.dirtyMiBps;
  const budgetS = Math.max(0, input.downtimeBudgetMs - limits.switchoverOverheadMs) / 1000;
  const disk = input.diskMiB ?? 0;
  const roundsS: number[] = [];
  let t = limits.setupS + disk / bw;
  let transfer = disk;

  // Round 0: the written pages at the link share, the zero pages at the scan rate.
  const zeroScanS =
    (input.zeroMiB ?? 0) > 0 && (input.zeroScanMiBps ?? 0) > 0
      ? (input.zeroMiB ?? 0) / (input.zeroScanMiBps ?? 1)
      : 0;
  const round0S = mem / bw + zeroScanS;
  t += round0S;
  transfer += mem;
  roundsS.push(round0S);
  let prevRoundS = round0S;
  let prevSentMiB = mem;
  let throttle = 0;
  let highCount = 0;

  if (technique === 'post-copy') {
    // Guest pauses briefly, resumes on the destination, and the pages still dirty are pulled afterwards.
    const rest = Math.min(dirty * round0S, wss);
    t += rest / bw;
    transfer += rest;
    const out: PrecopyOutcome = {
      technique,
      converges: t <= limits.maxDurationS,
      durationS: t,
      downtimeMs: limits.postCopySwitchoverMs,
      transferMiB: transfer,
      iterations: 1,
      roundsS,
      throttle: 0,
    };
    if (!out.converges)
      out.failure = `post-copy would take ${fmt(t)} s, more than the ${fmt(limits.maxDurationS)} s allowed`;
    return out;
  }

  if (input.downtimeBudgetMs <= limits.switchoverOverheadMs) {
    return {
      technique,
      converges: false,
      durationS: t,
      downtimeMs: limits.switchoverOverheadMs,
      transferMiB: transfer,
      iterations: roundsS.length,
      roundsS,
      throttle,
      failure: `budget ${fmt(input.downtimeBudgetMs)} ms, the switch-over alone takes ${fmt(limits.switchoverOverheadMs)} ms`,
    };
  }

  for (;;) {
    const effDirty = dirty * (1 - throttle);
    const remaining = Math.min(effDirty * prevRoundS, wss);
    const stopS = remaining / bw;
    if (stopS <= budgetS && t + stopS > limits.maxDurationS) {
      return {
        technique,
        converges: false,
        durationS: t + stopS,
        downtimeMs: stopS * 1000 + limits.switchoverOverheadMs,
        transferMiB: transfer + remaining,
        iterations: roundsS.length,
        roundsS,
        throttle,
        failure: `would take ${fmt(t + stopS)} s, more than the ${fmt(limits.maxDurationS)} s allowed`,
      };
    }
    if (stopS <= budgetS) {
      return {
        technique,
        converges: true,
        durationS: t + stopS,
        downtimeMs: stopS * 1000 + limits.switchoverOverheadMs,
        transferMiB: transfer + remaining,
        iterations: roundsS.length,
        roundsS,
        throttle,
      };
    }
    const fail = (failure: string): PrecopyOutcome => ({
      technique,
      converges: false,
      durationS: t,
      downtimeMs: stopS * 1000 + limits.switchoverOverheadMs,
      transferMiB: transfer,
      iterations: roundsS.length,
      roundsS,
      throttle,
      failure,
    });
    const canThrottleMore = technique === 'auto-converge' && throttle < AUTO_CONVERGE.max;
    if (effDirty >= bw && !canThrottleMore) {
      return fail(
        `dirty rate ${fmt(effDirty)} MiB/s cannot converge at ${fmt(bw)} MiB/s within ${fmt(input.downtimeBudgetMs)} ms`,
      );
    }
    if (roundsS.length >= limits.maxIterations) {
      return fail(
        `dirty rate ${fmt(dirty)} MiB/s does not converge at ${fmt(bw)} MiB/s within ${fmt(input.downtimeBudgetMs)} ms ` +
          `in ${limits.maxIterations} rounds (${fmt(remaining)} MiB left)`,
      );
    }
    // Send the remainder as the next round.
    t += stopS;
    transfer += remaining;
    roundsS.push(stopS);
    if (technique === 'auto-converge') {
      // QEMU throttles after two consecutive syncs where the guest dirtied more than half of what was sent.
      if (effDirty * prevRoundS > AUTO_CONVERGE.triggerRatio * prevSentMiB) highCount += 1;
      if (highCount >= 2) {
        throttle =
          throttle === 0
            ? AUTO_CONVERGE.initial
            : Math.min(AUTO_CONVERGE.max, throttle + AUTO_CONVERGE.increment);
        highCount = 0;
      }
    }
    prevRoundS = stopS;
    prevSentMiB = remaining;
    if (t > limits.maxDurationS) {
      return fail(
        `dirty rate ${fmt(dirty)} MiB/s at ${fmt(bw)} MiB/s would take more than ${fmt(limits.maxDurationS)} s ` +
          `to fit ${fmt(input.downtimeBudgetMs)} ms`,
      );
    }
  }
}

export interface TechniqueChoice {
  allowAutoConverge: boolean;
  allowPostCopy: boolean;
}

/**
 * Plain pre-copy when it converges; otherwise auto-converge, then post-copy, each only when allowed. When
 * nothing converges, the pre-copy outcome (with its failure) is returned.
 */
export function chooseTechnique(
  input: PrecopyInput,
  limits: PrecopyLimits,
  allow: TechniqueChoice,
): PrecopyOutcome {
  const plain = simulateMigration(input, limits, 'precopy');
  if (plain.converges) return plain;
  if (allow.allowAutoConverge) {
    const ac = simulateMigration(input, limits, 'auto-converge');
    if (ac.converges) return ac;
  }
  if (allow.allowPostCopy) {
    const pc = simulateMigration(input, limits, 'post-copy');
    if (pc.converges) return pc;
  }
  return plain;
}
