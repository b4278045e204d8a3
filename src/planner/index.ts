// The planner's public surface.
export {
  estimateEtaS,
  makePlan,
  planDrain,
  planRebalance,
  planWith,
  type PlanOptions,
  type StrategyPlanOptions,
} from './make-plan.js';
export { loadPolicy, parsePolicyText } from './load-policy.js';
export { checkPolicyStrategies, holdTimeOf } from './policy-strategies.js';
export { STRATEGIES, StrategyRegistry } from './strategies/registry.js';
export { defineStrategy } from './strategies/strategy.js';
export type {
  Strategy,
  StrategyContext,
  StrategyDefinition,
  StrategyResult,
  StrategyScope,
} from './strategies/strategy.js';
export * from './predictor/index.js';
