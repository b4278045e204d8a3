// The strategies drover offers, by name. A new strategy is a folder beside these plus one line in the list.
import type { Strategy } from './strategy.js';
import { balanceStrategy } from './balance/balance-strategy.js';
import { consolidateStrategy } from './consolidate/consolidate-strategy.js';
import { drainStrategy } from './drain/drain-strategy.js';

/** Strategies by name. */
export class StrategyRegistry {
  private readonly byName = new Map<string, Strategy>();

  constructor(strategies: readonly Strategy[]) {
    for (const s of strategies) {
      if (this.byName.has(s.name)) throw new Error(`strategy ${s.name} registered twice`);
      this.byName.set(s.name, s);
    }
  }

  get(name: string): Strategy | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  all(): Strategy[] {
    return [...this.byName.values()];
  }

  /** This registry plus more strategies (a name already registered is an error). */
  with(...more: readonly Strategy[]): StrategyRegistry {
    return new StrategyRegistry([...this.all(), ...more]);
  }
}

export const STRATEGIES = new StrategyRegistry([balanceStrategy, drainStrategy, consolidateStrategy]);
