// The two baselines drover is compared with, as planner strategies over drover's cluster model. Both decide
// by utilisation only and never look at dirty rates or the predictor (their steps carry the model's
// prediction only because a Step has that field; nothing here reads it).
// - ProxLB-style: balance memory usage; while the most and least used hosts differ by more than the
//   "balanciness" (10 points by default), move the largest VM of the most used host that fits on the least
//   used one without overshooting.
// - Watcher-style (workload_stabilization): while the standard deviation of host CPU or of host memory
//   load (as fractions) is above its threshold (0.1 each, Watcher's defaults), try every VM of the most
//   loaded host on every other host and make the single move that lowers the weighted sum of the deviations
//   (weights 1 and 1) most.
// - Drain (both; ProxLB's maintenance mode, Watcher's host_maintenance with Nova's RAM weigher): every VM of
//   the host, largest first, to the host with the most free memory that can take it.
import { z } from 'zod';
import type { Skip, Step } from '../../src/domain/plan.js';
import type { ClusterModel } from '../../src/planner/constraints/cluster-model.js';
import {
  defineStrategy,
  makeStep,
  type Strategy,
  type StrategyResult,
} from '../../src/planner/strategies/strategy.js';

const NoArgs = z.strictObject({}).prefault({});
const DrainArgs = z
  .strictObject({ hosts: z.array(z.string()).optional(), allowPartial: z.boolean().default(true) })
  .prefault({});

/** Hosts that may take VMs and count in the spread. */
function receivers(m: ClusterModel): number[] {
  const out: number[] = [];
  for (let h = 0; h < m.hostCount; h += 1) if (m.receivable[h] && m.inSpread[h]) out.push(h);
  return out;
}

function movable(m: ClusterModel, h: number): number[] {
  return (m.hostVms[h] ?? []).filter((v) => m.immovable(v, 'rebalance') === null);
}

const pct = (n: number): string => `${Math.round(n)}%`;

export const proxlbStyle = defineStrategy<z.output<typeof NoArgs>>({
  name: 'proxlb-style',
  reason: 'rebalance',
  description: 'ProxLB-style memory balancing (balanciness 10 points), blind to dirty rates',
  argsSchema: NoArgs,
  holdTimeS: 0,
  plan({ model: m }): StrategyResult {
    const balanciness = 10;
    const steps: Step[] = [];
    const hosts = receivers(m);
    while (steps.length < m.policy.limits.maxMovesPerRun && hosts.length > 1) {
      const byMem = [...hosts].sort((a, b) => m.memPct(b) - m.memPct(a));
      const hi = byMem[0] ?? 0;
      const lo = byMem[byMem.length - 1] ?? 0;
      const gap = m.memPct(hi) - m.memPct(lo);
      if (gap <= balanciness) break;
      const memOf = (v: number): number => m.vmMem[v] ?? 0;
      const capMiB = (h: number): number => m.hosts[h]?.memMiB ?? 1;
      const candidates = movable(m, hi)
        .filter((v) => m.placementProblem(v, lo) === null)
        // moving it must not make the receiver the new most used host by more than the gap was
        .filter((v) => m.memPct(lo) + (memOf(v) / capMiB(lo)) * 100 < m.memPct(hi))
        .sort((a, b) => memOf(b) - memOf(a));
      const v = candidates[0];
      if (v === undefined) break;
      steps.push(makeStep(m, v, lo, `memory ${pct(m.memPct(hi))} vs ${pct(m.memPct(lo))}`));
      m.move(v, lo);
    }
    return { steps, skipped: [] };
  },
});

function stdDevs(m: ClusterModel, hosts: readonly number[]): { cpu: number; mem: number } {
  const sd = (xs: number[]): number => {
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    return Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length);
  };
  return { cpu: sd(hosts.map((h) => m.cpuPct(h) / 100)), mem: sd(hosts.map((h) => m.memPct(h) / 100)) };
}

function weightedStdDev(m: ClusterModel, hosts: readonly number[]): number {
  const d = stdDevs(m, hosts);
  return d.cpu + d.mem;
}

export const watcherStyle = defineStrategy<z.output<typeof NoArgs>>({
  name: 'watcher-style',
  reason: 'rebalance',
  description: 'Watcher workload_stabilization-style (std dev threshold 0.1), blind to dirty rates',
  argsSchema: NoArgs,
  holdTimeS: 0,
  plan({ model: m }): StrategyResult {
    const threshold = 0.1;
    const steps: Step[] = [];
    const hosts = receivers(m);
    while (steps.length < m.policy.limits.maxMovesPerRun && hosts.length > 1) {
      const d = stdDevs(m, hosts);
      if (d.cpu <= threshold && d.mem <= threshold) break;
      const current = d.cpu + d.mem;
      const load = (h: number): number => m.cpuPct(h) + m.memPct(h);
      const src = [...hosts].sort((a, b) => load(b) - load(a))[0] ?? 0;
      let best: { v: number; to: number; sd: number } | null = null;
      for (const v of movable(m, src)) {
        for (const to of hosts) {
          if (to === src || m.placementProblem(v, to) !== null) continue;
          m.move(v, to);
          const sd = weightedStdDev(m, hosts);
          m.move(v, src);
          m.moved[v] = 0; // the trial move is not a real one
          if (sd < (best?.sd ?? current)) best = { v, to, sd };
        }
      }
      if (!best) break;
      steps.push(makeStep(m, best.v, best.to, `load std dev ${current.toFixed(3)} -> ${best.sd.toFixed(3)}`));
      m.move(best.v, best.to);
    }
    return { steps, skipped: [] };
  },
});

function drainByFreeMemory(name: string, description: string): Strategy {
  return defineStrategy<z.output<typeof DrainArgs>>({
    name,
    reason: 'drain',
    description,
    argsSchema: DrainArgs,
    holdTimeS: 0,
    scope: (snapshot, args) => ({
      emptying: args.hosts ?? snapshot.hosts.filter((h) => h.state === 'maintenance').map((h) => h.id),
    }),
    plan({ model: m }, args): StrategyResult {
      const ids = args.hosts ?? m.hosts.filter((h) => h.state === 'maintenance').map((h) => h.id);
      const drained = ids.map((id) => m.hostIndex.get(id) ?? -1).filter((h) => h >= 0);
      const steps: Step[] = [];
      const skipped: Skip[] = [];
      const hosts = receivers(m);
      const vms = drained.flatMap((h) => [...(m.hostVms[h] ?? [])]);
      vms.sort((a, b) => (m.vmMem[b] ?? 0) - (m.vmMem[a] ?? 0));
      for (const v of vms) {
        const free = (h: number): number => (m.memLimit[h] ?? 0) - (m.memLoad[h] ?? 0);
        const to = hosts
          .filter((h) => m.placementProblem(v, h) === null)
          .sort((a, b) => free(b) - free(a))[0];
        if (to === undefined) {
          skipped.push({ vm: m.vms[v]?.id ?? '', why: 'no host can take it' });
          continue;
        }
        steps.push(makeStep(m, v, to, `drain: most free memory on ${m.hosts[to]?.id ?? ''}`));
        m.move(v, to);
      }
      return { steps, skipped };
    },
  });
}

export const proxlbStyleDrain = drainByFreeMemory(
  'proxlb-style-drain',
  'ProxLB-style maintenance mode: VMs to the least used hosts',
);
export const watcherStyleDrain = drainByFreeMemory(
  'watcher-style-drain',
  'Watcher host_maintenance-style: VMs to the hosts the RAM weigher prefers',
);
