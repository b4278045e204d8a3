// One size of the planner benchmark, in its own process so that its peak RSS is its own. Prints JSON.
import { loadavg } from 'node:os';
import { parsePolicy } from '../../src/domain/policy.js';
import type { Plan } from '../../src/domain/plan.js';
import { ClusterModel } from '../../src/planner/constraints/cluster-model.js';
import { bandLowerBound, jointLowerBound } from '../../src/planner/lower-bound.js';
import { planWith } from '../../src/planner/make-plan.js';
import { proxlbGreedy } from './baselines/proxlb-greedy.js';
import { watcherStabilization } from './baselines/watcher-stabilization.js';
import { BENCH_RULES, generateCluster } from '../../test/planner/support/generate-cluster.js';

interface Args {
  hosts: number;
  vms: number;
  seed: number;
  runs: number;
  baselines: boolean;
  watcherBudget: number;
  /** Move budget (default: unlimited). */
  maxMoves?: number;
  /** Compute the lower bounds (default: true). */
  bounds?: boolean;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const NOW = Date.parse('2026-11-26T00:00:00Z');
const policy = parsePolicy({ rules: BENCH_RULES, limits: { maxMovesPerRun: args.maxMoves ?? 1_000_000 } });
const snap = generateCluster({ hosts: args.hosts, vms: args.vms, seed: args.seed });

const times: number[] = [];
const cpuTimes: number[] = [];
const loadBefore = loadavg()[0] ?? 0;
let plan: Plan | undefined;
for (let i = 0; i < args.runs; i += 1) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  plan = planWith('balance', snap, policy, { now: NOW });
  times.push(performance.now() - t0);
  // CPU of the whole process (the main thread and the collector's helper threads): less noisy than the
  // wall time on a shared machine.
  const c = process.cpuUsage(c0);
  cpuTimes.push((c.user + c.system) / 1000);
}
const loadAfter = loadavg()[0] ?? 0;
const peakRssMiB = process.resourceUsage().maxRSS / 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const p50Ms = median(times);

// Bounds on the same snapshot (computed after, and outside, the timed plans), when asked for.
let perDim = [0, 0];
let joint = 0;
let jointMovable = 0;
let boundMs = 0;
const targets: [number, number] = [policy.balance.targetCpuSpreadPct, policy.balance.targetMemSpreadPct];
if (args.bounds !== false) {
  const m = new ClusterModel(snap, policy, { nowMs: NOW });
  const dims = [0, 1].map((d) => ({
    loads: d === 0 ? m.cpuLoad : m.memLoad,
    caps: Float64Array.from(m.hosts, (h) => (d === 0 ? h.cpus : h.memMiB)),
    vmHost: m.vmHost,
    vmLoad: d === 0 ? m.vmCpu : m.vmMem,
    include: m.inSpread,
  }));
  perDim = dims.map((d, i) => bandLowerBound(d, targets[i] ?? 20).moves);
  const t1 = performance.now();
  joint = jointLowerBound(dims[0]!, dims[1]!, targets, { maxCells: args.hosts >= 10000 ? 16 : 64 });
  boundMs = performance.now() - t1;
  // The joint bound again, counting only VMs that can move at all under the policy (not excluded or
  // pinned, and predicted to converge over their own host's link, the fastest any move of theirs can
  // have): a lower bound for plans that respect those constraints, as every planner here must.
  const movable = new Uint8Array(m.vms.length);
  for (let v = 0; v < m.vms.length; v += 1)
    movable[v] =
      m.immovable(v, 'rebalance') === null && m.forecast(v, m.vmHost[v] ?? 0).prediction.converges ? 1 : 0;
  jointMovable = jointLowerBound({ ...dims[0]!, movable }, { ...dims[1]!, movable }, targets, {
    maxCells: args.hosts >= 10000 ? 16 : 64,
  });
}

const summary = (p: Plan, ms: number) => ({
  moves: p.steps.length,
  ms: Math.round(ms),
  before: p.before,
  after: p.after,
  reached: p.after.cpuSpreadPct <= targets[0] && p.after.memSpreadPct <= targets[1],
  nonConverging: p.steps.filter((s) => !s.predicted.converges).length,
  transferGiB: Math.round(p.steps.reduce((s, x) => s + x.predicted.transferMiB, 0) / 1024),
  note: p.note ?? null,
});

const out: Record<string, unknown> = {
  hosts: args.hosts,
  vms: args.vms,
  seed: args.seed,
  runs: args.runs,
  planMsP50: Math.round(p50Ms),
  planMsAll: times.map((t) => Math.round(t)),
  planCpuMsP50: Math.round(median(cpuTimes)),
  planCpuMsAll: cpuTimes.map((t) => Math.round(t)),
  loadavg1m: [Math.round(loadBefore * 100) / 100, Math.round(loadAfter * 100) / 100],
  peakRssMiB: Math.round(peakRssMiB),
  boundPerDim: Math.max(...perDim),
  boundPerDimCpuMem: perDim,
  boundJoint: joint,
  boundJointMovable: jointMovable,
  boundMs: Math.round(boundMs),
  drover: plan ? summary(plan, p50Ms) : null,
};
if (args.baselines) {
  let t0 = performance.now();
  const prox = planWith(proxlbGreedy, snap, policy, { now: NOW });
  out.proxlb = summary(prox, performance.now() - t0);
  t0 = performance.now();
  const wat = planWith(watcherStabilization, snap, policy, {
    now: NOW,
    args: { maxEvaluations: args.watcherBudget },
  });
  out.watcher = summary(wat, performance.now() - t0);
}
process.stdout.write(`${JSON.stringify(out)}\n`);
