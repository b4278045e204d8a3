// The planner's per-step watchdog forecast (deadline, stall window) for each live or block step of a plan,
// from the VM as the latest snapshot knows it, the step's link and its concurrency. The executor's
// `predictive` watchdog profile uses it instead of deriving a deadline from the predicted duration alone.
import type { VmHistory } from '../domain/history.js';
import type { Plan } from '../domain/plan.js';
import type { Policy } from '../domain/policy.js';
import type { Snapshot } from '../domain/snapshot.js';
import type { PredictiveForecast } from '../executor/watchdog-schedule.js';
import { predictiveWatchdogPlan, SwitchoverBook } from '../planner/index.js';

/** Forecasts by VM id; steps whose VM the snapshot does not know, offline steps and VMs predicted not to finish get none. */
export function stepForecasts(
  plan: Plan,
  snapshot: Snapshot | null,
  policy: Policy,
  history?: ReadonlyMap<string, VmHistory>,
): Record<string, PredictiveForecast> {
  const out: Record<string, PredictiveForecast> = {};
  if (!snapshot) return out;
  const vms = new Map(snapshot.vms.map((v) => [v.id, v]));
  const links = new Map(
    snapshot.hosts.map((h) => [h.id, h.bandwidthMiBps ?? policy.migration.defaultBandwidthMiBps]),
  );
  const fallback = policy.migration.defaultBandwidthMiBps;
  const switchovers = new SwitchoverBook(history?.values() ?? [], policy.migration.switchoverOverheadMs);
  for (const step of plan.steps) {
    if (step.kind === 'offline') continue;
    const vm = vms.get(step.vm);
    if (!vm) continue;
    const wp = predictiveWatchdogPlan(
      vm,
      {
        bandwidthMiBps: Math.min(links.get(step.from) ?? fallback, links.get(step.to) ?? fallback),
        concurrency: step.concurrency ?? policy.limits.perHostConcurrency,
      },
      policy,
      {
        kind: step.kind,
        downtimeBudgetMs: step.downtimeBudgetMs ?? policy.vms.defaultDowntimeBudgetMs,
        history: history?.get(step.vm),
        switchover: switchovers.cost(step.vm, step.from, step.to),
      },
    );
    if (wp.converges)
      out[step.vm] = {
        deadlineS: wp.deadlineS,
        stallWindowS: wp.stallWindowS,
        expectedDurationS: Math.round(wp.expectedDurationS * 10) / 10,
      };
  }
  return out;
}
