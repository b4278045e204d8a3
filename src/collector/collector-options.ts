// The collector's options: a zod schema the service config embeds (`collector:` section), with defaults.
import { z } from 'zod';
import { parseWith, positiveInt, positiveNumber, percent } from '../domain/validation.js';

/** Libvirt accepts a dirty-rate window from 1 to 60 s. */
const dirtyWindowS = () =>
  z
    .number({
      error: (i) => `expected a whole number of seconds from 1 to 60, got ${JSON.stringify(i.input)}`,
    })
    .int({ error: (i) => `expected a whole number of seconds from 1 to 60, got ${JSON.stringify(i.input)}` })
    .min(1, {
      error: (i) => `expected a whole number of seconds from 1 to 60, got ${JSON.stringify(i.input)}`,
    })
    .max(60, {
      error: (i) => `expected a whole number of seconds from 1 to 60, got ${JSON.stringify(i.input)}`,
    });

export const DirtyRateOptionsSchema = z.strictObject({
  /** Measure dirty rates at all. */
  enabled: z.boolean().default(true),
  /**
   * Measurement window. libvirt reports distinct pages dirtied per window divided by the window, so a VM that
   * rewrites a small buffer over and over reads lower the longer the window is. 5 s is in the range of a
   * pre-copy round after the first one on a ~1 GiB/s link, long enough for libvirt's page sampling to settle
   * and for sub-second bursts not to dominate, and short enough that a hot working set is understated at most
   * 5x against a 1 s window. The peak percentile over the history keeps the bursts the window smooths.
   */
  windowS: dirtyWindowS().default(5),
  /** At most this many measurements run at once on one host. */
  maxPerHost: positiveInt().default(2),
  /** A VM is measured again at the earliest this long after its last measurement started. */
  remeasureS: positiveNumber().default(300),
});

export const SmoothingOptionsSchema = z.strictObject({
  /** EWMA time constant for host and VM CPU. */
  cpuTauS: positiveNumber().default(60),
  /** EWMA time constant for the typical dirty rate (measurements are minutes apart). */
  dirtyTauS: positiveNumber().default(1800),
  /** The high percentile reported as peak (dirtyPeakMiBps) and kept for CPU. */
  percentile: percent().default(95),
  /** History window of the CPU percentile. */
  cpuWindowS: positiveNumber().default(600),
  /** History window of the dirty-rate percentile (the VM's peak). */
  dirtyWindowS: positiveNumber().default(3600),
  /**
   * A host's reported cpuPct is the lowest smoothed value of the last holdS: a host reads as loaded above X
   * only once it has stayed above X for holdS. Drops show at once.
   */
  holdS: z
    .number({ error: (i) => `expected a number >= 0, got ${JSON.stringify(i.input)}` })
    .min(0, { error: (i) => `expected a number >= 0, got ${JSON.stringify(i.input)}` })
    .default(120),
  /** Most points kept per series (bounds memory for long windows). */
  maxPoints: positiveInt().default(120),
});

export const CollectorOptionsSchema = z.strictObject({
  /** Sampling interval; cycles start on multiples of it (so processes sharing a Redis stay in step). */
  intervalS: positiveNumber().default(30),
  /** A host that does not answer within this time is marked stale for the cycle. */
  hostTimeoutMs: positiveInt().default(5000),
  /** Hosts sampled at once by one process. */
  hostConcurrency: positiveInt().default(64),
  /** A host record older than this is stale in the snapshot; default 2 intervals + the timeout. */
  staleAfterS: positiveNumber().optional(),
  /** How long a collector process counts as alive after its last heartbeat; default one interval. */
  memberTtlS: positiveNumber().optional(),
  /** `collect --once`: gap between the two samples the CPU deltas need. */
  primeDelayMs: positiveInt().default(1000),
  dirtyRate: DirtyRateOptionsSchema.prefault({}),
  smoothing: SmoothingOptionsSchema.prefault({}),
});

export type CollectorOptionsInput = z.input<typeof CollectorOptionsSchema>;
export type CollectorOptions = z.output<typeof CollectorOptionsSchema>;

export function parseCollectorOptions(data: unknown, source = ''): CollectorOptions {
  return parseWith(CollectorOptionsSchema, data ?? {}, source);
}

export function staleAfterMs(options: CollectorOptions): number {
  if (options.staleAfterS !== undefined) return options.staleAfterS * 1000;
  return 2 * options.intervalS * 1000 + options.hostTimeoutMs;
}

export function memberTtlMs(options: CollectorOptions): number {
  return (options.memberTtlS ?? options.intervalS) * 1000;
}

/** The gap `collectOnce()` leaves between its two cycles: CPU deltas, and one dirty-rate window to finish. */
export function primeGapMs(options: CollectorOptions): number {
  const d = options.dirtyRate;
  return d.enabled ? Math.max(options.primeDelayMs, d.windowS * 1000 + 500) : options.primeDelayMs;
}
