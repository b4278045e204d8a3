// Stuck migrations avoided: the same simulated clusters rebalanced and drained by drover's planner (with the
// `predictive` watchdog) and by ProxLB-style and Watcher-style baselines (with the `nova` watchdog), every
// plan executed by drover's MigrationRunner on the simulator with QEMU's per-migration costs (set-up, one
// stream's limit, zero-page scanning; QEMU_MIGRATION_COSTS). Writes bench/results/outcomes.json.
import type { Plan } from '../../src/domain/plan.js';
import { parsePolicy, type Policy } from '../../src/domain/policy.js';
import { executionPolicyFromPolicy } from '../../src/executor/executor-options.js';
import { ClusterModel } from '../../src/planner/constraints/cluster-model.js';
import { planDrain, planRebalance, planWith } from '../../src/planner/index.js';
import { stepForecasts } from '../../src/service/step-forecasts.js';
import { QEMU_MIGRATION_COSTS } from '../../src/hypervisor/sim/index.js';
import type { Strategy } from '../../src/planner/strategies/strategy.js';
import {
  machineInfo,
  machineLine,
  percentile,
  writeResult,
  round,
  textTable,
  type ResultTable,
} from '../report.js';
import { proxlbStyle, proxlbStyleDrain, watcherStyle, watcherStyleDrain } from './baselines.js';
import { executePlanVirtual, type ExecutionResult } from './plan-executor.js';
import { clusterSpec, startWorld, BANDWIDTH_NOISE_PCT, type LinkName } from './scenario.js';

export type PlannerName = 'drover' | 'proxlb-style' | 'watcher-style';
const PLANNERS: PlannerName[] = ['drover', 'proxlb-style', 'watcher-style'];
type ScenarioKind = 'rebalance' | 'drain';

export function benchPolicy(profile: 'predictive' | 'nova'): Policy {
  return parsePolicy({ watchdog: { profile } });
}

interface Scenario {
  name: string;
  kind: ScenarioKind;
  seed: number;
  link: LinkName;
}

export interface PlannerOutcome {
  scenario: string;
  kind: ScenarioKind;
  link: LinkName;
  planner: PlannerName;
  planned: number;
  /** VMs the planner chose not to move (drover: predicted not to converge). */
  skipped: number;
  started: number;
  completed: number;
  aborted: number;
  failed: number;
  transferMiB: number;
  downtimesMs: number[];
  budgetMs: number;
  overBudget: number;
  cpuSpreadPct: number;
  memSpreadPct: number;
  /** VMs left on drained hosts (drain scenarios). */
  leftOnDrained: number;
  makespanS: number;
}

function plannerPlan(
  planner: PlannerName,
  kind: ScenarioKind,
  snapshot: Parameters<typeof planRebalance>[0],
  drainHost: string,
  nowMs: number,
): { plan: Plan; policy: Policy } {
  if (planner === 'drover') {
    const policy = benchPolicy('predictive');
    const plan =
      kind === 'rebalance'
        ? planRebalance(snapshot, policy, { now: nowMs })
        : planDrain(snapshot, policy, [drainHost], { now: nowMs, allowPartial: true });
    return { plan, policy };
  }
  const policy = benchPolicy('nova');
  const strategy: Strategy =
    kind === 'rebalance'
      ? planner === 'proxlb-style'
        ? proxlbStyle
        : watcherStyle
      : planner === 'proxlb-style'
        ? proxlbStyleDrain
        : watcherStyleDrain;
  const args = kind === 'drain' ? { hosts: [drainHost] } : {};
  return { plan: planWith(strategy, snapshot, policy, { now: nowMs, args }), policy };
}

/** Spread after the migrations that really completed (aborted ones leave their VM where it was). */
function finalSpread(
  snapshot: Parameters<typeof planRebalance>[0],
  policy: Policy,
  exec: ExecutionResult,
  drainHost: string | null,
): { cpuSpreadPct: number; memSpreadPct: number; leftOnDrained: number } {
  const draining = drainHost ? new Set([drainHost]) : undefined;
  const m = new ClusterModel(snapshot, policy, { nowMs: 0, history: undefined, draining });
  for (const r of exec.steps) {
    if (r.outcome !== 'completed') continue;
    const v = m.vms.findIndex((vm) => vm.id === r.step.vm);
    const to = m.hostIndex.get(r.step.to);
    if (v >= 0 && to !== undefined) m.move(v, to);
  }
  const d = drainHost ? m.hostIndex.get(drainHost) : undefined;
  return { ...m.spread(), leftOnDrained: d === undefined ? 0 : (m.hostVms[d]?.length ?? 0) };
}

async function runScenario(sc: Scenario, planner: PlannerName): Promise<PlannerOutcome> {
  const spec = clusterSpec({ seed: sc.seed, hosts: 8, vmsPerHost: [3, 16], link: sc.link });
  const world = await startWorld(spec, QEMU_MIGRATION_COSTS);
  try {
    const { snapshot, clock, hv } = world;
    const counts = new Map<string, number>();
    for (const v of snapshot.vms) counts.set(v.host, (counts.get(v.host) ?? 0) + 1);
    const drainHost = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
    const { plan, policy } = plannerPlan(planner, sc.kind, snapshot, drainHost, clock.now());
    const execPolicy = executionPolicyFromPolicy(policy);
    // drover's service hands the executor the planner's per-step watchdog forecasts; the baselines have none.
    const forecasts = planner === 'drover' ? stepForecasts(plan, snapshot, policy) : {};
    const exec = await executePlanVirtual(hv, clock, plan, {
      policy: execPolicy,
      limits: execPolicy.limits,
      forecasts,
    });
    const reports = exec.steps.flatMap((s) => (s.report ? [s.report] : []));
    const completed = reports.filter((r) => r.outcome === 'completed');
    const downtimes = completed.flatMap((r) => (r.downtimeMs === null ? [] : [r.downtimeMs]));
    const spread = finalSpread(snapshot, policy, exec, sc.kind === 'drain' ? drainHost : null);
    return {
      scenario: sc.name,
      kind: sc.kind,
      link: sc.link,
      planner,
      planned: plan.steps.length,
      skipped: plan.skipped.length,
      started: exec.steps.filter((s) => s.startedAtMs !== null).length,
      completed: completed.length,
      aborted: reports.filter((r) => r.outcome === 'aborted' || r.outcome === 'stuck').length,
      failed: exec.steps.filter((s) => s.outcome === 'failed' || s.outcome === 'refused').length,
      transferMiB: Math.round(reports.reduce((s, r) => s + r.transferMiB, 0)),
      downtimesMs: downtimes,
      budgetMs: policy.vms.defaultDowntimeBudgetMs,
      overBudget: completed.filter((r) => r.downtimeMs !== null && r.downtimeMs > r.downtimeBudgetMs).length,
      cpuSpreadPct: spread.cpuSpreadPct,
      memSpreadPct: spread.memSpreadPct,
      leftOnDrained: spread.leftOnDrained,
      makespanS: round((exec.endedAtMs - exec.startedAtMs) / 1000, 0),
    };
  } finally {
    await world.hv.close();
  }
}

function scenarios(quick: boolean): Scenario[] {
  const seeds = quick ? [1] : [1, 2, 3];
  const out: Scenario[] = [];
  for (const link of ['1G', '10G'] as const)
    for (const seed of seeds)
      for (const kind of ['rebalance', 'drain'] as const)
        out.push({ name: `${kind} ${link} seed ${seed}`, kind, seed, link });
  return out;
}

export async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const machine = machineInfo();
  const startedAt = new Date();
  console.log(`outcomes bench${quick ? ' (quick)' : ''} on ${machineLine(machine)}`);
  const outcomes: PlannerOutcome[] = [];
  for (const sc of scenarios(quick)) {
    for (const planner of PLANNERS) {
      const o = await runScenario(sc, planner);
      outcomes.push(o);
      console.log(
        `${sc.name} ${planner}: planned ${o.planned}, completed ${o.completed}, aborted ${o.aborted}, ` +
          `spread cpu ${o.cpuSpreadPct} mem ${o.memSpreadPct}`,
      );
    }
  }

  const fmtMs = (xs: number[], p: number): string =>
    xs.length > 0 ? String(round(percentile(xs, p), 0)) : '-';
  const worse = (o: PlannerOutcome): number => Math.max(o.cpuSpreadPct, o.memSpreadPct);
  const perScenario: ResultTable = {
    title: 'Per scenario',
    header: [
      'scenario',
      'planner',
      'planned',
      'skipped',
      'started',
      'completed',
      'aborted',
      'GiB moved',
      'downtime p50/p99 ms',
      'over budget',
      'spread cpu/mem pts',
      'left on drained',
      'makespan s',
    ],
    rows: outcomes.map((o) => [
      o.scenario,
      o.planner,
      o.planned,
      o.skipped,
      o.started,
      o.completed,
      o.aborted,
      round(o.transferMiB / 1024, 1),
      `${fmtMs(o.downtimesMs, 50)} / ${fmtMs(o.downtimesMs, 99)}`,
      o.overBudget,
      `${o.cpuSpreadPct} / ${o.memSpreadPct}`,
      o.kind === 'drain' ? o.leftOnDrained : null,
      o.makespanS,
    ]),
  };
  const totals = PLANNERS.map((p) => {
    const os = outcomes.filter((o) => o.planner === p);
    const sum = (f: (o: PlannerOutcome) => number): number => os.reduce((s, o) => s + f(o), 0);
    const downtimes = os.flatMap((o) => o.downtimesMs);
    const rebal = os.filter((o) => o.kind === 'rebalance');
    return {
      planner: p,
      started: sum((o) => o.started),
      completed: sum((o) => o.completed),
      aborted: sum((o) => o.aborted),
      failed: sum((o) => o.failed),
      skipped: sum((o) => o.skipped),
      transferGiB: round(sum((o) => o.transferMiB) / 1024, 1),
      downtimeP50Ms: downtimes.length > 0 ? round(percentile(downtimes, 50), 0) : null,
      downtimeP99Ms: downtimes.length > 0 ? round(percentile(downtimes, 99), 0) : null,
      overBudget: sum((o) => o.overBudget),
      meanWorseSpreadPct:
        rebal.length > 0 ? round(rebal.reduce((s, o) => s + worse(o), 0) / rebal.length, 1) : null,
      leftOnDrained: sum((o) => o.leftOnDrained),
    };
  });
  const totalTable: ResultTable = {
    title: `Totals over ${scenarios(quick).length} scenarios (downtime budget ${benchPolicy('nova').vms.defaultDowntimeBudgetMs} ms)`,
    header: [
      'planner',
      'watchdog',
      'started',
      'completed',
      'aborted',
      'failed',
      'not planned',
      'GiB moved',
      'downtime p50 / p99 ms',
      'over budget',
      'rebalance spread (worse dim, mean) pts',
      'left on drained hosts',
    ],
    rows: totals.map((t) => [
      t.planner,
      t.planner === 'drover' ? 'predictive' : 'nova',
      t.started,
      t.completed,
      t.aborted,
      t.failed,
      t.skipped,
      t.transferGiB,
      `${t.downtimeP50Ms ?? '-'} / ${t.downtimeP99Ms ?? '-'}`,
      t.overBudget,
      t.meanWorseSpreadPct,
      t.leftOnDrained,
    ]),
  };
  const drover = totals.find((t) => t.planner === 'drover');
  const baselines = totals.filter((t) => t.planner !== 'drover');
  const reduction = baselines.map((b) =>
    b.aborted > 0 ? round(1 - (drover?.aborted ?? 0) / b.aborted, 3) : null,
  );
  const spreadOk = baselines.every(
    (b) => (drover?.meanWorseSpreadPct ?? Infinity) <= (b.meanWorseSpreadPct ?? Infinity) + 1e-9,
  );
  const goals = [
    ...baselines.map((b, i) => ({
      goal: `aborted migrations vs ${b.planner}`,
      target: '>= 90 % fewer',
      measured:
        reduction[i] === null
          ? 'baseline aborted none'
          : `${round((reduction[i] ?? 0) * 100, 1)} % fewer (${drover?.aborted} vs ${b.aborted})`,
      met: (reduction[i] ?? 0) >= 0.9,
    })),
    {
      goal: 'final spread (rebalance, mean of the worse dimension)',
      target: 'equal or better than both baselines',
      measured: `drover ${drover?.meanWorseSpreadPct} pts; ${baselines.map((b) => `${b.planner} ${b.meanWorseSpreadPct}`).join(', ')}`,
      met: spreadOk,
    },
    {
      goal: "drover's aborted migrations, with QEMU's per-migration costs on",
      target: '0',
      measured: drover?.aborted ?? 0,
      met: (drover?.aborted ?? 0) === 0,
    },
    {
      goal: "migrations ending over their downtime budget (reported downtime > the VM's budget), with QEMU's per-migration costs on",
      target: 'drover 0',
      measured: totals.map((t) => `${t.planner} ${t.overBudget} of ${t.completed}`).join(', '),
      met: (drover?.overBudget ?? 0) === 0,
    },
  ];
  console.log('');
  console.log(textTable(perScenario));
  console.log('');
  console.log(textTable(totalTable));
  console.log('');
  for (const g of goals)
    console.log(`${g.met ? 'MET   ' : 'MISSED'} ${g.goal}: ${g.measured} (goal ${g.target})`);
  await writeResult('outcomes', {
    bench: 'outcomes',
    date: startedAt.toISOString(),
    mode: quick ? 'quick' : 'full',
    machine,
    notes: [
      'Simulated clusters of 8 hosts with 3-16 VMs each (idle, web, database, JVM-like presets and Bitbrains-trace VMs), links of 1 and 10 Gbit/s with ' +
        `${BANDWIDTH_NOISE_PCT} % bandwidth noise; the snapshot is taken by drover's collector after every VM's dirty rate was measured.`,
      "Plans executed by drover's MigrationRunner and Watchdog on the simulator's virtual clock (no BullMQ/Redis: bench/outcomes/plan-executor.ts applies the executor's per-host and cluster limits and link shares).",
      `The simulator runs with QEMU's per-migration costs for every planner: set-up ${QEMU_MIGRATION_COSTS.setupMs} ms, one stream at most ${QEMU_MIGRATION_COSTS.streamMaxMiBps} MiB/s, zero pages scanned at ${QEMU_MIGRATION_COSTS.zeroScanMiBps} MiB/s. Over budget: completed migrations whose reported downtime exceeds the VM's downtime budget.`,
      'Baselines (bench/outcomes/baselines.ts) decide by utilisation only and run with the nova watchdog profile; drover plans with its predictor and runs with the predictive profile. No auto-converge or post-copy for anyone.',
      'Final spread is computed on the planning model with only the completed migrations applied.',
    ],
    tables: [totalTable, perScenario],
    goals,
    totals,
    outcomes,
  });
  console.log('\nwrote bench/results/outcomes.json');
}
