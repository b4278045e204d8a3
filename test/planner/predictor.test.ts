import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parsePolicy } from '../../src/domain/policy.js';
import type { Vm } from '../../src/domain/snapshot.js';
import type { MigrationRecord, VmHistory } from '../../src/domain/history.js';
import {
  historyCorrection,
  historyDirtyFactor,
  predictiveWatchdogPlan,
  predictVmMigration,
  simulateMigration,
  type PrecopyLimits,
} from '../../src/planner/predictor/index.js';

const bare: PrecopyLimits = {
  maxIterations: 1000,
  maxDurationS: 1e9,
  setupS: 0,
  switchoverOverheadMs: 0,
  postCopySwitchoverMs: 0,
};

/** Closed form of uncapped pre-copy: remainder after k rounds is M r^k. */
function closedForm(memMiB: number, dirty: number, bw: number, budgetMs: number) {
  const r = dirty / bw;
  let n = 1;
  while ((memMiB * r ** n) / bw > budgetMs / 1000) n += 1;
  const transfer = r === 1 ? memMiB * (n + 1) : (memMiB * (1 - r ** (n + 1))) / (1 - r);
  return {
    iterations: n,
    transferMiB: transfer,
    durationS: transfer / bw,
    downtimeMs: ((memMiB * r ** n) / bw) * 1000,
  };
}

describe('pre-copy model', () => {
  it.each([
    [4096, 0, 1000, 300],
    [4096, 10, 100, 300],
    [16384, 200, 1150, 300],
    [16384, 500, 1150, 100],
    [512, 40, 50, 30],
    [65536, 900, 1150, 300],
  ])(
    'mem %d MiB, dirty %d MiB/s, link %d MiB/s, budget %d ms matches the closed form',
    (mem, dirty, bw, budget) => {
      const out = simulateMigration(
        { memMiB: mem, dirtyMiBps: dirty, bandwidthMiBps: bw, downtimeBudgetMs: budget },
        bare,
        'precopy',
      );
      const cf = closedForm(mem, dirty, bw, budget);
      expect(out.converges).toBe(true);
      expect(out.iterations).toBe(cf.iterations);
      expect(out.transferMiB).toBeCloseTo(cf.transferMiB, 6);
      expect(out.durationS).toBeCloseTo(cf.durationS, 6);
      expect(out.downtimeMs).toBeCloseTo(cf.downtimeMs, 6);
    },
  );

  it('matches the closed form on random uncapped cases', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 128, max: 262144 }),
        fc.double({ min: 0, max: 0.95, noNaN: true }),
        fc.integer({ min: 10, max: 5000 }),
        fc.integer({ min: 10, max: 2000 }),
        (mem, ratio, bw, budget) => {
          const out = simulateMigration(
            { memMiB: mem, dirtyMiBps: ratio * bw, bandwidthMiBps: bw, downtimeBudgetMs: budget },
            bare,
            'precopy',
          );
          const cf = closedForm(mem, ratio * bw, bw, budget);
          expect(out.iterations).toBe(cf.iterations);
          expect(out.transferMiB / cf.transferMiB).toBeCloseTo(1, 9);
          expect(out.downtimeMs).toBeLessThanOrEqual(budget + 1e-9);
        },
      ),
    );
  });

  it('does not converge when the dirty rate reaches the bandwidth and the working set exceeds the budget', () => {
    const out = simulateMigration(
      { memMiB: 8192, dirtyMiBps: 410, bandwidthMiBps: 383.3, downtimeBudgetMs: 300 },
      bare,
      'precopy',
    );
    expect(out.converges).toBe(false);
    expect(out.failure).toBe('dirty rate 410 MiB/s cannot converge at 383 MiB/s within 300 ms');
  });

  it('converges despite a high dirty rate when the writable working set fits in the downtime', () => {
    const out = simulateMigration(
      { memMiB: 8192, wssMiB: 100, dirtyMiBps: 2000, bandwidthMiBps: 1000, downtimeBudgetMs: 300 },
      bare,
      'precopy',
    );
    expect(out.converges).toBe(true);
    expect(out.iterations).toBe(1);
    expect(out.downtimeMs).toBeCloseTo(100, 6);
  });

  it('auto-converge finishes what plain pre-copy cannot, with QEMU throttle steps', () => {
    const input = { memMiB: 16384, dirtyMiBps: 1400, bandwidthMiBps: 1150, downtimeBudgetMs: 300 };
    expect(simulateMigration(input, bare, 'precopy').converges).toBe(false);
    const ac = simulateMigration(input, bare, 'auto-converge');
    expect(ac.converges).toBe(true);
    expect(ac.throttle).toBeGreaterThanOrEqual(0.2);
    // Throttle rises 20 %, 30 %, ... so it is always 0.2 + k x 0.1.
    expect(Math.round((ac.throttle - 0.2) * 10) / 10).toBeCloseTo(ac.throttle - 0.2, 6);
  });

  it('post-copy switches after round 0 with the post-copy pause as downtime', () => {
    const lim = { ...bare, postCopySwitchoverMs: 60 };
    const out = simulateMigration(
      { memMiB: 8192, dirtyMiBps: 2000, bandwidthMiBps: 1000, downtimeBudgetMs: 300 },
      lim,
      'post-copy',
    );
    expect(out.converges).toBe(true);
    expect(out.downtimeMs).toBe(60);
    // Round 0 (8.192 s) then the working set (capped at memory) pulled afterwards.
    expect(out.durationS).toBeCloseTo(8.192 + 8.192, 6);
  });
});

const vm = (over: Partial<Vm> = {}): Vm => ({
  id: 'vm-1',
  name: 'db-1',
  host: 'kvm-01',
  state: 'running',
  vcpus: 4,
  memMiB: 16384,
  cpuPct: 20,
  memUsedMiB: 12000,
  dirtyMiBps: 35,
  storage: 'shared',
  ...over,
});

describe('predictVmMigration', () => {
  const policy = parsePolicy({});

  it('plans with the typical dirty rate by default, the peak when the policy says so, either when alone', () => {
    const link = { bandwidthMiBps: 1150, concurrency: 2 };
    const opts = { kind: 'live' as const, downtimeBudgetMs: 300 };
    const bursty = vm({ dirtyMiBps: 300, dirtyPeakMiBps: 700 });
    const typical = predictVmMigration(bursty, link, policy, opts);
    expect(typical.prediction.dirtyMiBps).toBe(300);
    expect(typical.prediction.converges).toBe(true);
    const peakPolicy = parsePolicy({ migration: { plannedDirtyRate: 'peak' } });
    expect(predictVmMigration(bursty, link, peakPolicy, opts).prediction.dirtyMiBps).toBe(700);
    const onlyPeak = vm({ dirtyMiBps: null, dirtyPeakMiBps: 700 });
    expect(predictVmMigration(onlyPeak, link, policy, opts).prediction.dirtyMiBps).toBe(700);
    const onlyTypical = vm({ dirtyMiBps: 300, dirtyPeakMiBps: null });
    expect(predictVmMigration(onlyTypical, link, peakPolicy, opts).prediction.dirtyMiBps).toBe(300);
    expect(() => parsePolicy({ migration: { plannedDirtyRate: 'max' } })).toThrow(
      /migration\.plannedDirtyRate/,
    );
  });

  it('names the numbers when it cannot converge', () => {
    const f = predictVmMigration(
      vm({ dirtyMiBps: 700, dirtyPeakMiBps: 700 }),
      { bandwidthMiBps: 1150, concurrency: 2 },
      policy,
      {
        kind: 'live',
        downtimeBudgetMs: 300,
      },
    );
    expect(f.prediction.converges).toBe(false);
    expect(f.reason).toBe(
      'dirty rate 700 MiB/s cannot converge at 575 MiB/s within 300 ms (1150 MiB/s link shared by 2 migrations)',
    );
  });

  it('does not plan a migration predicted to need more than maxDurationS less the safety margin', () => {
    // Idle, every page written: 1 s setup + 12000 MiB at 1000 MiB/s = 13 s.
    const link = { bandwidthMiBps: 1000, concurrency: 1 };
    const at = (maxDurationS: number, durationMarginPct: number) =>
      predictVmMigration(
        vm({ dirtyMiBps: 0, memMiB: 12000, memUsedMiB: 12000 }),
        link,
        parsePolicy({ migration: { maxDurationS, durationMarginPct } }),
        { kind: 'live', downtimeBudgetMs: 300 },
      ).prediction.converges;
    expect(at(14, 0)).toBe(true);
    expect(at(14, 10)).toBe(false); // 13 s > 12.6 s
    expect(at(15, 10)).toBe(true); // 13 s <= 13.5 s
    expect(() => parsePolicy({ migration: { durationMarginPct: 95 } })).toThrow(/durationMarginPct/);
  });

  it('sends memUsedMiB in round 0 when measured, memMiB otherwise', () => {
    const lean = predictVmMigration(vm({ dirtyMiBps: 0 }), { bandwidthMiBps: 1000, concurrency: 1 }, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    const blind = predictVmMigration(
      vm({ dirtyMiBps: 0, memUsedMiB: null }),
      { bandwidthMiBps: 1000, concurrency: 1 },
      policy,
      { kind: 'live', downtimeBudgetMs: 300 },
    );
    expect(lean.prediction.transferMiB).toBe(12000);
    expect(blind.prediction.transferMiB).toBe(16384);
  });

  it('refuses to guess an unmeasured dirty rate unless the policy says what to assume', () => {
    const f = predictVmMigration(vm({ dirtyMiBps: null }), { bandwidthMiBps: 1000, concurrency: 1 }, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    expect(f.prediction.converges).toBe(false);
    expect(f.reason).toMatch(/not measured/);
    const assume = parsePolicy({ migration: { assumeDirtyMiBpsWhenUnknown: 10 } });
    expect(
      predictVmMigration(vm({ dirtyMiBps: null }), { bandwidthMiBps: 1000, concurrency: 1 }, assume, {
        kind: 'live',
        downtimeBudgetMs: 300,
      }).prediction.converges,
    ).toBe(true);
  });

  it('reports the technique when only auto-converge or post-copy can finish', () => {
    const jvm = vm({ dirtyMiBps: 1400 });
    const link = { bandwidthMiBps: 1150, concurrency: 1 };
    const ac = parsePolicy({ migration: { allowAutoConverge: true } });
    const pc = parsePolicy({ migration: { allowPostCopy: true } });
    expect(
      predictVmMigration(jvm, link, policy, { kind: 'live', downtimeBudgetMs: 300 }).prediction.converges,
    ).toBe(false);
    expect(
      predictVmMigration(jvm, link, ac, { kind: 'live', downtimeBudgetMs: 300 }).prediction.technique,
    ).toBe('auto-converge');
    expect(
      predictVmMigration(jvm, link, pc, { kind: 'live', downtimeBudgetMs: 300 }).prediction.technique,
    ).toBe('post-copy');
  });

  it('adds the disk for block migration and moves only the definition offline', () => {
    const link = { bandwidthMiBps: 1000, concurrency: 1 };
    const live = predictVmMigration(vm({ dirtyMiBps: 0 }), link, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    const block = predictVmMigration(vm({ dirtyMiBps: 0, diskMiB: 40960 }), link, policy, {
      kind: 'block',
      downtimeBudgetMs: 300,
    });
    expect(block.prediction.transferMiB - live.prediction.transferMiB).toBe(40960);
    const off = predictVmMigration(vm({ state: 'shutoff' }), link, policy, {
      kind: 'offline',
      downtimeBudgetMs: 300,
    });
    expect(off.prediction.transferMiB).toBe(0);
  });
});

describe('history correction', () => {
  const policy = parsePolicy({});
  const record = (measuredDurationS: number) => ({
    vmId: 'vm-1',
    from: 'a',
    to: 'b',
    kind: 'live' as const,
    endedAt: '2026-11-25T10:00:00Z',
    result: 'completed' as const,
    predictedDurationS: null,
    measuredDurationS,
    downtimeMs: 100,
    iterations: 3,
    transferMiB: 9000,
    memMiB: 8192,
    dirtyMiBps: 0,
    bandwidthMiBps: 1000,
  });
  // 8192 MiB at 1000 MiB/s with no dirtying: 1 s setup + 8.192 s.
  const modelS = 1 + 8.192;

  it('is 1 without history and the median measured/model ratio with it, clamped', () => {
    expect(historyCorrection(undefined, policy)).toBe(1);
    const h: VmHistory = {
      vmId: 'vm-1',
      quarantinedUntil: null,
      records: [record(modelS * 2), record(modelS * 3), record(modelS * 2.5)],
    };
    expect(historyCorrection(h, policy)).toBeCloseTo(2.5, 6);
    const wild: VmHistory = { vmId: 'vm-1', quarantinedUntil: null, records: [record(modelS * 50)] };
    expect(historyCorrection(wild, policy)).toBe(4);
  });

  it('with the correction a prediction carried, the factor converges on the real error', () => {
    // A VM whose migrations really take 2x the model: the first prediction (no history) is half the truth.
    const withPrediction = (predictedDurationS: number, predictionCorrection: number) => ({
      ...record(modelS * 2),
      predictedDurationS,
      predictionCorrection,
    });
    const first: VmHistory = { vmId: 'vm-1', quarantinedUntil: null, records: [withPrediction(modelS, 1)] };
    expect(historyCorrection(first, policy)).toBeCloseTo(2, 6);
    // The next prediction already carried x2 and came out right: the factor stays 2, it does not become 4.
    const second: VmHistory = {
      vmId: 'vm-1',
      quarantinedUntil: null,
      records: [withPrediction(modelS * 2, 2)],
    };
    expect(historyCorrection(second, policy)).toBeCloseTo(2, 6);
  });

  it('a record without a prediction is modelled with round 0 at most what the migration sent', () => {
    // 8192 MiB guest that sent only 2048 MiB (the rest never written): model 1 + 2.048 s at 1000 MiB/s.
    const sparse = { ...record(2 * (1 + 2.048)), transferMiB: 2048 };
    const h: VmHistory = { vmId: 'vm-1', quarantinedUntil: null, records: [sparse] };
    expect(historyCorrection(h, policy)).toBeCloseTo(2, 6);
  });

  it('marks a prediction that applied a correction, so the executor can record it', () => {
    const link = { bandwidthMiBps: 1150, concurrency: 1 };
    const fast: VmHistory = { vmId: 'vm-1', quarantinedUntil: null, records: [record(modelS * 0.6)] };
    const plain = predictVmMigration(vm({ dirtyMiBps: 10 }), link, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    const f = predictVmMigration(vm({ dirtyMiBps: 10 }), link, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
      history: fast,
    });
    expect(plain.prediction.correction).toBeUndefined();
    expect(f.prediction.correction).toBeCloseTo(0.6, 3);
    expect(f.prediction.durationS).toBeCloseTo(plain.prediction.durationS * 0.6, 1);
  });

  it('a VM slower than modelled gets less bandwidth, so a marginal migration stops being planned', () => {
    const link = { bandwidthMiBps: 1150, concurrency: 1 };
    const marginal = vm({ dirtyMiBps: 500 });
    expect(
      predictVmMigration(marginal, link, policy, { kind: 'live', downtimeBudgetMs: 300 }).prediction
        .converges,
    ).toBe(true);
    const slow: VmHistory = { vmId: 'vm-1', quarantinedUntil: null, records: [record(modelS * 3)] };
    const f = predictVmMigration(marginal, link, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
      history: slow,
    });
    expect(f.correction).toBeCloseTo(3, 6);
    expect(f.prediction.converges).toBe(false);
    expect(f.reason).toMatch(/history/);
  });
});

describe('dirty-rate factor from history', () => {
  const policy = parsePolicy({});
  const link = { bandwidthMiBps: 1000, concurrency: 1 };
  const migrated = (over: Partial<MigrationRecord>): MigrationRecord => ({
    vmId: 'vm-1',
    from: 'a',
    to: 'b',
    kind: 'live',
    endedAt: '2026-11-25T10:00:00Z',
    result: 'completed',
    predictedDurationS: null,
    measuredDurationS: 20,
    downtimeMs: 100,
    iterations: 6,
    transferMiB: 14000,
    memMiB: 16384,
    dirtyMiBps: 600,
    bandwidthMiBps: 1000,
    plannedDirtyMiBps: 800,
    plannedDirtyFactor: 1,
    ...over,
  });
  const hist = (...records: MigrationRecord[]): VmHistory => ({
    vmId: 'vm-1',
    quarantinedUntil: null,
    records,
  });

  it('is the median rate seen while migrating over the rate planned, times the factor already applied', () => {
    expect(historyDirtyFactor(undefined)).toBe(1);
    expect(historyDirtyFactor(hist(migrated({})))).toBeCloseTo(0.75, 6);
    // a plan that already used x0.75 and saw exactly that rate keeps x0.75
    expect(
      historyDirtyFactor(hist(migrated({ plannedDirtyMiBps: 600, plannedDirtyFactor: 0.75 }))),
    ).toBeCloseTo(0.75, 6);
    // aborted migrations count too: they show the rate as well as completed ones
    expect(historyDirtyFactor(hist(migrated({ result: 'aborted', dirtyMiBps: 1600 })))).toBeCloseTo(2, 6);
  });

  it('ignores migrations that ended in round 0, reported no rate, or had no planned rate', () => {
    expect(historyDirtyFactor(hist(migrated({ iterations: 1 })))).toBe(1);
    expect(historyDirtyFactor(hist(migrated({ dirtyMiBps: 0 })))).toBe(1);
    expect(historyDirtyFactor(hist(migrated({ plannedDirtyMiBps: null })))).toBe(1);
    expect(historyDirtyFactor(hist(migrated({ dirtyMiBps: 100_000 })))).toBe(4);
  });

  it('a VM that dirtied slower while migrating is planned where the measurement alone would skip it', () => {
    // 990 MiB/s measured against a 1000 MiB/s link: hopeless as measured; it dirtied 700 MiB/s while migrating.
    const hot = vm({ dirtyMiBps: 990 });
    const opts = { kind: 'live' as const, downtimeBudgetMs: 300 };
    expect(predictVmMigration(hot, link, policy, opts).prediction.converges).toBe(false);
    const f = predictVmMigration(hot, link, policy, {
      ...opts,
      history: hist(migrated({ dirtyMiBps: 700, plannedDirtyMiBps: 990 })),
    });
    expect(f.prediction.converges).toBe(true);
    expect(f.prediction.dirtyMiBps).toBeCloseTo(700, 1);
    expect(f.prediction.dirtyFactor).toBeCloseTo(0.707, 3);
    // and the other way: one that dirtied faster while migrating is no longer planned, with the reason
    const calm = vm({ dirtyMiBps: 300 });
    expect(predictVmMigration(calm, link, policy, opts).prediction.converges).toBe(true);
    const g = predictVmMigration(calm, link, policy, {
      ...opts,
      history: hist(migrated({ dirtyMiBps: 1200, plannedDirtyMiBps: 300 })),
    });
    expect(g.prediction.converges).toBe(false);
    expect(g.reason).toMatch(/dirty rate x4 the measured one/);
  });
});

describe('predictiveWatchdogPlan', () => {
  it('derives deadline and stall window from the prediction and the policy knobs', () => {
    const policy = parsePolicy({
      watchdog: {
        predictive: { deadlineFactor: 2, deadlineMarginS: 30, stallRounds: 3, minStallWindowS: 5 },
      },
    });
    const link = { bandwidthMiBps: 1150, concurrency: 1 };
    const w = predictiveWatchdogPlan(vm({ dirtyMiBps: 300 }), link, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    const f = predictVmMigration(vm({ dirtyMiBps: 300 }), link, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    expect(w.converges).toBe(true);
    expect(w.expectedDurationS).toBe(f.prediction.durationS);
    expect(w.deadlineS).toBeCloseTo(f.prediction.durationS * 2 + 30, 1);
    expect(w.stallWindowS).toBeCloseTo(Math.max(5, 3 * Math.max(...f.roundsS.slice(1))), 1);
    expect(w.expectedIterations).toBe(f.iterations);
  });
});
