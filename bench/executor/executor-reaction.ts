// bench/executor: how quickly the executor acts, in real time (a real Redis with BullMQ, the simulator on
// the system clock, and the libvirt lab when it is up).
//   1. job runnable -> migration call: a plan's job is added to an idle queue; time until the migrate call.
//   2. watchdog reaction: a migration's deadline passes; time until the abort is issued (poll 500 ms, the
//      deadline 3.2 s after the start: between two polls). The watchdog's timer fires at the deadline, so
//      the goal is p99 <= 50 ms (on the simulator with the system clock).
//   3. adoption: a worker process running a migration on the lab is killed with SIGKILL; time until another
//      worker has adopted it and reports its progress. Goal: <= 10 s. Needs the lab (make lab-up) and root;
//      without the lab the row says why it was not measured.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Plan, Step } from '../../src/domain/plan.js';
import { Executor } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import { SimHypervisor, SystemClock, type SimVmSpec } from '../../src/hypervisor/sim/index.js';
import { startPrivateRedis } from '../../src/service/private-redis.js';
import {
  RESULTS_DIR,
  machineInfo,
  machineLine,
  percentile,
  round,
  textTable,
  type ResultTable,
} from '../report.js';

const POLL_MS = 500;
const LATENCY_RUNS = 40;
const REACTION_RUNS = 40;
const REACTION_BATCH = 10;
/** SIGKILL -> adoption runs on the lab (BENCH_ADOPTION_RUNS; each takes tens of seconds on a busy machine). */
const ADOPTION_RUNS = Number(process.env.BENCH_ADOPTION_RUNS ?? 20);

function plan(id: string, steps: Step[]): Plan {
  return {
    id,
    reason: 'rebalance',
    createdAt: new Date().toISOString(),
    steps,
    skipped: [],
    before: { cpuSpreadPct: 0, memSpreadPct: 0 },
    after: { cpuSpreadPct: 0, memSpreadPct: 0 },
  };
}

function step(vm: string, from: string, to: string, durationS: number): Step {
  return {
    vm,
    from,
    to,
    kind: 'live',
    why: 'bench',
    predicted: { converges: true, durationS, downtimeMs: 20, transferMiB: 1024 },
    downtimeBudgetMs: 100,
  };
}

function cluster(hosts: number, vms: SimVmSpec[]): SimHypervisor {
  return new SimHypervisor(
    {
      seed: 11,
      hosts: Array.from({ length: hosts }, (_, i) => ({
        id: `h${i}`,
        cpus: 32,
        memMiB: 262144,
        bandwidthMiBps: 1000,
        cpuModel: 'Cascadelake-Server',
      })),
      vms,
    },
    { clock: new SystemClock() },
  );
}

function vm(id: string, host: string, memMiB: number, dirtyMiBps: number, wwsMiB: number): SimVmSpec {
  return {
    id,
    name: id,
    host,
    vcpus: 1,
    memMiB,
    cpuModel: 'Cascadelake-Server',
    workload: { kind: 'constant', cpuPct: 10, dirtyMiBps, wwsMiB },
  };
}

async function waitUntil(
  what: string,
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function stats(values: number[]): { n: number; p50: number; p99: number; max: number } {
  return {
    n: values.length,
    p50: round(percentile(values, 50), 1),
    p99: round(percentile(values, 99), 1),
    max: round(Math.max(...values), 1),
  };
}

/** 1. Job runnable -> migration call, one job at a time on an idle worker. */
async function runnableToCall(redisUrl: string): Promise<number[]> {
  const hv = cluster(
    2,
    Array.from({ length: LATENCY_RUNS }, (_, i) => vm(`l${i}`, 'h0', 256, 1, 16)),
  );
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const calls = new Map<string, number>();
  const ex = new Executor({
    redis,
    hypervisor: hv,
    options: parseExecutorOptions({ prefix: `{bench-executor-latency-${process.pid}}` }),
    onMigrateCall: (vmId, atMs) => calls.set(vmId, atMs),
  });
  ex.startWorkers();
  const out: number[] = [];
  try {
    for (let i = 0; i < LATENCY_RUNS; i++) {
      const id = `l${i}`;
      const addedAt = Date.now();
      await ex.enqueuePlan(plan(`lat-${i}`, [step(id, 'h0', 'h1', 1)]), parseExecutionPolicy({}));
      await waitUntil('the migrate call', () => calls.has(id), 30_000);
      out.push((calls.get(id) ?? addedAt) - addedAt);
      await waitUntil('the migration to end', () => hv.activeMigrations() === 0, 30_000);
    }
  } finally {
    await ex.close();
    await redis.quit();
    await hv.close();
  }
  return out;
}

/** 2. Deadline crossed -> abort issued, for migrations that never converge (10 at a time). */
async function watchdogReaction(redisUrl: string): Promise<number[]> {
  const hosts = REACTION_BATCH * 2;
  const vms = Array.from({ length: REACTION_RUNS }, (_, i) =>
    vm(`r${i}`, `h${(i % REACTION_BATCH) * 2}`, 1024, 3000, 512),
  );
  const hv = cluster(hosts, vms);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const started = new Map<string, number>();
  const aborted = new Map<string, number>();
  // Deadline = predicted duration x 2 + 0 s margin = 3.2 s, between the 6th and 7th poll; the stall window
  // (10 s) is longer, so the deadline is what fires.
  const policy = parseExecutionPolicy({
    predictive: { deadlineFactor: 2, deadlineMarginS: 0, minStallWindowS: 10 },
    limits: { perHostOutbound: 4, perHostInbound: 4, cluster: REACTION_BATCH * 2 },
  });
  const deadlineMs = 3_200;
  const ex = new Executor({
    redis,
    hypervisor: hv,
    options: parseExecutorOptions({
      prefix: `{bench-executor-reaction-${process.pid}}`,
      pollIntervalMs: POLL_MS,
      workerConcurrency: REACTION_BATCH * 2,
    }),
    onMigrateCall: (vmId, atMs) => started.set(vmId, atMs),
    onAbortIssued: (vmId, atMs) => {
      if (!aborted.has(vmId)) aborted.set(vmId, atMs);
    },
  });
  ex.startWorkers();
  try {
    for (let b = 0; b < REACTION_RUNS / REACTION_BATCH; b++) {
      const steps = Array.from({ length: REACTION_BATCH }, (_, k) => {
        const i = b * REACTION_BATCH + k;
        return step(`r${i}`, `h${k * 2}`, `h${k * 2 + 1}`, 1.6);
      });
      await ex.enqueuePlan(plan(`react-${b}`, steps), policy);
      await waitUntil('the batch to be aborted', () => steps.every((s) => aborted.has(s.vm)), 60_000);
      await waitUntil('the batch to end', () => hv.activeMigrations() === 0, 60_000);
    }
  } finally {
    await ex.close();
    await redis.quit();
    await hv.close();
  }
  return [...aborted.entries()].map(([id, at]) => at - ((started.get(id) ?? at) + deadlineMs));
}

/** 3. Adoption after SIGKILL of a worker process, on the lab. */
async function adoption(redisUrl: string): Promise<{ times: number[]; note: string }> {
  let lab: typeof import('../../test/lab/lab-client.js');
  try {
    lab = await import('../../test/lab/lab-client.js');
    if (!lab.labIsUp()) return { times: [], note: 'not measured: the libvirt lab is not up (make lab-up)' };
  } catch (err) {
    return { times: [], note: `not measured: ${String(err)}` };
  }
  const { LibvirtHypervisor } = await import('../../src/hypervisor/libvirt/index.js');
  const hv = new LibvirtHypervisor(lab.labHostConfigs(10), { callTimeoutMs: 15_000 });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const times: number[] = [];
  try {
    for (let i = 0; i < ADOPTION_RUNS; i++) {
      const prefix = `{bench-executor-adopt-${process.pid}-${i}}`;
      const g = await lab.defineGuest({
        name: lab.guestName('bench-adopt'),
        host: 'lab1',
        memMiB: 256,
        fillMiB: 200,
      });
      try {
        await lab.heartbeatAdvances('lab1', g.name, 30_000);
        const child = spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            join(lab.REPO_ROOT, 'test/executor/support/worker-process.ts'),
            redisUrl,
            prefix,
            '10',
          ],
          { cwd: lab.REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
        );
        await new Promise<void>((resolve) =>
          child.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()),
        );
        const enqueuer = new Executor({ redis, hypervisor: hv, options: parseExecutorOptions({ prefix }) });
        await enqueuer.enqueuePlan(
          plan(`adopt-${i}`, [step(g.id, 'lab1', 'lab2', 25)]),
          parseExecutionPolicy({}),
        );
        await waitUntil(
          'the migration to run',
          async () => (await hv.jobStats('lab1', g.id)).type === 'active',
          60_000,
        );
        await new Promise((r) => setTimeout(r, 1_000));
        const killedAt = Date.now();
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
        const adopter = new Executor({ redis, hypervisor: hv, options: parseExecutorOptions({ prefix }) });
        adopter.startWorkers();
        await waitUntil(
          'adoption',
          async () => (await adopter.list()).some((s) => s.vmId === g.id && s.progress?.adopted === true),
          60_000,
        );
        times.push(Date.now() - killedAt);
        await waitUntil(
          'the adopted migration to end',
          async () => (await adopter.list()).some((s) => s.vmId === g.id && s.state === 'completed'),
          120_000,
        );
        await adopter.close();
        await enqueuer.close();
      } finally {
        await lab.removeGuest(g.name);
      }
    }
  } finally {
    await redis.quit();
    await hv.close();
  }
  return {
    times,
    note: `lab (libvirt ${'9.0'}, TCG guests of 256 MiB at 10 MiB/s), lockDuration 5 s, stalledInterval 2 s`,
  };
}

export async function main(): Promise<void> {
  const machine = machineInfo();
  const date = new Date().toISOString();
  console.log(`bench executor — ${date}\n${machineLine(machine)}\n`);
  const own = process.env.REDIS_URL ? null : await startPrivateRedis();
  const redisUrl = process.env.REDIS_URL ?? own?.url ?? '';
  try {
    const latency = stats(await runnableToCall(redisUrl));
    const reaction = stats(await watchdogReaction(redisUrl));
    const adopt = await adoption(redisUrl).catch((err: unknown) => ({
      times: [] as number[],
      note: `not measured: ${err instanceof Error ? err.message : String(err)}`,
    }));
    const adoptStats = adopt.times.length > 0 ? stats(adopt.times) : null;
    const table: ResultTable = {
      title: 'executor (ms)',
      header: ['measure', 'n', 'p50', 'p99', 'max', 'goal', 'met'],
      rows: [
        ['job runnable -> migrate call', latency.n, latency.p50, latency.p99, latency.max, '-', '-'],
        [
          'deadline crossed -> abort issued',
          reaction.n,
          reaction.p50,
          reaction.p99,
          reaction.max,
          'p99 <= 50',
          reaction.p99 <= 50 ? 'yes' : 'no',
        ],
        [
          'worker SIGKILL -> migration adopted',
          adoptStats?.n ?? 0,
          adoptStats?.p50 ?? null,
          adoptStats?.p99 ?? null,
          adoptStats?.max ?? null,
          'p99 <= 5000 over >= 20 runs',
          adoptStats === null ? adopt.note : adoptStats.p99 <= 5_000 && adoptStats.n >= 20 ? 'yes' : 'no',
        ],
      ],
    };
    console.log(textTable(table));
    console.log(`\nadoption: ${adopt.note}`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(
      join(RESULTS_DIR, 'executor.json'),
      `${JSON.stringify(
        {
          bench: 'executor',
          date,
          machine,
          pollIntervalMs: POLL_MS,
          latencyMs: latency,
          reactionMs: reaction,
          adoptionMs: adoptStats,
          adoptionNote: adopt.note,
          table,
          goals: [
            {
              goal: 'deadline (between polls) -> abort issued, p99 ms (simulator, system clock)',
              target: '<= 50',
              measured: reaction.p99,
              met: reaction.p99 <= 50,
            },
            {
              goal: 'worker SIGKILL -> migration adopted on the lab, p99 ms over >= 20 runs',
              target: '<= 5000',
              measured: adoptStats?.p99 ?? null,
              met: adoptStats !== null && adoptStats.n >= 20 && adoptStats.p99 <= 5_000,
            },
          ],
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await own?.stop();
  }
}
