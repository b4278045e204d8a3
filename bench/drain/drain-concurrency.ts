// The settings the drain bench compares. drover's drain strategy chooses each step's concurrency itself
// (src/planner/strategies/drain/drain-schedule.ts) within the policy's per-host limit; the fixed settings
// are what operators set by hand: the same moves, every one at the same concurrency, each step predicted
// (and so watched by the predictive watchdog) at that concurrency.
import type { Plan, Step } from '../../src/domain/plan.js';
import type { Policy } from '../../src/domain/policy.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { predictVmMigration } from '../../src/planner/index.js';

/** The policy with `concurrency` migrations per host (and at least as many in the cluster). */
export function withConcurrency(policy: Policy, concurrency: number): Policy {
  return {
    ...policy,
    limits: {
      ...policy.limits,
      perHostConcurrency: concurrency,
      perClusterConcurrency: Math.max(policy.limits.perClusterConcurrency, concurrency),
    },
  };
}

/** drover's moves run at a fixed concurrency: no per-step concurrency, predictions at the shared link. */
export function fixedPlan(plan: Plan, snapshot: Snapshot, policy: Policy, concurrency: number): Plan {
  const vms = new Map(snapshot.vms.map((v) => [v.id, v]));
  const link = new Map(
    snapshot.hosts.map((h) => [h.id, h.bandwidthMiBps ?? policy.migration.defaultBandwidthMiBps]),
  );
  const bw = (id: string): number => link.get(id) ?? policy.migration.defaultBandwidthMiBps;
  const steps = plan.steps.map((s): Step => {
    const { concurrency: _own, ...rest } = s;
    const vm = vms.get(s.vm);
    if (!vm) return rest;
    const f = predictVmMigration(
      vm,
      { bandwidthMiBps: Math.min(bw(s.from), bw(s.to)), concurrency },
      policy,
      { kind: s.kind, downtimeBudgetMs: s.downtimeBudgetMs ?? policy.vms.defaultDowntimeBudgetMs },
    );
    return { ...rest, predicted: f.prediction };
  });
  return { ...plan, steps };
}

/** "12 x1, 8 x4": how many steps run at each concurrency. */
export function concurrencyMix(plan: Plan): string {
  const counts = new Map<number, number>();
  for (const s of plan.steps) counts.set(s.concurrency ?? 0, (counts.get(s.concurrency ?? 0) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([c, n]) => `${n} x${c === 0 ? '?' : c}`)
    .join(', ');
}
