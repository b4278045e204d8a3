// The watchdog's decisions from hand-made migration-job sequences (the simulator-driven cases live in
// watchdog-sim.test.ts). Every case is a sequence of (time, stats) samples and the actions it must produce.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MigrationJob } from '../../src/hypervisor/hypervisor.js';
import { Watchdog, type WatchdogAction } from '../../src/executor/watchdog.js';
import { watchdogSchedule, type WatchdogSchedule } from '../../src/executor/watchdog-schedule.js';

function stats(remainingMiB: number, iteration: number, extra: Partial<MigrationJob> = {}): MigrationJob {
  return {
    type: 'active',
    elapsedMs: 0,
    memTotalMiB: 1024,
    memProcessedMiB: 0,
    memRemainingMiB: remainingMiB,
    dirtyMiBps: 0,
    iteration,
    transferMiBps: 100,
    downtimeMs: 0,
    diskTotalMiB: 0,
    diskProcessedMiB: 0,
    diskRemainingMiB: 0,
    autoConvergeThrottlePct: 0,
    postCopy: false,
    ...extra,
  };
}

/** Feeds samples every `pollMs` from `fromMs` to `toMs`, remaining given by `remainingAt`. */
function run(
  wd: Watchdog,
  fromMs: number,
  toMs: number,
  pollMs: number,
  sample: (t: number) => MigrationJob | null,
): { atMs: number; action: WatchdogAction }[] {
  const out: { atMs: number; action: WatchdogAction }[] = [];
  for (let t = fromMs; t <= toMs; t += pollMs) {
    for (const action of wd.observe({ atMs: t, job: sample(t) })) out.push({ atMs: t, action });
    // Once aborted the migration ends in reality; the repeat of an abort has its own test.
    if (out.some((a) => a.action.kind === 'abort')) break;
  }
  return out;
}

const prediction = { converges: true, durationS: 40, downtimeMs: 100, transferMiB: 1100 };

/** The predictive profile for a 1 GiB VM with the given deadline and stall window. */
function predictiveSchedule(deadlineS: number, stallWindowS: number): WatchdogSchedule {
  return watchdogSchedule({
    profile: 'predictive',
    memMiB: 1024,
    prediction,
    forecast: { deadlineS, stallWindowS },
  });
}

describe('Watchdog', () => {
  it('does nothing while remaining data keeps falling', () => {
    const wd = new Watchdog(watchdogSchedule({ profile: 'predictive', memMiB: 1024, prediction }), 0);
    const actions = run(wd, 0, 30_000, 500, (t) => stats(1024 - t / 40, Math.floor(t / 5000)));
    expect(actions).toEqual([]);
  });

  it('names the next due moment and acts on it by time alone: deadline, then a stall window run out', () => {
    const schedule = predictiveSchedule(60, 10);
    const wd = new Watchdog(schedule, 0);
    // Nothing seen yet: only the deadline is due.
    expect(wd.nextDueAtMs()).toBe(60_000);
    expect(wd.tick(59_999)).toEqual([]);
    // Round 0 falls, then rounds 1..3 sit at the same level: no new low after round 1.
    wd.observe({ atMs: 1000, job: stats(900, 0) });
    wd.observe({ atMs: 2000, job: stats(200, 1) });
    wd.observe({ atMs: 3000, job: stats(210, 2) });
    expect(wd.nextDueAtMs()).toBe(60_000); // one round without progress is not yet enough
    wd.observe({ atMs: 4000, job: stats(210, 3) });
    // Two rounds without a new low since progress at 2 s: the stall window ends at 12 s.
    expect(wd.nextDueAtMs()).toBe(12_000);
    expect(wd.tick(11_999)).toEqual([]);
    const raised = wd.tick(12_000);
    expect(raised.map((a) => a.kind)).toEqual(['set-max-downtime']);
    expect(raised[0]).toMatchObject({ reason: 'stalled' });
    // A fresh window after the escalation: it needs two more rounds before its end is due again.
    expect(wd.nextDueAtMs()).toBe(60_000);
  });

  it('says when an abort fell due: the deadline, or the later of the stall window and the rounds proving it', () => {
    const schedule = predictiveSchedule(60, 10);
    const stall = new Watchdog({ ...schedule, stallSteps: [] }, 0);
    stall.observe({ atMs: 1000, job: stats(900, 0) });
    stall.observe({ atMs: 2000, job: stats(200, 1) });
    stall.observe({ atMs: 3000, job: stats(210, 2) });
    // The window (progress at 2 s + 10 s) ends at 12 s, but the second round without progress is only known
    // from the answer that arrives at 14.2 s: that is when the stall is proven.
    expect(stall.observe({ atMs: 13_000, job: stats(210, 3), answeredAtMs: 14_200 })).toEqual([
      { kind: 'abort', reason: 'stalled', repeat: false },
    ]);
    expect(stall.state.abortDueAtMs).toBe(14_200);
    const late = new Watchdog(schedule, 0);
    late.observe({ atMs: 1000, job: stats(900, 0) });
    expect(late.tick(60_040)).toEqual([{ kind: 'abort', reason: 'deadline', repeat: false }]);
    expect(late.state.abortDueAtMs).toBe(60_000);
  });

  it('tick aborts at the deadline even while the monitor is silent, once', () => {
    const wd = new Watchdog(predictiveSchedule(5, 10), 0);
    wd.observe({ atMs: 1000, job: null, error: 'timeout' });
    expect(wd.tick(5000)).toEqual([{ kind: 'abort', reason: 'deadline', repeat: false }]);
    expect(wd.tick(6000)).toEqual([]);
    expect(wd.nextDueAtMs()).toBeNull();
  });

  it('time the executor held the migration back does not count: postpone moves the deadline', () => {
    const wd = new Watchdog(predictiveSchedule(5, 10), 0);
    wd.observe({ atMs: 1000, job: stats(900, 0) });
    wd.postpone(3000);
    expect(wd.nextDueAtMs()).toBe(8000);
    expect(wd.tick(5000)).toEqual([]);
    expect(wd.tick(8000)).toEqual([{ kind: 'abort', reason: 'deadline', repeat: false }]);
  });

  it('escalates a stall along the predictive ladder, never above the budget, then aborts', () => {
    const schedule = watchdogSchedule({
      profile: 'predictive',
      memMiB: 1024,
      prediction,
      downtimeBudgetMs: 300,
    });
    const wd = new Watchdog(schedule, 0);
    // Falls to 200 MiB in round 0, then each round goes back up to 250 and down to 200: no new minimum.
    const sample = (t: number) =>
      t < 8000
        ? stats(1024 - t / 10, 0)
        : stats(250 - ((t % 2000) / 2000) * 50, 1 + Math.floor((t - 8000) / 2000));
    const actions = run(wd, 0, 200_000, 500, sample);
    const downtimes = actions.filter((a) => a.action.kind === 'set-max-downtime');
    expect(downtimes.map((a) => (a.action.kind === 'set-max-downtime' ? a.action.maxDowntimeMs : 0))).toEqual(
      schedule.stallSteps,
    );
    expect(schedule.stallSteps.at(-1)).toBe(300);
    const abort = actions.find((a) => a.action.kind === 'abort');
    expect(abort?.action).toEqual({ kind: 'abort', reason: 'stalled', repeat: false });
    // Each escalation waits one stall window (10 s here) after the previous one.
    const times = [...downtimes, abort].map((a) => a?.atMs ?? 0);
    for (let i = 1; i < times.length; i++)
      expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBeGreaterThanOrEqual(schedule.stallWindowMs);
  });

  it('judges sawtooth remaining data by round levels, not by single samples', () => {
    // Rounds of 300 ms polled every 500 ms: each sample lands somewhere in a round that falls from its
    // pending level towards zero. Only the round levels say whether the migration converges.
    const schedule = watchdogSchedule({
      profile: 'predictive',
      memMiB: 1024,
      prediction,
      downtimeBudgetMs: 400,
    });
    const phase = (t: number) => ((t * 7919) % 300) / 300; // deterministic pseudo-random phase in a round
    const round0Ms = 4000;
    const sawtooth = (level: (round: number) => number) => (t: number) => {
      if (t < round0Ms) return stats(1024 - (t / round0Ms) * 1000, 0);
      const round = 1 + Math.floor((t - round0Ms) / 300);
      return stats(level(round) * (1 - phase(t)), round);
    };
    const flat = new Watchdog(schedule, 0);
    const stalled = run(
      flat,
      0,
      30_000,
      500,
      sawtooth(() => 300),
    );
    expect(stalled[0]?.action).toMatchObject({ kind: 'set-max-downtime', reason: 'stalled' });
    const falling = new Watchdog(schedule, 0);
    const converging = run(
      falling,
      0,
      30_000,
      500,
      sawtooth((r) => 300 * 0.97 ** r),
    );
    expect(converging).toEqual([]);
  });

  it('needs completed rounds as well as time before it calls a stall', () => {
    const schedule = watchdogSchedule({ profile: 'predictive', memMiB: 1024, prediction });
    const wd = new Watchdog(schedule, 0);
    // One very long round 1 with remaining flat: time passes but no round completes.
    const actions = run(wd, 0, 50_000, 500, (t) => (t < 1000 ? stats(1024, 0) : stats(500, 1)));
    expect(actions.filter((a) => a.action.kind !== 'abort')).toEqual([]);
  });

  it('aborts at the deadline even while progressing', () => {
    const schedule = watchdogSchedule({ profile: 'kubevirt', memMiB: 1000 }); // 2 GB -> 300 s
    const wd = new Watchdog(schedule, 1_000);
    const actions = run(wd, 1_000, 400_000, 500, (t) => stats(1_000_000 - t / 10, Math.floor(t / 1000)));
    expect(actions).toEqual([
      { atMs: 301_000, action: { kind: 'abort', reason: 'deadline', repeat: false } },
    ]);
  });

  it('kubevirt aborts after 150 s without a fall in remaining data', () => {
    const wd = new Watchdog(watchdogSchedule({ profile: 'kubevirt', memMiB: 8192 }), 0);
    const actions = run(wd, 0, 400_000, 1000, (t) => stats(t < 20_000 ? 8192 - t / 10 : 6192, 3));
    expect(actions).toEqual([{ atMs: 170_000, action: { kind: 'abort', reason: 'stalled', repeat: false } }]);
  });

  it('nova raises max downtime on its timetable, catching up when adopted late', () => {
    const schedule = watchdogSchedule({ profile: 'nova', memMiB: 2048 }); // data_gb 2: delay 150 s
    const wd = new Watchdog(schedule, 0);
    const actions = run(wd, 0, 400_000, 1000, (t) => stats(2048 - t / 1000, Math.floor(t / 1000)));
    expect(
      actions.map((a) => [a.atMs, a.action.kind === 'set-max-downtime' && a.action.maxDowntimeMs]),
    ).toEqual([
      [150_000, 95],
      [300_000, 140],
    ]);
    const adopted = new Watchdog(schedule, 0);
    expect(adopted.catchUp(460_000)).toEqual([
      { kind: 'set-max-downtime', maxDowntimeMs: 185, reason: 'timed' },
    ]);
  });

  it('switches to post-copy instead of aborting when allowed, and never aborts afterwards', () => {
    const schedule = watchdogSchedule({
      profile: 'kubevirt',
      memMiB: 1000,
      allowPostCopy: true,
    });
    const wd = new Watchdog(schedule, 0);
    const actions = run(wd, 0, 1_000_000, 1000, (t) =>
      t < 200_000 ? stats(500, 2) : stats(Math.max(0, 500 - (t - 200_000) / 1000), 3, { postCopy: true }),
    );
    expect(actions).toEqual([{ atMs: 150_000, action: { kind: 'post-copy', reason: 'stalled' } }]);
    expect(wd.requestAbort(1_000_001)).toEqual([]);
  });

  it('reports a post-copy that sends nothing (stalled), then moving again, and never pauses or aborts it', () => {
    const schedule = watchdogSchedule({ profile: 'kubevirt', memMiB: 1000, allowPostCopy: true });
    const wd = new Watchdog(schedule, 0, { postCopyStallMs: 10_000 });
    // In post-copy from the start; sends until 20 s, the link is down from then until 60 s, then it sends again.
    const sample = (t: number) => {
      const moved = (Math.min(t, 20_000) + Math.max(0, t - 60_000)) / 1000;
      return stats(800 - moved, 2, { postCopy: true, memProcessedMiB: moved });
    };
    const actions = run(wd, 0, 300_000, 500, sample);
    expect(actions).toEqual([
      { atMs: 30_000, action: { kind: 'post-copy-stalled', stalledMs: 10_000 } },
      { atMs: 60_500, action: { kind: 'post-copy-moving', stalledMs: 40_500 } },
    ]);
    expect(wd.requestAbort(300_001)).toEqual([]);
  });

  it('gives auto-converge its grace before aborting', () => {
    const schedule = watchdogSchedule({
      profile: 'predictive',
      memMiB: 1024,
      prediction,
      downtimeBudgetMs: 120,
      allowAutoConverge: true,
    });
    expect(schedule.stallSteps).toEqual([]);
    const wd = new Watchdog(schedule, 0);
    const actions = run(wd, 0, 100_000, 500, (t) => stats(300, 1 + Math.floor(t / 1000)));
    expect(actions.map((a) => [a.atMs, a.action.kind])).toEqual([
      [13_000, 'auto-converge'],
      [43_000, 'abort'],
    ]);
  });

  it('takes an auto-converge throttle that keeps rising for progress, and stalls once it stops', () => {
    const schedule = watchdogSchedule({
      profile: 'predictive',
      memMiB: 1024,
      prediction: { ...prediction, durationS: 400, technique: 'auto-converge' },
      downtimeBudgetMs: 120,
      allowAutoConverge: true,
    });
    const wd = new Watchdog(schedule, 0);
    // Remaining stays at 300 MiB for ever; QEMU raises the throttle 20 -> 30 -> ... -> 90 % every 8 s.
    const throttleAt = (t: number): number =>
      Math.min(90, t < 8000 ? 0 : 20 + 10 * Math.floor((t - 8000) / 8000));
    const sample = (t: number) =>
      stats(300, 1 + Math.floor(t / 1000), { autoConvergeThrottlePct: throttleAt(t) });
    const actions = run(wd, 0, 400_000, 500, sample);
    // The ramp ends at 64 s (90 %): only then does the stall window start, then the 30 s grace.
    const first = actions[0];
    expect(first?.action.kind).toBe('auto-converge');
    expect(first?.atMs).toBe(64_000 + schedule.stallWindowMs);
    expect(actions.map((a) => a.action.kind)).toEqual(['auto-converge', 'abort']);

    // The same samples without a rising throttle stall at once (13 s), as before.
    const flat = new Watchdog(schedule, 0);
    const flatActions = run(flat, 0, 400_000, 500, (t) => stats(300, 1 + Math.floor(t / 1000)));
    expect(flatActions[0]?.atMs).toBeLessThan(first?.atMs ?? 0);
  });

  it('switches to post-copy after round 0 when the planner predicted post-copy, and never aborts afterwards', () => {
    const schedule = watchdogSchedule({
      profile: 'predictive',
      memMiB: 1024,
      prediction: { ...prediction, technique: 'post-copy' },
      allowPostCopy: true,
    });
    expect(schedule.postCopyAfterRound0).toBe(true);
    const wd = new Watchdog(schedule, 0);
    // Post-copy then pulls the rest (1 MiB/s): a post-copy that keeps sending is left alone.
    const sample = (t: number) =>
      t < 10_000
        ? stats(1024 - t / 10, 0)
        : stats(Math.max(0, 500 - (t - 10_000) / 1000), 1, { postCopy: t > 10_500 });
    const actions = run(wd, 0, 500_000, 500, sample);
    expect(actions).toEqual([{ atMs: 10_000, action: { kind: 'post-copy', reason: 'predicted' } }]);
    // Without post-copy allowed the prediction changes nothing.
    const noPostCopy = watchdogSchedule({
      profile: 'predictive',
      memMiB: 1024,
      prediction: { ...prediction, technique: 'post-copy' },
    });
    expect(noPostCopy.postCopyAfterRound0).toBe(false);
  });

  it('marks an unresponsive migration stuck, keeps the deadline, and clears it when answers return', () => {
    const schedule = watchdogSchedule({ profile: 'kubevirt', memMiB: 1000 });
    const wd = new Watchdog(schedule, 0, { stuckAfterMs: 5000 });
    const answers = (t: number) => (t >= 10_000 && t < 30_000 ? null : stats(1000 - t / 1000, 1));
    const early = run(wd, 0, 40_000, 500, answers);
    expect(early).toEqual([
      { atMs: 14_500, action: { kind: 'stuck', reason: 'unresponsive', silentMs: 5000 } },
      { atMs: 30_000, action: { kind: 'unstuck', silentMs: 20_500 } },
    ]);
    expect(wd.state.stuck).toBe(false);
    const late = run(wd, 40_500, 320_000, 500, () => null);
    expect(late.map((a) => a.action.kind)).toEqual(['stuck', 'abort']);
    expect(late[1]?.atMs).toBe(300_000);
  });

  it('repeats an abort that did not take effect', () => {
    const wd = new Watchdog(watchdogSchedule({ profile: 'kubevirt', memMiB: 1000 }), 0, {
      abortRetryMs: 5000,
    });
    expect(wd.requestAbort(1000)).toEqual([{ kind: 'abort', reason: 'operator', repeat: false }]);
    const actions = [];
    for (let t = 2000; t <= 12_000; t += 1000)
      for (const action of wd.observe({ atMs: t, job: stats(100, 1) })) actions.push({ atMs: t, action });
    expect(actions).toEqual([
      { atMs: 6000, action: { kind: 'abort', reason: 'operator', repeat: true } },
      { atMs: 11_000, action: { kind: 'abort', reason: 'operator', repeat: true } },
    ]);
  });

  it('property: never sets max downtime above the budget and always acts by the deadline', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('predictive' as const, 'nova' as const, 'kubevirt' as const),
        fc.integer({ min: 256, max: 8192 }),
        fc.integer({ min: 20, max: 2000 }),
        fc.array(fc.integer({ min: 0, max: 2000 }), { minLength: 5, maxLength: 50 }),
        fc.integer({ min: 100, max: 5000 }),
        (profile, memMiB, budget, remainings, pollMs) => {
          const schedule: WatchdogSchedule = watchdogSchedule({
            profile,
            memMiB,
            downtimeBudgetMs: budget,
            prediction: { ...prediction, durationS: memMiB / 100 },
          });
          const wd = new Watchdog(schedule, 0);
          let aborted = false;
          const step = Math.max(pollMs, Math.ceil(schedule.deadlineMs / 3000));
          for (let t = 0, i = 0; t <= schedule.deadlineMs + step && !aborted; t += step, i++) {
            const r = remainings[i % remainings.length] ?? 0;
            for (const a of wd.observe({ atMs: t, job: stats(r, Math.floor(i / 3)) })) {
              if (a.kind === 'set-max-downtime') expect(a.maxDowntimeMs).toBeLessThanOrEqual(budget);
              if (a.kind === 'abort') aborted = true;
            }
          }
          expect(schedule.initialMaxDowntimeMs).toBeLessThanOrEqual(budget);
          expect(aborted).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});
