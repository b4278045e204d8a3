// The planner's entry points: Snapshot + Policy (+ history, the time) -> Plan. Pure: no I/O, no clock.
import type { VmHistory } from '../domain/history.js';
import type { Plan, PlanHold, PlanReason, Step } from '../domain/plan.js';
import type { Policy } from '../domain/policy.js';
import type { Snapshot } from '../domain/snapshot.js';
import { ClusterModel } from './constraints/cluster-model.js';
import { argsOf, holdTimeOf } from './policy-strategies.js';
import { STRATEGIES, type StrategyRegistry } from './strategies/registry.js';
import type { Strategy } from './strategies/strategy.js';
import { DroverError } from '../domain/errors.js';

export interface PlanOptions {
  /** When the plan is made (epoch ms or Date). */
  now: number | Date;
  /** Per-VM migration history, by VM id. */
  history?: ReadonlyMap<string, VmHistory> | undefined;
  /** Plan id; derived from the time and reason when absent. */
  id?: string | undefined;
  /**
   * Epoch ms of the last executed plan of this strategy. Within the strategy's hold time after it the plan
   * is empty (held), unless `overrideHold` says who plans anyway.
   */
  lastExecutedAtMs?: number | null | undefined;
  /** Who plans inside the hold time anyway (a manual request); recorded in `plan.hold.overriddenBy`. */
  overrideHold?: string | undefined;
}

export interface StrategyPlanOptions extends PlanOptions {
  /** Strategy arguments (validated by the strategy's schema), over the policy's `strategies.<name>.args`. */
  args?: unknown;
  /** Where a strategy named by a string is looked up; default: drover's own strategies. */
  registry?: StrategyRegistry | undefined;
}

const toMs = (t: number | Date): number => (typeof t === 'number' ? t : t.getTime());

/** Expected wall time of the steps under the policy's per-host and per-cluster concurrency. */
export function estimateEtaS(steps: readonly Step[], policy: Policy): number {
  const perHost = policy.limits.perHostConcurrency;
  const cluster = policy.limits.perClusterConcurrency;
  // Each slot of each host is a "free at" time; a step starts when its source, destination and the cluster
  // all have a free slot.
  const hostSlots = new Map<string, number[]>();
  const slotsOf = (h: string): number[] => {
    let s = hostSlots.get(h);
    if (!s) {
      s = new Array<number>(perHost).fill(0);
      hostSlots.set(h, s);
    }
    return s;
  };
  const clusterSlots = new Array<number>(cluster).fill(0);
  const earliest = (slots: number[]): number => {
    let i = 0;
    for (let k = 1; k < slots.length; k += 1) if ((slots[k] ?? 0) < (slots[i] ?? 0)) i = k;
    return i;
  };
  let end = 0;
  for (const s of steps) {
    const a = slotsOf(s.from);
    const b = slotsOf(s.to);
    const ia = earliest(a);
    const ib = earliest(b);
    const ic = earliest(clusterSlots);
    const start = Math.max(a[ia] ?? 0, b[ib] ?? 0, clusterSlots[ic] ?? 0);
    const finish = start + s.predicted.durationS;
    a[ia] = finish;
    b[ib] = finish;
    clusterSlots[ic] = finish;
    end = Math.max(end, finish);
  }
  return Math.round(end * 10) / 10;
}

/** The hold in force for a strategy now, if any. */
function holdAt(policy: Policy, strategy: Strategy, nowMs: number, opts: PlanOptions): PlanHold | null {
  const last = opts.lastExecutedAtMs;
  if (last === null || last === undefined) return null;
  const { holdTimeS } = holdTimeOf(policy, strategy);
  const untilMs = last + holdTimeS * 1000;
  if (nowMs >= untilMs) return null;
  const hold: PlanHold = {
    lastExecutedAt: new Date(last).toISOString(),
    holdTimeS,
    until: new Date(untilMs).toISOString(),
  };
  if (opts.overrideHold !== undefined) hold.overriddenBy = opts.overrideHold;
  return hold;
}

/**
 * Runs any strategy (a registered one by name, or a Strategy object such as a benchmark baseline): its
 * arguments are the policy's `strategies.<name>.args` with the request's over them, its scope says which
 * hosts it empties, and its hold time (from the last executed plan of it) may keep the plan empty.
 */
export function planWith(
  strategy: string | Strategy,
  snapshot: Snapshot,
  policy: Policy,
  opts: StrategyPlanOptions,
): Plan {
  const registry = opts.registry ?? STRATEGIES;
  const s = typeof strategy === 'string' ? registry.get(strategy) : strategy;
  if (!s)
    throw new DroverError(
      'unknown_strategy',
      `unknown strategy ${JSON.stringify(strategy)} (there are ${registry.names().join(', ')})`,
    );
  const bound = s.withArgs(argsOf(policy, s, opts.args), `strategy ${s.name}`);
  const nowMs = toMs(opts.now);
  const scope = bound.scope(snapshot);
  const draining = scope.emptying.length > 0 ? new Set(scope.emptying) : undefined;
  const model = new ClusterModel(snapshot, policy, { nowMs, history: opts.history, draining });
  const before = model.spread();
  const hold = holdAt(policy, s, nowMs, opts);
  const result =
    hold && hold.overriddenBy === undefined
      ? {
          steps: [],
          skipped: [],
          note:
            `holding: the last ${s.name} plan was executed at ${hold.lastExecutedAt}; hold time ` +
            `${hold.holdTimeS} s (${holdTimeOf(policy, s).from}), until ${hold.until}`,
        }
      : bound.plan({ model, nowMs });
  const createdAt = new Date(nowMs).toISOString();
  const plan: Plan = {
    id: opts.id ?? planId(s.reason, nowMs),
    reason: s.reason,
    strategy: s.name,
    createdAt,
    steps: result.steps,
    skipped: result.skipped,
    before,
    // Strategies may have tried moves they then dropped; with no steps nothing changes.
    after: result.steps.length > 0 ? model.spread() : before,
    snapshotTakenAt: snapshot.takenAt,
  };
  if (result.note !== undefined) plan.note = result.note;
  if (hold) plan.hold = hold;
  if (result.steps.length > 0) {
    plan.etaS = result.etaS ?? estimateEtaS(result.steps, policy);
    const mib = result.steps.reduce((n, st) => n + st.predicted.transferMiB, 0);
    plan.transferGiB = Math.round((mib / 1024) * 100) / 100;
  }
  return plan;
}

function planId(reason: PlanReason, nowMs: number): string {
  return `${reason}-${new Date(nowMs).toISOString().replace(/[-:.]/g, '').replace('T', '-').slice(0, 22)}`;
}

/** A rebalance with the `balance` strategy. */
export function planRebalance(
  snapshot: Snapshot,
  policy: Policy,
  opts: PlanOptions & { maxMoves?: number | undefined },
): Plan {
  return planWith('balance', snapshot, policy, {
    ...opts,
    args: opts.maxMoves !== undefined ? { maxMoves: opts.maxMoves } : {},
  });
}

/** Drains the named hosts (or, with none named, every host in maintenance). */
export function planDrain(
  snapshot: Snapshot,
  policy: Policy,
  hosts: readonly string[] | undefined,
  opts: PlanOptions & { allowPartial?: boolean | undefined },
): Plan {
  const args: { hosts?: string[]; allowPartial?: boolean } = {};
  if (hosts && hosts.length > 0) args.hosts = [...hosts];
  if (opts.allowPartial !== undefined) args.allowPartial = opts.allowPartial;
  return planWith('drain', snapshot, policy, { ...opts, args });
}

/**
 * What the daemon and `drover plan` call: a drain when hosts are named or some host in maintenance still
 * holds VMs, else a rebalance.
 */
export function makePlan(
  snapshot: Snapshot,
  policy: Policy,
  opts: PlanOptions & { drain?: readonly string[] | undefined },
): Plan {
  if (opts.drain && opts.drain.length > 0) return planDrain(snapshot, policy, opts.drain, opts);
  const inMaintenance = new Set(snapshot.hosts.filter((h) => h.state === 'maintenance').map((h) => h.id));
  if (snapshot.vms.some((v) => inMaintenance.has(v.host)))
    return planDrain(snapshot, policy, undefined, opts);
  return planRebalance(snapshot, policy, opts);
}
