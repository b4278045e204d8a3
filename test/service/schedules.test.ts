import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.js';
import { Schedules } from '../../src/service/schedules.js';

async function count(metrics: ReturnType<typeof createMetrics>, schedule: string, outcome: string) {
  const m = await metrics.scheduleRuns.get();
  return m.values.find((v) => v.labels.schedule === schedule && v.labels.outcome === outcome)?.value ?? 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Schedules', () => {
  let schedules: Schedules | undefined;
  afterEach(async () => {
    await schedules?.stop();
  });

  it('never overlaps a slow cron run and counts the dropped ticks', async () => {
    const metrics = createMetrics();
    const lines: { outcome: string }[] = [];
    const log = {
      info: (o: object) => lines.push(o as { outcome: string }),
      warn: (o: object) => lines.push(o as { outcome: string }),
      debug: () => undefined,
    };
    schedules = new Schedules({ metrics, log, isLeader: () => true });
    let concurrent = 0;
    let maxConcurrent = 0;
    let runs = 0;
    schedules.add({
      name: 'rebalance',
      trigger: { cron: '* * * * * *' }, // every second
      leaderOnly: true,
      run: async () => {
        concurrent++;
        runs++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await sleep(2300);
        concurrent--;
        return { moves: 0 };
      },
    });
    schedules.start();
    await sleep(5200);
    await schedules.stop();
    schedules = undefined;
    expect(maxConcurrent).toBe(1);
    expect(runs).toBeGreaterThanOrEqual(1);
    expect(runs).toBeLessThanOrEqual(3);
    expect(await count(metrics, 'rebalance', 'overlap')).toBeGreaterThanOrEqual(1);
    expect(await count(metrics, 'rebalance', 'ok')).toBe(runs);
    expect(lines.some((l) => l.outcome === 'overlap')).toBe(true);
  }, 15_000);

  it('still runs a cron tick that a busy event loop delayed by more than a second', async () => {
    const metrics = createMetrics();
    schedules = new Schedules({ metrics, isLeader: () => true });
    let runs = 0;
    schedules.add({
      name: 'rebalance',
      trigger: { cron: '*/5 * * * * *' }, // every 5 s
      leaderOnly: true,
      run: () => {
        runs++;
        return Promise.resolve();
      },
    });
    // Start right after a tick, then block the loop from 300 ms before the next tick to 2.5 s after it
    // (node-cron counts whole seconds: 2 s late; its own default tolerance of 1 s would skip the run).
    await sleep(5000 - (Date.now() % 5000) + 100);
    schedules.start();
    await sleep(5000 - (Date.now() % 5000) - 300);
    const until = Date.now() + 2800;
    while (Date.now() < until) {
      // busy: the process is planning a large cluster, say
    }
    await sleep(1000);
    expect(runs).toBe(1);
    expect(await count(metrics, 'rebalance', 'missed')).toBe(0);
  }, 20_000);

  it('runs intervals, skips leader-only work on followers, and counts failures', async () => {
    const metrics = createMetrics();
    let leader = false;
    schedules = new Schedules({ metrics, isLeader: () => leader });
    let reconciles = 0;
    schedules.add({
      name: 'reconcile',
      trigger: { everyMs: 50 },
      leaderOnly: true,
      run: () => {
        reconciles++;
        return Promise.reject(new Error('hypervisor unreachable'));
      },
    });
    schedules.start();
    await sleep(300);
    expect(reconciles).toBe(0);
    expect(await count(metrics, 'reconcile', 'not_leader')).toBeGreaterThanOrEqual(2);
    leader = true;
    await sleep(300);
    expect(reconciles).toBeGreaterThanOrEqual(2);
    expect(await count(metrics, 'reconcile', 'failed')).toBe(reconciles);
    expect(schedules.status()[0]).toMatchObject({
      name: 'reconcile',
      lastOutcome: 'failed',
      leaderOnly: true,
    });
  });

  it('logs the ok runs of a frequent schedule at debug, its failures as warnings, and counts failed from 0', async () => {
    const metrics = createMetrics();
    const levels: string[] = [];
    const log = {
      info: () => levels.push('info'),
      warn: () => levels.push('warn'),
      debug: () => levels.push('debug'),
    };
    schedules = new Schedules({ metrics, log, isLeader: () => true });
    let fail = false;
    schedules.add({
      name: 'plans',
      trigger: { everyMs: 50 },
      leaderOnly: true,
      frequent: true,
      run: () => (fail ? Promise.reject(new Error('redis gone')) : Promise.resolve({ expired: 0 })),
    });
    const text = await metrics.registry.getSingleMetricAsString('drover_schedule_runs_total');
    expect(text).toContain('drover_schedule_runs_total{schedule="plans",outcome="failed"} 0');
    schedules.start();
    await sleep(300);
    expect(levels.length).toBeGreaterThanOrEqual(2);
    expect(new Set(levels)).toEqual(new Set(['debug']));
    fail = true;
    await sleep(300);
    expect(levels).toContain('warn');
    expect(levels).not.toContain('info');
  });

  it('waits for running work on stop and hands it an aborted signal', async () => {
    schedules = new Schedules({ isLeader: () => true });
    let sawAbort = false;
    schedules.add({
      name: 'slow',
      trigger: { everyMs: 60_000 },
      leaderOnly: false,
      run: async (signal) => {
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
        sawAbort = signal.aborted;
      },
    });
    const outcome = schedules.runNow('slow');
    await sleep(20);
    await schedules.stop();
    expect(sawAbort).toBe(true);
    expect(await outcome).toBe('ok');
    expect(await schedules.runNow('slow')).toBe('stopping');
    schedules = undefined;
  });
});
