// How many migrations at once a drain runs from each drained host, step by step. Pure arithmetic over the
// predictor's forecasts of each step at 1..max migrations sharing the host's link:
// - more at once overlaps what each migration spends without using the link (set-up, zero-page scanning,
//   one stream's own limit on a fast link);
// - fewer at once gives each migration more of the link, so a guest that dirties memory fast resends less,
//   and some converge only alone.
// Candidates: every VM at the same level k (or the highest level up to k at which it is predicted to
// converge), and "heavy alone": VMs whose predicted transfer grows by more than a threshold when they share
// the link k ways run alone at the full link (or j < k at a time), the others k at a time (thresholds from
// 1 % to 50 %). The schedule
// with the shortest predicted drain time wins; ties go to less concurrency.
//
// Drain time of a schedule: the steps of each level run as a group, one group after the other. A group of
// level k keeps k migrations sharing the link until it runs out of steps, and the executor re-shares the link
// as migrations end, so its time is the sum of its steps' durations at level k divided by k, and never less
// than its longest step as predicted at that level.

/** One step's predictions at 1..max migrations at once (index k - 1). */
export interface ScheduleItem {
  byLevel: { converges: boolean; durationS: number; transferMiB: number }[];
}

export interface ScheduleCandidate {
  name: string;
  /** Predicted drain time (s) of one host's steps; null when some step would not converge. */
  etaS: number | null;
}

export interface DrainSchedule {
  /** Concurrency per item (same order as the input). */
  levels: number[];
  etaS: number;
  name: string;
  candidates: ScheduleCandidate[];
}

/** Growth of the predicted transfer when sharing above which a VM runs alone, one candidate each. */
export const HEAVY_TRANSFER_GROWTH = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5] as const;

/** Predicted drain time of items run `level` at a time each, level group after level group (see above). */
export function scheduleEtaS(items: readonly ScheduleItem[], levels: readonly number[]): number | null {
  const groups = new Map<number, { sumS: number; longestS: number }>();
  for (let i = 0; i < items.length; i += 1) {
    const level = levels[i] ?? 1;
    const p = items[i]?.byLevel[level - 1];
    if (!p?.converges) return null;
    const g = groups.get(level) ?? { sumS: 0, longestS: 0 };
    g.sumS += p.durationS;
    g.longestS = Math.max(g.longestS, p.durationS);
    groups.set(level, g);
  }
  let total = 0;
  for (const [level, g] of groups) total += Math.max(g.sumS / level, g.longestS);
  return total;
}

/** Highest level <= k at which the item is predicted to converge (1 when none: level 1 is the fallback). */
function convergingLevel(item: ScheduleItem, k: number): number {
  for (let j = Math.min(k, item.byLevel.length); j >= 1; j -= 1) if (item.byLevel[j - 1]?.converges) return j;
  return 1;
}

function isHeavy(item: ScheduleItem, k: number, growth: number): boolean {
  const alone = item.byLevel[0];
  const shared = item.byLevel[k - 1];
  if (!alone || !shared?.converges) return true;
  return shared.transferMiB > alone.transferMiB * (1 + growth);
}

/** Chooses the per-step concurrency of one drained host's steps (each item's byLevel has maxLevel entries). */
export function chooseDrainSchedule(items: readonly ScheduleItem[], maxLevel: number): DrainSchedule {
  const options: { name: string; levels: number[] }[] = [];
  for (let k = 1; k <= Math.max(1, maxLevel); k += 1) {
    options.push({ name: `${k} at once`, levels: items.map((it) => convergingLevel(it, k)) });
    for (let j = 1; j < k; j += 1) {
      for (const growth of HEAVY_TRANSFER_GROWTH) {
        const heavy = j === 1 ? 'alone' : `${j} at once`;
        options.push({
          name: `${heavy} if sharing ${k} ways adds over ${growth * 100} % to its transfer, others ${k} at once`,
          levels: items.map((it) => (isHeavy(it, k, growth) ? convergingLevel(it, j) : k)),
        });
      }
    }
  }
  const candidates: ScheduleCandidate[] = [];
  let best: DrainSchedule | null = null;
  for (const o of options) {
    const etaS = scheduleEtaS(items, o.levels);
    candidates.push({ name: o.name, etaS: etaS === null ? null : Math.round(etaS * 10) / 10 });
    if (etaS === null) continue;
    const peak = Math.max(1, ...o.levels);
    const bestPeak = best ? Math.max(1, ...best.levels) : Infinity;
    if (best === null || etaS < best.etaS - 1e-6 || (Math.abs(etaS - best.etaS) <= 1e-6 && peak < bestPeak)) {
      best = { levels: o.levels, etaS, name: o.name, candidates };
    }
  }
  return best ?? { levels: items.map(() => 1), etaS: 0, name: '1 at once', candidates };
}
