// Benchmark baseline: ProxLB-style greedy balancing, re-implemented from ProxLB's public description. While
// the utilisation spread of a resource exceeds the "balanciness", the largest guest of the most loaded node
// (by that resource) moves to the least loaded node. ProxLB balances one resource (memory by default); here
// it works on whichever of CPU and memory is further from its target, so it chases the same goal as
// drover's balance. It honours capacity, exclusions, pins and anti-affinity, but not dirty rates: it never
// asks whether a migration will converge.
import { z } from 'zod';
import type { Step } from '../../../src/domain/plan.js';
import { positiveInt } from '../../../src/domain/validation.js';
import { HostHeap } from '../../../src/planner/constraints/host-heap.js';
import {
  makeStep,
  pct,
  defineStrategy,
  type StrategyContext,
  type StrategyResult,
} from '../../../src/planner/strategies/strategy.js';

export const ProxlbArgsSchema = z.strictObject({ maxMoves: positiveInt().optional() }).prefault({});
export type ProxlbArgs = z.output<typeof ProxlbArgsSchema>;

function planProxlb(ctx: StrategyContext, args: ProxlbArgs): StrategyResult {
  const m = ctx.model;
  const targets = [m.policy.balance.targetCpuSpreadPct, m.policy.balance.targetMemSpreadPct] as const;
  const maxMoves = args.maxMoves ?? m.policy.limits.maxMovesPerRun;
  const util = (d: number, h: number) => (d === 0 ? m.cpuPct(h) : m.memPct(h));
  const vmLoad = (d: number, v: number) => (d === 0 ? (m.vmCpu[v] ?? 0) : (m.vmMem[v] ?? 0));
  const most = [new HostHeap(m.hostCount, -1), new HostHeap(m.hostCount, -1)];
  const least = [new HostHeap(m.hostCount, 1), new HostHeap(m.hostCount, 1)];
  const index = (h: number) => {
    for (const d of [0, 1]) {
      if (m.inSpread[h]) most[d]?.push(h, util(d, h));
      if (m.receivable[h]) least[d]?.push(h, util(d, h));
    }
  };
  for (let h = 0; h < m.hostCount; h += 1) index(h);
  const steps: Step[] = [];
  const stuck = [false, false];
  while (steps.length < maxMoves) {
    const s = m.spread();
    const over = [s.cpuSpreadPct - targets[0], s.memSpreadPct - targets[1]];
    const d = !stuck[0] && (over[0] ?? 0) > 0 && ((over[0] ?? 0) >= (over[1] ?? 0) || stuck[1]) ? 0 : 1;
    if ((over[d] ?? 0) <= 0 || stuck[d]) break;
    const src = most[d]?.pop() ?? -1;
    const dst = least[d]?.pop() ?? -1;
    if (src < 0 || dst < 0) break;
    const guests = [...(m.hostVms[src] ?? [])].sort((a, b) => vmLoad(d, b) - vmLoad(d, a));
    let moved = false;
    for (const v of guests) {
      if (vmLoad(d, v) <= 0 || m.moved[v]) continue;
      const fx = m.effects[v];
      if (fx?.excludedBy !== undefined || fx?.pinnedBy !== undefined) continue;
      if (m.placementProblem(v, dst) !== null) continue;
      // Only moves that leave the destination below where the source was.
      const after =
        ((d === 0 ? (m.cpuLoad[dst] ?? 0) : (m.memLoad[dst] ?? 0)) + vmLoad(d, v)) /
        (d === 0 ? (m.hosts[dst]?.cpus ?? 1) : (m.hosts[dst]?.memMiB ?? 1));
      if (after * 100 >= util(d, src)) continue;
      steps.push(
        makeStep(
          m,
          v,
          dst,
          `${m.hosts[src]?.id ?? ''} is the most loaded (${pct(util(d, src))}); ` +
            `${m.hosts[dst]?.id ?? ''} the least (${pct(util(d, dst))})`,
        ),
      );
      m.move(v, dst);
      moved = true;
      break;
    }
    index(src);
    index(dst);
    if (!moved) stuck[d] = true;
  }
  return { steps, skipped: [] };
}

export const proxlbGreedy = defineStrategy<ProxlbArgs>({
  name: 'proxlb-greedy',
  reason: 'rebalance',
  description: 'benchmark baseline: largest guest from the most to the least loaded node',
  argsSchema: ProxlbArgsSchema,
  holdTimeS: 0,
  plan: planProxlb,
});
