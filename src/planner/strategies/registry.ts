// The strategies drover offers, by name. A new strategy is a folder beside these plus one line here.
import type { Strategy } from './strategy.js';
import { balanceStrategy } from './balance/balance-strategy.js';
import { consolidateStrategy } from './consolidate/consolidate-strategy.js';
import { drainStrategy } from './drain/drain-strategy.js';

export const STRATEGIES: Readonly<Record<string, Strategy<never>>> = {
  balance: balanceStrategy as Strategy<never>,
  drain: drainStrategy as Strategy<never>,
  consolidate: consolidateStrategy as Strategy<never>,
};
