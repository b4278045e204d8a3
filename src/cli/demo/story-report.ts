// What the demos print about a plan once it ran: VM names instead of ids, and one summary row per step.
import type { Plan } from '../../domain/plan.js';
import type { MigrationView } from '../../service/operations.js';
import { duration, paint } from '../output.js';

/** The first clause of a reason (libvirt's full error text is in the log and the API). */
export function brief(reason: string, state = ''): string {
  const text = state !== '' && reason.startsWith(`${state}: `) ? reason.slice(state.length + 2) : reason;
  const cut = text.indexOf(' (');
  return cut > 0 ? text.slice(0, cut) : text;
}

/** The plan with VM names in place of ids, for printing. */
export function withNames(plan: Plan, names: Map<string, string>): Plan {
  const label = (id: string) => names.get(id) ?? id;
  return {
    ...plan,
    steps: plan.steps.map((s) => ({ ...s, vm: label(s.vm) })),
    skipped: plan.skipped.map((s) => ({ ...s, vm: label(s.vm) })),
  };
}

/** One row per step (VM, move, kind, result, time, downtime, budget, within budget), then the skipped VMs. */
export function summaryRows(
  plan: Plan,
  migrations: readonly MigrationView[],
  names: Map<string, string>,
): string[][] {
  const rows = plan.steps.map((step) => {
    const m = migrations.find((x) => x.vm === step.vm);
    const downtime = m?.downtimeMs ?? null;
    const budget = m?.downtimeBudgetMs ?? step.downtimeBudgetMs ?? null;
    const state = m?.state ?? 'not run';
    return [
      names.get(step.vm) ?? step.vm,
      `${step.from} -> ${step.to}`,
      step.kind,
      state === 'completed'
        ? paint(state, 'green')
        : paint(`${state}${m?.reason ? `: ${brief(m.reason, state)}` : ''}`, 'red'),
      duration(m?.elapsedS ?? null),
      downtime === null ? '-' : `${Math.round(downtime)} ms`,
      budget === null ? '-' : `${Math.round(budget)} ms`,
      downtime !== null && budget !== null ? (downtime <= budget ? 'yes' : paint('no', 'red')) : '-',
    ];
  });
  for (const s of plan.skipped)
    rows.push([names.get(s.vm) ?? s.vm, '-', '-', paint('skipped by planner', 'yellow'), '-', '-', '-', '-']);
  return rows;
}
