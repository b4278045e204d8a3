// The Executor on a real Redis (BullMQ) with the simulator on a sped-up clock: one job per VM, per-host and
// cluster limits, retries, progress, history and quarantine, operator aborts, adoption after a worker stops.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ScaledClock } from '../../src/clock/clocks.js';
import { SimHypervisor, type SimVmSpec } from '../../src/hypervisor/sim/index.js';
import type { HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import type { Plan, Step } from '../../src/domain/plan.js';
import { Executor, jobIdFor, type MigrationStatus } from '../../src/executor/executor.js';
import { HELD_MIBPS } from '../../src/executor/hand-over.js';
import { HistoryStore } from '../../src/executor/history-store.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';
import { policy, step, testOptions } from './support/sim-cluster.js';

const FACTOR = 20;

function cluster(vms: SimVmSpec[], setupMs = 0): SimHypervisor {
  const host = (id: string) => ({
    id,
    cpus: 32,
    memMiB: 65536,
    bandwidthMiBps: 1000,
    cpuModel: 'Cascadelake-Server',
  });
  return new SimHypervisor(
    { seed: 3, hosts: [host('h1'), host('h2'), host('h3')], vms },
    { clock: new ScaledClock(FACTOR), ...(setupMs > 0 ? { migrationCosts: { setupMs } } : {}) },
  );
}

function vm(id: string, memMiB = 1024, dirtyMiBps = 2, wwsMiB = 64, hostId = 'h1'): SimVmSpec {
  return {
    id,
    name: id,
    host: hostId,
    vcpus: 1,
    memMiB,
    cpuModel: 'Cascadelake-Server',
    workload: { kind: 'constant', cpuPct: 10, dirtyMiBps, wwsMiB },
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

async function until<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function settled(ex: Executor, vmIds: string[]): Promise<MigrationStatus[]> {
  return until('jobs to finish', async () => {
    const all = await ex.list();
    const mine = all.filter((s) => vmIds.includes(s.vmId));
    return mine.length === vmIds.length && mine.every((s) => s.state === 'completed' || s.state === 'failed')
      ? mine
      : null;
  });
}

describe('Executor (BullMQ on Redis, simulator at x20)', () => {
  let redis: Redis;
  let prefix: string;
  const executors: Executor[] = [];

  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('executor');
  });
  afterEach(async () => {
    await Promise.all(executors.map((e) => e.close()));
    executors.length = 0;
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  function executor(
    hv: SimHypervisor,
    overrides: Record<string, unknown> = {},
    history?: HistoryStore,
  ): Executor {
    const ex = new Executor({
      redis,
      hypervisor: hv,
      // Sped-up clock: keep call time-outs long in real time (1 s) so a busy machine does not trip them.
      options: testOptions({
        prefix,
        backoffMs: 200,
        slotRetryMs: 50,
        progressIntervalMs: 50,
        callTimeoutMs: 20_000,
        stuckAfterMs: 60_000,
        ...overrides,
      }),
      ...(history ? { history } : {}),
    });
    executors.push(ex);
    return ex;
  }

  it('keeps at most one job per VM', async () => {
    const hv = cluster([vm('a'), vm('b')]);
    const ex = executor(hv);
    const first = await ex.enqueuePlan(plan('p1', [step('a'), step('b')]), policy());
    const second = await ex.enqueuePlan(plan('p2', [step('a', { to: 'h3' })]), policy());
    expect(first.enqueued).toEqual(['a', 'b']);
    expect(second).toEqual({ enqueued: [], alreadyQueued: ['a'] });
    const jobs = await ex.queue.getJobs(['waiting', 'delayed', 'active']);
    expect(jobs.map((j) => j.id).sort()).toEqual([jobIdFor('a'), jobIdFor('b')]);
    expect((await ex.queue.getJob(jobIdFor('a')))?.data.planId).toBe('p1');
  });

  it('never exceeds per-host outbound, inbound and cluster limits across two workers', async () => {
    const ids = ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7'];
    const hv = cluster([...ids.map((id) => vm(id, 2048)), vm('r1', 2048, 2, 64, 'h3')]);
    const limits = { perHostOutbound: 2, perHostInbound: 2, cluster: 3 };
    const steps = [
      ...ids.map((id, i) => step(id, { to: i % 2 === 0 ? 'h2' : 'h3' })),
      step('r1', { from: 'h3', to: 'h2' }),
    ];
    const a = executor(hv);
    const b = executor(hv);
    await a.enqueuePlan(plan('p', steps), policy({ limits }));
    const max = { out: new Map<string, number>(), in: new Map<string, number>(), cluster: 0 };
    const active = new Map<string, { from: string; to: string }>();
    hv.subscribe((e: HypervisorEvent) => {
      if (e.kind === 'lifecycle' && e.event === 'started' && e.detail === 1) {
        const s = steps.find((x) => x.vm === e.vmId);
        if (s) active.set(e.vmId, { from: s.from, to: s.to });
      }
      if (
        (e.kind === 'job-completed' && e.hostId !== active.get(e.vmId)?.to) ||
        (e.kind === 'lifecycle' && e.event === 'stopped')
      ) {
        active.delete(e.vmId);
      }
      if (e.kind === 'job-completed') active.delete(e.vmId);
      const count = (key: 'from' | 'to', host: string) =>
        [...active.values()].filter((m) => m[key] === host).length;
      for (const h of ['h1', 'h2', 'h3']) {
        max.out.set(h, Math.max(max.out.get(h) ?? 0, count('from', h)));
        max.in.set(h, Math.max(max.in.get(h) ?? 0, count('to', h)));
      }
      max.cluster = Math.max(max.cluster, active.size);
    });
    a.startWorkers();
    b.startWorkers();
    const done = await settled(
      a,
      steps.map((s) => s.vm),
    );
    expect(done.map((d) => d.result?.status)).toEqual(steps.map(() => 'completed'));
    for (const h of ['h1', 'h2', 'h3']) {
      expect(max.out.get(h) ?? 0).toBeLessThanOrEqual(2);
      expect(max.in.get(h) ?? 0).toBeLessThanOrEqual(2);
    }
    expect(max.cluster).toBeLessThanOrEqual(3);
    // The limits were reached, so they were what held the workers back.
    expect(max.out.get('h1')).toBe(2);
    for (const s of steps) expect((await hv.locateVm(s.vm)).map((p) => p.hostId)).toEqual([s.to]);
    expect(await a.slots.clusterHolders()).toEqual([]);
  });

  it('shares a host link between its concurrent migrations through the bandwidth cap', async () => {
    const hv = cluster([vm('s1', 16384), vm('s2', 16384)]);
    const ex = executor(hv, { slotLeaseMs: 600 });
    await ex.enqueuePlan(plan('p', [step('s1'), step('s2', { to: 'h3' })]), policy());
    ex.startWorkers();
    // Both leave h1 (1000 MiB/s) at once: each is capped to half of it, as BullMQ progress shows.
    const caps = await until('both migrations capped to a half', async () => {
      const live = (await ex.list()).filter((s) => s.state === 'active' && s.progress !== null);
      const bw = live.map((s) => s.progress?.bandwidthMiBps ?? null);
      return bw.length === 2 && bw.every((b) => b === 500) ? bw : null;
    });
    expect(caps).toEqual([500, 500]);
    const done = await settled(ex, ['s1', 's2']);
    expect(
      done.map((d) => d.result?.status),
      JSON.stringify(done),
    ).toEqual(['completed', 'completed']);
  });

  it('a migration still in its set-up takes no share: the link is halved only once both send', async () => {
    // 20 s of set-up each (1 s real): QEMU moves nothing meanwhile.
    const hv = cluster([vm('s1', 4096), vm('s2', 4096)], 20_000);
    const ex = executor(hv, { slotLeaseMs: 600 });
    // Predicted with the set-up and the shared link (20 s + 4 GiB at 500 MiB/s), as the planner would.
    const predicted = { converges: true, durationS: 29, downtimeMs: 50, transferMiB: 4200 };
    await ex.enqueuePlan(
      plan('p', [step('s1', { predicted }), step('s2', { to: 'h3', predicted })]),
      policy(),
    );
    ex.startWorkers();
    const bothAt = async (cap: number): Promise<boolean> => {
      const live = (await ex.list()).filter((s) => s.state === 'active' && s.progress !== null);
      return live.length === 2 && live.every((s) => s.progress?.bandwidthMiBps === cap);
    };
    // Both started, neither sends yet: each keeps the whole of h1's 1000 MiB/s...
    await until('both migrations setting up with the whole link', () => bothAt(1000));
    // ...and once they send, each gets half.
    await until('both migrations capped to a half', () => bothAt(500));
    const done = await settled(ex, ['s1', 's2']);
    expect(
      done.map((d) => d.result?.status),
      JSON.stringify(done),
    ).toEqual(['completed', 'completed']);
  });

  it('a step that runs alone hands its slots over ahead: the next sets up beside its end, held to a trickle', async () => {
    // 20 s of set-up each (1 s real). s1 runs alone and lasts longer than predicted (53 s against 30); s2, an
    // idle guest also limited to 1 at once, takes s1's slots one set-up before s1's predicted end, sets up,
    // then waits held (1 MiB/s, counted in no one's share) until s1 has ended, and then takes the link.
    const hv = cluster([vm('s1', 32768), vm('s2', 2048)], 20_000);
    const ex = executor(hv, { slotLeaseMs: 600 });
    const predicted = (durationS: number) => ({
      converges: true,
      durationS,
      downtimeMs: 50,
      transferMiB: 1000,
      dirtyMiBps: 2,
    });
    await ex.enqueuePlan(
      plan('p', [
        step('s1', { concurrency: 1, predicted: predicted(30) }),
        step('s2', { to: 'h3', concurrency: 1, predicted: predicted(25) }),
      ]),
      policy({ setupS: 20 }),
    );
    ex.startWorkers();
    const s1Caps = new Set<number>();
    let heldBeside = false;
    await until(
      's1 to end',
      async () => {
        const all = await ex.list();
        const s1 = all.find((s) => s.vmId === 's1');
        const s2 = all.find((s) => s.vmId === 's2');
        if (s1?.state === 'active' && s1.progress?.bandwidthMiBps != null)
          s1Caps.add(s1.progress.bandwidthMiBps);
        if (s1?.state === 'active' && s2?.state === 'active' && s2.progress?.bandwidthMiBps === HELD_MIBPS)
          heldBeside = true;
        return s1?.state === 'completed' || s1?.state === 'failed';
      },
      60_000,
    );
    expect(heldBeside).toBe(true);
    // s1 kept the whole link: s2, held, never counted in its share.
    expect([...s1Caps]).toEqual([1000]);
    const done = await settled(ex, ['s1', 's2']);
    expect(
      done.map((d) => d.result?.status),
      JSON.stringify(done),
    ).toEqual(['completed', 'completed']);
    // s2 started (its set-up) before s1 ended, and once let go sent its 2 GiB at the whole link (2 s and its
    // switch-over; held at 1 MiB/s it would take half an hour).
    const report = (vmId: string) => {
      const r = done.find((d) => d.vmId === vmId)?.result;
      return r && 'report' in r ? r.report : null;
    };
    const [r1, r2] = [report('s1'), report('s2')];
    expect(r2?.startedAtMs).toBeLessThan(r1?.endedAtMs ?? 0);
    expect((r2?.endedAtMs ?? Infinity) - (r1?.endedAtMs ?? 0)).toBeLessThan(10_000);
  });

  it('retries transient failures with back-off and does not retry permanent ones', async () => {
    const hv = cluster([vm('t1'), vm('p1', 1024, 2, 64, 'h3')]);
    const ex = executor(hv, { attempts: 4 });
    hv.faults.hostDown('h1'); // every call to h1 fails with host_unreachable for now
    await ex.enqueuePlan(plan('p', [step('t1'), step('p1', { from: 'h3', to: 'h3' })]), policy());
    ex.startWorkers();
    const job = await until('a failed attempt of t1', async () => {
      const j = await ex.queue.getJob(jobIdFor('t1'));
      return j && j.attemptsMade >= 1 ? j : null;
    });
    expect(job.attemptsMade).toBeGreaterThanOrEqual(1);
    hv.faults.hostUp('h1');
    const done = await settled(ex, ['t1', 'p1']);
    const t1 = done.find((d) => d.vmId === 't1');
    const p1 = done.find((d) => d.vmId === 'p1');
    expect(t1?.result?.status).toBe('completed');
    expect(t1?.attemptsMade).toBeGreaterThanOrEqual(1);
    // From h3 to h3: the hypervisor refuses it (invalid argument), which no retry can fix.
    expect(p1?.state).toBe('failed');
    expect(p1?.attemptsMade).toBe(1);
    expect(p1?.failedReason).toMatch(/migration_refused/);
  });

  it('retries a migration that failed when its destination dropped, once it is back', async () => {
    const hv = cluster([vm('f1', 16384)]);
    const ex = executor(hv, { attempts: 5 });
    await ex.enqueuePlan(plan('p', [step('f1')]), policy());
    ex.startWorkers();
    await until('f1 to migrate', () => Promise.resolve(hv.activeMigrations() === 1));
    hv.faults.hostDown('h2');
    await until('the migration to fail', () => Promise.resolve(hv.activeMigrations() === 0));
    expect((await hv.locateVm('f1')).map((p) => [p.hostId, p.state])).toEqual([['h1', 'running']]);
    hv.faults.hostUp('h2');
    const [done] = await settled(ex, ['f1']);
    expect(done?.result?.status, JSON.stringify(done)).toBe('completed');
    expect(done?.attemptsMade).toBeGreaterThanOrEqual(1);
    expect(await hv.locateVm('f1')).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
  });

  it('shows progress through BullMQ, records history, and quarantines a VM that did not converge', async () => {
    const hv = cluster([vm('slow', 8192, 2, 64), vm('hot', 2048, 3000, 1024)]);
    const history = new HistoryStore(
      redis,
      prefix,
      { maxRecords: 10, quarantineBaseS: 3600, quarantineMaxS: 86400 },
      hv.clock,
    );
    const ex = executor(hv, {}, history);
    const slowStep = step('slow', {
      predicted: {
        converges: true,
        durationS: 5,
        downtimeMs: 50,
        transferMiB: 4200,
        switchoverMs: 20,
        lastRoundMs: 120,
      },
    });
    await ex.enqueuePlan(plan('p', [slowStep, step('hot')]), policy());
    ex.startWorkers();
    const progress = await until('progress of slow', async () => {
      const s = (await ex.list()).find((x) => x.vmId === 'slow');
      return s?.progress && s.progress.percent > 0 && s.state === 'active' ? s.progress : null;
    });
    expect(progress).toMatchObject({ vmId: 'slow', from: 'h1', to: 'h2' });
    expect(progress.remainingMiB).toBeGreaterThan(0);
    expect(progress.remainingMiB).toBeLessThanOrEqual(8192);
    expect(progress.expectedDowntimeMs).toBeGreaterThanOrEqual(0);
    const done = await settled(ex, ['slow', 'hot']);
    expect(done.find((d) => d.vmId === 'hot')?.result?.status, JSON.stringify(done)).toBe('aborted');
    const slowHistory = await history.get('slow');
    expect(slowHistory.records).toHaveLength(1);
    // The record keeps what the switch-over learns from: the measured downtime beside the modelled last round.
    expect(slowHistory.records[0]).toMatchObject({
      result: 'completed',
      from: 'h1',
      to: 'h2',
      memMiB: 8192,
      predictedDowntimeMs: 50,
      predictedLastRoundMs: 120,
    });
    expect(slowHistory.records[0]?.downtimeMs).not.toBeNull();
    expect(slowHistory.quarantinedUntil).toBeNull();
    const hot = await history.get('hot');
    expect(hot.records[0]?.result).toBe('aborted');
    expect(hot.quarantinedUntil).not.toBeNull();
    // A new plan for the quarantined VM is skipped, not migrated.
    await ex.enqueuePlan(plan('p2', [step('hot')]), policy());
    const again = await until('the second hot job', async () => {
      const s = (await ex.list()).find((x) => x.vmId === 'hot' && x.planId === 'p2');
      return s && s.state === 'completed' ? s : null;
    });
    expect(again.result).toMatchObject({ status: 'skipped' });
    expect(again.result && 'reason' in again.result ? again.result.reason : '').toMatch(/quarantined until/);
  });

  it('aborts a running migration on request and leaves the VM on its source', async () => {
    const hv = cluster([vm('hot', 2048, 3000, 1024)]);
    const ex = executor(hv);
    await ex.enqueuePlan(
      plan('p', [
        step('hot', { predicted: { converges: true, durationS: 600, downtimeMs: 50, transferMiB: 2048 } }),
      ]),
      policy(),
    );
    ex.startWorkers();
    await until('hot to migrate', () => Promise.resolve(hv.activeMigrations() === 1));
    expect(await ex.abortVm('hot')).toBe('abort-requested');
    const [done] = await settled(ex, ['hot']);
    expect(done?.result?.status, JSON.stringify(done)).toBe('aborted');
    expect(done?.result && 'report' in done.result ? done.result.report.abortReason : null).toBe('operator');
    expect(await hv.locateVm('hot')).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
    expect(await ex.abortVm('nothing-here')).toBe('none');
  });

  it('a stopped worker leaves its migration running; the next worker adopts it without a second migration', async () => {
    const hv = cluster([vm('big', 16384, 2, 64)]);
    const starts: HypervisorEvent[] = [];
    hv.subscribe((e) => {
      if (e.kind === 'lifecycle' && e.event === 'started' && e.hostId === 'h2') starts.push(e);
    });
    const first = executor(hv);
    await first.enqueuePlan(
      plan('p', [
        step('big', { predicted: { converges: true, durationS: 17, downtimeMs: 50, transferMiB: 16500 } }),
      ]),
      policy(),
    );
    first.startWorkers();
    await until('big to migrate', () => Promise.resolve(hv.activeMigrations() === 1));
    await first.close();
    executors.splice(executors.indexOf(first), 1);
    expect(hv.activeMigrations()).toBe(1);
    const second = executor(hv);
    second.startWorkers();
    const [done] = await settled(second, ['big']);
    expect(done?.result?.status).toBe('completed');
    expect(done?.result && 'report' in done.result ? done.result.report.adopted : null).toBe(true);
    expect(starts).toHaveLength(1);
    expect(await hv.locateVm('big')).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
  });
});
