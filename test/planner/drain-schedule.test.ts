// The drain's choice of how many migrations leave a drained host at once: table cases on the schedule
// arithmetic, and plans on small clusters (a heavy VM runs alone, idle ones overlap; feasibility is judged
// with each VM alone on the link; every step's prediction is the one at its own concurrency).
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/domain/policy.js';
import { parseSnapshot, type Snapshot } from '../../src/domain/snapshot.js';
import { planDrain, predictVmMigration } from '../../src/planner/index.js';
import {
  chooseDrainSchedule,
  scheduleEtaS,
  type ScheduleItem,
} from '../../src/planner/strategies/drain/drain-schedule.js';

const NOW = Date.UTC(2026, 10, 26, 5, 0, 0);

/** byLevel from (durationS, transferMiB) at 1, 2, ... at once; null = does not converge at that level. */
const item = (...levels: ([number, number] | null)[]): ScheduleItem => ({
  byLevel: levels.map((l) =>
    l === null
      ? { converges: false, durationS: 0, transferMiB: 0 }
      : { converges: true, durationS: l[0], transferMiB: l[1] },
  ),
});

describe('chooseDrainSchedule', () => {
  it('list-schedules each level separately', () => {
    const items = [item([10, 100], [19, 100]), item([10, 100], [19, 100]), item([30, 300], [70, 600])];
    expect(scheduleEtaS(items, [2, 2, 1])).toBe(19 + 30);
    expect(scheduleEtaS(items, [1, 1, 1])).toBe(50);
    // A level at which an item does not converge makes the schedule impossible.
    expect(scheduleEtaS([item([10, 100], null)], [2])).toBeNull();
  });

  const cases: { name: string; items: ScheduleItem[]; max: number; levels: number[] }[] = [
    {
      name: 'fixed costs overlap when sharing costs nothing extra: all at the highest level',
      items: [
        item([5, 100], [9, 100], [13, 100]),
        item([5, 100], [9, 100], [13, 100]),
        item([5, 100], [9, 100], [13, 100]),
      ],
      max: 3,
      levels: [3, 3, 3],
    },
    {
      name: 'a VM that resends much more when sharing runs alone, the idle ones overlap',
      items: [item([40, 400], [120, 900]), item([5, 100], [9, 100]), item([5, 100], [9, 100])],
      max: 2,
      levels: [1, 2, 2],
    },
    {
      name: 'nothing gains from sharing: one at a time (ties go to less concurrency)',
      items: [item([10, 100], [20, 100]), item([10, 100], [20, 100])],
      max: 2,
      levels: [1, 1],
    },
    {
      name: 'a VM that converges only alone is never shared',
      items: [item([50, 500], null), item([5, 100], [9, 100]), item([5, 100], [9, 100])],
      max: 2,
      levels: [1, 2, 2],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = chooseDrainSchedule(c.items, c.max);
      expect(s.levels).toEqual(c.levels);
      expect(s.etaS).toBeCloseTo(scheduleEtaS(c.items, s.levels) ?? NaN, 6);
      // No candidate that converges is predicted faster than the one chosen.
      for (const cand of s.candidates)
        if (cand.etaS !== null) expect(cand.etaS).toBeGreaterThanOrEqual(Math.round(s.etaS * 10) / 10);
    });
  }
});

function cluster(
  linkMiBps: number,
  vms: { id: string; memMiB: number; used: number; dirty: number }[],
): Snapshot {
  const host = (id: string, state: 'active' | 'maintenance') => ({
    id,
    cpus: 64,
    memMiB: 524288,
    state,
    cpuPct: 10,
    memUsedMiB: 16384,
    bandwidthMiBps: linkMiBps,
    cpuModel: 'Cascadelake-Server',
    labels: {},
  });
  return parseSnapshot({
    version: 1,
    takenAt: new Date(NOW).toISOString(),
    hosts: [host('src', 'maintenance'), host('dst1', 'active'), host('dst2', 'active')],
    vms: vms.map((v) => ({
      id: v.id,
      name: v.id,
      host: 'src',
      state: 'running',
      vcpus: 2,
      memMiB: v.memMiB,
      cpuPct: 20,
      memUsedMiB: v.used,
      dirtyMiBps: v.dirty,
      storage: 'shared',
      labels: {},
    })),
  });
}

describe('drain plan concurrency', () => {
  const policy = parsePolicy({
    limits: { perHostConcurrency: 4 },
    migration: { allowAutoConverge: true },
  });

  it('on a 1 Gbit/s link a database runs alone first; idle VMs overlap; predictions match each step', () => {
    const snap = cluster(119, [
      { id: 'db', memMiB: 8192, used: 6000, dirty: 40 },
      { id: 'idle-1', memMiB: 4096, used: 1500, dirty: 0.5 },
      { id: 'idle-2', memMiB: 4096, used: 1500, dirty: 0.5 },
      { id: 'idle-3', memMiB: 4096, used: 1500, dirty: 0.5 },
    ]);
    const plan = planDrain(snap, policy, ['src'], { now: NOW });
    expect(plan.skipped).toEqual([]);
    expect(plan.steps.map((s) => s.vm)[0]).toBe('db');
    expect(plan.steps[0]?.concurrency).toBe(1);
    for (const s of plan.steps.slice(1)) expect(s.concurrency).toBeGreaterThan(1);
    for (const s of plan.steps) {
      const vm = snap.vms.find((v) => v.id === s.vm);
      if (!vm) throw new Error(s.vm);
      const f = predictVmMigration(vm, { bandwidthMiBps: 119, concurrency: s.concurrency ?? 0 }, policy, {
        kind: 'live',
        downtimeBudgetMs: policy.vms.defaultDowntimeBudgetMs,
      });
      expect(s.predicted).toEqual(f.prediction);
    }
    // The ETA is the schedule's, below running everything one at a time.
    const oneAtATime = plan.steps.reduce(
      (sum, s) =>
        sum +
        predictVmMigration(
          snap.vms.find((v) => v.id === s.vm) ?? snap.vms[0]!,
          { bandwidthMiBps: 119, concurrency: 1 },
          policy,
          {
            kind: 'live',
            downtimeBudgetMs: 300,
          },
        ).prediction.durationS,
      0,
    );
    expect(plan.etaS).toBeLessThan(oneAtATime);
  });

  it('judges feasibility alone on the link: a VM that converges only alone still leaves', () => {
    // 70 MiB/s of dirtying converges at 119 MiB/s alone but not at half of it.
    const snap = cluster(119, [
      { id: 'busy', memMiB: 4096, used: 3000, dirty: 70 },
      { id: 'idle', memMiB: 2048, used: 1000, dirty: 0.5 },
    ]);
    const plain = parsePolicy({ limits: { perHostConcurrency: 2 } });
    const shared = predictVmMigration(snap.vms[0]!, { bandwidthMiBps: 119, concurrency: 2 }, plain, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    expect(shared.prediction.converges).toBe(false);
    const plan = planDrain(snap, plain, ['src'], { now: NOW });
    expect(plan.skipped).toEqual([]);
    expect(plan.steps.find((s) => s.vm === 'busy')?.concurrency).toBe(1);
  });

  it('a VM that cannot converge even alone is named with its numbers before anything moves', () => {
    const snap = cluster(119, [
      { id: 'jvm', memMiB: 8192, used: 8000, dirty: 900 },
      { id: 'idle', memMiB: 2048, used: 1000, dirty: 0.5 },
    ]);
    const plain = parsePolicy({});
    const plan = planDrain(snap, plain, ['src'], { now: NOW });
    expect(plan.steps).toEqual([]);
    expect(plan.skipped.map((s) => s.vm)).toEqual(['jvm']);
    expect(plan.skipped[0]?.why).toMatch(/900 MiB\/s/);
  });
});
