// drover's rebalance against an exhaustive search of single moves and pairs on small random clusters, under
// the same constraints (rules, capacity, cooldown, the predictor): when a move improves the objective,
// drover's plan improves it at least as much as the best single move; when one move reaches what drover
// reaches with more, drover uses one; a plan is empty only when no pair of moves improves the objective.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Plan } from '../../src/domain/plan.js';
import type { Policy } from '../../src/domain/policy.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { ClusterModel } from '../../src/planner/constraints/cluster-model.js';
import { planWith } from '../../src/planner/make-plan.js';
import { compareObjective, Objective, type ObjectiveValue } from '../../src/planner/objective.js';
import { clusterArb, policyArb } from './support/plan-properties.js';

const NOW = Date.parse('2026-11-26T00:00:00Z');

const smallCluster = clusterArb.filter((s) => s.hosts.length <= 5 && s.vms.length <= 10);

function fresh(snap: Snapshot, policy: Policy): { m: ClusterModel; obj: Objective } {
  const m = new ClusterModel(snap, policy, { nowMs: NOW });
  return { m, obj: new Objective(m) };
}

function valueNow(obj: Objective): ObjectiveValue {
  obj.refresh();
  return obj.value();
}

/** Every move the planner is allowed to make from the model's current state. */
function allowedMoves(m: ClusterModel): [number, number][] {
  const out: [number, number][] = [];
  for (let v = 0; v < m.vms.length; v += 1) {
    if (m.immovable(v, 'rebalance') !== null) continue;
    if (!m.forecast(v, m.vmHost[v] ?? 0).prediction.converges) continue;
    for (let t = 0; t < m.hostCount; t += 1) {
      if (m.placementProblem(v, t) !== null) continue;
      if (!m.forecast(v, t).prediction.converges) continue;
      out.push([v, t]);
    }
  }
  return out;
}

interface Search {
  start: ObjectiveValue;
  bestSingle: ObjectiveValue;
  bestPair: ObjectiveValue;
}

function exhaustive(snap: Snapshot, policy: Policy): Search {
  const { m, obj } = fresh(snap, policy);
  const start = valueNow(obj);
  let bestSingle = start;
  let bestPair = start;
  for (const [v, t] of allowedMoves(m)) {
    m.move(v, t);
    const one = valueNow(obj);
    if (compareObjective(one, bestSingle) < 0) bestSingle = one;
    if (compareObjective(one, bestPair) < 0) bestPair = one;
    for (const [v2, t2] of allowedMoves(m)) {
      m.move(v2, t2);
      const two = valueNow(obj);
      if (compareObjective(two, bestPair) < 0) bestPair = two;
      m.unmove(v2);
    }
    m.unmove(v);
  }
  return { start, bestSingle, bestPair };
}

function planValue(snap: Snapshot, policy: Policy, plan: Plan): ObjectiveValue {
  const { m, obj } = fresh(snap, policy);
  const index = new Map(m.vms.map((v, i) => [v.id, i]));
  for (const s of plan.steps) m.move(index.get(s.vm) ?? -1, m.hostIndex.get(s.to) ?? -1);
  return valueNow(obj);
}

describe('rebalance vs exhaustive search of single moves and pairs', () => {
  it('improves at least as much as the best single move, uses one move where one does, and is empty only when no pair helps', () => {
    let improvable = 0;
    let multi = 0;
    fc.assert(
      fc.property(smallCluster, policyArb, (snap, policy) => {
        const plan = planWith('balance', snap, policy, { now: NOW });
        const got = planValue(snap, policy, plan);
        const search = exhaustive(snap, policy);
        if (compareObjective(search.bestSingle, search.start) < 0) improvable += 1;
        if (plan.steps.length >= 2) multi += 1;
        // Never worse than where it started.
        expect(compareObjective(got, search.start)).toBeLessThanOrEqual(0);
        // At least as good as the best single move.
        expect(compareObjective(got, search.bestSingle)).toBeLessThanOrEqual(0);
        // Two or more moves only when no single move reaches as far.
        if (plan.steps.length >= 2) expect(compareObjective(search.bestSingle, got)).toBeGreaterThan(0);
        // Empty only when no pair of moves improves anything.
        if (plan.steps.length === 0 && policy.limits.maxMovesPerRun >= 2)
          expect(compareObjective(search.bestPair, search.start)).toBe(0);
      }),
      { numRuns: 400, seed: 15 },
    );
    // The cases exercise what they claim: many have an improving move, some need several.
    expect(improvable).toBeGreaterThan(25);
    expect(multi).toBeGreaterThan(3);
  });
});
