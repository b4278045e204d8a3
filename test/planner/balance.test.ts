// The balance strategy on generated clusters (the benchmark's generator, smaller): it reaches the target
// spread, and never with fewer moves than the lower bounds allow (which would mean a bound is wrong).
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/domain/policy.js';
import { ClusterModel } from '../../src/planner/constraints/cluster-model.js';
import { bandLowerBound, jointLowerBound } from '../../src/planner/lower-bound.js';
import { planWith } from '../../src/planner/make-plan.js';
import { BENCH_RULES, generateCluster } from './support/generate-cluster.js';

const NOW = Date.parse('2026-11-26T00:00:00Z');

describe('balance on generated clusters', () => {
  const policy = parsePolicy({ rules: BENCH_RULES, limits: { maxMovesPerRun: 100_000 } });
  const targets: [number, number] = [policy.balance.targetCpuSpreadPct, policy.balance.targetMemSpreadPct];

  it.each([1, 2, 3, 4, 5, 6, 7, 8])('seed %i: target reached, moves within reason of the bounds', (seed) => {
    const snap = generateCluster({ hosts: 40, vms: 400, seed });
    const plan = planWith('balance', snap, policy, { now: NOW });
    expect(plan.before.cpuSpreadPct > targets[0] || plan.before.memSpreadPct > targets[1]).toBe(true);
    expect(plan.after.cpuSpreadPct).toBeLessThanOrEqual(targets[0]);
    expect(plan.after.memSpreadPct).toBeLessThanOrEqual(targets[1]);
    expect(plan.note).toBeUndefined();
    // A VM that found no host below the band is not reported once the target was reached without it.
    expect(plan.skipped.filter((k) => /no host has room/.test(k.why))).toEqual([]);
    const m = new ClusterModel(snap, policy, { nowMs: NOW });
    const dims = ([0, 1] as const).map((d) => ({
      loads: d === 0 ? m.cpuLoad : m.memLoad,
      caps: m.hosts.map((h) => (d === 0 ? h.cpus : h.memMiB)),
      vmHost: m.vmHost,
      vmLoad: d === 0 ? m.vmCpu : m.vmMem,
      include: m.inSpread,
    }));
    const perDim = Math.max(
      bandLowerBound(dims[0]!, targets[0]).moves,
      bandLowerBound(dims[1]!, targets[1]).moves,
    );
    const joint = jointLowerBound(dims[0]!, dims[1]!, targets);
    expect(joint).toBeGreaterThan(0);
    expect(plan.steps.length).toBeGreaterThanOrEqual(Math.max(perDim, joint));
    // Loose on clusters this small (a bound of 10 moves is often 2-3 short of what any plan needs).
    expect(plan.steps.length).toBeLessThanOrEqual(2 * joint);
  });
});
