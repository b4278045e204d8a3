// MigrationRunner on the simulator's virtual clock: every watchdog decision, pre-checks, stuck states,
// recovery and adoption. Deterministic: the whole cluster and the runner share one VirtualClock.
import { describe, expect, it } from 'vitest';
import { StepSkipped } from '../../src/domain/errors.js';
import {
  HYPERVISOR_ERROR_CODES,
  HypervisorError,
  type Hypervisor,
  type HypervisorEvent,
} from '../../src/hypervisor/hypervisor.js';
import {
  MigrationRunner,
  RunnerDetached,
  type MigrationReport,
} from '../../src/executor/migration-runner.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { VMS, job, policy, simCluster, step, testOptions } from './support/sim-cluster.js';

/** A prediction long enough (deadline 2 x 20 s + 30 s) for the stall ladder to play out first. */
const slow = { converges: true, durationS: 20, downtimeMs: 50, transferMiB: 8000 };

function where(report: MigrationReport) {
  return report.watchdog.map((r) => r.action.kind);
}

describe('MigrationRunner on the simulator', () => {
  it('migrates an idle VM, verifies it runs on the destination only and reports the measurements', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const progress: number[] = [];
    const report = await clock.runUntil(
      runner.run(job(step(VMS.idle)), { onProgress: (p) => progress.push(p.percent) }),
    );
    expect(report.outcome).toBe('completed');
    expect(report.problems).toEqual([]);
    expect(report.adopted).toBe(false);
    expect(report.downtimeMs).not.toBeNull();
    expect(report.downtimeMs ?? Infinity).toBeLessThanOrEqual(report.maxDowntimeMs);
    expect(report.transferMiB).toBeGreaterThanOrEqual(4096);
    expect(report.durationS).toBeGreaterThan(3); // 4 GiB at 1000 MiB/s
    expect(report.durationS).toBeLessThan(10);
    expect(await hv.locateVm(VMS.idle)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
    expect(progress.length).toBeGreaterThan(3);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
  });

  it('a migrate call whose answer races the end of its migration (error 55) is this run completing', async () => {
    const { hv, clock } = simCluster();
    // libvirt's answer when a question follows the migration's end: the domain is no longer running there.
    const racing = new Proxy(hv, {
      get(target, prop) {
        if (prop === 'migrate')
          return async (request: Parameters<Hypervisor['migrate']>[0]) => {
            const handle = await target.migrate(request);
            await handle.done;
            throw new HypervisorError(
              HYPERVISOR_ERROR_CODES.operationInvalid,
              'migrate: DOMAIN_GET_JOB_STATS: Requested operation is not valid: domain is not running (libvirt error 55)',
            );
          };
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const runner = new MigrationRunner({ hypervisor: racing, options: testOptions() });
    const report = await clock.runUntil(runner.run(job(step(VMS.idle))));
    expect(report.outcome, report.reason).toBe('completed');
    expect(report.adopted).toBe(false);
    expect(report.problems).toEqual([]);
    expect(report.downtimeMs).not.toBeNull();
    expect(report.transferMiB).toBeGreaterThanOrEqual(4096);
    expect(await hv.locateVm(VMS.idle)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
  });

  it('kubevirt: aborts a migration that makes no progress for 150 s; the VM stays on the source only', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const aborts: number[] = [];
    const startedAt = clock.now();
    const report = await clock.runUntil(
      runner.run(job(step(VMS.hot), policy({ profile: 'kubevirt' })), {
        onAbortIssued: (at) => aborts.push(at - startedAt),
      }),
    );
    expect(report.outcome).toBe('aborted');
    expect(report.abortReason).toBe('stalled');
    expect(report.maxDowntimeMs).toBe(400); // 900 capped by the budget
    // Round 0 ends after ~4 s, the lowest remaining is reached soon after; 150 s later (one poll of slack).
    // KubeVirt's rule counts any new low of remaining data, so samples at new points of the round's
    // sawtooth delay the verdict; it must still come at least 150 s in and before the 750 s deadline.
    expect(aborts).toHaveLength(1);
    expect(aborts[0]).toBeGreaterThan(150_000);
    expect(aborts[0]).toBeLessThan(750_000);
    expect(report.problems).toEqual([]);
    expect(report.evidence?.diagnosis).toBe('ok');
    expect(await hv.locateVm(VMS.hot)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
  });

  it('predictive: raises max downtime in steps up to the budget, never above, then aborts a stall', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const seen: number[] = [];
    const unsubscribe = hv.subscribe(() => undefined);
    const report = await clock.runUntil(
      runner.run(job(step(VMS.hot, { downtimeBudgetMs: 250, predicted: slow })), {
        onProgress: (p) => seen.push(p.maxDowntimeMs),
      }),
    );
    unsubscribe();
    expect(report.outcome).toBe('aborted');
    expect(report.abortReason).toBe('stalled');
    const raises = report.watchdog.filter((r) => r.action.kind === 'set-max-downtime');
    expect(raises.length).toBe(3);
    expect(Math.max(...seen)).toBe(250);
    expect(where(report).at(-1)).toBe('abort');
    // Each raise waited one stall window (10 s) after the previous escalation.
    for (let i = 1; i < report.watchdog.length; i++) {
      const gap = (report.watchdog[i]?.atMs ?? 0) - (report.watchdog[i - 1]?.atMs ?? 0);
      expect(gap).toBeGreaterThanOrEqual(10_000);
    }
    expect(await hv.locateVm(VMS.hot)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
  });

  it('predictive: a raise within the budget lets a stubborn migration converge', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(runner.run(job(step(VMS.stubborn, { downtimeBudgetMs: 400 }))));
    expect(report.outcome).toBe('completed');
    expect(where(report)).toContain('set-max-downtime');
    expect(report.downtimeMs ?? Infinity).toBeLessThanOrEqual(400);
    expect(report.downtimeMs ?? 0).toBeGreaterThan(250);
  });

  it('counts a downtime over budget, and keeps within it once the prediction carries the switch-over', async () => {
    const overBudget = async (metrics: ReturnType<typeof createMetrics>) =>
      (await metrics.registry.getSingleMetric('drover_migration_downtime_over_budget_total')?.get())
        ?.values ?? [];
    // Hosts whose switch-over pauses the guest 100 ms on top of the last round.
    const first = simCluster([], { switchoverMs: 100 });
    const metrics = createMetrics();
    const runner = new MigrationRunner({ hypervisor: first.hv, options: testOptions(), metrics });
    // Planned without knowing the cost: max downtime is the whole 100 ms budget, the pause goes over it.
    const blind = await first.clock.runUntil(
      runner.run(job(step(VMS.idle, { downtimeBudgetMs: 100 }), policy({ profile: 'kubevirt' }))),
    );
    expect(blind.outcome).toBe('completed');
    expect(blind.maxDowntimeMs).toBe(100);
    expect(blind.downtimeMs ?? 0).toBeGreaterThan(100);
    expect(await overBudget(metrics)).toEqual([{ labels: { kind: 'live' }, value: 1 }]);

    // The same step with the learnt 100 ms in its prediction: max downtime 20 ms, the pause within 120 ms.
    const second = simCluster([], { switchoverMs: 100 });
    const metrics2 = createMetrics();
    const runner2 = new MigrationRunner({ hypervisor: second.hv, options: testOptions(), metrics: metrics2 });
    const learnt = step(VMS.idle, { downtimeBudgetMs: 120 });
    learnt.predicted = { ...learnt.predicted, switchoverMs: 100 };
    const kept = await second.clock.runUntil(runner2.run(job(learnt, policy({ profile: 'kubevirt' }))));
    expect(kept.outcome).toBe('completed');
    expect(kept.maxDowntimeMs).toBe(20);
    expect(kept.downtimeMs ?? Infinity).toBeLessThanOrEqual(120);
    expect(await overBudget(metrics2)).toEqual([{ labels: { kind: 'live' }, value: 0 }]);
  });

  it('says once when the migration starts to send, after its set-up, not while it sets up', async () => {
    // 3 s of set-up (QEMU starting the destination): the job moves nothing, and takes no share of the link.
    const { hv, clock } = simCluster([], { setupMs: 3000 });
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions({ pollIntervalMs: 500 }) });
    let calledAt: number | null = null;
    const sending: number[] = [];
    const report = await clock.runUntil(
      runner.run(job(step(VMS.idle)), {
        onMigrateCall: (at) => {
          calledAt = at;
        },
        onSending: () => sending.push(clock.now()),
      }),
    );
    expect(report.outcome).toBe('completed');
    expect(calledAt).not.toBeNull();
    expect(sending).toHaveLength(1);
    const after = (sending[0] as number) - (calledAt as unknown as number);
    // At the first poll after the set-up ends (polls every 500 ms from the call).
    expect(after).toBeGreaterThanOrEqual(3000);
    expect(after).toBeLessThanOrEqual(3500);
  });

  it('a deadline between polls aborts at its moment, not at the next poll (a timer on the clock)', async () => {
    const { hv, clock } = simCluster();
    // Polls every 5 s; the deadline falls 2.3 s after a poll.
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions({ pollIntervalMs: 5000 }) });
    const startedAt = clock.now();
    const aborts: number[] = [];
    const report = await clock.runUntil(
      runner.run(
        { ...job(step(VMS.hot, { predicted: slow })), forecast: { deadlineS: 12.3, stallWindowS: 1000 } },
        { onAbortIssued: (at) => aborts.push(at - startedAt) },
      ),
    );
    expect(report.outcome).toBe('aborted');
    expect(report.abortReason).toBe('deadline');
    // On the virtual clock the timer fires exactly at 12.3 s; the poll after it would be at 15 s.
    expect(aborts).toEqual([12_300]);
  });

  it('a deadline that falls while a poll waits on a slow monitor aborts at its moment, not at the answer', async () => {
    const { hv, clock } = simCluster();
    // Every job question takes 4 s to answer (a busy host); polls every 5 s; the deadline at 12.3 s falls
    // inside a question asked at about 11 s.
    const slowMonitor = new Proxy(hv, {
      get(target, prop) {
        if (prop === 'jobStats')
          return async (hostId: string, vmId: string) => {
            const answer = await target.jobStats(hostId, vmId);
            await target.clock.sleep(4_000);
            return answer;
          };
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const runner = new MigrationRunner({
      hypervisor: slowMonitor,
      options: testOptions({ pollIntervalMs: 5000, callTimeoutMs: 10_000 }),
    });
    // The runner's own look for an earlier job also takes 4 s: the deadline counts from the migrate call.
    let startedAt = Number.NaN;
    const aborts: { at: number; due: number }[] = [];
    const report = await clock.runUntil(
      runner.run(
        { ...job(step(VMS.hot, { predicted: slow })), forecast: { deadlineS: 12.3, stallWindowS: 1000 } },
        {
          onMigrateCall: (at) => (startedAt = at),
          onAbortIssued: (at, _reason, due) => aborts.push({ at: at - startedAt, due: due - startedAt }),
        },
      ),
    );
    expect(report.outcome).toBe('aborted');
    expect(report.abortReason).toBe('deadline');
    expect(aborts).toEqual([{ at: 12_300, due: 12_300 }]);
    const abort = report.watchdog.find((r) => r.action.kind === 'abort');
    expect(abort?.atMs).toBe(startedAt + 12_300);
  });

  it('a deadline that passes while the migrate call still waits for its job to show aborts at its moment', async () => {
    const { hv, clock } = simCluster();
    // The migration runs at once, but the call answers 5 s later (a busy host shows the job late).
    const slowStart = new Proxy(hv, {
      get(target, prop) {
        if (prop === 'migrate')
          return async (request: Parameters<Hypervisor['migrate']>[0]) => {
            const handle = await target.migrate(request);
            await target.clock.sleep(5_000);
            return handle;
          };
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const runner = new MigrationRunner({
      hypervisor: slowStart,
      options: testOptions({ pollIntervalMs: 500 }),
    });
    let startedAt = Number.NaN;
    const aborts: { at: number; due: number }[] = [];
    const report = await clock.runUntil(
      runner.run(
        { ...job(step(VMS.hot, { predicted: slow })), forecast: { deadlineS: 3.2, stallWindowS: 1000 } },
        {
          onMigrateCall: (at) => (startedAt = at),
          onAbortIssued: (at, _reason, due) => aborts.push({ at: at - startedAt, due: due - startedAt }),
        },
      ),
    );
    expect(report.outcome).toBe('aborted');
    expect(report.abortReason).toBe('deadline');
    expect(aborts).toEqual([{ at: 3_200, due: 3_200 }]);
    expect(await hv.locateVm(VMS.hot)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
  });

  it('nova: follows the timetable and aborts at the completion timeout (800 s x data_gb)', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const startedAt = clock.now();
    const aborts: number[] = [];
    const report = await clock.runUntil(
      runner.run(job(step(VMS.hot, { downtimeBudgetMs: 1000 }), policy({ profile: 'nova' })), {
        onAbortIssued: (at) => aborts.push(at - startedAt),
      }),
    );
    // data_gb = 4: delay 300 s, deadline 3200 s; steps at 300 s, 600 s, ... up to 500 ms.
    expect(report.outcome).toBe('aborted');
    expect(report.abortReason).toBe('deadline');
    expect(aborts[0]).toBeGreaterThanOrEqual(3_200_000);
    expect(aborts[0]).toBeLessThanOrEqual(3_200_000 + 500);
    const raises = report.watchdog
      .filter((r) => r.action.kind === 'set-max-downtime')
      .map((r) => [
        Math.round((r.atMs - startedAt) / 1000),
        r.action.kind === 'set-max-downtime' ? r.action.maxDowntimeMs : 0,
      ]);
    expect(raises.map((r) => r[1])).toEqual([95, 140, 185, 230, 275, 320, 365, 410, 455, 500]);
    raises.forEach((r, i) => {
      expect(r[0]).toBeGreaterThanOrEqual(300 * (i + 1));
      expect(r[0]).toBeLessThanOrEqual(300 * (i + 1) + 1);
    });
  });

  it('switches to post-copy when the policy allows it, and the VM ends on the destination', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(
      runner.run(job(step(VMS.hot, { predicted: slow }), policy({ allowPostCopy: true }))),
    );
    expect(where(report)).toContain('post-copy');
    expect(where(report)).not.toContain('abort');
    expect(report.outcome).toBe('completed');
    expect(await hv.locateVm(VMS.hot)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
  });

  it('with auto-converge allowed, QEMU throttling finishes a migration pre-copy alone cannot', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(runner.run(job(step(VMS.hot), policy({ allowAutoConverge: true }))));
    expect(report.outcome).toBe('completed');
    expect(report.watchdog.some((r) => r.action.kind === 'abort')).toBe(false);
  });

  it('an operator abort stops the migration and leaves the VM on the source', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const startedAt = clock.now();
    const report = await clock.runUntil(
      runner.run(job(step(VMS.hot)), {
        abortRequested: () => (clock.now() - startedAt > 3000 ? 'operator' : null),
      }),
    );
    expect(report.outcome).toBe('aborted');
    expect(report.abortReason).toBe('operator');
    expect(report.durationS).toBeLessThan(5);
    expect(await hv.locateVm(VMS.hot)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
  });

  it('marks an unresponsive monitor stuck without blocking another migration, and recovers', async () => {
    const { hv, clock } = simCluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    let release: (() => void) | null = null;
    const stuckStates: boolean[] = [];
    const hung = runner.run(job(step(VMS.stubborn, { downtimeBudgetMs: 400 })), {
      onProgress: (p) => {
        stuckStates.push(p.stuck);
        if (release === null && p.elapsedS >= 1) release = hv.faults.hangProgress(VMS.stubborn);
      },
    });
    const other = runner.run(job(step(VMS.idle2, { to: 'h3' })));
    const otherReport = await clock.runUntil(other);
    expect(otherReport.outcome).toBe('completed');
    await clock.advance(20_000);
    expect(stuckStates.includes(true)).toBe(true);
    (release as (() => void) | null)?.();
    const report = await clock.runUntil(hung);
    expect(report.watchdog.map((r) => r.action.kind)).toEqual(expect.arrayContaining(['stuck', 'unstuck']));
    expect(stuckStates.at(-1)).toBe(false);
    expect(['completed', 'aborted'], report.reason).toContain(report.outcome);
    const located = await hv.locateVm(VMS.stubborn);
    expect(located).toHaveLength(1);
    expect(located[0]?.state).toBe('running');
  });

  it('paused on both ends after a failed switch-over: the failed outcome proves the source, which is resumed', async () => {
    const { hv, clock } = simCluster();
    hv.faults.pausedOnBothEnds(VMS.idle);
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(runner.run(job(step(VMS.idle))));
    expect(report.outcome).toBe('failed');
    expect(report.evidence?.diagnosis).toBe('ok');
    expect(report.problems).toEqual([]);
    expect(await hv.locateVm(VMS.idle)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
  });

  describe('pre-checks skip a step whose world changed', () => {
    const cases: {
      name: string;
      vm: string;
      prepare?: (sim: ReturnType<typeof simCluster>) => void;
      over?: Parameters<typeof step>[1];
      match: RegExp;
      pol?: Record<string, unknown>;
    }[] = [
      { name: 'VM no longer on the source', vm: VMS.idle, over: { from: 'h3' }, match: /no longer on h3/ },
      { name: 'VM shut off', vm: VMS.off, match: /shutoff on h1, not running/ },
      {
        name: 'destination without enough free memory now',
        vm: VMS.idle,
        prepare: ({ hv }) => hv.faults.setHostLoad('h2', { memUsedMiB: 63000 }),
        match: /h2 has \d+ MiB free/,
      },
      { name: 'CPU the destination cannot run', vm: VMS.newCpu, match: /cannot run the CPU model/ },
      {
        name: 'live migration of local disks',
        vm: VMS.local,
        match: /needs shared storage; local disks: vda/,
      },
      {
        name: 'block migration of shared disks',
        vm: VMS.idle,
        over: { kind: 'block' },
        match: /copy shared disks onto themselves/,
      },
      {
        name: 'block migration forbidden',
        vm: VMS.local,
        over: { kind: 'block' },
        pol: { allowBlockMigration: false },
        match: /forbids block/,
      },
      { name: 'unknown destination', vm: VMS.idle, over: { to: 'h9' }, match: /not a known host/ },
      {
        name: 'destination not answering',
        vm: VMS.idle,
        prepare: ({ hv }) => hv.faults.hostDown('h2'),
        match: /h2 does not answer/,
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const sim = simCluster();
        c.prepare?.(sim);
        const runner = new MigrationRunner({ hypervisor: sim.hv, options: testOptions() });
        const run = sim.clock.runUntil(runner.run(job(step(c.vm, c.over ?? {}), policy(c.pol ?? {}))));
        await expect(run).rejects.toThrow(StepSkipped);
        await expect(run).rejects.toThrow(c.match);
        expect(sim.hv.activeMigrations()).toBe(0);
      });
    }
    it('a block migration of local disks passes and copies them', async () => {
      const { hv, clock } = simCluster();
      const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      const report = await clock.runUntil(runner.run(job(step(VMS.local, { kind: 'block' }))));
      expect(report.outcome).toBe('completed');
      expect(report.transferMiB).toBeGreaterThanOrEqual(2048 + 2048);
    });
    it('an offline migration moves the definition of a shut-off VM', async () => {
      const { hv, clock } = simCluster();
      const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      const report = await clock.runUntil(runner.run(job(step(VMS.off, { kind: 'offline' }))));
      expect(report.outcome).toBe('completed');
      expect(report.problems).toEqual([]);
      expect(await hv.locateVm(VMS.off)).toEqual([{ hostId: 'h2', state: 'shutoff', persistent: true }]);
    });
  });

  describe('adoption by a fresh runner (the first one stopped watching, as a crashed worker would)', () => {
    async function startThenDetach(vm: string, detachAfterMs: number) {
      const sim = simCluster();
      const events: HypervisorEvent[] = [];
      sim.hv.subscribe((e) => events.push(e));
      const first = new MigrationRunner({ hypervisor: sim.hv, options: testOptions() });
      const stop = new AbortController();
      const s = step(vm, { downtimeBudgetMs: 400 });
      const running = first.run(job(s), { signal: stop.signal });
      running.catch(() => undefined);
      await sim.clock.advance(detachAfterMs);
      stop.abort();
      await expect(sim.clock.runUntil(running)).rejects.toThrow(RunnerDetached);
      return { ...sim, s, events };
    }

    it('adopts a migration still in flight and never starts a second one', async () => {
      const { hv, clock, s, events } = await startThenDetach(VMS.stubborn, 2000);
      expect(hv.activeMigrations()).toBe(1);
      const second = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      const report = await clock.runUntil(second.run(job(s), { resumed: true }));
      expect(report.adopted).toBe(true);
      expect(report.outcome, report.reason).toBe('completed');
      const starts = events.filter(
        (e) => e.kind === 'lifecycle' && e.event === 'started' && e.hostId === 'h2',
      );
      expect(starts).toHaveLength(1);
      expect(await hv.locateVm(VMS.stubborn)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
    });

    it('keeps the adopted migration on its deadline and aborts it when stuck', async () => {
      const { hv, clock, s } = await startThenDetach(VMS.hot, 5000);
      const second = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      const report = await clock.runUntil(
        second.run(job(s, policy({ profile: 'kubevirt' })), { resumed: true }),
      );
      expect(report.adopted).toBe(true);
      expect(report.outcome).toBe('aborted');
      expect(await hv.locateVm(VMS.hot)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
    });

    it('adopts blind when the source monitor does not answer, marks it stuck, and finishes once it answers', async () => {
      const { hv, clock, s } = await startThenDetach(VMS.stubborn, 2000);
      const release = hv.faults.hangProgress(VMS.stubborn);
      const second = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      const stuck: boolean[] = [];
      const adopting = second.run(job(s), { resumed: true, onProgress: (p) => stuck.push(p.stuck) });
      await clock.advance(15_000);
      expect(stuck.includes(true)).toBe(true);
      release();
      const report = await clock.runUntil(adopting);
      expect(report.adopted).toBe(true);
      expect(report.watchdog.map((r) => r.action.kind)).toEqual(expect.arrayContaining(['stuck', 'unstuck']));
      expect(report.outcome, report.reason).toBe('completed');
    });

    it('without an earlier attempt, a monitor that does not answer is a transient error (no migration)', async () => {
      const { hv, clock } = simCluster();
      hv.faults.hangProgress(VMS.idle);
      const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      await expect(clock.runUntil(runner.run(job(step(VMS.idle))))).rejects.toMatchObject({
        code: 'call_timeout',
      });
      expect(hv.activeMigrations()).toBe(0);
    });

    it('finalises a migration that finished while nobody watched', async () => {
      const { hv, clock, s } = await startThenDetach(VMS.idle, 1000);
      await clock.advance(30_000);
      expect(hv.activeMigrations()).toBe(0);
      const second = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      const report = await clock.runUntil(second.run(job(s), { resumed: true }));
      expect(report.adopted).toBe(true);
      expect(report.outcome).toBe('completed');
      expect(report.problems).toEqual([]);
    });

    it('a fresh (not resumed) job for a VM already on its destination is skipped', async () => {
      const { hv, clock, s } = await startThenDetach(VMS.idle, 1000);
      await clock.advance(30_000);
      const second = new MigrationRunner({ hypervisor: hv, options: testOptions() });
      await expect(clock.runUntil(second.run(job(s)))).rejects.toThrow(/already runs on h2/);
    });
  });
});
