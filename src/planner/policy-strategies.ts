// The policy's `strategies` section, read against a strategy registry: every name must be a registered
// strategy and its args must pass that strategy's schema. Errors name the field (strategies.<name>.args.<field>).
import { ValidationError, type InputIssue } from '../domain/errors.js';
import type { Policy } from '../domain/policy.js';
import { show } from '../domain/validation.js';
import { STRATEGIES, type StrategyRegistry } from './strategies/registry.js';
import type { Strategy } from './strategies/strategy.js';

/** Checks `policy.strategies` against the registry; throws a ValidationError listing every issue. */
export function checkPolicyStrategies(
  policy: Policy,
  source = '',
  registry: StrategyRegistry = STRATEGIES,
): void {
  const issues: InputIssue[] = [];
  for (const [name, settings] of Object.entries(policy.strategies)) {
    const strategy = registry.get(name);
    if (!strategy) {
      issues.push({
        path: `strategies.${name}`,
        message: `no strategy ${show(name)} (there are ${registry.names().join(', ')})`,
      });
      continue;
    }
    if (settings.args === undefined) continue;
    try {
      strategy.checkArgs(settings.args, '');
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      for (const issue of err.issues)
        issues.push({
          path: `strategies.${name}.args${issue.path ? `.${issue.path}` : ''}`,
          message: issue.message,
        });
    }
  }
  if (issues.length > 0) throw new ValidationError(source, issues);
}

/** The hold time (s) that applies to a strategy under a policy, and where it comes from. */
export function holdTimeOf(policy: Policy, strategy: Strategy): { holdTimeS: number; from: string } {
  const set = policy.strategies[strategy.name]?.holdTimeS;
  return set !== undefined
    ? { holdTimeS: set, from: `strategies.${strategy.name}.holdTimeS` }
    : { holdTimeS: strategy.holdTimeS, from: `the ${strategy.name} strategy's default` };
}

/** The arguments a strategy runs with: the policy's `strategies.<name>.args`, then the request's, field by field. */
export function argsOf(policy: Policy, strategy: Strategy, requested: unknown): unknown {
  const fromPolicy = policy.strategies[strategy.name]?.args;
  if (fromPolicy === undefined) return requested ?? {};
  if (requested === undefined || requested === null) return fromPolicy;
  if (typeof requested !== 'object' || Array.isArray(requested)) return requested;
  return { ...fromPolicy, ...requested };
}
