// Load: one drover process (the composition root, simulator hypervisor, a private Redis) on a 1,000-host
// simulated cluster with continuous collection, a rebalance every minute and up to 20 concurrent migrations,
// for 10 minutes. Measures heap and RSS over time (first minute against last), event-loop lag (p50/p99/max,
// monitorEventLoopDelay), the rebalance runs and what each decided, plans made, and jobs enqueued, completed
// and lost (a step of a started plan with no job in the queue and its VM not where the step sent it).
// The machine is shared: its load average is recorded beside every sample.
//
// Plans made are fewer than rebalance runs by design: a rebalance that finds the previous plan still running
// makes none (its log line says `waiting for running plan`), and a plan lasts as long as its slowest
// migration (16 GiB VMs take one to two minutes here, some ended by the watchdog's deadline). Before the
// scheduler tolerated late cron ticks, a tick delayed over 1 s by a busy event loop was skipped too.
//
// `npm run bench -- load` (10 minutes), `--quick` (3 minutes), `--minutes=N`; LOAD_HOSTS sets the host count.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { jobIdFor } from '../../src/executor/executor.js';
import { loadConfig } from '../../src/service/config.js';
import { startService, type RunningService } from '../../src/service/main.js';
import { startPrivateRedis } from '../../src/service/private-redis.js';

const here = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(here, '../results/load.json');
const QUICK_MINUTES = 3;

function minutesArg(): { minutes: number; quick: boolean } {
  // bench/run.ts takes every bare argument for a bench name, so options are `--x` or `--x=N`.
  const quick = process.argv.includes('--quick');
  const flag = process.argv.find((a) => a.startsWith('--minutes='));
  const raw = flag ? flag.slice('--minutes='.length) : process.env.LOAD_MINUTES;
  const n = Number(raw ?? (quick ? QUICK_MINUTES : 10));
  return { minutes: Number.isFinite(n) && n > 0 ? n : 10, quick };
}

interface Sample {
  atS: number;
  rssMiB: number;
  heapUsedMiB: number;
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** This process's CPU over the interval, percent of one core. */
  cpuPct: number;
  /** The machine's 1-minute load average. */
  load1: number;
  running: number;
  completed: number;
  plans: number;
}

const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const ms = (ns: number) => Math.round((ns / 1e6) * 10) / 10;
const round1 = (x: number) => Math.round(x * 10) / 10;
const avg = (xs: number[]) => round1(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length));

async function metricValues(
  running: RunningService,
  name: string,
): Promise<{ labels: Partial<Record<string, string | number>>; value: number; metricName?: string }[]> {
  const metric = running.metrics.registry.getSingleMetric(name);
  return metric ? (await metric.get()).values : [];
}

async function metricSum(
  running: RunningService,
  name: string,
  where: Record<string, string> = {},
): Promise<number> {
  return (await metricValues(running, name))
    .filter((v) => Object.entries(where).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((n, v) => n + v.value, 0);
}

export async function main(): Promise<void> {
  const { minutes, quick } = minutesArg();
  const hosts = Number(process.env.LOAD_HOSTS ?? '1000');
  const machine = {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memMiB: Math.round(totalmem() / 2 ** 20),
  };
  const date = new Date().toISOString();
  const loadAtStart = loadavg().map(round1);
  console.log(
    `load: ${hosts} simulated hosts, ${minutes} min${quick ? ' (--quick)' : ''}, rebalance every minute, ` +
      `20 concurrent migrations\nmachine: ${machine.nproc} x ${machine.cpuModel}, ${machine.memMiB} MiB; ` +
      `${date}; load average at start ${loadAtStart.join(' ')} (shared machine)`,
  );

  const dir = await mkdtemp(join(tmpdir(), 'drover-load-'));
  await mkdir(join(dir, 'redis'));
  const redis = await startPrivateRedis({ dir: join(dir, 'redis') });
  await writeFile(
    join(dir, 'policy.yaml'),
    stringify({
      balance: { targetCpuSpreadPct: 10, targetMemSpreadPct: 10, holdTimeS: 0, minImprovementPct: 0.1 },
      // One wave of moves per plan, all 20 at once (4 per host, so the destinations the planner picks do not
      // hold moves back), so a plan can finish within the minute between rebalances.
      limits: { maxMovesPerRun: 20, perHostConcurrency: 4, perClusterConcurrency: 20 },
      vms: { cooldownS: 60, maxMigrationsPerDay: 100 },
      migration: { assumeDirtyMiBpsWhenUnknown: 20 },
    }),
  );
  await writeFile(
    join(dir, 'drover.yaml'),
    stringify({
      instance: 'load',
      hypervisor: { kind: 'sim', generate: { hosts, vmsPerHost: [4, 12] }, seed: 42 },
      redis: { url: redis.url, prefix: '{load}' },
      policy: { file: 'policy.yaml', watch: false },
      schedules: {
        rebalance: { cron: '* * * * *' },
        reconcile: { intervalS: 10 },
      },
      automation: { level: 'full', planMaxAgeS: 600 },
      api: { port: 0, tokens: [{ name: 'bench', role: 'admin', value: 'load-bench-token-0123456789' }] },
      metrics: { processMetrics: false },
      log: { level: 'info' },
      collector: { intervalS: 15 },
      executor: { workerConcurrency: 20, keepJobs: 10_000 },
    }),
  );
  const loaded = await loadConfig(join(dir, 'drover.yaml'), {});
  const warnings: string[] = [];
  const rebalanceRuns: { at: string; outcome: string; durationMs: number; status: string; steps: number }[] =
    [];
  let warningCount = 0;
  const logger = pino(
    { level: 'info' },
    {
      write(line: string) {
        // Keep what the rebalance schedule decided each time, and every warning or error.
        if (line.includes('"schedule":"rebalance"')) {
          const r = JSON.parse(line) as {
            time: number;
            outcome: string;
            durationMs: number;
            status?: string;
            steps?: number;
            err?: string;
          };
          rebalanceRuns.push({
            at: new Date(r.time).toISOString(),
            outcome: r.outcome,
            durationMs: r.durationMs,
            status: r.status ?? r.err ?? '',
            steps: r.steps ?? 0,
          });
        }
        if (/"level":(40|50|60)/.test(line)) {
          warningCount += 1;
          if (warnings.length < 50) warnings.push(line);
        }
      },
    },
  );
  const startedAt = performance.now();
  const running = await startService(loaded, { env: {}, logger });
  const startupS = (performance.now() - startedAt) / 1000;
  const sim = running.sim;
  if (!sim) throw new Error('no simulator');
  let migrationsStarted = 0;
  sim.subscribe((e) => {
    if (e.kind === 'migration-iteration' && e.iteration === 1) migrationsStarted += 1;
  });

  const all = monitorEventLoopDelay({ resolution: 10 });
  all.enable();
  const interval = monitorEventLoopDelay({ resolution: 10 });
  interval.enable();
  const samples: Sample[] = [];
  const sampleEveryMs = 10_000;
  const endAt = Date.now() + minutes * 60_000;
  let maxRunning = 0;
  const t0 = Date.now();
  let cpu0 = process.cpuUsage();
  let wall0 = performance.now();
  while (Date.now() < endAt) {
    await new Promise((r) => setTimeout(r, Math.min(sampleEveryMs, Math.max(0, endAt - Date.now()))));
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage(cpu0);
    const wall = performance.now() - wall0;
    cpu0 = process.cpuUsage();
    wall0 = performance.now();
    const active = await metricSum(running, 'drover_migrations_running');
    maxRunning = Math.max(maxRunning, active);
    const plans = (await running.service.listPlans({ limit: 500 })).length;
    const s: Sample = {
      atS: Math.round((Date.now() - t0) / 1000),
      rssMiB: mib(mem.rss),
      heapUsedMiB: mib(mem.heapUsed),
      lagP50Ms: ms(interval.percentile(50)),
      lagP99Ms: ms(interval.percentile(99)),
      lagMaxMs: ms(interval.max),
      cpuPct: Math.round(((cpu.user + cpu.system) / 1000 / wall) * 100),
      load1: round1(loadavg()[0] ?? 0),
      running: active,
      completed: await metricSum(running, 'drover_migrations_total', { result: 'completed' }),
      plans,
    };
    interval.reset();
    samples.push(s);
    console.log(
      `${String(s.atS).padStart(5)} s  rss ${String(s.rssMiB).padStart(6)} MiB  heap ${String(s.heapUsedMiB).padStart(6)} MiB  ` +
        `lag p50 ${String(s.lagP50Ms).padStart(5)} p99 ${String(s.lagP99Ms).padStart(6)} max ${String(s.lagMaxMs).padStart(6)} ms  ` +
        `cpu ${String(s.cpuPct).padStart(3)}%  load ${s.load1}  running ${String(s.running).padStart(2)}  ` +
        `completed ${s.completed}  plans ${s.plans}`,
    );
  }
  all.disable();
  interval.disable();
  const loadAtEnd = loadavg().map(round1);

  // Jobs: every step of a started plan is a job; lost = no job in the queue and the VM not at its destination.
  const plans = await running.service.listPlans({ limit: 500 });
  const migrations = await running.service.listMigrations();
  const byVm = new Map(migrations.map((m) => [m.vm, m]));
  let enqueued = 0;
  let lost = 0;
  const lostSteps: string[] = [];
  for (const record of plans) {
    if (!['running', 'completed', 'failed'].includes(record.status)) continue;
    for (const step of record.plan.steps) {
      enqueued += 1;
      const job = byVm.get(step.vm);
      const where = await sim.locateVm(step.vm);
      const atDestination = where.some((p) => p.hostId === step.to && p.state === 'running');
      if (!job && !atDestination) {
        lost += 1;
        if (lostSteps.length < 20)
          lostSteps.push(`${record.plan.id} ${step.vm} -> ${step.to} (${jobIdFor(step.vm)})`);
      }
    }
  }
  const jobStates = new Map<string, number>();
  for (const m of migrations) jobStates.set(m.state, (jobStates.get(m.state) ?? 0) + 1);
  const planStatuses = new Map<string, number>();
  for (const p of plans) planStatuses.set(p.status, (planStatuses.get(p.status) ?? 0) + 1);
  const scheduleOutcomes = Object.fromEntries(
    (await metricValues(running, 'drover_schedule_runs_total'))
      .filter((v) => v.labels.schedule === 'rebalance')
      .map((v) => [String(v.labels.outcome), v.value]),
  );
  const collectorCycles = await metricValues(running, 'drover_collector_cycle_duration_seconds');
  const cycleCount = collectorCycles.find((v) => v.metricName?.endsWith('_count'));
  await running.stop('bench done');
  await redis.stop();
  await rm(dir, { recursive: true, force: true });

  const perMinute = Math.max(1, Math.round(60_000 / sampleEveryMs));
  const firstMinute = samples.slice(0, perMinute);
  const lastMinute = samples.slice(-perMinute);
  const result = {
    date,
    machine,
    machineLoad: {
      note: 'shared 2-core machine: other engineers build and test on it at the same time',
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadAtEnd,
      load1Avg: avg(samples.map((s) => s.load1)),
      droverCpuPctAvg: avg(samples.map((s) => s.cpuPct)),
    },
    minutes,
    quick,
    hosts,
    startupS: round1(startupS),
    memory: {
      rssMiBFirstMinute: avg(firstMinute.map((s) => s.rssMiB)),
      rssMiBLastMinute: avg(lastMinute.map((s) => s.rssMiB)),
      rssMiBMax: Math.max(...samples.map((s) => s.rssMiB)),
      heapMiBFirstMinute: avg(firstMinute.map((s) => s.heapUsedMiB)),
      heapMiBLastMinute: avg(lastMinute.map((s) => s.heapUsedMiB)),
      heapMiBMax: Math.max(...samples.map((s) => s.heapUsedMiB)),
    },
    eventLoopLagMs: {
      p50: ms(all.percentile(50)),
      p99: ms(all.percentile(99)),
      max: ms(all.max),
      worstIntervalP99: Math.max(...samples.map((s) => s.lagP99Ms)),
    },
    rebalance: {
      runsByOutcome: scheduleOutcomes,
      runs: rebalanceRuns,
    },
    plans: {
      made: plans.length,
      byStatus: Object.fromEntries(planStatuses),
    },
    jobs: {
      enqueued,
      byState: Object.fromEntries(jobStates),
      completed: jobStates.get('completed') ?? 0,
      lost,
      lostSteps,
    },
    migrations: { started: migrationsStarted, maxConcurrentSeen: maxRunning },
    collectorCycles: cycleCount?.value ?? null,
    warnings: warningCount,
    firstWarnings: warnings.slice(0, 5),
    samples,
  };
  const rows: [string, string][] = [
    ['hosts / minutes', `${hosts} / ${minutes}`],
    [
      'machine load avg (start / mean / end)',
      `${loadAtStart[0]} / ${result.machineLoad.load1Avg} / ${loadAtEnd[0]} on ${machine.nproc} cores`,
    ],
    ['drover CPU (mean, % of one core)', `${result.machineLoad.droverCpuPctAvg}`],
    ['startup', `${result.startupS} s`],
    [
      'heap first min / last min / max',
      `${result.memory.heapMiBFirstMinute} / ${result.memory.heapMiBLastMinute} / ${result.memory.heapMiBMax} MiB`,
    ],
    [
      'RSS first min / last min / max',
      `${result.memory.rssMiBFirstMinute} / ${result.memory.rssMiBLastMinute} / ${result.memory.rssMiBMax} MiB`,
    ],
    [
      'event-loop lag p50 / p99 / max',
      `${result.eventLoopLagMs.p50} / ${result.eventLoopLagMs.p99} / ${result.eventLoopLagMs.max} ms`,
    ],
    ['worst 10 s interval p99', `${result.eventLoopLagMs.worstIntervalP99} ms`],
    ['rebalance runs by outcome', JSON.stringify(scheduleOutcomes)],
    ['plans made (by status)', `${plans.length} ${JSON.stringify(result.plans.byStatus)}`],
    ['jobs enqueued / completed / lost', `${enqueued} / ${result.jobs.completed} / ${lost}`],
    ['job states', JSON.stringify(result.jobs.byState)],
    ['migrations started / max concurrent seen', `${migrationsStarted} / ${maxRunning}`],
    ['warnings logged', `${warningCount}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(
    ['', `| ${'metric'.padEnd(w)} | value |`, `|${'-'.repeat(w + 2)}|-------|`]
      .concat(rows.map(([k, v]) => `| ${k.padEnd(w)} | ${v} |`))
      .join('\n'),
  );
  console.log('\nrebalance runs:');
  for (const r of rebalanceRuns)
    console.log(
      `  ${r.at}  ${r.outcome.padEnd(10)} ${String(r.durationMs).padStart(6)} ms  ${r.steps} steps  ${r.status}`,
    );
  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${RESULTS}`);
}
