// Predictor accuracy on real migrations: in drover's libvirt lab (BENCH_LAB_DIR, default .lab-bench), guests
// that dirty memory at a set rate are measured by the collector, drover predicts each migration (converges,
// duration, downtime), and then the migration runs for real between two libvirt hosts, aborted at a fixed
// deadline. Calibration guests teach the model the link, the switch-over and what round 0 costs per MiB of
// RAM; then it is frozen and predicts evaluation guests it has never seen (other RAM sizes, other dirty
// rates, a bursty JVM-like guest). `--quick` runs a reduced set. Writes bench/results/predictor.json and
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
import { plannedDirtyMiBps, predictVmMigration, SwitchoverBook } from '../../src/planner/predictor/index.js';
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

/** One lab guest of the bench: its RAM, the region its workload rewrites (the rest stays untouched, so
 * QEMU sends it as zero pages) and how it writes. */
interface GuestPlan {
  role: 'calibration' | 'evaluation';
  memMiB: number;
  regionMiB: number;
  /** Steady dirty rate (MiB/s; 0 = idle) or, when `burst` is set, the rate while a burst lasts. */
  dirtyMiBps: number;
  /** JVM-like: writes at dirtyMiBps for burstMs over the region (its young generation), then gapMs quiet. */
  burst?: { burstMs: number; gapMs: number };
}

const describeGuest = (g: GuestPlan): string =>
  g.burst
    ? `${g.memMiB} MiB, bursty: ${g.dirtyMiBps} MiB/s for ${g.burst.burstMs} ms every ${g.burst.burstMs + g.burst.gapMs} ms over ${g.regionMiB} MiB`
    : `${g.memMiB} MiB, ${g.dirtyMiBps} MiB/s over ${g.regionMiB} MiB`;

const CALIBRATION_GUESTS: GuestPlan[] = [
  { role: 'calibration', memMiB: 128, regionMiB: 48, dirtyMiBps: 0 },
  { role: 'calibration', memMiB: 256, regionMiB: 96, dirtyMiBps: 10 },
  { role: 'calibration', memMiB: 512, regionMiB: 160, dirtyMiBps: 40 },
  { role: 'calibration', memMiB: 256, regionMiB: 96, dirtyMiBps: 80 },
];
const EVALUATION_GUESTS: GuestPlan[] = [
  { role: 'evaluation', memMiB: 192, regionMiB: 64, dirtyMiBps: 5 },
  { role: 'evaluation', memMiB: 384, regionMiB: 128, dirtyMiBps: 20 },
  { role: 'evaluation', memMiB: 768, regionMiB: 256, dirtyMiBps: 15 },
  { role: 'evaluation', memMiB: 1024, regionMiB: 320, dirtyMiBps: 60 },
  {
    role: 'evaluation',
    memMiB: 512,
    regionMiB: 192,
    dirtyMiBps: 100,
    burst: { burstMs: 300, gapMs: 1700 },
  },
];
const QUICK_GUESTS: GuestPlan[] = [
  { role: 'calibration', memMiB: 128, regionMiB: 48, dirtyMiBps: 0 },
  { role: 'calibration', memMiB: 256, regionMiB: 96, dirtyMiBps: 40 },
  { role: 'evaluation', memMiB: 384, regionMiB: 128, dirtyMiBps: 20 },
  {
    role: 'evaluation',
    memMiB: 512,
    regionMiB: 192,
    dirtyMiBps: 100,
    burst: { burstMs: 300, gapMs: 1700 },
  },
];
/** The collector's dirty-rate window for this bench (2 s: the lab guests' rounds are seconds long)... */
const DIRTY_WINDOW_S = 2;
/** ...and how many probes it takes of each guest before predicting (its peak is what the model uses). */
const DIRTY_PROBES = 3;
/** The default policy, for what the planner would plan a guest with (migration.plannedDirtyRate). */
const DEFAULT_POLICY = parsePolicy({});
/** The planner's default safety margin on the predicted duration (policy migration.durationMarginPct). */
const PLANNER_MARGIN_PCT = 10;
/** A guest's first migration only calibrates (round-0 size, link rate); it is given this long. */
const CALIBRATION_DEADLINE_S = 15;

interface Grid {
  guests: GuestPlan[];
  capsMiBps: number[];
  downtimesMs: number[];
  deadlineS: number;
}

/** Budgets: 30 ms (below any switch-over this lab shows: skipped, with the numbers), 300 ms and 1 s. */
const FULL: Grid = {
  guests: [...CALIBRATION_GUESTS, ...EVALUATION_GUESTS],
  capsMiBps: [25, 100],
  downtimesMs: [30, 300, 1000],
  deadlineS: 20,
};
const QUICK: Grid = { guests: QUICK_GUESTS, capsMiBps: [25, 100], downtimesMs: [30, 300], deadlineS: 20 };

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
  /**
   * What the link carried (MiB/s): round 0's average rate when the polls saw it (round0Rate), else the
   * median of the rates QEMU reported (not clipped to the cap either).
   */
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
  /** Calibration guests taught the model; evaluation guests were predicted by it, never seen before. */
  role: GuestPlan['role'];
  guest: string;
  dirtySetMiBps: number;
  memMiB: number;
  capMiBps: number;
  downtimeBudgetMs: number;
  /** This migration's wall time less its sending time (what the set-up calibration takes from it). */
  fixedCostS: number | null;
  /** The collector's typical rate (the mean of its probes) and its peak; the model plans with the typical. */
  measuredDirtyMiBps: number | null;
  measuredDirtyPeakMiBps: number | null;
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
  predicted: {
    converges: boolean;
    durationS: number;
    downtimeMs: number;
    /** Whether the planner would plan it: converging within the deadline less the default 10 % margin. */
    plannable: boolean;
  };
  actual: {
    converged: boolean;
    result: string;
    durationS: number;
    downtimeMs: number | null;
    iterations: number;
    /** From the call until the job showed as active, and round 0's length and MiB sent, when seen. */
    jobStartS: number | null;
    round0S: number | null;
    round0SentMiB: number | null;
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
    await Promise.race([done, sleep(POLL_MS)]);
    if (finished) break;
    try {
      const s = await hv.jobStats(from, vmId);
      if (s.type === 'active') {
        const atS = (Date.now() - started) / 1000;
        jobStartS ??= atS;
        lastProcessedMiB = s.memProcessedMiB;
        lastIteration = s.iteration;
        // QEMU's rate of the last stretch: low while it scans untouched memory or has little left, what the
        // link carries while there is data to send (used when round 0 was not seen whole)
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
    throughputMiBps:
      round0Rate(round0MiB, jobStartS, round0EndS) ?? (rates.length > 0 ? median(rates) : null),
    migratingDirtyMiBps: migratingDirty === null ? null : round(migratingDirty, 1),
    lastDirtyMiBps: lastDirty === null ? null : round(lastDirty, 1),
    passes: (stats?.iteration ?? lastIteration) + 1,
    processedMiB,
  };
}

/** How often a running migration's job is read: round 0 of a small guest lasts under a second. */
const POLL_MS = 100;
/** Below this much memory sent by round 0, its rate says little about the link. */
const MIN_ROUND0_FOR_RATE_MIB = 16;

/**
 * Round 0's average rate (MiB/s): what it sent over how long it took, as the polls saw them. QEMU's bandwidth
 * cap is loose (the lab's round 0 moved 26 MiB/s under a 25 MiB/s cap and 110-145 MiB/s under 100), so
 * the cap itself is not the rate; null when round 0 was not seen or sent too little to tell.
 */
function round0Rate(sentMiB: number | null, startS: number | null, endS: number | null): number | null {
  if (sentMiB === null || startS === null || endS === null) return null;
  if (sentMiB < MIN_ROUND0_FOR_RATE_MIB || !(endS > startS)) return null;
  return sentMiB / (endS - startS);
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
    passes: run.passes,
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
    // The model is asked what the deadline asks: will it finish before the abort? The planner's safety margin
    // (durationMarginPct, 10 % by default) is not part of that verdict; the summary shows it separately.
    migration: {
      maxDurationS: deadlineS,
      durationMarginPct: 0,
      maxIterations: 10_000,
      setupS,
      switchoverOverheadMs,
    },
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
  predicted: {
    durationS: number;
    correction: number;
    downtimeMs: number;
    lastRoundMs: number | undefined;
  } | null,
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
    ...(predicted?.lastRoundMs !== undefined ? { predictedLastRoundMs: predicted.lastRoundMs } : {}),
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
  /** The calibration guests' histories: the switch-over is learnt from them as the planner learns it. */
  const histories = new Map<string, VmHistory>();
  /** Round 0 of each calibration guest in the model's terms, per MiB of its RAM, by cap. */
  const round0PerRamMiB = new Map<number, number[]>();
  const ordered = [...grid.guests].sort((a, b) =>
    a.role === b.role ? 0 : a.role === 'calibration' ? -1 : 1,
  );
  try {
    for (const [gi, plan] of ordered.entries()) {
      const label = `${plan.role === 'calibration' ? 'cal' : 'eval'}${gi}-m${plan.memMiB}-d${plan.dirtyMiBps}${plan.burst ? '-jvm' : ''}`;
      const name = guestName(`pb-${label}`);
      guests.push(name);
      const g = await defineGuest({
        name,
        host: A,
        memMiB: plan.memMiB,
        ...(plan.dirtyMiBps > 0 ? { mb: plan.regionMiB, rate: plan.dirtyMiBps * 256 } : {}),
        ...(plan.burst ? { args: [`burst=${plan.burst.burstMs}`, `gap=${plan.burst.gapMs}`] } : {}),
      });
      await heartbeatAdvances(A, name, 30_000);
      await sleep(1_000); // let the workload reach its rate
      const vm = await measureGuest(hv, g.id);
      console.log(`${plan.role} guest ${label}: ${describeGuest(plan)}`);

      let history: VmHistory | undefined;
      let round0ByCap: (cap: number) => number;
      if (plan.role === 'calibration') {
        // Calibration migration: learns how long round 0 takes for this guest and adds to the link's record.
        const cap0 = grid.capsMiBps[0] ?? 25;
        const cal = await runMigration(hv, g.id, cap0, 300, CALIBRATION_DEADLINE_S);
        calibration.observe(observation(cal, cap0, calibration, null));
        const round0MiB = round0Equivalent(cal, calibration.bandwidthMiBps(cap0), calibration.setupS());
        const perRam = round0PerRamMiB.get(cap0) ?? [];
        perRam.push(round0MiB / plan.memMiB);
        round0PerRamMiB.set(cap0, perRam);
        round0ByCap = () => round0MiB;
        // The calibration run had no prediction of its own: the predictor models it again from these inputs.
        history = {
          vmId: g.id,
          quarantinedUntil: null,
          records: [
            historyRecord(
              g.id,
              cal,
              {
                memMiB: round0MiB,
                plannedDirtyMiBps: plannedDirtyMiBps(vm, DEFAULT_POLICY),
                dirtyFactor: 1,
                bandwidthMiBps: calibration.bandwidthMiBps(cap0),
                maxDowntimeMs: 300,
              },
              null,
            ),
          ],
        };
        histories.set(g.id, history);
      } else {
        // Never migrated: round 0 from its RAM at what round 0 cost per MiB of RAM on the calibration guests.
        const all = [...round0PerRamMiB.values()].flat();
        round0ByCap = (cap) => plan.memMiB * median(round0PerRamMiB.get(cap) ?? (all.length > 0 ? all : [1]));
      }
      // Evaluation guests run after every calibration guest and teach nothing (see below): the link
      // calibration and the histories they are predicted from are what the calibration guests left.
      const link = calibration;

      for (const cap of grid.capsMiBps) {
        for (const dt of grid.downtimesMs) {
          const round0MiB = round0ByCap(cap);
          const setupS = link.setupS();
          const switchover = new SwitchoverBook(histories.values(), defaults.switchoverOverheadMs).cost(
            g.id,
            A,
            B,
          );
          const overheadMs = switchover.ms;
          const policy = benchPolicy(grid.deadlineS, setupS, overheadMs);
          const bw = link.bandwidthMiBps(cap);
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
          // The prediction says "converges within the deadline": a migration that completed only after its
          // abort was asked for (the abort raced the end) did not converge in that sense.
          const converged = run.result === 'completed' && run.wallS <= grid.deadlineS;
          const downtimeMs = run.result === 'completed' ? (run.stats?.downtimeMs ?? null) : null;
          // Only calibration guests teach the model; an evaluation guest stays unseen for all its cells.
          if (skipped === null && history !== undefined) {
            calibration.observe(
              observation(run, cap, calibration, p.lastRoundMs ?? Math.max(0, p.downtimeMs - overheadMs)),
            );
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
                {
                  durationS: p.durationS,
                  correction: f.correction,
                  downtimeMs: p.downtimeMs,
                  lastRoundMs: p.lastRoundMs,
                },
              ),
            );
          }
          const cell: CellResult = {
            role: plan.role,
            guest: describeGuest(plan),
            dirtySetMiBps: plan.dirtyMiBps,
            memMiB: plan.memMiB,
            capMiBps: cap,
            downtimeBudgetMs: dt,
            fixedCostS:
              run.result === 'completed'
                ? round(calibration.fixedCostS(observation(run, cap, calibration, null)), 2)
                : null,
            measuredDirtyMiBps: vm.dirtyMiBps ?? null,
            measuredDirtyPeakMiBps: vm.dirtyPeakMiBps ?? null,
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
              plannable: predictedConverges && p.durationS <= grid.deadlineS * (1 - PLANNER_MARGIN_PCT / 100),
              durationS: p.durationS,
              downtimeMs: p.downtimeMs,
            },
            actual: {
              converged,
              result: run.result,
              durationS: round(run.wallS, 2),
              downtimeMs,
              iterations: run.stats?.iteration ?? 0,
              jobStartS: run.jobStartS === null ? null : round(run.jobStartS, 2),
              round0S:
                run.round0EndS === null || run.jobStartS === null
                  ? null
                  : round(run.round0EndS - run.jobStartS, 2),
              round0SentMiB: run.round0MiB === null ? null : round(run.round0MiB, 1),
            },
          };
          cells.push(cell);
          console.log(
            `${label} cap ${cap} dt ${dt} (dirty measured ${cell.measuredDirtyMiBps}, round 0 ${cell.round0MiB} MiB) ` +
              `switch-over ${round(overheadMs, 0)} ms: ${skipped !== null ? `skipped (${skipped}) ` : ''}` +
              `predicted ${predictedConverges ? `${p.durationS} s / ${p.downtimeMs} ms` : 'no'}, ` +
              `actual ${converged ? `${cell.actual.durationS} s / ${downtimeMs} ms` : run.result}`,
          );
        }
      }
      await removeGuest(name);
      guests.splice(guests.indexOf(name), 1);
    }
  } finally {
    for (const name of guests) await removeGuest(name).catch(() => undefined);
    await hv.close();
    if (startedLab) await labCommand('down');
  }

  const finishedAt = new Date();
  const all = accuracy(cells);
  const cal = accuracy(cells.filter((x) => x.role === 'calibration'));
  const ev = accuracy(cells.filter((x) => x.role === 'evaluation'));
  const guestTable: ResultTable = {
    title: 'Guests (calibration guests taught the model; evaluation guests were never migrated before)',
    header: ['role', 'guest', 'cells', 'started', 'converged'],
    rows: grid.guests.map((g) => {
      const mine = cells.filter((x) => x.role === g.role && x.guest === describeGuest(g));
      const ran = mine.filter((x) => x.skipped === null);
      return [
        g.role,
        describeGuest(g),
        mine.length,
        ran.length,
        ran.filter((x) => x.actual.converged).length,
      ];
    }),
  };
  const cellTable: ResultTable = {
    title: 'Cells (duration s / downtime ms; "-" = not converged)',
    header: [
      'role',
      'dirty set',
      'dirty typical',
      'dirty peak',
      'dirty planned',
      'dirty migrating',
      'RAM MiB',
      'round 0 MiB',
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
      x.role === 'calibration' ? 'cal' : 'eval',
      x.guest.includes('bursty') ? `${x.dirtySetMiBps} (bursty)` : x.dirtySetMiBps,
      x.measuredDirtyMiBps,
      x.measuredDirtyPeakMiBps,
      x.plannedDirtyMiBps,
      x.migratingDirtyMiBps,
      x.memMiB,
      x.round0MiB,
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
          : x.actual.result === 'completed'
            ? `- (completed after the deadline: ${x.actual.durationS} / ${x.actual.downtimeMs})`
            : `- (${x.actual.result})`,
      x.predicted.converges && x.actual.converged
        ? round((100 * (x.predicted.durationS - x.actual.durationS)) / x.actual.durationS, 1)
        : null,
    ]),
  };
  const fmtPct = (v: number | null): string => (v === null ? '-' : `${round(v * 100, 1)} %`);
  const three = (f: (a: Accuracy) => string | number | null): (string | number | null)[] => [
    f(all),
    f(cal),
    f(ev),
  ];
  const summaryTable: ResultTable = {
    title: 'Summary',
    header: ['metric', 'all', 'calibration guests', 'evaluation guests', 'goal'],
    rows: [
      ['cells (skipped: budget below the switch-over)', ...three((a) => `${a.cells} (${a.skipped})`), ''],
      [
        'started (converged / predicted to converge)',
        ...three((a) => `${a.started} (${a.convergedActual} / ${a.convergedPredicted})`),
        '',
      ],
      ['started migrations over their downtime budget', ...three((a) => a.overBudget), '0 (all)'],
      ['converge precision', ...three((a) => a.convergePrecision), '>= 0.97 (evaluation)'],
      ['converge recall', ...three((a) => a.convergeRecall), '>= 0.97 (evaluation)'],
      [
        `converge recall of what the planner plans (duration within the deadline less ${PLANNER_MARGIN_PCT} %)`,
        ...three((a) => a.plannableRecall),
        '',
      ],
      ['no-converge precision', ...three((a) => a.noConvergePrecision), ''],
      ['no-converge recall', ...three((a) => a.noConvergeRecall), ''],
      ['duration error median', ...three((a) => fmtPct(a.durationRelErrMedian)), '<= 10 % (evaluation)'],
      ['duration error p90', ...three((a) => fmtPct(a.durationRelErrP90)), '<= 20 % (evaluation)'],
      [
        'downtime abs error median / p90 (ms)',
        ...three((a) => `${a.downtimeAbsErrMedianMs} / ${a.downtimeAbsErrP90Ms}`),
        'p90 <= 50 (all)',
      ],
    ],
  };
  const goal = (name: string, target: string, measured: number | null, ok: boolean) => ({
    goal: name,
    target,
    measured,
    met: ok,
  });
  const atMost = (v: number | null, limit: number): boolean => v !== null && v <= limit;
  const atLeast = (v: number | null, limit: number): boolean => v !== null && v >= limit;
  const goals = [
    goal(
      'lab migrations started that end over their downtime budget (all guests)',
      '0',
      all.overBudget,
      all.started > 0 && all.overBudget === 0,
    ),
    goal(
      'downtime prediction error p90 (ms, all guests)',
      '<= 50',
      all.downtimeAbsErrP90Ms,
      atMost(all.downtimeAbsErrP90Ms, 50),
    ),
    goal(
      'converge precision (evaluation guests)',
      '>= 0.97',
      ev.convergePrecision,
      atLeast(ev.convergePrecision, 0.97),
    ),
    goal(
      'converge recall (evaluation guests)',
      '>= 0.97',
      ev.convergeRecall,
      atLeast(ev.convergeRecall, 0.97),
    ),
    goal(
      'duration error median (evaluation guests)',
      '<= 0.10',
      ev.durationRelErrMedian,
      atMost(ev.durationRelErrMedian, 0.1),
    ),
    goal(
      'duration error p90 (evaluation guests)',
      '<= 0.20',
      ev.durationRelErrP90,
      atMost(ev.durationRelErrP90, 0.2),
    ),
  ];

  const both = cells.filter((x) => x.skipped === null && x.predicted.converges && x.actual.converged);
  const chartRel = 'docs/charts/predictor-duration.svg';
  mkdirSync(join(REPO_ROOT, 'docs', 'charts'), { recursive: true });
  writeFileSync(
    join(REPO_ROOT, chartRel),
    scatterSvg(
      both.map((x) => ({
        x: x.predicted.durationS,
        y: x.actual.durationS,
        series: `${x.role} guests, cap ${x.capMiBps} MiB/s`,
        label: `${x.guest}, budget ${x.downtimeBudgetMs} ms`,
      })),
      {
        title: `Predicted vs measured migration duration (lab, ${quick ? 'quick' : 'full'} set)`,
        xLabel: 'predicted duration (s)',
        yLabel: 'measured duration (s)',
      },
    ),
  );

  console.log('');
  console.log(textTable(guestTable));
  console.log('');
  console.log(textTable(cellTable));
  console.log('');
  console.log(textTable(summaryTable));
  const loadAfter = machineInfo().loadAvg;
  const guestsOf = (role: GuestPlan['role']): string =>
    grid.guests
      .filter((g) => g.role === role)
      .map(describeGuest)
      .join('; ');
  await writeResult('predictor', {
    bench: 'predictor',
    date: startedAt.toISOString(),
    durationS: round((finishedAt.getTime() - startedAt.getTime()) / 1000, 0),
    mode: quick ? 'quick set' : 'full set',
    machine,
    loadAvgAfter: loadAfter,
    guests: {
      calibration: grid.guests.filter((g) => g.role === 'calibration').map(describeGuest),
      evaluation: grid.guests.filter((g) => g.role === 'evaluation').map(describeGuest),
    },
    notes: [
      `Real live migrations between two libvirt hosts of the lab (TCG guests), each aborted after ${grid.deadlineS} s.`,
      `Calibration guests (${guestsOf('calibration')}) are migrated first: each one's first migration measures its round 0, and every migration of theirs feeds the link calibration (bandwidth under a cap, set-up), the switch-over book and their own history.`,
      `Evaluation guests (${guestsOf('evaluation')}) were never migrated before and teach nothing: they are predicted from the calibration guests' link calibration and switch-over (the pair's p90, src/planner/predictor/switchover.ts), no history of their own (correction 1), their RAM times the median round-0 cost per MiB of RAM the calibration guests showed at that cap (the lab guests have no balloon driver to report memory in use), and the collector's dirty-rate probe of them (window ${DIRTY_WINDOW_S} s, ${DIRTY_PROBES} probes; the model plans with their mean, the typical rate, as migration.plannedDirtyRate says by default). The bursty guest writes like a JVM's young generation: heavy phases over a large region with quiet phases between (test/lab/guest/guest.c burst=/gap=).`,
      `Caps ${grid.capsMiBps.join('/')} MiB/s x downtime budget ${grid.downtimesMs.join('/')} ms per guest. Each migration runs with max downtime = budget - the learnt switch-over (the most drover's watchdog sets); a cell whose budget is at most that cost is skipped as drover skips it (not run, not counted in precision/recall).`,
      "Goals: over budget over every started migration, downtime error over all guests; converge precision/recall and duration error over the evaluation guests only (the calibration guests are in the summary for comparison). The downtime error is over the migrations predicted to converge that did. The model is asked whether a migration finishes before the deadline it is aborted at (durationMarginPct 0); the planner plans only those predicted within the deadline less its default 10 % margin, and the summary's 'recall of what the planner plans' shows what that margin costs.",
      `Load average at start ${machine.loadAvg.join(' / ')}, at end ${loadAfter.join(' / ')} (2 CPUs shared with other work).`,
    ],
    summary: `${all.started} of ${all.cells} cells started (${all.skipped} skipped: budget below the learnt switch-over), ${all.overBudget} over budget, downtime error p90 ${all.downtimeAbsErrP90Ms} ms; evaluation guests (never seen): converge precision ${ev.convergePrecision}, recall ${ev.convergeRecall}, duration error median ${fmtPct(ev.durationRelErrMedian)}, p90 ${fmtPct(ev.durationRelErrP90)}; calibration guests: precision ${cal.convergePrecision}, recall ${cal.convergeRecall}, duration error median ${fmtPct(cal.durationRelErrMedian)}.`,
    tables: [summaryTable, guestTable, cellTable],
    goals,
    charts: [chartRel],
    metrics: { all, calibration: cal, evaluation: ev },
    cells,
  });
  console.log(`\nwrote bench/results/predictor.json and ${chartRel}`);
}

type Accuracy = ReturnType<typeof accuracy>;

/** Precision/recall of the converge verdict and the duration and downtime errors over some cells. */
function accuracy(cells: CellResult[]) {
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
  return {
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
    plannableRecall: ratio(
      started.filter((x) => x.predicted.plannable && x.actual.converged).length,
      started.filter((x) => x.actual.converged).length,
    ),
    noConvergePrecision: ratio(c.tn, c.tn + c.fn),
    noConvergeRecall: ratio(c.tn, c.tn + c.fp),
    durationRelErrMedian: both.length > 0 ? round(median(durErr), 3) : null,
    durationRelErrP90: both.length > 0 ? round(percentile(durErr, 90), 3) : null,
    downtimeAbsErrMedianMs: dtErr.length > 0 ? round(median(dtErr), 0) : null,
    downtimeAbsErrP90Ms: dtErr.length > 0 ? round(percentile(dtErr, 90), 0) : null,
  };
}
