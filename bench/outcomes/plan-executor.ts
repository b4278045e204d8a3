// Runs a Plan on the simulator the way drover's executor does, without BullMQ: each step goes through the
// real MigrationRunner and Watchdog, at most `limits` migrations at once per host (outbound, inbound) and in
// the cluster, each capped at its share of the links (the executor's bandwidthShareMiBps) among the migrations
// that send (one still in its set-up takes no share, as the executor's slot store counts). Everything runs on
// the simulator's VirtualClock, so an hour of migrations takes a moment. The queue and Redis slot store are
// what this leaves out; they change when a job starts, not how a migration goes.
import { StepSkipped } from '../../src/domain/errors.js';
import type { Plan, Step } from '../../src/domain/plan.js';
import type { ExecutionPolicy, ExecutorOptions } from '../../src/executor/executor-options.js';
import { parseExecutorOptions } from '../../src/executor/executor-options.js';
import { MigrationRunner, type MigrationReport } from '../../src/executor/migration-runner.js';
import type { PredictiveForecast } from '../../src/executor/watchdog-schedule.js';
import { bandwidthShareMiBps } from '../../src/executor/slot-store.js';
import { HELD_MIBPS, handOverAtMs, takesOverAhead } from '../../src/executor/hand-over.js';
import type { SimHypervisor, VirtualClock } from '../../src/hypervisor/sim/index.js';

export interface ConcurrencyLimits {
  perHostOutbound: number;
  perHostInbound: number;
  cluster: number;
}

export interface StepResult {
  step: Step;
  /** `skipped`: the runner found the world changed; `refused`: it could not start. */
  outcome: MigrationReport['outcome'] | 'skipped' | 'refused';
  report: MigrationReport | null;
  startedAtMs: number | null;
  endedAtMs: number;
  error: string | null;
}

export interface ExecutionResult {
  steps: StepResult[];
  startedAtMs: number;
  endedAtMs: number;
  /** Most migrations that ran at once. */
  peakConcurrency: number;
}

export interface ExecuteOptions {
  policy: ExecutionPolicy;
  limits: ConcurrencyLimits;
  /** Predictive-profile forecasts by VM id. */
  forecasts?: Readonly<Record<string, PredictiveForecast>>;
  executorOptions?: ExecutorOptions;
}

/** Executes the plan's steps in order (a step waits until its hosts and the cluster have a free slot). */
export async function executePlan(
  hv: SimHypervisor,
  clock: VirtualClock,
  plan: Plan,
  opts: ExecuteOptions,
): Promise<ExecutionResult> {
  const runner = new MigrationRunner({
    hypervisor: hv,
    options: opts.executorOptions ?? parseExecutorOptions({}),
  });
  const links = new Map((await hv.listHosts()).map((h) => [h.id, h.bandwidthMiBps]));
  const outbound = new Map<string, number>();
  const inbound = new Map<string, number>();
  let running = 0;
  let peak = 0;
  const startedAtMs = clock.now();
  const pending = [...plan.steps];
  const results: StepResult[] = [];
  let wake: (() => void) | null = null;
  const inFlight = new Set<Promise<void>>();

  // Outbound limits of the steps running from each host (a step's own limit, Step.concurrency, binds both
  // ways, as in the executor's slot store).
  const runningLimits = new Map<string, number[]>();
  const ownLimit = (s: Step): number => Math.min(opts.limits.perHostOutbound, s.concurrency ?? Infinity);
  // `gone`: a running step whose slots the step may take over (see handing over below).
  const fits = (s: Step, gone?: Step): boolean => {
    const out = (outbound.get(s.from) ?? 0) - (gone?.from === s.from ? 1 : 0);
    const others = [...(runningLimits.get(s.from) ?? [])];
    if (gone?.from === s.from) others.splice(others.indexOf(ownLimit(gone)), 1);
    return (
      running - (gone ? 1 : 0) < opts.limits.cluster &&
      out < ownLimit(s) &&
      others.every((l) => out + 1 <= l) &&
      (inbound.get(s.to) ?? 0) - (gone?.to === s.to ? 1 : 0) < opts.limits.perHostInbound
    );
  };
  // Handing over ahead, as the executor's slot store: a migration predicted to end within a set-up's time
  // lets the next step take its slots now, so that step's set-up overlaps its end; the newcomer is held to
  // a trickle (and counts for no one's share) until the one it follows has ended.
  const leaders = new Map<string, { step: Step; readyAtMs: number; follower: string | null }>();
  const heldBy = new Map<string, string>();
  const setupS = opts.policy.setupS;
  const lead = (step: Step, setupFromMs: number): void => {
    const at = handOverAtMs(step, setupFromMs, setupS);
    if (at !== null) leaders.set(step.vm, { step, readyAtMs: at, follower: null });
  };
  const linkOf = (s: Step): number | null => {
    const known = [links.get(s.from) ?? null, links.get(s.to) ?? null].filter((l) => l !== null);
    return known.length === 0 ? null : Math.min(...known);
  };
  const leaderFor = (s: Step): { step: Step; follower: string | null } | undefined => {
    if (!takesOverAhead(s, linkOf(s))) return undefined;
    for (const l of leaders.values())
      if (l.follower === null && l.readyAtMs <= clock.now() && fits(s, l.step)) return l;
    return undefined;
  };
  const listeners = new Map<string, Set<() => void>>();
  const runningOn = new Map<string, Step>();
  const notify = (hosts: readonly string[]): void => {
    for (const [vm, st] of runningOn)
      if (hosts.includes(st.from) || hosts.includes(st.to)) for (const l of listeners.get(vm) ?? []) l();
  };
  const bump = (s: Step, by: number): void => {
    outbound.set(s.from, (outbound.get(s.from) ?? 0) + by);
    inbound.set(s.to, (inbound.get(s.to) ?? 0) + by);
    running += by;
    const list = runningLimits.get(s.from) ?? [];
    if (by > 0) list.push(ownLimit(s));
    else list.splice(list.indexOf(ownLimit(s)), 1);
    runningLimits.set(s.from, list);
  };

  // Migrations past their set-up, by host they leave and host they enter: only these take a share of a link
  // (as the executor's slot store counts them).
  const sendingFrom = new Map<string, Set<string>>();
  const sendingTo = new Map<string, Set<string>>();
  const peers = (m: Map<string, Set<string>>, host: string, vm: string): number => {
    const set = m.get(host);
    if (set === undefined) return 0;
    let n = 0;
    for (const o of set) if (o !== vm && !heldBy.has(o)) n += 1;
    return n;
  };
  const mark = (m: Map<string, Set<string>>, host: string, vm: string, on: boolean): void => {
    const set = m.get(host) ?? new Set<string>();
    if (on) set.add(vm);
    else set.delete(vm);
    m.set(host, set);
  };

  const runStep = async (step: Step): Promise<void> => {
    let started: number | null = null;
    const job = {
      planId: plan.id,
      step,
      policy: opts.policy,
      forecast: opts.forecasts?.[step.vm] ?? null,
      enqueuedAt: new Date(clock.now()).toISOString(),
    };
    try {
      const report = await runner.run(job, {
        // As the executor: every migration is held to its share of both links, shared with the peers that
        // send (one still setting up sends nothing).
        bandwidthShareMiBps: () =>
          heldBy.has(step.vm)
            ? HELD_MIBPS
            : bandwidthShareMiBps(links.get(step.from) ?? null, links.get(step.to) ?? null, {
                outbound: 1 + peers(sendingFrom, step.from, step.vm),
                inbound: 1 + peers(sendingTo, step.to, step.vm),
              }),
        onSending: () => {
          mark(sendingFrom, step.from, step.vm, true);
          mark(sendingTo, step.to, step.vm, true);
          notify([step.from, step.to]);
        },
        heldBack: () => heldBy.has(step.vm),
        onShareChange: (listener) => {
          const set = listeners.get(step.vm) ?? new Set<() => void>();
          set.add(listener);
          listeners.set(step.vm, set);
          return () => set.delete(listener);
        },
        onMigrateCall: (at) => {
          started = at;
          if (!heldBy.has(step.vm)) {
            lead(step, at);
            wake?.();
          }
        },
      });
      results.push({
        step,
        outcome: report.outcome,
        report,
        startedAtMs: started,
        endedAtMs: clock.now(),
        error: null,
      });
    } catch (err) {
      results.push({
        step,
        outcome: err instanceof StepSkipped ? 'skipped' : 'refused',
        report: null,
        startedAtMs: started,
        endedAtMs: clock.now(),
        error: err instanceof Error ? err.message : String(err),
      });
    }
  };

  while (pending.length > 0 || inFlight.size > 0) {
    // Start every pending step that fits now, in plan order (a later step may overtake a blocked one).
    for (let i = 0; i < pending.length;) {
      const step = pending[i] as Step;
      const leader = fits(step) ? undefined : leaderFor(step);
      if (!fits(step) && !leader) {
        i += 1;
        continue;
      }
      pending.splice(i, 1);
      if (leader) {
        leader.follower = step.vm;
        heldBy.set(step.vm, leader.step.vm);
      }
      runningOn.set(step.vm, step);
      bump(step, 1);
      peak = Math.max(peak, running);
      const p: Promise<void> = runStep(step).finally(() => {
        mark(sendingFrom, step.from, step.vm, false);
        mark(sendingTo, step.to, step.vm, false);
        runningOn.delete(step.vm);
        heldBy.delete(step.vm);
        const l = leaders.get(step.vm);
        leaders.delete(step.vm);
        if (l && l.follower !== null) {
          // The follower's set-up is over: it leads from now (as if its set-up had just ended).
          heldBy.delete(l.follower);
          const f = runningOn.get(l.follower);
          if (f) lead(f, clock.now() - setupS * 1000);
        }
        bump(step, -1);
        notify([step.from, step.to]);
        inFlight.delete(p);
        wake?.();
      });
      inFlight.add(p);
    }
    if (inFlight.size === 0) break; // nothing can start (limits of 0); leave the rest
    // Also look again when a running migration may hand its slots over.
    const readyAt = Math.min(
      ...[...leaders.values()]
        .filter((l) => l.follower === null && l.readyAtMs > clock.now())
        .map((l) => l.readyAtMs),
    );
    const timer = new AbortController();
    await new Promise<void>((resolve) => {
      wake = resolve;
      if (Number.isFinite(readyAt))
        clock.sleep(readyAt - clock.now(), timer.signal).then(resolve, () => undefined);
    });
    timer.abort();
    wake = null;
  }
  return {
    steps: results,
    startedAtMs,
    endedAtMs: clock.now(),
    peakConcurrency: peak,
  };
}

/** Runs executePlan under the virtual clock (advancing it while the migrations run). */
export function executePlanVirtual(
  hv: SimHypervisor,
  clock: VirtualClock,
  plan: Plan,
  opts: ExecuteOptions,
): Promise<ExecutionResult> {
  return clock.runUntil(executePlan(hv, clock, plan, opts));
}
