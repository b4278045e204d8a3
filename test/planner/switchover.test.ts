// The switch-over cost learnt from measured downtimes: which history answers (VM on this pair, the pair, the
// VM anywhere, the policy), how the predictor and the planner plan with it (downtime = cost + last round,
// skip with the numbers when the cost alone is over the budget), and the max downtime the watchdog sets.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parsePolicy } from '../../src/domain/policy.js';
import { parseSnapshot, type Vm } from '../../src/domain/snapshot.js';
import type { MigrationRecord, VmHistory } from '../../src/domain/history.js';
import { fitDowntime, planDrain, predictVmMigration, SwitchoverBook } from '../../src/planner/index.js';
import { watchdogSchedule } from '../../src/executor/watchdog-schedule.js';

const NOW = Date.UTC(2026, 11, 3, 12, 0, 0);

function rec(over: Partial<MigrationRecord> & { vmId: string; downtimeMs: number | null }): MigrationRecord {
  return {
    from: 'a',
    to: 'b',
    kind: 'live',
    endedAt: new Date(NOW - 3_600_000).toISOString(),
    result: 'completed',
    predictedDurationS: null,
    measuredDurationS: 5,
    iterations: 3,
    transferMiB: 600,
    memMiB: 512,
    dirtyMiBps: 10,
    bandwidthMiBps: 100,
    ...over,
  };
}

const hist = (vmId: string, records: MigrationRecord[]): VmHistory => ({
  vmId,
  records,
  quarantinedUntil: null,
});

describe('SwitchoverBook', () => {
  const book = new SwitchoverBook(
    [
      hist('v1', [
        rec({ vmId: 'v1', downtimeMs: 900 }), // older than the last 5: forgotten
        ...[40, 60, 35, 50, 45].map((d) => rec({ vmId: 'v1', downtimeMs: d })),
        rec({ vmId: 'v1', downtimeMs: 5000, result: 'aborted' }),
        rec({ vmId: 'v1', from: 'c', to: 'd', downtimeMs: 300 }),
      ]),
      hist(
        'v2',
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 100].map((d) =>
          rec({ vmId: 'v2', from: 'b', to: 'a', downtimeMs: d }),
        ),
      ),
      hist('v3', [rec({ vmId: 'v3', from: 'c', to: 'd', downtimeMs: null, kind: 'offline' })]),
    ],
    20,
  );

  it("answers with this VM's largest recent downtime on the pair, ignoring aborted migrations", () => {
    expect(book.cost('v1', 'a', 'b')).toEqual({ ms: 60, source: 'vm-pair', samples: 5 });
  });

  it('is shared by both directions of a pair', () => {
    expect(book.cost('v1', 'b', 'a')).toEqual({ ms: 60, source: 'vm-pair', samples: 5 });
  });

  it("falls back to the pair's p90 over all VMs, then the VM on any pair, then the policy", () => {
    // Pair a-b: v1's 6 completed (900 included) + v2's 10 = 16 samples; p90 is the 15th smallest, 100
    // (the one 900 ms outlier is above it).
    expect(book.cost('new', 'a', 'b')).toEqual({ ms: 100, source: 'pair', samples: 16 });
    expect(book.cost('v1', 'e', 'f')).toEqual({ ms: 300, source: 'vm', samples: 5 });
    expect(book.cost('v3', 'c', 'd')).toEqual({ ms: 300, source: 'pair', samples: 1 });
    expect(book.cost('new', 'e', 'f')).toEqual({ ms: 20, source: 'policy', samples: 0 });
  });
});

describe('splitting downtime into the fixed cost and the last round', () => {
  // A pair where the last round is sent four times faster than the share the model assumes (QEMU lifts its
  // bandwidth cap while paused), over a fixed cost of 30-50 ms.
  const fixed = [40, 30, 50, 35, 45, 38];
  const rounds = [0, 400, 100, 800, 200, 600];
  const split = rounds.map((x, i) =>
    rec({
      vmId: i < 3 ? 'v1' : 'v2',
      downtimeMs: (fixed[i] ?? 0) + x / 4,
      predictedLastRoundMs: x,
      endedAt: new Date(NOW - 3_600_000 + i * 1000).toISOString(),
    }),
  );
  const book = new SwitchoverBook([hist('v1', split.slice(0, 3)), hist('v2', split.slice(3))], 20);

  it('learns the share of the modelled last round that shows, and the fixed costs left', () => {
    const fit = fitDowntime(
      split.map((r) => ({ lastRoundMs: r.predictedLastRoundMs ?? 0, downtimeMs: r.downtimeMs ?? 0 })),
    );
    expect(fit?.factor).toBeGreaterThan(0.2);
    expect(fit?.factor).toBeLessThan(0.3);
    for (const r of fit?.residualsMs ?? []) {
      expect(r).toBeGreaterThan(15);
      expect(r).toBeLessThan(65);
    }
    // Too few samples, or no spread in the last round: nothing to split by.
    expect(fitDowntime([{ lastRoundMs: 0, downtimeMs: 40 }])).toBeNull();
    expect(fitDowntime([0, 0, 0, 0].map(() => ({ lastRoundMs: 100, downtimeMs: 90 })))?.factor).toBe(1);
  });

  it('plans the budget against the highest fixed cost and predicts with the typical one', () => {
    const pair = book.cost('new', 'a', 'b');
    expect(pair.source).toBe('pair');
    expect(pair.samples).toBe(6);
    // Unsplit, the pair's p90 of raw downtimes would be 235 ms (35 + 800/4): most of it is last round.
    expect(pair.ms).toBeGreaterThanOrEqual(45);
    expect(pair.ms).toBeLessThan(70);
    expect(pair.typicalMs).toBeGreaterThan(25);
    expect(pair.typicalMs).toBeLessThan(pair.ms + 1);
    expect(book.cost('v1', 'b', 'a').source).toBe('vm-pair');
    const f = predictVmMigration(vm, { bandwidthMiBps: 200, concurrency: 1 }, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
      switchover: pair,
    });
    const p = f.prediction;
    expect(p.converges).toBe(true);
    expect(p.lastRoundMs).toBeGreaterThan(0);
    expect(p.lastRoundMs).toBeLessThanOrEqual(300 - pair.ms + 0.1);
    expect(p.downtimeMs).toBeCloseTo(
      (pair.typicalMs ?? 0) + (pair.lastRoundFactor ?? 1) * (p.lastRoundMs ?? 0),
      0,
    );
    expect(p.downtimeMs).toBeLessThan(pair.ms + (p.lastRoundMs ?? 0));
  });

  it('never expects a pause longer than the max downtime allows, even for a VM that does not converge', () => {
    const f = predictVmMigration(
      { ...vm, dirtyMiBps: 500 },
      { bandwidthMiBps: 100, concurrency: 1 },
      policy,
      {
        kind: 'live',
        downtimeBudgetMs: 300,
        switchover: { ms: 60, source: 'pair', samples: 6 },
      },
    );
    expect(f.prediction.converges).toBe(false);
    expect(f.prediction.lastRoundMs).toBe(240);
    expect(f.prediction.downtimeMs).toBe(300);
  });
});

const vm: Vm = {
  id: 'web-1',
  name: 'web-1',
  host: 'src',
  state: 'running',
  vcpus: 2,
  memMiB: 4096,
  cpuPct: 20,
  memUsedMiB: 2048,
  dirtyMiBps: 20,
  storage: 'shared',
  labels: {},
};
const policy = parsePolicy({});

describe('predictions with a learnt switch-over', () => {
  it('skips with the numbers when the switch-over alone exceeds the budget', () => {
    const f = predictVmMigration(vm, { bandwidthMiBps: 1000, concurrency: 1 }, policy, {
      kind: 'live',
      downtimeBudgetMs: 30,
      switchover: { ms: 290, source: 'pair', samples: 8 },
    });
    expect(f.prediction.converges).toBe(false);
    expect(f.reason).toBe("budget 30 ms, this pair's switch-over alone takes 290 ms");
  });

  it('predicts downtime = switch-over + last round, within the budget, whenever it converges', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 400 }),
        fc.integer({ min: 20, max: 1000 }),
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 50, max: 2000 }),
        (switchoverMs, budgetMs, dirty, bw) => {
          const f = predictVmMigration(
            { ...vm, dirtyMiBps: dirty },
            { bandwidthMiBps: bw, concurrency: 1 },
            policy,
            {
              kind: 'live',
              downtimeBudgetMs: budgetMs,
              switchover: { ms: switchoverMs, source: 'vm-pair', samples: 3 },
            },
          );
          if (!f.prediction.converges) return;
          expect(f.prediction.switchoverMs).toBe(switchoverMs);
          expect(f.prediction.downtimeMs).toBeGreaterThanOrEqual(switchoverMs);
          expect(f.prediction.downtimeMs).toBeLessThanOrEqual(budgetMs + 0.1);
        },
      ),
    );
  });

  it('a larger switch-over leaves a smaller last round: more rounds, never less downtime', () => {
    const at = (ms: number) =>
      predictVmMigration(vm, { bandwidthMiBps: 200, concurrency: 1 }, policy, {
        kind: 'live',
        downtimeBudgetMs: 300,
        switchover: { ms, source: 'pair', samples: 1 },
      });
    const cheap = at(20);
    const dear = at(250);
    expect(cheap.prediction.converges && dear.prediction.converges).toBe(true);
    expect(dear.iterations).toBeGreaterThan(cheap.iterations);
    expect(dear.prediction.downtimeMs).toBeGreaterThan(250);
  });
});

describe('the planner with measured downtimes in history', () => {
  const host = (id: string, state: 'active' | 'maintenance') => ({
    id,
    cpus: 64,
    memMiB: 262144,
    state,
    cpuPct: 10,
    memUsedMiB: 16384,
    bandwidthMiBps: 1000,
    cpuModel: 'Cascadelake-Server',
    labels: {},
  });
  const snap = parseSnapshot({
    version: 1,
    takenAt: new Date(NOW).toISOString(),
    hosts: [host('src', 'maintenance'), host('dst', 'active')],
    vms: [
      { ...vm, id: 'tight', name: 'tight', labels: { tier: 'rt' } },
      { ...vm, id: 'loose', name: 'loose' },
    ],
  });
  const tightPolicy = parsePolicy({
    rules: [
      {
        name: 'realtime-barely-pauses',
        conditions: { all: [{ fact: 'vm.labels.tier', operator: 'equal', value: 'rt' }] },
        event: { type: 'downtimeBudget', params: { ms: 30 } },
      },
    ],
  });

  it("skips the VM whose budget this pair's switch-over cannot meet, with the numbers, and moves the rest", () => {
    const history = new Map<string, VmHistory>([
      [
        'other',
        hist(
          'other',
          [250, 280, 290].map((d) => rec({ vmId: 'other', from: 'src', to: 'dst', downtimeMs: d })),
        ),
      ],
    ]);
    const plan = planDrain(snap, tightPolicy, ['src'], { now: NOW, history, allowPartial: true });
    expect(plan.steps.map((s) => s.vm)).toEqual(['loose']);
    expect(plan.steps[0]?.predicted.switchoverMs).toBe(290);
    expect(plan.skipped.map((k) => k.vm)).toEqual(['tight']);
    expect(plan.skipped[0]?.why).toContain("budget 30 ms, this pair's switch-over alone takes 290 ms");
    // Without that history the policy's 20 ms assumption lets both move.
    const fresh = planDrain(snap, tightPolicy, ['src'], { now: NOW, allowPartial: true });
    expect(fresh.steps.map((s) => s.vm).sort()).toEqual(['loose', 'tight']);
  });
});

describe('max downtime the watchdog sets', () => {
  const prediction = {
    converges: true,
    durationS: 40,
    downtimeMs: 150,
    transferMiB: 4000,
    switchoverMs: 120,
  };
  it.each(['predictive', 'nova', 'kubevirt'] as const)(
    '%s: every max downtime is at most the budget less the switch-over',
    (profile) => {
      const s = watchdogSchedule({
        profile,
        memMiB: 4096,
        downtimeBudgetMs: 200,
        prediction,
      });
      const all = [s.initialMaxDowntimeMs, ...s.stallSteps, ...s.timedSteps.map((t) => t.maxDowntimeMs)];
      for (const ms of all) expect(ms).toBeLessThanOrEqual(80);
      expect(s.switchoverMs).toBe(120);
    },
  );

  it('the predictive ladder starts from the predicted last round, not from the whole downtime', () => {
    const s = watchdogSchedule({ profile: 'predictive', memMiB: 4096, downtimeBudgetMs: 500, prediction });
    // last round 30 ms -> max(50 floor, 36) = 50, then up to 500 - 120.
    expect(s.initialMaxDowntimeMs).toBe(50);
    expect(s.stallSteps[s.stallSteps.length - 1]).toBe(380);
  });
});
