// How many migrations at once a drain should run: drover plans the drain at each concurrency from 1 to a
// maximum (the predictor shares the drained host's link among that many migrations), estimates each plan's
// wall time with the planner's own ETA, and keeps the fastest plan in which every VM is predicted to finish.
// Higher concurrency overlaps the fixed per-migration costs; lower concurrency gives each migration more of
// the link, so hot VMs resend less and still converge. Ties go to the lower concurrency.
import type { Plan } from '../../src/domain/plan.js';
import type { Policy } from '../../src/domain/policy.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { estimateEtaS, planDrain } from '../../src/planner/index.js';

export interface ConcurrencyCandidate {
  concurrency: number;
  etaS: number | null;
  /** Steps predicted not to finish at this concurrency (null when the plan has no steps). */
  notConverging: number;
  steps: number;
}

export interface DrainChoice {
  concurrency: number;
  plan: Plan;
  policy: Policy;
  candidates: ConcurrencyCandidate[];
}

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

export function chooseDrainConcurrency(
  snapshot: Snapshot,
  policy: Policy,
  hostId: string,
  nowMs: number,
  maxConcurrency = 8,
): DrainChoice {
  const candidates: ConcurrencyCandidate[] = [];
  let best: { c: number; eta: number; plan: Plan; policy: Policy } | null = null;
  for (let c = 1; c <= maxConcurrency; c += 1) {
    const p = withConcurrency(policy, c);
    const plan = planDrain(snapshot, p, [hostId], { now: nowMs });
    const notConverging = plan.steps.filter((s) => !s.predicted.converges).length;
    const ok = plan.steps.length > 0 && notConverging === 0;
    const eta = ok ? estimateEtaS(plan.steps, p) : null;
    candidates.push({ concurrency: c, etaS: eta, notConverging, steps: plan.steps.length });
    if (eta !== null && (best === null || eta < best.eta - 1e-9)) best = { c, eta, plan, policy: p };
  }
  if (best === null) {
    // Nothing converges at any concurrency: one at a time is the safest, and the plan says why.
    const p = withConcurrency(policy, 1);
    return {
      concurrency: 1,
      plan: planDrain(snapshot, p, [hostId], { now: nowMs, allowPartial: true }),
      policy: p,
      candidates,
    };
  }
  return { concurrency: best.c, plan: best.plan, policy: best.policy, candidates };
}
