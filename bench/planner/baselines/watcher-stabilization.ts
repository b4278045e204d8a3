// Benchmark baseline: OpenStack Watcher's workload_stabilization strategy, re-implemented from its public
// description. Host loads are normalised (0..1) per metric (CPU, memory); while the cluster is unbalanced,
// take the most loaded host, simulate moving each of its instances to each other host that can take it, and
// accept the move that lowers the weighted sum of the metrics' standard deviations the most. Watcher stops
// when every standard deviation is under its threshold; here it stops when the spread is within the
// policy's target (the same goal drover's balance has) or when no move lowers the deviation. It does not
// look at dirty rates.
import { z } from 'zod';
import type { Step } from '../../../src/domain/plan.js';
import { positiveInt, positiveNumber } from '../../../src/domain/validation.js';
import {
  makeStep,
  defineStrategy,
  type StrategyContext,
  type StrategyResult,
} from '../../../src/planner/strategies/strategy.js';

export const WatcherArgsSchema = z
  .strictObject({
    maxMoves: positiveInt().optional(),
    /** Watcher's metric weights (cpu_util, memory.resident): 1.0 each by default. */
    cpuWeight: positiveNumber().default(1),
    memWeight: positiveNumber().default(1),
    /** Give up after this many simulated moves (Watcher's search is O(instances x hosts) per move). */
    maxEvaluations: positiveInt().default(200_000_000),
  })
  .prefault({});
export type WatcherArgs = z.output<typeof WatcherArgsSchema>;

function planWatcher(ctx: StrategyContext, args: WatcherArgs): StrategyResult {
  const m = ctx.model;
  const targets = [m.policy.balance.targetCpuSpreadPct, m.policy.balance.targetMemSpreadPct] as const;
  const maxMoves = args.maxMoves ?? m.policy.limits.maxMovesPerRun;
  const hosts: number[] = [];
  for (let h = 0; h < m.hostCount; h += 1) if (m.inSpread[h]) hosts.push(h);
  const n = hosts.length;
  if (n === 0) return { steps: [], skipped: [] };
  const cu = (h: number) => (m.cpuLoad[h] ?? 0) / (m.hosts[h]?.cpus ?? 1);
  const mu = (h: number) => (m.memLoad[h] ?? 0) / (m.hosts[h]?.memMiB ?? 1);
  // Running sums for O(1) standard deviations.
  let c1 = 0;
  let c2 = 0;
  let m1 = 0;
  let m2 = 0;
  for (const h of hosts) {
    c1 += cu(h);
    c2 += cu(h) ** 2;
    m1 += mu(h);
    m2 += mu(h) ** 2;
  }
  const sd = (s1: number, s2: number) => Math.sqrt(Math.max(0, s2 / n - (s1 / n) ** 2));
  const score = (cs1: number, cs2: number, ms1: number, ms2: number) =>
    args.cpuWeight * sd(cs1, cs2) + args.memWeight * sd(ms1, ms2);
  const steps: Step[] = [];
  let evaluations = 0;
  let note: string | undefined;
  const tried = new Set<number>();
  while (steps.length < maxMoves) {
    const s = m.spread();
    if (s.cpuSpreadPct <= targets[0] && s.memSpreadPct <= targets[1]) break;
    // The most loaded host by the weighted normalised load, among those not yet found hopeless.
    let src = -1;
    let srcLoad = -Infinity;
    for (const h of hosts) {
      if (tried.has(h)) continue;
      const load = args.cpuWeight * cu(h) + args.memWeight * mu(h);
      if (load > srcLoad) {
        srcLoad = load;
        src = h;
      }
    }
    if (src < 0) break;
    const current = score(c1, c2, m1, m2);
    let best: { v: number; t: number; value: number } | null = null;
    for (const v of m.hostVms[src] ?? []) {
      const fx = m.effects[v];
      if (m.moved[v] || fx?.excludedBy !== undefined || fx?.pinnedBy !== undefined) continue;
      const dc = (m.vmCpu[v] ?? 0) / (m.hosts[src]?.cpus ?? 1);
      const dm = (m.vmMem[v] ?? 0) / (m.hosts[src]?.memMiB ?? 1);
      const sc = cu(src);
      const sm = mu(src);
      for (let t = 0; t < m.hostCount; t += 1) {
        if (t === src || !m.receivable[t] || !m.fits(v, t)) continue;
        evaluations += 1;
        const tc = cu(t);
        const tm = mu(t);
        const ntc = tc + (m.vmCpu[v] ?? 0) / (m.hosts[t]?.cpus ?? 1);
        const ntm = tm + (m.vmMem[v] ?? 0) / (m.hosts[t]?.memMiB ?? 1);
        const value = score(
          c1 - sc - tc + (sc - dc) + ntc,
          c2 - sc * sc - tc * tc + (sc - dc) ** 2 + ntc * ntc,
          m1 - sm - tm + (sm - dm) + ntm,
          m2 - sm * sm - tm * tm + (sm - dm) ** 2 + ntm * ntm,
        );
        if (value < current - 1e-12 && (!best || value < best.value) && m.placementProblem(v, t) === null)
          best = { v, t, value };
      }
    }
    if (evaluations > args.maxEvaluations) {
      note = `stopped after ${evaluations} simulated moves (evaluation budget)`;
      break;
    }
    if (!best) {
      tried.add(src);
      continue;
    }
    const { v, t } = best;
    const sc = cu(src);
    const sm = mu(src);
    const tc = cu(t);
    const tm = mu(t);
    steps.push(
      makeStep(m, v, t, `lowers the load deviation from ${current.toFixed(4)} to ${best.value.toFixed(4)}`),
    );
    m.move(v, t);
    c1 += cu(src) - sc + cu(t) - tc;
    c2 += cu(src) ** 2 - sc * sc + cu(t) ** 2 - tc * tc;
    m1 += mu(src) - sm + mu(t) - tm;
    m2 += mu(src) ** 2 - sm * sm + mu(t) ** 2 - tm * tm;
    tried.clear();
  }
  const result: StrategyResult = { steps, skipped: [] };
  if (note !== undefined) result.note = note;
  return result;
}

export const watcherStabilization = defineStrategy<WatcherArgs>({
  name: 'watcher-stabilization',
  reason: 'rebalance',
  description: 'benchmark baseline: the move that lowers the load standard deviation most',
  argsSchema: WatcherArgsSchema,
  holdTimeS: 0,
  plan: planWatcher,
});
