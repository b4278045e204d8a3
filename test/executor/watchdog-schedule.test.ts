import { describe, expect, it } from 'vitest';
import {
  describeSchedule,
  kubevirtDataGB,
  novaDataGiB,
  watchdogSchedule,
  WatchdogProfileError,
} from '../../src/executor/watchdog-schedule.js';

describe('nova profile', () => {
  // data_gb = max(2, RAM GiB) (+ disk GiB for block); delay = int(75 s x data_gb);
  // step i (0..10) at delay x i sets int(50 + 45 i) ms; abort at 800 s x data_gb.
  const cases = [
    { memMiB: 1024, diskGiB: 0, kind: 'live' as const, dataGiB: 2 },
    { memMiB: 4096, diskGiB: 0, kind: 'live' as const, dataGiB: 4 },
    { memMiB: 3000, diskGiB: 0, kind: 'live' as const, dataGiB: 3000 / 1024 },
    { memMiB: 8192, diskGiB: 20, kind: 'block' as const, dataGiB: 28 },
    { memMiB: 8192, diskGiB: 20, kind: 'live' as const, dataGiB: 8 },
  ];
  for (const c of cases) {
    it(`follows the formulas for ${c.memMiB} MiB, ${c.diskGiB} GiB disk, ${c.kind}`, () => {
      expect(novaDataGiB(c.memMiB, c.diskGiB, c.kind)).toBeCloseTo(c.dataGiB, 9);
      const s = watchdogSchedule({ profile: 'nova', memMiB: c.memMiB, diskGiB: c.diskGiB, kind: c.kind });
      const delayS = Math.trunc(75 * c.dataGiB);
      expect(s.initialMaxDowntimeMs).toBe(50);
      expect(s.timedSteps).toHaveLength(10);
      s.timedSteps.forEach((step, idx) => {
        const i = idx + 1;
        expect(step.atMs).toBe(delayS * i * 1000);
        expect(step.maxDowntimeMs).toBe(Math.trunc(50 + 45 * i));
      });
      expect(s.timedSteps.at(-1)?.maxDowntimeMs).toBe(500);
      expect(s.deadlineMs).toBeCloseTo(800 * c.dataGiB * 1000, 6);
      expect(s.abortOnStall).toBe(false);
    });
  }

  it('takes tuned values (policy watchdog.nova) into the same formulas', () => {
    const s = watchdogSchedule({
      profile: 'nova',
      memMiB: 4096,
      nova: {
        maxDowntimeMs: 1000,
        downtimeSteps: 4,
        downtimeDelayPerGiBS: 10,
        completionTimeoutPerGiBS: 100,
      },
    });
    // base 250, offset 187.5; delay int(10 x 4) = 40 s
    expect(s.initialMaxDowntimeMs).toBe(250);
    expect(s.timedSteps).toEqual([
      { atMs: 40_000, maxDowntimeMs: 437 },
      { atMs: 80_000, maxDowntimeMs: 625 },
      { atMs: 120_000, maxDowntimeMs: 812 },
      { atMs: 160_000, maxDowntimeMs: 1000 },
    ]);
    expect(s.deadlineMs).toBe(400_000);
  });

  it('caps the ladder at the downtime budget and drops steps that change nothing', () => {
    const s = watchdogSchedule({ profile: 'nova', memMiB: 4096, downtimeBudgetMs: 200 });
    expect(s.timedSteps.map((t) => t.maxDowntimeMs)).toEqual([95, 140, 185, 200]);
    expect(Math.max(...s.timedSteps.map((t) => t.maxDowntimeMs))).toBeLessThanOrEqual(200);
  });
});

describe('kubevirt profile', () => {
  const cases = [
    { memMiB: 1024, diskGiB: 0, kind: 'live' as const, gb: 2 }, // 1.07e9 bytes -> 2
    { memMiB: 953, diskGiB: 0, kind: 'live' as const, gb: 1 }, // 0.999e9 bytes -> 1
    { memMiB: 16384, diskGiB: 0, kind: 'live' as const, gb: 18 }, // 17.18e9 -> 18
    { memMiB: 2048, diskGiB: 10, kind: 'block' as const, gb: 13 }, // 2.147e9 + 10.737e9 = 12.88e9 -> 13
  ];
  for (const c of cases) {
    it(`completion timeout is 150 s x ceil(bytes / 1e9) for ${c.memMiB} MiB ${c.kind}`, () => {
      expect(kubevirtDataGB(c.memMiB, c.diskGiB, c.kind)).toBe(c.gb);
      const s = watchdogSchedule({ profile: 'kubevirt', memMiB: c.memMiB, diskGiB: c.diskGiB, kind: c.kind });
      expect(s.deadlineMs).toBe(150_000 * c.gb);
      expect(s.stallWindowMs).toBe(150_000);
      expect(s.stallMinIterations).toBe(0);
      expect(s.initialMaxDowntimeMs).toBe(900);
      expect(s.abortOnStall).toBe(true);
      expect(s.timedSteps).toEqual([]);
    });
  }
  it('never starts above the downtime budget', () => {
    expect(
      watchdogSchedule({ profile: 'kubevirt', memMiB: 1024, downtimeBudgetMs: 300 }).initialMaxDowntimeMs,
    ).toBe(300);
  });
});

describe('predictive profile', () => {
  const prediction = { converges: true, durationS: 100, downtimeMs: 100, transferMiB: 9000 };
  it('derives deadline and stall window from the prediction', () => {
    const s = watchdogSchedule({
      profile: 'predictive',
      memMiB: 8192,
      downtimeBudgetMs: 400,
      prediction,
    });
    expect(s.deadlineMs).toBe(230_000); // 2 x 100 s + 30 s
    expect(s.stallWindowMs).toBe(30_000); // 3 rounds of a tenth of 100 s
    expect(s.initialMaxDowntimeMs).toBe(120);
    expect(s.stallSteps).toEqual([213, 307, 400]);
    expect(s.stallSteps.every((ms) => ms <= 400)).toBe(true);
  });
  it('keeps the stall window at least minStallWindowS for short predictions', () => {
    const s = watchdogSchedule({
      profile: 'predictive',
      memMiB: 512,
      prediction: { ...prediction, durationS: 2 },
    });
    expect(s.deadlineMs).toBe(34_000);
    expect(s.stallWindowMs).toBe(10_000);
  });
  it("uses the planner's forecast when there is one", () => {
    const s = watchdogSchedule({
      profile: 'predictive',
      memMiB: 512,
      prediction,
      forecast: { deadlineS: 77, stallWindowS: 12.5 },
    });
    expect(s.deadlineMs).toBe(77_000);
    expect(s.stallWindowMs).toBe(12_500);
  });
  it('refuses to run without a prediction', () => {
    expect(() => watchdogSchedule({ profile: 'predictive', memMiB: 512 })).toThrow(WatchdogProfileError);
  });
  it('arms auto-converge and post-copy only when allowed', () => {
    const off = watchdogSchedule({ profile: 'predictive', memMiB: 512, prediction });
    expect(off.autoConvergeGraceMs).toBe(0);
    expect(off.postCopyOnStall).toBe(false);
    const on = watchdogSchedule({
      profile: 'predictive',
      memMiB: 512,
      prediction,
      allowAutoConverge: true,
      allowPostCopy: true,
    });
    expect(on.autoConvergeGraceMs).toBe(30_000);
    expect(on.postCopyOnStall).toBe(true);
    expect(on.autoConverge && on.postCopy).toBe(true);
  });
});

describe('describeSchedule', () => {
  it('lists nova timed steps in time order and ends with the deadline abort', () => {
    const entries = describeSchedule(watchdogSchedule({ profile: 'nova', memMiB: 4096 }));
    const timed = entries.filter((e) => e.atS !== null).map((e) => e.atS ?? 0);
    expect(timed).toEqual([...timed].sort((a, b) => a - b));
    expect(entries.at(-1)).toMatchObject({ action: 'abort', atS: 3200 });
    expect(entries.filter((e) => e.action === 'set-max-downtime')).toHaveLength(11);
  });
});
