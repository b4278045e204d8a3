// Load: one drover process (the composition root, simulator hypervisor, a private Redis) on a 1,000-host
// simulated cluster with continuous collection, a rebalance every minute and up to 20 concurrent migrations.
// Measures RSS over time, event-loop lag (p99 per interval and overall, monitorEventLoopDelay) and jobs lost:
// a step of a started plan with no job in the queue and its VM not where the step sent it.
// `npm run bench -- load --minutes=10` (default 10; LOAD_MINUTES works too; LOAD_HOSTS sets the host count).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { jobIdFor } from '../../src/executor/executor.js';
import { loadConfig } from '../../src/service/config.js';
import { startService } from '../../src/service/main.js';
import { startPrivateRedis } from '../../src/service/private-redis.js';

const here = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(here, '../results/load.json');

function minutesArg(): number {
  // `--minutes=N` (bench/run.ts takes every bare argument for a bench name), or LOAD_MINUTES.
  const flag = process.argv.find((a) => a.startsWith('--minutes='));
  const raw = flag ? flag.slice('--minutes='.length) : process.env.LOAD_MINUTES;
  const n = Number(raw ?? '10');
  return Number.isFinite(n) && n > 0 ? n : 10;
}

interface Sample {
  atS: number;
  rssMiB: number;
  heapUsedMiB: number;
  lagP99Ms: number;
  lagMaxMs: number;
  running: number;
  finished: number;
  plans: number;
}

const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const ms = (ns: number) => Math.round((ns / 1e6) * 10) / 10;

export async function main(): Promise<void> {
  const minutes = minutesArg();
  const hosts = Number(process.env.LOAD_HOSTS ?? '1000');
  const machine = {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memMiB: Math.round(totalmem() / 2 ** 20),
  };
  const date = new Date().toISOString();
  console.log(
    `load: ${hosts} simulated hosts, ${minutes} min, rebalance every minute, 20 concurrent migrations\n` +
      `machine: ${machine.nproc} x ${machine.cpuModel}, ${machine.memMiB} MiB; ${date}`,
  );

  const dir = await mkdtemp(join(tmpdir(), 'drover-load-'));
  await mkdir(join(dir, 'redis'));
  const redis = await startPrivateRedis({ dir: join(dir, 'redis') });
  await writeFile(
    join(dir, 'policy.yaml'),
    stringify({
      balance: { targetCpuSpreadPct: 10, targetMemSpreadPct: 10, holdTimeS: 0, minImprovementPct: 0.1 },
      limits: { maxMovesPerRun: 40, perHostConcurrency: 2, perClusterConcurrency: 20 },
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
        collect: { intervalS: 15 },
        reconcile: { intervalS: 10 },
      },
      automation: { level: 'full', planMaxAgeS: 600 },
      api: { port: 0, tokens: [{ name: 'bench', role: 'admin', value: 'load-bench-token-0123456789' }] },
      metrics: { processMetrics: false },
      log: { level: 'warn' },
      executor: { workerConcurrency: 20, keepJobs: 1_000_000 },
    }),
  );
  const loaded = await loadConfig(join(dir, 'drover.yaml'), {});
  const warnings: string[] = [];
  const logger = pino(
    { level: 'warn' },
    {
      write(line: string) {
        if (warnings.length < 2_000) warnings.push(line);
      },
    },
  );
  const startedAt = performance.now();
  const running = await startService(loaded, { env: {}, logger });
  const startupS = (performance.now() - startedAt) / 1000;
  const sim = running.sim;
  if (!sim) throw new Error('no simulator');
  let migrationsStarted = 0;
  let migrationsEnded = 0;
  sim.subscribe((e) => {
    if (e.kind === 'job-completed') migrationsEnded += 1;
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
  while (Date.now() < endAt) {
    await new Promise((r) => setTimeout(r, Math.min(sampleEveryMs, Math.max(0, endAt - Date.now()))));
    const mem = process.memoryUsage();
    const gauge = await running.metrics.registry.getSingleMetric('drover_migrations_running')?.get();
    const active = gauge?.values.reduce((n, v) => n + v.value, 0) ?? 0;
    maxRunning = Math.max(maxRunning, active);
    const plans = (await running.service.listPlans({ limit: 500 })).length;
    const s: Sample = {
      atS: Math.round((Date.now() - t0) / 1000),
      rssMiB: mib(mem.rss),
      heapUsedMiB: mib(mem.heapUsed),
      lagP99Ms: ms(interval.percentile(99)),
      lagMaxMs: ms(interval.max),
      running: active,
      finished: migrationsEnded,
      plans,
    };
    interval.reset();
    samples.push(s);
    console.log(
      `${String(s.atS).padStart(5)} s  rss ${String(s.rssMiB).padStart(7)} MiB  heap ${String(s.heapUsedMiB).padStart(7)} MiB  lag p99 ${String(s.lagP99Ms).padStart(6)} ms  max ${String(s.lagMaxMs).padStart(7)} ms  running ${String(s.running).padStart(3)}  ended ${s.finished}  plans ${s.plans}`,
    );
  }
  all.disable();
  interval.disable();

  // Jobs lost: a step of a plan that was started, with no job in the queue and its VM not at the destination.
  const plans = await running.service.listPlans({ limit: 500 });
  let steps = 0;
  let lost = 0;
  const lostSteps: string[] = [];
  for (const record of plans) {
    if (!['running', 'completed', 'failed'].includes(record.status)) continue;
    for (const step of record.plan.steps) {
      steps += 1;
      const job = await running.service.getMigration(step.vm).catch(() => null);
      const where = await sim.locateVm(step.vm);
      const atDestination = where.some((p) => p.hostId === step.to && p.state === 'running');
      if (!job && !atDestination) {
        lost += 1;
        if (lostSteps.length < 20)
          lostSteps.push(`${record.plan.id} ${step.vm} -> ${step.to} (${jobIdFor(step.vm)})`);
      }
    }
  }
  await running.stop('bench done');
  await redis.stop();
  await rm(dir, { recursive: true, force: true });

  const rss = samples.map((s) => s.rssMiB);
  const firstHalf = rss.slice(0, Math.max(1, Math.floor(rss.length / 2)));
  const secondHalf = rss.slice(Math.floor(rss.length / 2));
  const avg = (xs: number[]) =>
    Math.round((xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)) * 10) / 10;
  const result = {
    date,
    machine,
    minutes,
    hosts,
    startupS: Math.round(startupS * 10) / 10,
    rssMiB: {
      first: rss[0] ?? null,
      last: rss.at(-1) ?? null,
      max: Math.max(...rss),
      avgFirstHalf: avg(firstHalf),
      avgSecondHalf: avg(secondHalf),
    },
    eventLoopLagMs: {
      p50: ms(all.percentile(50)),
      p99: ms(all.percentile(99)),
      max: ms(all.max),
      worstIntervalP99: Math.max(...samples.map((s) => s.lagP99Ms)),
    },
    migrations: { started: migrationsStarted, ended: migrationsEnded, maxConcurrentSeen: maxRunning },
    plans: plans.length,
    stepsOfStartedPlans: steps,
    jobsLost: lost,
    lostSteps,
    warnings: warnings.length,
    firstWarnings: warnings.slice(0, 5),
    samples,
  };
  console.log(
    [
      '',
      `| metric | value |`,
      `|---|---|`,
      `| hosts / minutes | ${hosts} / ${minutes} |`,
      `| startup | ${result.startupS} s |`,
      `| RSS first / last / max | ${result.rssMiB.first} / ${result.rssMiB.last} / ${result.rssMiB.max} MiB |`,
      `| RSS avg first half / second half | ${result.rssMiB.avgFirstHalf} / ${result.rssMiB.avgSecondHalf} MiB |`,
      `| event-loop lag p50 / p99 / max | ${result.eventLoopLagMs.p50} / ${result.eventLoopLagMs.p99} / ${result.eventLoopLagMs.max} ms |`,
      `| worst 10 s interval p99 | ${result.eventLoopLagMs.worstIntervalP99} ms |`,
      `| migrations started / ended / max concurrent seen | ${migrationsStarted} / ${migrationsEnded} / ${maxRunning} |`,
      `| plans / steps of started plans | ${plans.length} / ${steps} |`,
      `| jobs lost | ${lost} |`,
      `| warnings logged | ${warnings.length} |`,
    ].join('\n'),
  );
  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${RESULTS}`);
}
