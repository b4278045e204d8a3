// What every strategy is: a name, a zod schema for its arguments, the hosts it works on, and a pure plan()
// over the cluster model. A strategy is written as a StrategyDefinition<Args> and sealed by defineStrategy():
// the registry holds Strategy values whose argument type stays inside them, so nothing is cast.
import type { z } from 'zod';
import type { PlanReason, Skip, Step } from '../../domain/plan.js';
import type { Snapshot } from '../../domain/snapshot.js';
import { parseWith } from '../../domain/validation.js';
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
  nowMs: number;
}

/** Which hosts a strategy works on. */
export interface StrategyScope {
  /**
   * Hosts the plan empties: they take no VM, whatever their state says, and do not count in the spread.
   * Every other host the snapshot holds may give and take VMs as its state and the policy allow.
   */
  emptying: readonly string[];
}

/** What a strategy's author writes (one folder under src/planner/strategies/). */
export interface StrategyDefinition<Args> {
  readonly name: string;
  readonly reason: PlanReason;
  readonly description: string;
  /** Its arguments: what a request and the policy's `strategies.<name>.args` may give. */
  readonly argsSchema: z.ZodType<Args>;
  /**
   * Seconds after an executed plan of this strategy before the daemon's schedule plans with it again (no
   * ping-pong); `strategies.<name>.holdTimeS` in the policy wins. 0: no hold.
   */
  readonly holdTimeS: number;
  /** The hosts it works on for these arguments; without it, every host (none emptied). */
  scope?(snapshot: Snapshot, args: Args): StrategyScope;
  plan(ctx: StrategyContext, args: Args): StrategyResult;
}

/** A strategy with its arguments bound (validated). */
export interface BoundStrategy {
  scope(snapshot: Snapshot): StrategyScope;
  plan(ctx: StrategyContext): StrategyResult;
}

/** A registered strategy; its argument type is sealed inside withArgs. */
export interface Strategy {
  readonly name: string;
  readonly reason: PlanReason;
  readonly description: string;
  readonly holdTimeS: number;
  /** Validates arguments (each error names its field, after `source`), throwing a ValidationError. */
  checkArgs(args: unknown, source: string): void;
  /** Validates arguments as checkArgs does and binds them. */
  withArgs(args: unknown, source: string): BoundStrategy;
}

const EVERY_HOST: StrategyScope = { emptying: [] };

/** Seals a strategy definition: its arguments are parsed by its own schema before its plan() sees them. */
export function defineStrategy<Args>(def: StrategyDefinition<Args>): Strategy {
  const parse = (args: unknown, source: string): Args => parseWith(def.argsSchema, args ?? {}, source);
  return {
    name: def.name,
    reason: def.reason,
    description: def.description,
    holdTimeS: def.holdTimeS,
    checkArgs(args, source) {
      parse(args, source);
    },
    withArgs(raw, source) {
      const args = parse(raw, source);
      return {
        scope: (snapshot) => (def.scope ? def.scope(snapshot, args) : EVERY_HOST),
        plan: (ctx) => def.plan(ctx, args),
      };
    },
  };
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
