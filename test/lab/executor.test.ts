// The executor against the real libvirt lab: a migration through BullMQ completes; a guest that cannot
// converge is aborted by the watchdog within its budget and keeps running on the source; a source QEMU frozen
// with SIGSTOP is marked stuck without holding up other migrations, and the migration recovers after SIGCONT.
// (A worker killed with SIGKILL mid-migration, adopted by another: faults-lab.test.ts.)
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Step } from '../../src/domain/plan.js';
import { Executor } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import { HistoryStore } from '../../src/executor/history-store.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { heartbeatAdvances, labHostConfigs, waitFor } from './lab-client.js';
import { LabGuests, jobFinished, labPlan, labStep, qemuPid, reportOf } from './lab-jobs.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const A = 'lab1';
const B = 'lab2';
/** The lab link as the executor sees it: 10 MiB/s, so migrations last long enough to act on. */
const LINK_MIBPS = 10;

function step(vm: string, from: string, to: string, durationS: number, budgetMs = 300): Step {
  return labStep(vm, {
    from,
    to,
    predicted: { converges: true, durationS, downtimeMs: 50, transferMiB: 64 },
    downtimeBudgetMs: budgetMs,
  });
}

const plan = (id: string, steps: Step[]) => labPlan(id, steps, 'rebalance');

// Each test gets 180 s: TCG guests on a shared 2-core machine are slow.
describe('Executor on the libvirt lab', () => {
  let hv: LibvirtHypervisor;
  let redis: Redis;
  let prefix: string;
  const guests = new LabGuests('exec');
  const executors: Executor[] = [];

  beforeAll(() => {
    hv = new LibvirtHypervisor(labHostConfigs(LINK_MIBPS), { callTimeoutMs: 15_000 });
  });
  afterAll(async () => {
    await hv.close();
  });
  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('lab-executor');
  });
  afterEach(async () => {
    await Promise.all(executors.splice(0).map((e) => e.close()));
    await guests.removeAll();
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

  function guest(spec: { host?: string; mb?: number; rate?: number; memMiB?: number; fillMiB?: number }) {
    return guests.boot(spec, 5_000);
  }

  const finished = (ex: Executor, vmId: string, timeoutMs = 120_000) => jobFinished(ex, vmId, timeoutMs);

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
    const report = reportOf(done);
    expect(done.result?.status, JSON.stringify(done)).toBe('aborted');
    expect(['stalled', 'deadline']).toContain(report?.abortReason);
    expect(report?.maxDowntimeMs).toBeLessThanOrEqual(20);
    expect(elapsedS).toBeLessThan(34 + 20);
    expect(report?.problems).toEqual([]);
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
    await heartbeatAdvances(A, g.name);
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
    const report = reportOf(done);
    expect(report?.watchdog.map((w) => w.action.kind)).toEqual(expect.arrayContaining(['stuck', 'unstuck']));
    expect(['completed', 'aborted']).toContain(done.result?.status);
    const where = await hv.locateVm(frozen.id);
    expect(where.filter((p) => p.state !== 'shutoff')).toHaveLength(1);
    expect(where[0]?.state).toBe('running');
  }, 180_000);
});
