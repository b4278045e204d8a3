// Predictor accuracy on real migrations: in drover's libvirt lab (its own LAB_DIR, .lab-bench), guests that
// dirty memory at a set rate are measured by the collector, drover predicts each migration (converges,
// duration, downtime), and then the migration runs for real between two libvirt hosts, aborted at a fixed
// deadline. `--quick` runs a reduced grid. Writes bench/results/predictor.json and
// docs/charts/predictor-duration.svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Collector } from '../../src/collector/collector.js';
import { InMemoryCollectorStore } from '../../src/collector/collector-store.js';
import { parsePolicy, type Policy } from '../../src/domain/policy.js';
import type { MigrationRecord, VmHistory } from '../../src/domain/history.js';
import type { Vm } from '../../src/domain/snapshot.js';
import type { MigrationJob } from '../../src/hypervisor/hypervisor.js';
import type { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { predictVmMigration, SwitchoverBook } from '../../src/planner/predictor/index.js';
import {
  defineGuest,
  guestName,
  heartbeatAdvances,
  labCommand,
  labIsUp,
  libvirtHypervisor,
  removeGuest,
  REPO_ROOT,
  sleep,
} from '../../test/lab/lab-client.js';
import {
  machineInfo,
  machineLine,
  median,
  percentile,
  writeResult,
  round,
  textTable,
  type ResultTable,
} from '../report.js';
import { LinkCalibration, type ObservedMigration } from './link-calibration.js';
import { scatterSvg } from './scatter-svg.js';

const A = 'lab1';
const B = 'lab2';
const RAMS_MIB = [128, 256, 512] as const;
/** The part of a guest's RAM its workload rewrites (the rest stays untouched, so QEMU sends it as zero pages). */
const REGION_MIB: Record<number, number> = { 128: 48, 256: 96, 512: 160 };
/** The collector's dirty-rate window for this bench (2 s: the lab guests' rounds are seconds long)... */
const DIRTY_WINDOW_S = 2;
/** ...and how many probes it takes of each guest before predicting (its peak is what the model uses). */
const DIRTY_PROBES = 3;
/** A guest's first migration only calibrates (round-0 size, link rate); it is given this long. */
const CALIBRATION_DEADLINE_S = 15;

interface Grid {
  dirtyMiBps: number[];
  capsMiBps: number[];
  downtimesMs: number[];
  deadlineS: number;
}

const FULL: Grid = {
  dirtyMiBps: [0, 5, 10, 20, 40, 80],
  capsMiBps: [20, 50, 100],
  downtimesMs: [30, 100, 300],
  deadlineS: 30,
};
const QUICK: Grid = { dirtyMiBps: [0, 10, 80], capsMiBps: [20, 100], downtimesMs: [30, 300], deadlineS: 30 };

interface Run {
  result: 'completed' | 'aborted' | 'failed';
  wallS: number;
  stats: MigrationJob | null;
  /** Memory processed when round 0 ended (MiB), when seen. */
  round0MiB: number | null;
  /** From the call until the job first showed as active (s), when seen. */
  jobStartS: number | null;
  /** From the call until round 0 was seen to have ended (s), when seen. */
  round0EndS: number | null;
  /** Highest rate QEMU reported (MiB/s, at most the cap): what the link carries when there is data. */
  throughputMiBps: number | null;
  /** Highest dirty rate QEMU reported after round 0 (MiB/s): the guest's rate while it migrates. */
  migratingDirtyMiBps: number | null;
  /** QEMU's last dirty-rate reading after round 0 (MiB/s): what drover's executor records into history. */
  lastDirtyMiBps: number | null;
  /** Passes QEMU made (round 0 counted), from the final stats or, for an aborted run, the last reading. */
  passes: number;
  processedMiB: number;
}

export interface CellResult {
  dirtySetMiBps: number;
  memMiB: number;
  capMiBps: number;
  downtimeBudgetMs: number;
  measuredDirtyMiBps: number | null;
  /** What QEMU reported the guest dirtying during this migration (peak after round 0), for analysis. */
  migratingDirtyMiBps: number | null;
  round0MiB: number;
  /** The per-VM correction the prediction applied from this guest's earlier migrations (1: none). */
  correction: number;
  /** The dirty rate the prediction planned with: the measured one times the factor from history. */
  plannedDirtyMiBps: number | null;
  bandwidthModelMiBps: number;
  setupS: number;
  /** The switch-over cost learnt from the measured downtimes before (SwitchoverBook), and where from. */
  switchoverOverheadMs: number;
  switchoverSource: string;
  /** The max downtime QEMU was given: the budget less the learnt switch-over (the most drover's watchdog sets). */
  maxDowntimeMs: number | null;
  /** Why drover would not start this migration (its budget is below the switch-over alone); not run then. */
  skipped: string | null;
  predicted: { converges: boolean; durationS: number; downtimeMs: number };
  actual: {
    converged: boolean;
    result: string;
    durationS: number;
    downtimeMs: number | null;
    iterations: number;
  };
}

/** Runs one migration of `vmId` to the other host, polling its job, aborting it after deadlineS. */
async function runMigration(
  hv: LibvirtHypervisor,
  vmId: string,
  capMiBps: number,
  downtimeMs: number,
  deadlineS: number,
): Promise<Run> {
  const where = await hv.locateVm(vmId);
  const from = where.find((p) => p.state === 'running')?.hostId ?? A;
  const to = from === A ? B : A;
  const started = Date.now();
  const handle = await hv.migrate({
    vmId,
    from,
    to,
    kind: 'live',
    maxDowntimeMs: downtimeMs,
    bandwidthMiBps: capMiBps,
  });
  let finished = false;
  let aborted = false;
  const rates: number[] = [];
  let migratingDirty: number | null = null;
  let lastDirty: number | null = null;
  let lastIteration = 0;
  let round0MiB: number | null = null;
  let jobStartS: number | null = null;
  let round0EndS: number | null = null;
  let lastProcessedMiB = 0;
  const done = handle.done.finally(() => {
    finished = true;
  });
  while (!finished) {
    await Promise.race([done, sleep(250)]);
    if (finished) break;
    try {
      const s = await hv.jobStats(from, vmId);
      if (s.type === 'active') {
        const atS = (Date.now() - started) / 1000;
        jobStartS ??= atS;
        lastProcessedMiB = s.memProcessedMiB;
        lastIteration = s.iteration;
        // QEMU's rate of the last stretch; it is low while it scans untouched memory or has little left,
        // and reaches what the link carries while there is data to send: the highest reading says that
        if (s.transferMiBps >= 1) rates.push(s.transferMiBps);
        if (s.iteration >= 1) {
          const d = s.dirtyMiBps;
          migratingDirty = Math.max(migratingDirty ?? 0, d);
          lastDirty = d;
        }
        if (round0MiB === null && s.iteration >= 1) {
          round0MiB = s.memProcessedMiB;
          round0EndS = atS;
        }
      }
    } catch {
      // the job ended between the check and the call; `done` settles next
    }
    if (!aborted && Date.now() - started > deadlineS * 1000) {
      aborted = true;
      await hv.abortJob(from, vmId).catch(() => undefined);
    }
  }
  const outcome = await done;
  const wallS = (Date.now() - started) / 1000;
  const stats = outcome.stats;
  const processedMiB = stats ? stats.memProcessedMiB : lastProcessedMiB;
  return {
    result: outcome.result,
    wallS,
    stats,
    round0MiB,
    jobStartS,
    round0EndS,
    throughputMiBps: rates.length > 0 ? Math.min(capMiBps, Math.max(...rates)) : null,
    migratingDirtyMiBps: migratingDirty === null ? null : round(migratingDirty, 1),
    lastDirtyMiBps: lastDirty === null ? null : round(lastDirty, 1),
    passes: (stats?.iteration ?? lastIteration) + 1,
    processedMiB,
  };
}

/** Time QEMU spent sending (s): round 0 as observed, the rest at the rate it reported; null if unknown. */
function sendingS(run: Run, rateMiBps: number): number | null {
  if (run.jobStartS === null || run.round0EndS === null || run.round0MiB === null) return null;
  const later = Math.max(0, run.processedMiB - run.round0MiB);
  return run.round0EndS - run.jobStartS + (rateMiBps > 0 ? later / rateMiBps : 0);
}

function observation(
  run: Run,
  capMiBps: number,
  calibration: LinkCalibration,
  modelStopMs: number | null,
): ObservedMigration {
  const completed = run.result === 'completed';
  return {
    capMiBps,
    completed,
    wallS: run.wallS,
    round0MiB: run.round0MiB,
    processedMiB: run.processedMiB,
    transferS: sendingS(run, run.throughputMiBps ?? calibration.bandwidthMiBps(capMiBps)),
    throughputMiBps: run.throughputMiBps,
    downtimeMs: completed ? (run.stats?.downtimeMs ?? null) : null,
    modelStopMs,
  };
}

/**
 * What round 0 of this guest amounts to in the model's terms: the MiB that, at the link's rate, take as long
 * as round 0 took in the guest's previous migration. QEMU sends untouched pages as a flag but still scans
 * them, so a large mostly-empty guest costs time no byte count shows.
 */
function round0Equivalent(run: Run, bwMiBps: number, setupS: number): number {
  if (run.round0EndS !== null && run.jobStartS !== null && run.round0MiB !== null)
    return Math.max(run.round0MiB, (run.round0EndS - run.jobStartS) * bwMiBps);
  if (run.result === 'completed') return Math.max(run.processedMiB, (run.wallS - setupS) * bwMiBps);
  return Math.max(run.processedMiB, bwMiBps * CALIBRATION_DEADLINE_S);
}

function benchPolicy(deadlineS: number, setupS: number, switchoverOverheadMs: number): Policy {
  return parsePolicy({
    // The bench's deadline is the model's limit; QEMU itself has no round limit, so neither does the model.
    migration: { maxDurationS: deadlineS, maxIterations: 10_000, setupS, switchoverOverheadMs },
  });
}

/** Collector cycles with a dirty-rate probe between each; the VM as the last snapshot shows it. */
async function measureGuest(hv: LibvirtHypervisor, vmId: string): Promise<Vm> {
  const collector = new Collector(
    { hypervisor: hv, store: new InMemoryCollectorStore() },
    { dirtyRate: { windowS: DIRTY_WINDOW_S, remeasureS: 1, maxPerHost: 2 } },
  );
  let vm: Vm | undefined;
  for (let i = 0; i <= DIRTY_PROBES; i += 1) {
    const { snapshot } = await collector.runCycle();
    vm = snapshot.vms.find((v) => v.id === vmId);
    if (i < DIRTY_PROBES) await sleep(DIRTY_WINDOW_S * 1000 + 800);
  }
  if (!vm) throw new Error(`the collector did not see guest ${vmId}`);
  return vm;
}

interface Classification {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

function classify(cells: CellResult[]): Classification {
  const c = { tp: 0, fp: 0, fn: 0, tn: 0 };
  for (const x of cells) {
    if (x.predicted.converges && x.actual.converged) c.tp += 1;
    else if (x.predicted.converges) c.fp += 1;
    else if (x.actual.converged) c.fn += 1;
    else c.tn += 1;
  }
  return c;
}

const ratio = (a: number, b: number): number | null => (b > 0 ? round(a / b, 3) : null);

/**
 * A finished migration as drover's executor records it into the VM's history (src/executor/executor.ts), so
 * the predictor's per-VM correction learns from this guest's earlier migrations exactly as in the service.
 */
function historyRecord(
  vmId: string,
  run: Run,
  inputs: {
    memMiB: number;
    plannedDirtyMiBps: number | null;
    dirtyFactor: number;
    bandwidthMiBps: number;
    maxDowntimeMs: number;
    budgetMs?: number;
  },
  predicted: { durationS: number; correction: number; downtimeMs: number } | null,
): MigrationRecord {
  return {
    vmId,
    from: A,
    to: B,
    kind: 'live',
    endedAt: new Date().toISOString(),
    result: run.result,
    predictedDurationS: predicted?.durationS ?? null,
    ...(predicted ? { predictionCorrection: predicted.correction } : {}),
    measuredDurationS: run.wallS,
    downtimeMs: run.result === 'completed' ? (run.stats?.downtimeMs ?? null) : null,
    ...(inputs.budgetMs !== undefined ? { downtimeBudgetMs: inputs.budgetMs } : {}),
    ...(predicted ? { predictedDowntimeMs: predicted.downtimeMs } : {}),
    maxDowntimeMs: inputs.maxDowntimeMs,
    iterations: run.passes,
    transferMiB: run.processedMiB,
    memMiB: inputs.memMiB,
    dirtyMiBps: run.lastDirtyMiBps,
    plannedDirtyMiBps: inputs.plannedDirtyMiBps,
    plannedDirtyFactor: inputs.dirtyFactor,
    bandwidthMiBps: inputs.bandwidthMiBps,
  };
}

export async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const grid = quick ? QUICK : FULL;
  process.env.LAB_DIR = resolve(process.env.BENCH_LAB_DIR ?? join(REPO_ROOT, '.lab-bench'));
  const machine = machineInfo();
  const startedAt = new Date();
  console.log(`predictor bench (${quick ? 'quick' : 'full'} grid) on ${machineLine(machine)}`);
  console.log(`lab: ${process.env.LAB_DIR}`);

  const startedLab = !labIsUp();
  await labCommand('up');
  const hv = libvirtHypervisor({ callTimeoutMs: 30_000 });
  const defaults = benchPolicy(grid.deadlineS, 1, 20).migration;
  const calibration = new LinkCalibration({
    setupS: defaults.setupS,
    switchoverOverheadMs: defaults.switchoverOverheadMs,
  });
  const cells: CellResult[] = [];
  const guests: string[] = [];
  /** Every guest's history so far: the switch-over cost is learnt from them as the planner learns it. */
  const histories = new Map<string, VmHistory>();
  try {
    for (const [i, dirty] of grid.dirtyMiBps.entries()) {
      for (const [j, cap] of grid.capsMiBps.entries()) {
        const memMiB = RAMS_MIB[(i + j) % RAMS_MIB.length] ?? 256;
        const region = REGION_MIB[memMiB] ?? 64;
        const name = guestName(`pb-d${dirty}-c${cap}`);
        guests.push(name);
        const g = await defineGuest({
          name,
          host: A,
          memMiB,
          ...(dirty > 0 ? { mb: region, rate: dirty * 256 } : {}),
        });
        await heartbeatAdvances(A, name, 30_000);
        await sleep(1_000); // let the workload reach its rate
        const vm = await measureGuest(hv, g.id);

        // Calibration migration: learns how long round 0 takes for this guest and adds to the link's record.
        const cal = await runMigration(hv, g.id, cap, 300, CALIBRATION_DEADLINE_S);
        calibration.observe(observation(cal, cap, calibration, null));
        const round0MiB = round0Equivalent(cal, calibration.bandwidthMiBps(cap), calibration.setupS());
        // The calibration run had no prediction of its own: the predictor models it again from these inputs.
        const history: VmHistory = {
          vmId: g.id,
          quarantinedUntil: null,
          records: [
            historyRecord(
              g.id,
              cal,
              {
                memMiB: round0MiB,
                plannedDirtyMiBps: vm.dirtyPeakMiBps ?? vm.dirtyMiBps,
                dirtyFactor: 1,
                bandwidthMiBps: calibration.bandwidthMiBps(cap),
                maxDowntimeMs: 300,
              },
              null,
            ),
          ],
        };
        histories.set(g.id, history);

        for (const dt of grid.downtimesMs) {
          const setupS = calibration.setupS();
          const switchover = new SwitchoverBook(histories.values(), defaults.switchoverOverheadMs).cost(
            g.id,
            A,
            B,
          );
          const overheadMs = switchover.ms;
          const policy = benchPolicy(grid.deadlineS, setupS, overheadMs);
          const bw = calibration.bandwidthMiBps(cap);
          const f = predictVmMigration(
            { ...vm, memUsedMiB: round0MiB },
            { bandwidthMiBps: bw, concurrency: 1 },
            policy,
            {
              kind: 'live',
              downtimeBudgetMs: dt,
              allowAutoConverge: false,
              allowPostCopy: false,
              history,
              switchover,
            },
          );
          const p = f.prediction;
          const skipped = dt <= overheadMs ? (f.reason ?? 'budget below the switch-over') : null;
          const predictedConverges = p.converges && p.durationS <= grid.deadlineS;
          // What drover's watchdog sets at most: the budget less the learnt switch-over.
          const maxDowntimeMs = Math.max(1, Math.floor(dt - overheadMs));
          const run: Run =
            skipped === null
              ? await runMigration(hv, g.id, cap, maxDowntimeMs, grid.deadlineS)
              : {
                  result: 'failed',
                  wallS: 0,
                  stats: null,
                  round0MiB: null,
                  jobStartS: null,
                  round0EndS: null,
                  throughputMiBps: null,
                  migratingDirtyMiBps: null,
                  lastDirtyMiBps: null,
                  passes: 0,
                  processedMiB: 0,
                };
          const converged = run.result === 'completed';
          const downtimeMs = converged ? (run.stats?.downtimeMs ?? null) : null;
          if (skipped === null) {
            calibration.observe(observation(run, cap, calibration, Math.max(0, p.downtimeMs - overheadMs)));
            history.records.push(
              historyRecord(
                g.id,
                run,
                {
                  memMiB: round0MiB,
                  plannedDirtyMiBps: p.dirtyMiBps ?? null,
                  dirtyFactor: p.dirtyFactor ?? 1,
                  bandwidthMiBps: bw,
                  maxDowntimeMs,
                  budgetMs: dt,
                },
                { durationS: p.durationS, correction: f.correction, downtimeMs: p.downtimeMs },
              ),
            );
          }
          const cell: CellResult = {
            dirtySetMiBps: dirty,
            memMiB,
            capMiBps: cap,
            downtimeBudgetMs: dt,
            measuredDirtyMiBps: vm.dirtyPeakMiBps ?? vm.dirtyMiBps,
            migratingDirtyMiBps: run.migratingDirtyMiBps,
            round0MiB: round(round0MiB, 1),
            correction: f.correction,
            plannedDirtyMiBps: p.dirtyMiBps ?? null,
            bandwidthModelMiBps: round(bw, 1),
            setupS: round(setupS, 2),
            switchoverOverheadMs: round(overheadMs, 0),
            switchoverSource: switchover.source,
            maxDowntimeMs: skipped === null ? maxDowntimeMs : null,
            skipped,
            predicted: {
              converges: predictedConverges,
              durationS: p.durationS,
              downtimeMs: p.downtimeMs,
            },
            actual: {
              converged,
              result: run.result,
              durationS: round(run.wallS, 2),
              downtimeMs,
              iterations: run.stats?.iteration ?? 0,
            },
          };
          cells.push(cell);
          console.log(
            `dirty ${dirty} (measured ${cell.measuredDirtyMiBps}) ram ${memMiB} cap ${cap} dt ${dt} ` +
              `switch-over ${round(overheadMs, 0)} ms: ${skipped !== null ? `skipped (${skipped}) ` : ''}` +
              `predicted ${predictedConverges ? `${p.durationS} s / ${p.downtimeMs} ms` : 'no'}, ` +
              `actual ${converged ? `${cell.actual.durationS} s / ${downtimeMs} ms` : run.result}`,
          );
        }
        await removeGuest(name);
        guests.splice(guests.indexOf(name), 1);
      }
    }
  } finally {
    for (const name of guests) await removeGuest(name).catch(() => undefined);
    await hv.close();
    if (startedLab) await labCommand('down');
  }

  const finishedAt = new Date();
  const started = cells.filter((x) => x.skipped === null);
  const c = classify(started);
  const both = started.filter((x) => x.predicted.converges && x.actual.converged);
  const overBudget = started.filter(
    (x) => x.actual.downtimeMs !== null && x.actual.downtimeMs > x.downtimeBudgetMs,
  );
  const durErr = both.map((x) => Math.abs(x.predicted.durationS - x.actual.durationS) / x.actual.durationS);
  const dtErr = both
    .filter((x) => x.actual.downtimeMs !== null)
    .map((x) => Math.abs(x.predicted.downtimeMs - (x.actual.downtimeMs ?? 0)));
  const summary = {
    cells: cells.length,
    skipped: cells.length - started.length,
    started: started.length,
    convergedActual: started.filter((x) => x.actual.converged).length,
    convergedPredicted: started.filter((x) => x.predicted.converges).length,
    overBudget: overBudget.length,
    worstOverBudget:
      overBudget.length > 0
        ? overBudget
            .map((x) => `${x.actual.downtimeMs} ms on a ${x.downtimeBudgetMs} ms budget`)
            .reduce((a, b) => (Number.parseFloat(a) >= Number.parseFloat(b) ? a : b))
        : null,
    ...c,
    convergePrecision: ratio(c.tp, c.tp + c.fp),
    convergeRecall: ratio(c.tp, c.tp + c.fn),
    noConvergePrecision: ratio(c.tn, c.tn + c.fn),
    noConvergeRecall: ratio(c.tn, c.tn + c.fp),
    durationRelErrMedian: both.length > 0 ? round(median(durErr), 3) : null,
    durationRelErrP90: both.length > 0 ? round(percentile(durErr, 90), 3) : null,
    downtimeAbsErrMedianMs: dtErr.length > 0 ? round(median(dtErr), 0) : null,
    downtimeAbsErrP90Ms: dtErr.length > 0 ? round(percentile(dtErr, 90), 0) : null,
  };
  const cellTable: ResultTable = {
    title: 'Cells (duration s / downtime ms; "-" = not converged)',
    header: [
      'dirty set',
      'dirty measured',
      'dirty planned',
      'dirty migrating',
      'RAM MiB',
      'cap MiB/s',
      'model bw',
      'history x',
      'budget ms',
      'switch-over ms',
      'max downtime ms',
      'predicted',
      'actual',
      'dur err %',
    ],
    rows: cells.map((x) => [
      x.dirtySetMiBps,
      x.measuredDirtyMiBps,
      x.plannedDirtyMiBps,
      x.migratingDirtyMiBps,
      x.memMiB,
      x.capMiBps,
      x.bandwidthModelMiBps,
      x.correction,
      x.downtimeBudgetMs,
      `${x.switchoverOverheadMs} (${x.switchoverSource})`,
      x.maxDowntimeMs,
      x.predicted.converges ? `${x.predicted.durationS} / ${x.predicted.downtimeMs}` : '-',
      x.skipped !== null
        ? 'skipped'
        : x.actual.converged
          ? `${x.actual.durationS} / ${x.actual.downtimeMs}`
          : `- (${x.actual.result})`,
      x.predicted.converges && x.actual.converged
        ? round((100 * (x.predicted.durationS - x.actual.durationS)) / x.actual.durationS, 1)
        : null,
    ]),
  };
  const fmtPct = (v: number | null): string => (v === null ? '-' : `${round(v * 100, 1)} %`);
  const summaryTable: ResultTable = {
    title: 'Summary',
    header: ['metric', 'value', 'goal'],
    rows: [
      ['cells (skipped: budget below the switch-over)', `${cells.length} (${summary.skipped})`, ''],
      [
        'started (converged / predicted to converge)',
        `${started.length} (${summary.convergedActual} / ${summary.convergedPredicted})`,
        '',
      ],
      ['started migrations over their downtime budget', summary.overBudget, '0'],
      ['converge precision', summary.convergePrecision, '>= 0.95'],
      ['converge recall', summary.convergeRecall, '>= 0.95'],
      ['no-converge precision', summary.noConvergePrecision, ''],
      ['no-converge recall', summary.noConvergeRecall, ''],
      ['duration error median', fmtPct(summary.durationRelErrMedian), '<= 15 %'],
      ['duration error p90', fmtPct(summary.durationRelErrP90), '<= 30 %'],
      [
        'downtime abs error median / p90 (ms)',
        `${summary.downtimeAbsErrMedianMs} / ${summary.downtimeAbsErrP90Ms}`,
        'p90 <= 50',
      ],
    ],
  };
  const goal = (name: string, target: string, measured: number | null, ok: boolean) => ({
    goal: name,
    target,
    measured,
    met: ok,
  });
  const goals = [
    goal(
      'lab migrations started that end over their downtime budget',
      '0',
      summary.overBudget,
      summary.overBudget === 0,
    ),
    goal(
      'downtime prediction error p90 (ms)',
      '<= 50',
      summary.downtimeAbsErrP90Ms,
      summary.downtimeAbsErrP90Ms !== null && summary.downtimeAbsErrP90Ms <= 50,
    ),
    goal(
      'converge precision',
      '>= 0.95',
      summary.convergePrecision,
      (summary.convergePrecision ?? 0) >= 0.95,
    ),
    goal('converge recall', '>= 0.95', summary.convergeRecall, (summary.convergeRecall ?? 0) >= 0.95),
    goal(
      'duration error median',
      '<= 0.15',
      summary.durationRelErrMedian,
      summary.durationRelErrMedian !== null && summary.durationRelErrMedian <= 0.15,
    ),
    goal(
      'duration error p90',
      '<= 0.30',
      summary.durationRelErrP90,
      summary.durationRelErrP90 !== null && summary.durationRelErrP90 <= 0.3,
    ),
  ];

  const chartRel = 'docs/charts/predictor-duration.svg';
  mkdirSync(join(REPO_ROOT, 'docs', 'charts'), { recursive: true });
  writeFileSync(
    join(REPO_ROOT, chartRel),
    scatterSvg(
      both.map((x) => ({
        x: x.predicted.durationS,
        y: x.actual.durationS,
        series: `cap ${x.capMiBps} MiB/s`,
        label: `dirty ${x.dirtySetMiBps} MiB/s, RAM ${x.memMiB} MiB, budget ${x.downtimeBudgetMs} ms`,
      })),
      {
        title: `Predicted vs measured migration duration (lab, ${quick ? 'quick' : 'full'} grid)`,
        xLabel: 'predicted duration (s)',
        yLabel: 'measured duration (s)',
      },
    ),
  );

  console.log('');
  console.log(textTable(cellTable));
  console.log('');
  console.log(textTable(summaryTable));
  const loadAfter = machineInfo().loadAvg;
  await writeResult('predictor', {
    bench: 'predictor',
    date: startedAt.toISOString(),
    durationS: round((finishedAt.getTime() - startedAt.getTime()) / 1000, 0),
    mode: quick ? 'quick grid' : 'full grid',
    machine,
    loadAvgAfter: loadAfter,
    notes: [
      `Real live migrations between two libvirt hosts of the lab (TCG guests), each aborted after ${grid.deadlineS} s.`,
      `Grid: dirty ${grid.dirtyMiBps.join('/')} MiB/s x caps ${grid.capsMiBps.join('/')} MiB/s x downtime budget ${grid.downtimesMs.join('/')} ms; guest RAM ${RAMS_MIB.join('/')} MiB rotating over dirty rate and cap.`,
      "Downtime: the switch-over cost is learnt from the measured downtimes of all migrations before (src/planner/predictor/switchover.ts: this guest on this pair, the largest of its last 5; else the pair p90); each migration runs with max downtime = budget - that cost (the most drover's watchdog sets), and a cell whose budget is at most the cost is skipped as drover skips it (not run, not counted in precision/recall).",
      'Calibration and evaluation share guests: each guest is calibrated by its own first migration (round 0, link) before its cells are predicted; no guest was held out.',
      `Inputs: the collector's dirty-rate probe (window ${DIRTY_WINDOW_S} s) of each guest; round-0 size from the guest's first (calibration) migration; link rate and setup calibrated from the migrations before (bench/predictor/link-calibration.ts); the per-VM history corrections (duration, and the dirty rate QEMU reported while the guest migrated over the rate planned) from the guest's earlier migrations, recorded as the executor records them. The model counts a migration as converging only within the policy's maxDurationS less its 10 % safety margin (durationMarginPct).`,
      `Load average at start ${machine.loadAvg.join(' / ')}, at end ${loadAfter.join(' / ')} (2 CPUs shared with other work).`,
    ],
    summary: `${summary.started} of ${summary.cells} cells started (${summary.skipped} skipped: budget below the learnt switch-over), ${summary.overBudget} over budget; converge precision ${summary.convergePrecision}, recall ${summary.convergeRecall}; duration error median ${fmtPct(summary.durationRelErrMedian)}, p90 ${fmtPct(summary.durationRelErrP90)}; downtime error median ${summary.downtimeAbsErrMedianMs} ms, p90 ${summary.downtimeAbsErrP90Ms} ms.`,
    tables: [summaryTable, cellTable],
    goals,
    charts: [chartRel],
    metrics: summary,
    cells,
  });
  console.log(`\nwrote bench/results/predictor.json and ${chartRel}`);
}
