// What the service asks the planner for a scheduled or requested rebalance (any registered strategy), in a
// form that crosses to the planner thread; planned the same way on either side.
import type { VmHistory } from '../domain/history.js';
import type { Plan } from '../domain/plan.js';
import type { Policy } from '../domain/policy.js';
import type { Snapshot } from '../domain/snapshot.js';
import { planWith } from '../planner/index.js';

export interface RebalanceInput {
  /** The registered strategy to plan with; default balance. */
  strategy?: string | undefined;
  snapshot: Snapshot;
  policy: Policy;
  now: number;
  history: ReadonlyMap<string, VmHistory> | undefined;
  /** The last executed plan of the strategy (epoch ms), for its hold time. */
  lastExecutedAtMs?: number | null | undefined;
  /** Who plans inside the hold time anyway. */
  overrideHold?: string | undefined;
}

/** Plans a RebalanceInput in this thread. */
export function planInput(input: RebalanceInput): Plan {
  return planWith(input.strategy ?? 'balance', input.snapshot, input.policy, {
    now: input.now,
    history: input.history,
    lastExecutedAtMs: input.lastExecutedAtMs,
    overrideHold: input.overrideHold,
  });
}
