// bench/executor: how quickly the executor acts, in real time (a real Redis with BullMQ, the simulator on
// the system clock, and the libvirt lab when it is up).
//   1. job runnable -> migration call: a plan's job is added to an idle queue; time until the migrate call.
//   2. watchdog reaction on the simulator: a deadline between two polls; time until the abort is issued.
//   2b. watchdog reaction on the lab (libvirt, TCG guests): deadlines between polls, and stalls (the guest's
//      dirty rate raised mid-migration); time from the due moment to the abort call (goal p99 <= 50 ms each),
//      and from the abort call until the guest runs on its source only.
//   3. adoption: a worker process running a migration on the lab is killed with SIGKILL; time until another
//      worker has adopted it and reports its progress (goal p99 <= 5 s over >= 20 runs).
// The lab parts need the lab (make lab-up) and root; without it their rows say why they were not measured.
// BENCH_LAB_DEADLINE_RUNS, BENCH_LAB_STALL_RUNS and BENCH_ADOPTION_RUNS size them (20 each by default).
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
const LAB_DEADLINE_RUNS = Number(process.env.BENCH_LAB_DEADLINE_RUNS ?? 20);
const LAB_STALL_RUNS = Number(process.env.BENCH_LAB_STALL_RUNS ?? 20);
const LAB_LINK_MIBPS = 25;

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
  everyMs = 5,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
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

/** What the lab reaction runs measured (ms), or why they were not measured. */
interface LabReaction {
  deadline: number[];
  stall: number[];
  toSourceOnly: number[];
  /** Deadline runs whose deadline fell between two polls (the due moment was not a poll's). */
  note: string;
}

/**
 * 2b. On the lab: the executor with the libvirt hypervisor (poll 500 ms). Deadline runs: a guest that never
 * converges (64 MiB rewritten as fast as it can, link 25 MiB/s), its deadline set between polls (3.2 s
 * plus a spread of 0..0.5 s). Stall runs: a guest that converges easily (1 MiB/s) until a key raises its
 * dirty rate, pressed once round 0 has started; the stall is proven by the watchdog's own evidence (its
 * window run out and the answer that showed the rounds without progress). Each abort: time from the due
 * moment to the abort call, and from the abort call until the guest runs on its source only (locateVm
 * polled every 10 ms on a connection of its own).
 */
async function labReaction(redisUrl: string): Promise<LabReaction> {
  const none = (note: string): LabReaction => ({ deadline: [], stall: [], toSourceOnly: [], note });
  let lab: typeof import('../../test/lab/lab-client.js');
  try {
    lab = await import('../../test/lab/lab-client.js');
    if (!lab.labIsUp()) return none('not measured: the libvirt lab is not up (make lab-up)');
  } catch (err) {
    return none(`not measured: ${String(err)}`);
  }
  const { LibvirtHypervisor } = await import('../../src/hypervisor/libvirt/index.js');
  const hv = new LibvirtHypervisor(lab.labHostConfigs(LAB_LINK_MIBPS), { callTimeoutMs: 15_000 });
  const watcher = new LibvirtHypervisor(lab.labHostConfigs(LAB_LINK_MIBPS), { callTimeoutMs: 15_000 });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const migrateCalls = new Map<string, number>();
  const aborts: { vmId: string; atMs: number; dueAtMs: number; reason: string }[] = [];
  const ex = new Executor({
    redis,
    hypervisor: hv,
    options: parseExecutorOptions({ prefix: `{bench-executor-lab-${process.pid}}`, pollIntervalMs: POLL_MS }),
    onMigrateCall: (vmId, atMs) => migrateCalls.set(vmId, atMs),
    onAbortIssued: (vmId, atMs, reason, dueAtMs) => aborts.push({ vmId, atMs, dueAtMs, reason }),
  });
  ex.startWorkers();
  const out: LabReaction = { deadline: [], stall: [], toSourceOnly: [], note: '' };
  const names: string[] = [];
  /** One migration lab1 -> lab2 of `vmId` under the executor; resolves with its abort, if any. */
  const runOnce = async (
    vmId: string,
    planId: string,
    forecast: { deadlineS: number; stallWindowS: number },
    afterCall?: () => Promise<void>,
  ): Promise<{ atMs: number; dueAtMs: number; reason: string } | null> => {
    const before = aborts.length;
    migrateCalls.delete(vmId);
    await ex.enqueuePlan(
      plan(planId, [{ ...step(vmId, 'lab1', 'lab2', 2), downtimeBudgetMs: 100 }]),
      parseExecutionPolicy({ predictive: { minStallWindowS: 1 } }),
      { [vmId]: forecast },
    );
    await waitUntil('the migrate call', () => migrateCalls.has(vmId), 60_000);
    await afterCall?.();
    let toSource: number | null = null;
    await waitUntil(
      'the run to end',
      async () => {
        const abort = aborts.slice(before).find((a) => a.vmId === vmId);
        if (abort && toSource === null) {
          // A domain that goes away between listing and its state read fails the call: look again.
          const where = await watcher.locateVm(vmId).catch(() => []);
          if (where.length === 1 && where[0]?.hostId === 'lab1' && where[0].state === 'running')
            toSource = Date.now() - abort.atMs;
        }
        const status = (await ex.list()).find((s) => s.planId === planId);
        return (
          status !== undefined &&
          ['completed', 'failed'].includes(status.state) &&
          (!abort || toSource !== null)
        );
      },
      120_000,
      10,
    );
    const abort = aborts.slice(before).find((a) => a.vmId === vmId) ?? null;
    if (abort && toSource !== null) out.toSourceOnly.push(toSource);
    // Back where it started for the next run (a run that completed moved it).
    const where = await hv.locateVm(vmId);
    if (!where.some((p) => p.hostId === 'lab1' && p.state === 'running')) {
      const back = await hv.migrate({
        vmId,
        from: 'lab2',
        to: 'lab1',
        kind: 'live',
        maxDowntimeMs: 2_000,
        bandwidthMiBps: null,
      });
      await back.done;
    }
    return abort;
  };
  try {
    const hot = await lab.defineGuest({
      name: lab.guestName('bench-deadline'),
      host: 'lab1',
      memMiB: 128,
      mb: 64,
      rate: 0,
    });
    names.push(hot.name);
    const calm = await lab.defineGuest({
      name: lab.guestName('bench-stall'),
      host: 'lab1',
      memMiB: 128,
      mb: 16,
      rate: 256,
      fillMiB: 48,
      args: ['raise=0'],
    });
    names.push(calm.name);
    await lab.heartbeatAdvances('lab1', hot.name, 30_000);
    await lab.heartbeatAdvances('lab1', calm.name, 30_000);
    let missed = 0;
    for (let i = 0; i < LAB_DEADLINE_RUNS; i++) {
      // Deadlines 3.2 s .. 3.7 s after the call: between polls (every 500 ms) at a different phase each run.
      const deadlineS = 3.2 + ((i * 0.137) % 0.5);
      const abort = await runOnce(hot.id, `lab-deadline-${process.pid}-${i}`, {
        deadlineS,
        stallWindowS: 600,
      });
      if (abort?.reason === 'deadline') out.deadline.push(abort.atMs - abort.dueAtMs);
      else missed++;
    }
    for (let i = 0; i < LAB_STALL_RUNS; i++) {
      const abort = await runOnce(
        calm.id,
        `lab-stall-${process.pid}-${i}`,
        { deadlineS: 120, stallWindowS: 1.5 },
        async () => {
          await new Promise((r) => setTimeout(r, 800));
          await lab.pressKey('lab1', calm.name); // raised: 16 MiB rewritten as fast as it can
        },
      );
      await lab.pressKey('lab1', calm.name); // calm again for the next run
      if (abort?.reason === 'stalled') out.stall.push(abort.atMs - abort.dueAtMs);
      else missed++;
    }
    out.note =
      `lab (TCG guests of 128 MiB, link ${LAB_LINK_MIBPS} MiB/s, poll ${POLL_MS} ms); ` +
      `${missed} run(s) ended otherwise than by the expected abort and are not counted`;
  } finally {
    await ex.close();
    await redis.quit();
    await hv.close();
    await watcher.close();
    for (const name of names) await lab.removeGuest(name).catch(() => undefined);
  }
  return out;
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
  // One guest for every run, migrated from wherever the run before left it.
  const g = await lab.defineGuest({
    name: lab.guestName('bench-adopt'),
    host: 'lab1',
    memMiB: 256,
    fillMiB: 100,
  });
  try {
    await lab.heartbeatAdvances('lab1', g.name, 30_000);
    for (let i = 0; i < ADOPTION_RUNS; i++) {
      const prefix = `{bench-executor-adopt-${process.pid}-${i}}`;
      const from = (await hv.locateVm(g.id)).find((p) => p.state === 'running')?.hostId ?? 'lab1';
      const to = from === 'lab1' ? 'lab2' : 'lab1';
      {
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
        await enqueuer.enqueuePlan(plan(`adopt-${i}`, [step(g.id, from, to, 12)]), parseExecutionPolicy({}));
        await waitUntil(
          'the migration to run',
          async () => (await hv.jobStats(from, g.id)).type === 'active',
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
          async () =>
            (await adopter.list()).some(
              (s) => s.vmId === g.id && (s.state === 'completed' || s.state === 'failed'),
            ),
          120_000,
        );
        await adopter.close();
        await enqueuer.close();
      }
    }
  } finally {
    await lab.removeGuest(g.name).catch(() => undefined);
    await redis.quit();
    await hv.close();
  }
  return {
    times,
    note: `lab (one TCG guest of 256 MiB, 100 MiB of it written, link 10 MiB/s), lockDuration 3 s, stalledInterval 1 s (the defaults)`,
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
    const onLab = await labReaction(redisUrl).catch((err: unknown): LabReaction => ({
      deadline: [],
      stall: [],
      toSourceOnly: [],
      note: `not measured: ${err instanceof Error ? err.message : String(err)}`,
    }));
    const labDeadline = onLab.deadline.length > 0 ? stats(onLab.deadline) : null;
    const labStall = onLab.stall.length > 0 ? stats(onLab.stall) : null;
    const labToSource = onLab.toSourceOnly.length > 0 ? stats(onLab.toSourceOnly) : null;
    const row = (
      name: string,
      st: ReturnType<typeof stats> | null,
      goal: string,
      met: (x: ReturnType<typeof stats>) => boolean | null,
    ) => [
      name,
      st?.n ?? 0,
      st?.p50 ?? null,
      st?.p99 ?? null,
      st?.max ?? null,
      goal,
      st === null ? onLab.note : met(st) === null ? '-' : met(st) ? 'yes' : 'no',
    ];
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
        row('lab: deadline (between polls) -> abort issued', labDeadline, 'p99 <= 50', (x) => x.p99 <= 50),
        row('lab: stall provable -> abort issued', labStall, 'p99 <= 50', (x) => x.p99 <= 50),
        row('lab: abort issued -> guest on its source only', labToSource, '-', () => null),
        [
          'simulator: deadline (between polls) -> abort issued',
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
    console.log(`\nlab reaction: ${onLab.note}\nadoption: ${adopt.note}`);
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
          lab: {
            deadlineToAbortMs: labDeadline,
            stallToAbortMs: labStall,
            abortToSourceOnlyMs: labToSource,
            note: onLab.note,
            raw: onLab,
          },
          table,
          goals: [
            {
              goal: 'deadline (between polls) -> abort issued on libvirt, p99 ms',
              target: '<= 50',
              measured: labDeadline?.p99 ?? null,
              met: labDeadline !== null && labDeadline.p99 <= 50,
            },
            {
              goal: 'stall provable (dirty rate raised mid-migration) -> abort issued on libvirt, p99 ms',
              target: '<= 50',
              measured: labStall?.p99 ?? null,
              met: labStall !== null && labStall.p99 <= 50,
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
