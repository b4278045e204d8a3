// One fleet of the side-by-side planner bench, in its own process (so that its peak RSS is its own): drover's
// balance and both baselines on the same snapshots under the default policy (policies/default.yaml), at each
// move budget. Prints JSON: a row per planner and budget, and (with timingRuns) drover's plan time at the
// default budget measured before anything else runs.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Plan } from '../../src/domain/plan.js';
import type { Policy } from '../../src/domain/policy.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { ClusterModel } from '../../src/planner/constraints/cluster-model.js';
import { parsePolicyText } from '../../src/planner/load-policy.js';
import { planWith } from '../../src/planner/make-plan.js';
import { Objective, OBJECTIVE_EPS } from '../../src/planner/objective.js';
import { proxlbGreedy } from './baselines/proxlb-greedy.js';
import { watcherStabilization } from './baselines/watcher-stabilization.js';
import { makeFleet, type FleetName } from './fleets.js';

interface Args {
  fleet: FleetName;
  seed: number;
  budgets: (number | null)[];
  timingRuns?: number;
}

export interface ClusterState {
  hot: number;
  overCeilingPct: number;
  violations: number;
  cpuSpreadPct: number;
  memSpreadPct: number;
  cpuSdPct: number;
  memSdPct: number;
}

export interface FleetRow {
  fleet: string;
  seed: number;
  budget: number | null;
  planner: 'drover' | 'proxlb' | 'watcher';
  before: ClusterState;
  after: ClusterState;
  moves: number;
  gib: number;
  failing: number;
  ms: number;
  /** Clusters whose spreads end within target (of `clusters`). */
  reached: number;
  clusters: number;
  note: string | null;
  /**
   * drover only, per baseline: the GiB drover's plan copies up to the first step after which it ends as well
   * as that baseline did at the same budget (no more hosts above a ceiling plus broken rules, and within the
   * target if the baseline is), summed over the clusters; null where some cluster's plan never gets there.
   */
  gibToMatch?: Partial<Record<'proxlb' | 'watcher', number | null>>;
}

/** Where a plan stands after each of its steps (index 0: before any). */
interface TracePoint {
  problems: number;
  reached: boolean;
  gib: number;
}

const here = dirname(fileURLToPath(import.meta.url));
const NOW = Date.parse('2026-12-03T00:00:00Z');
const UNLIMITED = 1_000_000;

export function defaultPolicy(): Policy {
  const file = join(here, '..', '..', 'policies', 'default.yaml');
  return parsePolicyText(readFileSync(file, 'utf8'), file);
}

function withBudget(p: Policy, budget: number | null): Policy {
  return { ...p, limits: { ...p.limits, maxMovesPerRun: budget ?? UNLIMITED } };
}

/** What the bench reads of a cluster: hot hosts, rule violations, spreads and standard deviations. */
function stateOf(m: ClusterModel): ClusterState {
  const obj = new Objective(m);
  let hot = 0;
  let over = 0;
  const cu: number[] = [];
  const mu: number[] = [];
  for (let h = 0; h < m.hostCount; h += 1) {
    if (!m.inSpread[h]) continue;
    const x = obj.hostCeiling(h);
    over += x;
    if (x > OBJECTIVE_EPS) hot += 1;
    cu.push(m.cpuPct(h));
    mu.push(m.memPct(h));
  }
  const sd = (xs: number[]) => {
    const mean = xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    return Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length));
  };
  const s = m.spread();
  return {
    hot,
    overCeilingPct: over,
    violations: m.violations(),
    cpuSpreadPct: s.cpuSpreadPct,
    memSpreadPct: s.memSpreadPct,
    cpuSdPct: sd(cu),
    memSdPct: sd(mu),
  };
}

type PlannerName = FleetRow['planner'];

function runOne(snap: Snapshot, policy: Policy, planner: PlannerName) {
  const t0 = performance.now();
  let plan: Plan;
  if (planner === 'drover') plan = planWith('balance', snap, policy, { now: NOW });
  else if (planner === 'proxlb') plan = planWith(proxlbGreedy, snap, policy, { now: NOW });
  else
    plan = planWith(watcherStabilization, snap, policy, {
      now: NOW,
      args: { maxEvaluations: snap.hosts.length >= 5000 ? 100_000_000 : 400_000_000 },
    });
  const ms = performance.now() - t0;
  const m = new ClusterModel(snap, policy, { nowMs: NOW });
  const before = stateOf(m);
  const t = policy.balance;
  const within = () => {
    const sp = m.spread();
    return sp.cpuSpreadPct <= t.targetCpuSpreadPct && sp.memSpreadPct <= t.targetMemSpreadPct;
  };
  // The plan step by step: hosts above a ceiling plus broken rules, and the GiB copied so far.
  const obj = new Objective(m);
  const isHot = (h: number) => (m.inSpread[h] && obj.hostCeiling(h) > OBJECTIVE_EPS ? 1 : 0);
  let problems = before.hot + before.violations;
  let gib = 0;
  const trace: TracePoint[] = [{ problems, reached: within(), gib }];
  const vmIndex = new Map(m.vms.map((v, i) => [v.id, i]));
  for (const s of plan.steps) {
    const v = vmIndex.get(s.vm) ?? 0;
    const from = m.vmHost[v] ?? 0;
    const to = m.hostIndex.get(s.to) ?? 0;
    problems += m.violationDelta(v, to) - isHot(from) - isHot(to);
    m.move(v, to);
    problems += isHot(from) + isHot(to);
    gib += s.predicted.transferMiB / 1024;
    trace.push({ problems, reached: within(), gib });
  }
  const after = stateOf(m);
  return {
    trace,
    before,
    after,
    moves: plan.steps.length,
    gib: plan.steps.reduce((a, s) => a + s.predicted.transferMiB, 0) / 1024,
    failing: plan.steps.filter((s) => !s.predicted.converges).length,
    ms,
    reached: after.cpuSpreadPct <= t.targetCpuSpreadPct && after.memSpreadPct <= t.targetMemSpreadPct ? 1 : 0,
    note: plan.note ?? null,
  };
}

/**
 * The GiB of drover's plans (one per cluster) up to the first step after which each ends as well as the
 * baseline's plan of that cluster: no more problems (hosts above a ceiling plus broken rules), within the
 * target where the baseline is. Null when some cluster's plan never ends as well.
 */
function gibToMatch(traces: readonly TracePoint[][], ends: readonly TracePoint[]): number | null {
  let total = 0;
  for (const [i, trace] of traces.entries()) {
    const b = ends[i];
    if (!b) return null;
    const hit = trace.find((p) => p.problems <= b.problems && (p.reached || !b.reached));
    if (!hit) return null;
    total += hit.gib;
  }
  return total;
}

function sum(a: ClusterState, b: ClusterState, n: number): ClusterState {
  // Counts add up; spreads and deviations are averaged over the clusters.
  return {
    hot: a.hot + b.hot,
    overCeilingPct: a.overCeilingPct + b.overCeilingPct,
    violations: a.violations + b.violations,
    cpuSpreadPct: a.cpuSpreadPct + b.cpuSpreadPct / n,
    memSpreadPct: a.memSpreadPct + b.memSpreadPct / n,
    cpuSdPct: a.cpuSdPct + b.cpuSdPct / n,
    memSdPct: a.memSdPct + b.memSdPct / n,
  };
}

const ZERO: ClusterState = {
  hot: 0,
  overCeilingPct: 0,
  violations: 0,
  cpuSpreadPct: 0,
  memSpreadPct: 0,
  cpuSdPct: 0,
  memSdPct: 0,
};

function main(): void {
  const args = JSON.parse(process.argv[2] ?? '{}') as Args;
  const fleet = makeFleet(args.fleet, args.seed);
  const base = defaultPolicy();
  const out: { rows: FleetRow[]; timing?: object; vms: number; hosts: number } = {
    rows: [],
    hosts: fleet.clusters.reduce((a, c) => a + c.hosts.length, 0),
    vms: fleet.clusters.reduce((a, c) => a + c.vms.length, 0),
  };
  if (args.timingRuns) {
    const snap = fleet.clusters[0] as Snapshot;
    const times: number[] = [];
    const cpu: number[] = [];
    let plan: Plan | undefined;
    for (let i = 0; i < args.timingRuns; i += 1) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      plan = planWith('balance', snap, base, { now: NOW });
      times.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    const m = new ClusterModel(snap, base, { nowMs: NOW });
    out.timing = {
      runs: args.timingRuns,
      planMsP50: Math.round(med(times)),
      planMsAll: times.map(Math.round),
      planCpuMsP50: Math.round(med(cpu)),
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      moves: plan?.steps.length ?? 0,
      violationsBefore: m.violations(),
      repairs: plan?.steps.filter((s) => s.why.startsWith('repairs a rule')).length ?? 0,
    };
  }
  for (const budget of args.budgets) {
    const policy = withBudget(base, budget);
    // drover's trace per cluster, and each baseline's outcome per cluster, for gibToMatch.
    const traces: TracePoint[][] = [];
    const ends: Record<'proxlb' | 'watcher', TracePoint[]> = { proxlb: [], watcher: [] };
    for (const planner of ['drover', 'proxlb', 'watcher'] as const) {
      const n = fleet.clusters.length;
      const row: FleetRow = {
        fleet: fleet.name,
        seed: args.seed,
        budget,
        planner,
        before: { ...ZERO },
        after: { ...ZERO },
        moves: 0,
        gib: 0,
        failing: 0,
        ms: 0,
        reached: 0,
        clusters: n,
        note: null,
      };
      for (const snap of fleet.clusters) {
        const r = runOne(snap, policy, planner);
        if (planner === 'drover') traces.push(r.trace);
        else ends[planner].push(r.trace[r.trace.length - 1] as TracePoint);
        row.before = sum(row.before, r.before, n);
        row.after = sum(row.after, r.after, n);
        row.moves += r.moves;
        row.gib += r.gib;
        row.failing += r.failing;
        row.ms += r.ms;
        row.reached += r.reached;
        if (n === 1) row.note = r.note;
      }
      row.ms = Math.round(row.ms);
      if (planner !== 'drover') {
        const d = out.rows.find((x) => x.budget === budget && x.planner === 'drover');
        if (d) d.gibToMatch = { ...d.gibToMatch, [planner]: gibToMatch(traces, ends[planner]) };
      }
      out.rows.push(row);
      process.stderr.write(
        `    ${fleet.name} budget ${budget ?? 'unlimited'} ${planner}: hot ${row.before.hot}->${row.after.hot}, ` +
          `${row.moves} moves, ${row.gib.toFixed(0)} GiB, ${row.failing} failing, ${row.ms} ms\n`,
      );
    }
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const invoked = process.argv[1];
if (invoked !== undefined && import.meta.url === pathToFileURL(resolve(invoked)).href) main();
