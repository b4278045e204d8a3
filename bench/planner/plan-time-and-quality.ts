// Planner benchmark. Side by side on fleets of several shapes (fleets.ts), under the default policy at move
// budgets of 20, 200 and unlimited: drover's balance, the ProxLB-style and the Watcher-style baselines, on the
// same snapshots in the same run — hosts above a ceiling, rule violations, spread and standard deviation
// before and after, moves, GiB to copy, moves predicted to fail, time. Then drover's plan time (p50 of 5) and
// peak RSS on 10,000 hosts / 100,000 VMs with rules (the idle-10k fleet's broken HA pairs to repair, and the
// size runs' generated cluster with its three rules). Writes bench/results/planner.json.
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { machineInfo, machineLine, textTable, writeResult, type ResultTable } from '../report.js';
import type { FleetRow } from './fleet-run.js';
import { FLEET_NAMES, type FleetName } from './fleets.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const BUDGETS = [20, 200, null] as const;
const SEED = 1;

interface Timing {
  runs: number;
  planMsP50: number;
  planMsAll: number[];
  planCpuMsP50: number;
  peakRssMiB: number;
  moves: number;
  violationsBefore?: number;
  repairs?: number;
}

async function child(script: string, args: object): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', '--max-old-space-size=4096', join(here, script), JSON.stringify(args)],
    { maxBuffer: 1 << 26 },
  );
  return stdout;
}

const budgetText = (b: number | null): string => (b === null ? 'unlimited' : String(b));
const f1 = (n: number): string => n.toFixed(1);

export async function main(): Promise<void> {
  const machine = machineInfo();
  const date = new Date().toISOString();
  console.log(`planner bench — ${date} — ${machineLine(machine)}`);
  const rows: FleetRow[] = [];
  const sizes: Record<string, { hosts: number; vms: number }> = {};
  let fleetTiming: Timing | null = null;
  for (const fleet of FLEET_NAMES) {
    const t0 = performance.now();
    const out = JSON.parse(
      await child('fleet-run.ts', {
        fleet,
        seed: SEED,
        budgets: BUDGETS,
        ...(fleet === 'idle-10k' ? { timingRuns: 5 } : {}),
      }),
    ) as { rows: FleetRow[]; timing?: Timing; hosts: number; vms: number };
    rows.push(...out.rows);
    sizes[fleet] = { hosts: out.hosts, vms: out.vms };
    if (out.timing) fleetTiming = out.timing;
    process.stderr.write(`  ${fleet}: ${Math.round((performance.now() - t0) / 1000)} s\n`);
  }
  // The size runs' generated 10,000-host cluster with its rules: default budget (5 runs per seed).
  const sizeRuns: {
    seed: number;
    planMsP50: number;
    planCpuMsP50: number;
    peakRssMiB: number;
    moves: number;
  }[] = [];
  for (const seed of [1, 2, 3]) {
    const r = JSON.parse(
      await child('size-run.ts', { hosts: 10000, vms: 100000, seed, runs: 5, maxMoves: 20, bounds: false }),
    ) as { planMsP50: number; planCpuMsP50: number; peakRssMiB: number; drover: { moves: number } };
    sizeRuns.push({
      seed,
      planMsP50: r.planMsP50,
      planCpuMsP50: r.planCpuMsP50,
      peakRssMiB: r.peakRssMiB,
      moves: r.drover.moves,
    });
    process.stderr.write(`  generated 10k/100k seed ${seed}: ${r.planMsP50} ms p50\n`);
  }

  // ---- tables
  const side: ResultTable = {
    title: 'Side by side, default policy (policies/default.yaml), seed 1',
    header: [
      'fleet',
      'budget',
      'planner',
      'hot before→after',
      'rules broken before→after',
      'spread cpu/mem before→after',
      'std dev cpu/mem before→after',
      'moves',
      'GiB',
      'GiB to end as well as proxlb/watcher',
      'predicted to fail',
      'target reached',
      'ms',
    ],
    rows: rows.map((r) => [
      r.fleet,
      budgetText(r.budget),
      r.planner,
      `${r.before.hot}→${r.after.hot}`,
      `${r.before.violations}→${r.after.violations}`,
      `${f1(r.before.cpuSpreadPct)}/${f1(r.before.memSpreadPct)}→${f1(r.after.cpuSpreadPct)}/${f1(r.after.memSpreadPct)}`,
      `${f1(r.before.cpuSdPct)}/${f1(r.before.memSdPct)}→${f1(r.after.cpuSdPct)}/${f1(r.after.memSdPct)}`,
      r.moves,
      Math.round(r.gib),
      r.gibToMatch
        ? [r.gibToMatch.proxlb, r.gibToMatch.watcher]
            .map((g) => (g === null || g === undefined ? 'never' : String(Math.round(g))))
            .join('/')
        : '-',
      r.failing,
      `${r.reached}/${r.clusters}`,
      r.ms,
    ]),
  };
  const timing: ResultTable = {
    title: 'drover plan time, 10,000 hosts / 100,000 VMs with rules, default policy (20 moves)',
    header: ['cluster', 'runs', 'p50 ms', 'CPU ms p50', 'peak RSS MiB', 'moves', 'of them rule repairs'],
    rows: [
      ...(fleetTiming
        ? [
            [
              `idle-10k (${fleetTiming.violationsBefore ?? 0} broken HA pairs)`,
              fleetTiming.runs,
              fleetTiming.planMsP50,
              fleetTiming.planCpuMsP50,
              fleetTiming.peakRssMiB,
              fleetTiming.moves,
              fleetTiming.repairs ?? 0,
            ],
          ]
        : []),
      ...sizeRuns.map((s) => [
        `generated, 3 rules, seed ${s.seed}`,
        5,
        s.planMsP50,
        s.planCpuMsP50,
        s.peakRssMiB,
        s.moves,
        '-',
      ]),
    ],
  };
  console.log(textTable(side));
  console.log(textTable(timing));

  // ---- goals
  const cases: { fleet: FleetName; budget: number | null; d: FleetRow; p: FleetRow; w: FleetRow }[] = [];
  for (const fleet of FLEET_NAMES)
    for (const budget of BUDGETS) {
      const pick = (pl: FleetRow['planner']) =>
        rows.find((r) => r.fleet === fleet && r.budget === budget && r.planner === pl);
      const d = pick('drover');
      const p = pick('proxlb');
      const w = pick('watcher');
      if (d && p && w) cases.push({ fleet, budget, d, p, w });
    }
  const label = (c: { fleet: string; budget: number | null }) => `${c.fleet}@${budgetText(c.budget)}`;
  const listed = (xs: string[]) => (xs.length === 0 ? '' : ` (not: ${xs.join(', ')})`);
  // Problems left: hosts above a ceiling plus broken hard rules. The baselines never repair a rule; drover
  // repairs first (its objective's order), each repair a move, so hot hosts alone do not compare like with like.
  const problems = (r: FleetRow) => r.after.hot + r.after.violations;
  const problemMiss = cases.filter((c) => problems(c.d) > Math.min(problems(c.p), problems(c.w)));
  const hotMiss = cases.filter((c) => c.d.after.hot > Math.min(c.p.after.hot, c.w.after.hot));
  const hotMissExplained = hotMiss.map((c) => {
    const repairs = c.d.before.violations - c.d.after.violations;
    return (
      `${label(c)} ${c.d.after.hot} vs ${Math.min(c.p.after.hot, c.w.after.hot)} hot` +
      (repairs > 0 ? `, ${repairs} moves repaired rules first` : '')
    );
  });
  // GiB: against each baseline whose outcome is no better (no fewer problems left, target reached no more
  // often), what drover's plan copies until it ends as well as that baseline (gibToMatch: the steps after
  // that point buy more than the baseline got); a baseline that ends better is judged by the goals above.
  const gibMiss: string[] = [];
  for (const c of cases)
    for (const b of [c.p, c.w]) {
      if (b.planner === 'drover' || problems(b) < problems(c.d) || b.reached > c.d.reached) continue;
      const g = c.d.gibToMatch?.[b.planner] ?? null;
      if (g === null || g > b.gib + 0.5)
        gibMiss.push(
          `${label(c)} ${g === null ? 'never as well' : Math.round(g)} vs ${b.planner} ${Math.round(b.gib)} GiB`,
        );
    }
  const reachMiss = cases.filter((c) => c.d.reached < Math.max(c.p.reached, c.w.reached));
  const reachMissSafe = cases.filter(
    (c) => c.d.reached < Math.max(c.p.failing === 0 ? c.p.reached : 0, c.w.failing === 0 ? c.w.reached : 0),
  );
  const failing = rows.filter((r) => r.planner === 'drover').reduce((a, r) => a + r.failing, 0);
  const baselineFailing = rows.filter((r) => r.planner !== 'drover').reduce((a, r) => a + r.failing, 0);
  const p50s = [fleetTiming?.planMsP50 ?? Infinity, ...sizeRuns.map((s) => s.planMsP50)];
  const worstP50 = Math.max(...p50s);
  const worstRss = Math.max(fleetTiming?.peakRssMiB ?? Infinity, ...sizeRuns.map((s) => s.peakRssMiB));
  const n = cases.length;
  const goals = [
    {
      goal:
        'drover leaves no more problems than either baseline: hosts above a ceiling plus broken hard rules ' +
        '(every fleet and budget)',
      target: `${n} of ${n}`,
      measured: `${n - problemMiss.length} of ${n}${listed(
        problemMiss.map((c) => `${label(c)} ${problems(c.d)} vs ${Math.min(problems(c.p), problems(c.w))}`),
      )}`,
      met: problemMiss.length === 0,
    },
    {
      goal:
        'drover leaves no more hosts above a ceiling than either baseline, not counting the rules it ' +
        'repairs and they leave broken (every fleet and budget)',
      target: `${n} of ${n}`,
      measured: `${n - hotMiss.length} of ${n}${listed(hotMissExplained)}`,
      met: hotMiss.length === 0,
    },
    {
      goal:
        'to end as well as a baseline that ends no better (problems left, target), drover copies no more GiB ' +
        'than it',
      target: '0 cases over',
      measured: `${gibMiss.length} cases over${listed(gibMiss)}`,
      met: gibMiss.length === 0,
    },
    {
      goal: 'drover reaches the target spread wherever a baseline does',
      target: `${n} of ${n}`,
      measured: `${n - reachMiss.length} of ${n}${listed(reachMiss.map(label))}`,
      met: reachMiss.length === 0,
    },
    {
      goal: 'drover reaches the target spread wherever a baseline does with no move predicted to fail',
      target: `${n} of ${n}`,
      measured: `${n - reachMissSafe.length} of ${n}${listed(reachMissSafe.map(label))}`,
      met: reachMissSafe.length === 0,
    },
    {
      goal: 'drover plans no move predicted to fail',
      target: '0',
      measured: `${failing} (baselines: ${baselineFailing})`,
      met: failing === 0,
    },
    {
      goal: 'plan time p50, 10,000 hosts / 100,000 VMs with rules, default policy (worst cluster)',
      target: '<= 1000 ms',
      measured: `${worstP50} ms`,
      met: worstP50 <= 1000,
    },
    {
      goal: 'peak RSS of the planning process, 10,000 hosts / 100,000 VMs (worst cluster)',
      target: '<= 512 MiB',
      measured: `${worstRss} MiB`,
      met: worstRss <= 512,
    },
  ];
  for (const g of goals)
    console.log(`goal: ${g.goal}: ${g.measured} (${g.target}) ${g.met ? 'MET' : 'MISSED'}`);
  await writeResult('planner', {
    bench: 'planner',
    date,
    machine,
    notes: [
      `Fleets (seed ${SEED}): ${FLEET_NAMES.map((f) => `${f} ${sizes[f]?.hosts ?? 0} hosts / ${sizes[f]?.vms ?? 0} VMs`).join('; ')}. Generated by bench/planner/fleets.ts.`,
      'hot: active hosts above a ceiling (CPU load, memory or vCPU allocation, as the default policy sets them). rules broken: hard-rule violations (HA pairs sharing a host). Spreads: max - min utilisation in points, target 20/20; std dev: population standard deviation of host utilisation, points. GiB: bytes each plan predicts to copy. predicted to fail: steps the predictor says will not converge (the baselines do not ask it). tiny-lopsided sums 30 clusters (spreads and deviations averaged; target reached counted per cluster).',
      'The baselines (bench/planner/baselines/) chase the spread target only: they neither repair rules nor look at dirty rates. drover repairs broken rules before it relieves hot hosts (its objective order: a broken hard rule, such as an HA pair on one host, is the larger risk), one move per repair, so at a small budget on a fleet with broken rules it relieves fewer hot hosts than they do. Like with like, the first goal counts what each plan leaves wrong: hosts above a ceiling plus broken rules; the second counts hot hosts alone.',
      "GiB to end as well as proxlb/watcher: what drover's plan copies up to the first step after which it ends as well as that baseline at the same budget (no more hosts above a ceiling plus broken rules; within target if the baseline is), summed over the clusters; the GiB goal compares this with the baseline's GiB wherever the baseline ends no better than drover (when drover ends better, its later moves buy what the baseline never got).",
      `Times are wall-clock on a shared machine (load ${machine.loadAvg.join(' / ')} at the start): other work ran at the same time, so the ms columns are noisy; CPU ms is the planning process's own CPU time.`,
    ],
    tables: [side, timing],
    goals,
    rows,
    timing: { fleet: fleetTiming, sizeRuns },
  });
}
