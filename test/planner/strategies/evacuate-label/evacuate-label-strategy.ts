// A strategy written the way a new one is added to drover (one folder, one registry line), used by
// test/planner/strategy-registry.test.ts: it empties every host carrying a label value, each VM to the host
// with the most free memory. It leans on the scope for where VMs may go: the hosts it empties are not
// receivable in the model, so it needs no check of its own.
import { z } from 'zod';
import type { Skip, Step } from '../../../../src/domain/plan.js';
import type { Host } from '../../../../src/domain/snapshot.js';
import { nonEmptyString } from '../../../../src/domain/validation.js';
import {
  defineStrategy,
  makeStep,
  type StrategyContext,
  type StrategyResult,
} from '../../../../src/planner/strategies/strategy.js';

export const EvacuateLabelArgsSchema = z.strictObject({
  /** The host label to match, and its value. */
  label: nonEmptyString().default('rack'),
  value: nonEmptyString(),
});
export type EvacuateLabelArgs = z.output<typeof EvacuateLabelArgsSchema>;

const matching = (hosts: readonly Host[], args: EvacuateLabelArgs): string[] =>
  hosts.filter((h) => h.labels?.[args.label] === args.value).map((h) => h.id);

function planEvacuate(ctx: StrategyContext, args: EvacuateLabelArgs): StrategyResult {
  const m = ctx.model;
  const steps: Step[] = [];
  const skipped: Skip[] = [];
  for (const id of matching(m.hosts, args)) {
    const h = m.hostIndex.get(id) ?? -1;
    for (const v of [...(m.hostVms[h] ?? [])]) {
      let best = -1;
      for (let t = 0; t < m.hostCount; t += 1) {
        if (!m.receivable[t] || !m.fits(v, t) || m.placementProblem(v, t) !== null) continue;
        if (best < 0 || m.memPct(t) < m.memPct(best)) best = t;
      }
      if (best < 0) {
        skipped.push({ vm: m.vms[v]?.id ?? '', why: 'no host outside the label has room' });
        continue;
      }
      steps.push(makeStep(m, v, best, `${id} has ${args.label}=${args.value}`));
      m.move(v, best);
    }
  }
  return { steps, skipped, note: `evacuates ${args.label}=${args.value}` };
}

export const evacuateLabelStrategy = defineStrategy<EvacuateLabelArgs>({
  name: 'evacuate-label',
  reason: 'rebalance',
  description: 'empty every host with a label value',
  argsSchema: EvacuateLabelArgsSchema,
  holdTimeS: 300,
  scope: (snapshot, args) => ({ emptying: matching(snapshot.hosts, args) }),
  plan: planEvacuate,
});
