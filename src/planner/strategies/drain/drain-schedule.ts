// How many migrations at once a drain runs from each drained host, step by step. Pure arithmetic over the
// predictor's forecasts of each step at 1..max migrations sharing the host's link:
// - more at once overlaps what each migration spends without using the link (set-up, zero-page scanning,
//   one stream's own limit on a fast link);
// - fewer at once gives each migration more of the link, so a guest that dirties memory fast resends less,
//   and some converge only alone.
// Candidates: every VM at the same level k (or the highest level up to k at which it is predicted to
// converge), and "heavy alone": VMs whose predicted transfer grows when they share the link run alone at the
// full link, the others k at a time. The schedule with the shortest predicted drain time wins; ties go to
// less concurrency.

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

/** A VM counts as heavy when sharing the link makes it resend more than this fraction of its alone transfer. */
export const HEAVY_TRANSFER_GROWTH = 0.02;

/** Makespan of items run `level` at a time each (greedy list scheduling in the given order), level by level. */
export function scheduleEtaS(items: readonly ScheduleItem[], levels: readonly number[]): number | null {
  const byLevel = new Map<number, number[]>();
  for (let i = 0; i < items.length; i += 1) {
    const level = levels[i] ?? 1;
    const p = items[i]?.byLevel[level - 1];
    if (!p?.converges) return null;
    const list = byLevel.get(level) ?? [];
    list.push(p.durationS);
    byLevel.set(level, list);
  }
  let total = 0;
  for (const [level, durations] of byLevel) {
    const slots = new Array<number>(level).fill(0);
    for (const d of durations) {
      let i = 0;
      for (let k = 1; k < slots.length; k += 1) if ((slots[k] ?? 0) < (slots[i] ?? 0)) i = k;
      slots[i] = (slots[i] ?? 0) + d;
    }
    total += Math.max(...slots);
  }
  return total;
}

/** Highest level <= k at which the item is predicted to converge (1 when none: level 1 is the fallback). */
function convergingLevel(item: ScheduleItem, k: number): number {
  for (let j = Math.min(k, item.byLevel.length); j >= 1; j -= 1) if (item.byLevel[j - 1]?.converges) return j;
  return 1;
}

function isHeavy(item: ScheduleItem, k: number): boolean {
  const alone = item.byLevel[0];
  const shared = item.byLevel[k - 1];
  if (!alone || !shared?.converges) return true;
  return shared.transferMiB > alone.transferMiB * (1 + HEAVY_TRANSFER_GROWTH);
}

/** Chooses the per-step concurrency of one drained host's steps (each item's byLevel has maxLevel entries). */
export function chooseDrainSchedule(items: readonly ScheduleItem[], maxLevel: number): DrainSchedule {
  const options: { name: string; levels: number[] }[] = [];
  for (let k = 1; k <= Math.max(1, maxLevel); k += 1) {
    options.push({ name: `${k} at once`, levels: items.map((it) => convergingLevel(it, k)) });
    if (k > 1) {
      options.push({
        name: `heavy alone, others ${k} at once`,
        levels: items.map((it) => (isHeavy(it, k) ? 1 : k)),
      });
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
