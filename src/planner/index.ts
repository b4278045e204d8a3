// The planner's public surface.
export { estimateEtaS, makePlan, planDrain, planRebalance, planWith, type PlanOptions } from './make-plan.js';
export { loadPolicy, parsePolicyText } from './load-policy.js';
export { STRATEGIES } from './strategies/registry.js';
export type { Strategy, StrategyContext, StrategyResult } from './strategies/strategy.js';
export * from './predictor/index.js';
