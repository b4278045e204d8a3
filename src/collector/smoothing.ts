// Smoothing primitives: time-aware EWMA, nearest-rank percentile, bounded windows and the hold level.
// Pure functions over plain serialisable data, so a host's history can be stored in Redis and picked up by
// another collector process.

/**
 * EWMA whose weight follows the time between samples: alpha = 1 - exp(-dt / tau). `n` counts the samples
 * folded in when the series warms up (see ewmaStep's `warmUp`).
 */
export interface EwmaState {
  value: number | null;
  at: number | null;
  n?: number;
}

/**
 * One EWMA step. With `warmUp`, the n-th sample weighs at least 1/n, so the first samples are averaged
 * evenly until there are enough of them for the time constant to take over: for sparse samples (minutes
 * apart against a half-hour tau) the plain EWMA would stay close to the first sample for hours.
 */
export function ewmaStep(
  state: EwmaState,
  value: number,
  at: number,
  tauMs: number,
  warmUp = false,
): EwmaState {
  if (state.value === null || state.at === null) return warmUp ? { value, at, n: 1 } : { value, at };
  const dtMs = at - state.at;
  if (dtMs <= 0) return state;
  let alpha = 1 - Math.exp(-dtMs / tauMs);
  if (!warmUp) return { value: state.value + alpha * (value - state.value), at };
  // A state stored before warm-up existed has no count: it is treated as warm.
  const n = (state.n ?? Number.POSITIVE_INFINITY) + 1;
  alpha = Math.max(alpha, 1 / n);
  return { value: state.value + alpha * (value - state.value), at, n: Math.min(n, WARM_COUNT) };
}

/** Past this many samples the warm-up weight (1/n) is below any alpha worth having; the count stops. */
const WARM_COUNT = 1000;

/** Nearest-rank percentile (p in 0..100) of the values; null for none. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? null;
}

/** A time-stamped point: [at ms, value, smoothed value]. Tuples keep the stored history compact. */
export type Point = [at: number, value: number, smoothed: number];

/** Appends a point and drops those older than the window or beyond the count limit (oldest first). */
export function pushPoint(points: Point[], point: Point, windowMs: number, maxPoints: number): Point[] {
  const from = point[0] - windowMs;
  const kept = points.filter((p) => p[0] > from && p[0] < point[0]);
  kept.push(point);
  return kept.length > maxPoints ? kept.slice(kept.length - maxPoints) : kept;
}

/** High percentile of the raw values within the window ending at `now`. */
export function windowPercentile(
  points: readonly Point[],
  now: number,
  windowMs: number,
  p: number,
): number | null {
  return percentile(
    points.filter((pt) => pt[0] > now - windowMs).map((pt) => pt[1]),
    p,
  );
}

/**
 * The level the smoothed series has held for the last holdMs: the minimum of the smoothed values measured
 * within [now - holdMs, now]. With a hold of 0 it is the newest smoothed value.
 */
export function heldLevel(points: readonly Point[], now: number, holdMs: number): number | null {
  const last = points[points.length - 1];
  if (last === undefined) return null;
  let level = last[2];
  for (const pt of points) if (pt[0] >= now - holdMs && pt[2] < level) level = pt[2];
  return level;
}
