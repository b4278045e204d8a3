// The executor against the real libvirt lab: a migration through BullMQ completes; a guest that cannot
// converge is aborted by the watchdog within its budget and keeps running on the source; a worker killed
// with SIGKILL mid-migration is adopted by another with no second migration; a source QEMU frozen with
// SIGSTOP is marked stuck without holding up other migrations, and the migration recovers after SIGCONT.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Plan, Step } from '../../src/domain/plan.js';
import { Executor, type MigrationStatus } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import { HistoryStore } from '../../src/executor/history-store.js';
import type { HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import {
  defineGuest,
  guestName,
  heartbeatAdvances,
  labDir,
  labHostConfigs,
  removeGuest,
  waitFor,
  type LabGuest,
} from './lab-client.js';
import { startWorkerProcess } from '../executor/support/spawn-worker.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';

const A = 'lab1';
const B = 'lab2';
/** The lab link as the executor sees it: 10 MiB/s, so migrations last long enough to act on. */
const LINK_MIBPS = 10;

function step(vm: string, from: string, to: string, durationS: number, budgetMs = 300): Step {
  return {
    vm,
    from,
    to,
    kind: 'live',
    why: 'lab test',
    predicted: { converges: true, durationS, downtimeMs: 50, transferMiB: 64 },
    downtimeBudgetMs: budgetMs,
  };
}

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

/** The QEMU process of a lab guest (its pid file lives in the host's overlay). */
function qemuPid(hostId: string, name: string): number {
  const pid = Number(
    readFileSync(join(labDir(), 'hosts', hostId, 'ovl/run/upper/libvirt/qemu', `${name}.pid`), 'utf8').trim(),
  );
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (!cmdline.includes(name)) throw new Error(`pid ${pid} is not the QEMU of ${name}`);
  return pid;
}

// Each test gets 180 s: TCG guests on a shared 2-core machine are slow.
describe('Executor on the libvirt lab', () => {
  let hv: LibvirtHypervisor;
  let redis: Redis;
  let prefix: string;
  const guests: string[] = [];
  const executors: Executor[] = [];
  const children: ChildProcess[] = [];
  const events: HypervisorEvent[] = [];

  beforeAll(async () => {
    hv = new LibvirtHypervisor(labHostConfigs(LINK_MIBPS), { callTimeoutMs: 15_000 });
    hv.subscribe((e) => events.push(e));
    await hv.eventsReady();
  });
  afterAll(async () => {
    await hv.close();
  });
  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('lab-executor');
    events.length = 0;
  });
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(executors.splice(0).map((e) => e.close()));
    for (const name of guests.splice(0)) await removeGuest(name);
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  function executor(overrides: Record<string, unknown> = {}, history?: HistoryStore): Executor {
    const ex = new Executor({
      redis,
      hypervisor: hv,
      options: parseExecutorOptions({ prefix, ...overrides }),
      ...(history ? { history } : {}),
    });
    executors.push(ex);
    return ex;
  }

  async function guest(spec: {
    host?: string;
    mb?: number;
    rate?: number;
    memMiB?: number;
    fillMiB?: number;
  }): Promise<LabGuest> {
    const g = await defineGuest({ name: guestName('exec'), host: spec.host ?? A, memMiB: 64, ...spec });
    guests.push(g.name);
    await heartbeatAdvances(spec.host ?? A, g.name);
    return g;
  }

  async function finished(ex: Executor, vmId: string, timeoutMs = 120_000): Promise<MigrationStatus> {
    return waitFor(
      `the job of ${vmId} to finish`,
      async () => {
        const s = (await ex.list()).find((x) => x.vmId === vmId);
        return s && (s.state === 'completed' || s.state === 'failed') ? s : undefined;
      },
      timeoutMs,
      250,
    );
  }

  it('runs a migration through BullMQ to completion and records it', async () => {
    const g = await guest({});
    const history = new HistoryStore(
      redis,
      prefix,
      { maxRecords: 10, quarantineBaseS: 60, quarantineMaxS: 600 },
      hv.clock,
    );
    const ex = executor({}, history);
    await ex.enqueuePlan(plan('lab-1', [step(g.id, A, B, 10)]), parseExecutionPolicy({}));
    ex.startWorkers();
    const done = await finished(ex, g.id);
    expect(done.result?.status, JSON.stringify(done)).toBe('completed');
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
    const h = await history.get(g.id);
    expect(h.records).toHaveLength(1);
    expect(h.records[0]).toMatchObject({ result: 'completed', from: A, to: B });
    expect(h.records[0]?.transferMiB).toBeGreaterThan(0);
  }, 180_000);

  it('aborts a guest that cannot converge within its budget; it keeps running on the source only', async () => {
    // 16 MiB rewritten at 50 MiB/s over a 10 MiB/s share with a 20 ms budget: no round can finish.
    const g = await guest({ mb: 16, rate: 12_800 });
    const ex = executor();
    // Predicted 2 s: deadline 2 x 2 s + 30 s = 34 s, stall window 10 s.
    await ex.enqueuePlan(plan('lab-2', [step(g.id, A, B, 2, 20)]), parseExecutionPolicy({}));
    const t0 = Date.now();
    ex.startWorkers();
    const done = await finished(ex, g.id);
    const elapsedS = (Date.now() - t0) / 1000;
    const report = done.result && 'report' in done.result ? done.result.report : null;
    expect(done.result?.status, JSON.stringify(done)).toBe('aborted');
    expect(['stalled', 'deadline']).toContain(report?.abortReason);
    expect(report?.maxDowntimeMs).toBeLessThanOrEqual(20);
    expect(elapsedS).toBeLessThan(34 + 20);
    expect(report?.problems).toEqual([]);
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
    await heartbeatAdvances(A, g.name);
  }, 180_000);

  it('adopts the migration of a worker killed with SIGKILL, without a second migration', async () => {
    // 200 MiB of written RAM at 10 MiB/s: about 20 s of migration.
    const g = await guest({ memMiB: 256, fillMiB: 200 });
    const child = await startWorkerProcess(redisUrl(), prefix, LINK_MIBPS, (c) => children.push(c));
    const enqueuer = executor();
    await enqueuer.enqueuePlan(plan('lab-3', [step(g.id, A, B, 25)]), parseExecutionPolicy({}));
    await waitFor(
      'the migration to run',
      async () => ((await hv.jobStats(A, g.id)).type === 'active' ? true : undefined),
      60_000,
      200,
    );
    await new Promise((r) => setTimeout(r, 2_000));
    const killedAt = Date.now();
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect((await hv.jobStats(A, g.id)).type).toBe('active'); // libvirt keeps migrating without the client

    let migrateCalls = 0;
    const adopter = new Executor({
      redis,
      hypervisor: hv,
      options: parseExecutorOptions({ prefix }),
      onMigrateCall: () => migrateCalls++,
    });
    executors.push(adopter);
    adopter.startWorkers();
    const adoptedAt = await waitFor(
      'the adopting worker to report progress',
      async () => {
        const s = (await adopter.list()).find((x) => x.vmId === g.id);
        return s?.progress?.adopted ? Date.now() : undefined;
      },
      60_000,
      100,
    );
    expect(adoptedAt - killedAt).toBeLessThan(15_000);
    const done = await finished(adopter, g.id);
    const report = done.result && 'report' in done.result ? done.result.report : null;
    expect(done.result?.status, JSON.stringify(done)).toBe('completed');
    expect(report?.adopted).toBe(true);
    expect(migrateCalls).toBe(0);
    const startsOnB = events.filter(
      (e) => e.kind === 'lifecycle' && e.vmId === g.id && e.hostId === B && e.event === 'started',
    );
    expect(startsOnB.length).toBeLessThanOrEqual(1);
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
  }, 180_000);

  it('marks a migration from a SIGSTOPped QEMU stuck without blocking another, and recovers on SIGCONT', async () => {
    const frozen = await guest({ memMiB: 256, fillMiB: 200 });
    const other = await guest({ host: B });
    const ex = executor({ callTimeoutMs: 2_000, stuckAfterMs: 4_000 });
    await ex.enqueuePlan(plan('lab-4', [step(frozen.id, A, B, 25)]), parseExecutionPolicy({}));
    ex.startWorkers();
    // Freeze once the worker watches the migration (its progress shows in BullMQ).
    await waitFor(
      'the worker to watch the migration',
      async () => {
        const s = (await ex.list()).find((x) => x.vmId === frozen.id);
        return s?.state === 'active' && s.progress?.phase === 'migrating' ? true : undefined;
      },
      60_000,
      200,
    );
    const pid = qemuPid(A, frozen.name);
    process.kill(pid, 'SIGSTOP');
    try {
      const stuck = await waitFor(
        'the migration to be marked stuck',
        async () => {
          const s = (await ex.list()).find((x) => x.vmId === frozen.id);
          return s?.progress?.stuck ? s : undefined;
        },
        30_000,
        250,
      );
      expect(stuck.state).toBe('active');
      // The same worker still runs other migrations meanwhile.
      await ex.enqueuePlan(plan('lab-4b', [step(other.id, B, A, 10)]), parseExecutionPolicy({}));
      const otherDone = await finished(ex, other.id, 60_000);
      expect(otherDone.result?.status, JSON.stringify(otherDone)).toBe('completed');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor(
      'the migration to answer again',
      async () => {
        const s = (await ex.list()).find((x) => x.vmId === frozen.id);
        return s && (s.state !== 'active' || s.progress?.stuck === false) ? true : undefined;
      },
      60_000,
      250,
    );
    const done = await finished(ex, frozen.id);
    const report = done.result && 'report' in done.result ? done.result.report : null;
    expect(report?.watchdog.map((w) => w.action.kind)).toEqual(expect.arrayContaining(['stuck', 'unstuck']));
    expect(['completed', 'aborted']).toContain(done.result?.status);
    const where = await hv.locateVm(frozen.id);
    expect(where.filter((p) => p.state !== 'shutoff')).toHaveLength(1);
    expect(where[0]?.state).toBe('running');
  }, 180_000);
});
