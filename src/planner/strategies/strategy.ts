// What every strategy is: a name, a zod schema for its arguments, and a pure plan() over the cluster model.
import type { z } from 'zod';
import type { PlanReason, Skip, Step } from '../../domain/plan.js';
import type { ClusterModel } from '../constraints/cluster-model.js';

export interface StrategyResult {
  steps: Step[];
  skipped: Skip[];
  /** Why nothing (or less than asked) was done. */
  note?: string;
  /** The strategy's own estimate of the plan's wall time, when it schedules its steps itself (drain). */
  etaS?: number;
}

export interface StrategyContext {
  model: ClusterModel;
  /** Epoch ms of the previous rebalance, for the hold time. */
  lastRebalanceAtMs?: number | null | undefined;
  nowMs: number;
}

export interface Strategy<A = unknown> {
  readonly name: string;
  readonly reason: PlanReason;
  readonly description: string;
  readonly argsSchema: z.ZodType<A>;
  plan(ctx: StrategyContext, args: A): StrategyResult;
}

/** A step for VM v from its current host to `to`, with the model's prediction; does not apply it. */
export function makeStep(model: ClusterModel, v: number, to: number, why: string): Step {
  const vm = model.vms[v];
  const from = model.vmHost[v] ?? 0;
  const f = model.forecast(v, to);
  return {
    vm: vm?.id ?? '',
    from: model.hosts[from]?.id ?? '',
    to: model.hosts[to]?.id ?? '',
    kind: model.kindOf(v),
    why,
    predicted: f.prediction,
    downtimeBudgetMs: model.downtimeBudgetMs(v),
  };
}

export const pct = (n: number): string => `${Math.round(n)}%`;
