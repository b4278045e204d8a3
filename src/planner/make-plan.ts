// The planner's entry points: Snapshot + Policy (+ history, the time) -> Plan. Pure: no I/O, no clock.
import type { VmHistory } from '../domain/history.js';
import type { Plan, PlanReason, Step } from '../domain/plan.js';
import type { Policy } from '../domain/policy.js';
import type { Snapshot } from '../domain/snapshot.js';
import { parseWith } from '../domain/validation.js';
import { ClusterModel } from './constraints/cluster-model.js';
import { STRATEGIES } from './strategies/registry.js';
import type { Strategy } from './strategies/strategy.js';
import { DrainArgsSchema } from './strategies/drain/drain-args.js';
import { DroverError } from '../domain/errors.js';
import type { z } from 'zod';

export interface PlanOptions {
  /** When the plan is made (epoch ms or Date). */
  now: number | Date;
  /** Per-VM migration history, by VM id. */
  history?: ReadonlyMap<string, VmHistory> | undefined;
  /** Plan id; derived from the time and reason when absent. */
  id?: string | undefined;
  /** Epoch ms of the previous rebalance (hold time). */
  lastRebalanceAtMs?: number | null | undefined;
}

export interface StrategyPlanOptions extends PlanOptions {
  /** Strategy arguments (validated by the strategy's schema). */
  args?: unknown;
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

/** Runs any strategy (a registered one by name, or a Strategy object such as a benchmark baseline). */
export function planWith(
  strategy: string | Strategy<never>,
  snapshot: Snapshot,
  policy: Policy,
  opts: StrategyPlanOptions,
): Plan {
  const s = typeof strategy === 'string' ? STRATEGIES[strategy] : strategy;
  if (!s) throw new DroverError('unknown_strategy', `unknown strategy ${JSON.stringify(strategy)}`);
  const schema: z.ZodType = s.argsSchema;
  const args = parseWith(schema, opts.args ?? {}, `strategy ${s.name}`) as never;
  const nowMs = toMs(opts.now);
  let draining: Set<string> | undefined;
  if (s.reason === 'drain') {
    const drainArgs = parseWith(DrainArgsSchema, opts.args ?? {}, `strategy ${s.name}`);
    const ids = drainArgs.hosts ?? snapshot.hosts.filter((h) => h.state === 'maintenance').map((h) => h.id);
    draining = new Set(ids);
  }
  const model = new ClusterModel(snapshot, policy, { nowMs, history: opts.history, draining });
  const before = model.spread();
  const result = s.plan({ model, nowMs, lastRebalanceAtMs: opts.lastRebalanceAtMs }, args);
  const createdAt = new Date(nowMs).toISOString();
  const plan: Plan = {
    id: opts.id ?? planId(s.reason, nowMs),
    reason: s.reason,
    createdAt,
    steps: result.steps,
    skipped: result.skipped,
    before,
    // Strategies may have tried moves they then dropped; with no steps nothing changes.
    after: result.steps.length > 0 ? model.spread() : before,
    snapshotTakenAt: snapshot.takenAt,
  };
  if (result.note !== undefined) plan.note = result.note;
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
