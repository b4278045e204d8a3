// `drain`: empty the hosts put in maintenance. Running VMs go by live (or block) migration, shut-off VMs by
// offline migration of their definition. Placement is first-fit-decreasing by memory onto the host left with
// the most headroom; VMs of an affinity group on the drained host travel together. If any VM cannot leave,
// the plan lists which and why and (unless partial drains are allowed) moves nothing. Feasibility is judged
// with each VM alone on the link (the drain can always give it that); then the drain chooses, step by step,
// how many migrations leave a drained host at once (drain-schedule.ts) and says so in Step.concurrency.
import type { Prediction, Skip, Step } from '../../../domain/plan.js';
import type { ClusterModel } from '../../constraints/cluster-model.js';
import type { Host } from '../../../domain/snapshot.js';
import { defineStrategy, makeStep, pct, type StrategyContext, type StrategyResult } from '../strategy.js';
import { DrainArgsSchema, type DrainArgs } from './drain-args.js';
import { chooseDrainSchedule } from './drain-schedule.js';

/** The hosts a drain empties: the ones named, else those in maintenance. */
export function drainHostIds(snapshot: { hosts: readonly Host[] }, args: DrainArgs): string[] {
  return args.hosts ?? snapshot.hosts.filter((h) => h.state === 'maintenance').map((h) => h.id);
}

function units(m: ClusterModel, vms: number[]): number[][] {
  const byGroup = new Map<string, number[]>();
  const out: number[][] = [];
  for (const v of vms) {
    const g = m.effects[v]?.affinity[0];
    if (g === undefined) {
      out.push([v]);
      continue;
    }
    const key = `${m.vmHost[v]}:${g}`;
    const list = byGroup.get(key);
    if (list) list.push(v);
    else {
      const fresh = [v];
      byGroup.set(key, fresh);
      out.push(fresh);
    }
  }
  return out;
}

function planDrainSteps(ctx: StrategyContext, args: DrainArgs): StrategyResult {
  const m = ctx.model;
  const ids = drainHostIds(m, args);
  const unknown = ids.filter((id) => !m.hostIndex.has(id));
  if (unknown.length > 0)
    return { steps: [], skipped: [], note: `unknown host(s) to drain: ${unknown.join(', ')}` };
  if (ids.length === 0) return { steps: [], skipped: [], note: 'no host to drain (none is in maintenance)' };
  const drained = ids.map((id) => m.hostIndex.get(id) ?? 0);
  const steps: Step[] = [];
  /** Each step's predictions at 1..maxLevel migrations at once from its source. */
  const byLevel: Prediction[][] = [];
  const maxLevel = Math.max(1, m.policy.limits.perHostConcurrency);
  const levels = Array.from({ length: maxLevel }, (_, i) => i + 1);
  const blockers: Skip[] = [];
  /** Steps that move a resident VM to make room for a drained one: they run first. */
  const roomSteps = new Set<Step>();
  const all: number[] = drained.flatMap((h) => [...(m.hostVms[h] ?? [])]);
  const movable: number[] = [];
  for (const v of all) {
    const why = m.immovable(v, 'drain');
    if (why !== null) blockers.push({ vm: m.vms[v]?.id ?? '', why: `cannot leave: ${why}` });
    else movable.push(v);
  }
  const mem = (u: number[]) => u.reduce((s, v) => s + (m.vms[v]?.memMiB ?? 0), 0);
  const list = units(m, movable).sort((a, b) => mem(b) - mem(a));
  for (const unit of list) {
    const from = m.vmHost[unit[0] ?? 0] ?? 0;
    // A VM that cannot converge even with the link to itself cannot go anywhere.
    const stuck = unit.map((v) => m.forecast(v, from, 1)).find((f) => !f.prediction.converges);
    if (stuck) {
      for (const v of unit)
        blockers.push({
          vm: m.vms[v]?.id ?? '',
          why: `cannot leave: ${stuck.reason ?? 'predicted not to converge'}`,
        });
      continue;
    }
    const cpu = unit.reduce((s, v) => s + (m.vmCpu[v] ?? 0), 0);
    const memLoad = unit.reduce((s, v) => s + (m.vmMem[v] ?? 0), 0);
    let best = -1;
    let bestPref = -1;
    let bestHead = -Infinity;
    let problem = 'no active host has room';
    for (let t = 0; t < m.hostCount; t += 1) {
      if (!m.receivable[t]) continue;
      const host = m.hosts[t];
      if (!host) continue;
      if ((m.memLoad[t] ?? 0) + memLoad > (m.memLimit[t] ?? 0) + 1e-9) continue;
      if ((m.cpuLoad[t] ?? 0) + cpu > (m.cpuLimit[t] ?? 0) + 1e-9) continue;
      const head = Math.min(
        1 - ((m.cpuLoad[t] ?? 0) + cpu) / (m.cpuLimit[t] || 1),
        1 - ((m.memLoad[t] ?? 0) + memLoad) / (m.memLimit[t] || 1),
      );
      const pref = m.preferred(unit[0] ?? 0, t);
      if (pref < bestPref || (pref === bestPref && head <= bestHead)) continue;
      let bad: string | null = null;
      for (const v of unit) {
        bad = m.placementProblem(v, t, unit);
        if (bad === null) {
          const f = m.forecast(v, t, 1);
          if (!f.prediction.converges) bad = f.reason ?? 'predicted not to converge';
        }
        if (bad !== null) break;
      }
      if (bad !== null) {
        problem = bad;
        continue;
      }
      best = t;
      bestPref = pref;
      bestHead = head;
    }
    let roomFor: string[] = [];
    if (best < 0) {
      // No host with room lets the unit in: where only room is missing, move resident VMs away first.
      const room = makeRoom(m, unit);
      if (room) {
        const names = unit.map((v) => m.vms[v]?.name ?? m.vms[v]?.id ?? '').join(', ');
        for (const [w, u] of room.parks) {
          const step = makeStep(
            m,
            w,
            u,
            `makes room on ${m.hosts[room.t]?.id ?? ''} for ${names} (no host with room lets ${names} in: ` +
              `${problem}); ${m.hosts[u]?.id ?? ''} has room`,
          );
          steps.push(step);
          roomSteps.add(step);
          byLevel.push(levels.map((k) => m.forecast(w, u, k).prediction));
          m.move(w, u);
        }
        best = room.t;
        roomFor = room.parks.map(([w]) => m.vms[w]?.id ?? '');
      }
    }
    if (best < 0) {
      for (const v of unit) blockers.push({ vm: m.vms[v]?.id ?? '', why: `cannot leave: ${problem}` });
      continue;
    }
    const src = m.hosts[from];
    const dst = m.hosts[best];
    for (const v of unit) {
      // A VM breaking a rule where it stands may repair it by leaving (never break one: placementProblem).
      const broken = m.violationDelta(v, best) < 0 ? m.violationOf(v) : null;
      const why =
        `${src?.id ?? ''} is being drained (${src?.state ?? ''}); ${dst?.id ?? ''} has the most headroom ` +
        `(cpu ${pct(m.cpuPct(best))}, mem ${pct(m.memPct(best))} before)` +
        (unit.length > 1 ? `; moves with its affinity group` : '') +
        (broken !== null ? `; repairs a rule: ${broken}` : '');
      const step = makeStep(m, v, best, why);
      // The executor starts it only once the room-making step has completed.
      if (roomFor.length > 0) step.after = roomFor;
      steps.push(step);
      byLevel.push(levels.map((k) => m.forecast(v, best, k).prediction));
      m.move(v, best);
    }
  }
  if (blockers.length > 0 && !args.allowPartial) {
    return {
      steps: [],
      skipped: blockers,
      note:
        `drain of ${ids.join(', ')} cannot complete: ${blockers.length} of ${all.length} VMs cannot leave; ` +
        'nothing moved',
    };
  }
  const scheduled = scheduleSteps(steps, byLevel, maxLevel, roomSteps);
  const result: StrategyResult = { steps: scheduled.steps, skipped: blockers };
  if (scheduled.steps.length > 0) result.etaS = scheduled.etaS;
  if (blockers.length > 0)
    result.note = `partial drain: ${blockers.length} of ${all.length} VMs cannot leave ${ids.join(', ')}`;
  else if (steps.length === 0) result.note = `${ids.join(', ')} already empty`;
  return result;
}

/**
 * Per drained host, the concurrency of each step (chooseDrainSchedule); each step then carries it and the
 * prediction at it. Steps that run alone come first, so the executor runs them one by one before the
 * others go several at a time. ETA: the slowest host's.
 */
function scheduleSteps(
  steps: Step[],
  byLevel: Prediction[][],
  maxLevel: number,
  first: ReadonlySet<Step>,
): { steps: Step[]; etaS: number } {
  const hosts = [...new Set(steps.map((s) => s.from))];
  const level = new Map<Step, number>();
  let etaS = 0;
  for (const h of hosts) {
    const idx = steps.flatMap((s, i) => (s.from === h ? [i] : []));
    const schedule = chooseDrainSchedule(
      idx.map((i) => ({ byLevel: byLevel[i] ?? [] })),
      maxLevel,
    );
    etaS = Math.max(etaS, schedule.etaS);
    idx.forEach((i, j) => {
      const step = steps[i];
      if (step) level.set(step, schedule.levels[j] ?? 1);
    });
  }
  const out = steps.map((s, i) => {
    const k = level.get(s) ?? 1;
    const predicted = byLevel[i]?.[k - 1] ?? s.predicted;
    const how =
      k === 1
        ? 'runs alone at the full link'
        : `runs ${k} at once from ${s.from} (predicted to resend little when sharing the link)`;
    return { ...s, why: `${s.why}; ${how}`, predicted, concurrency: k };
  });
  // Room-making moves first; then stable: within a level the placement order (largest first) stays.
  const rank = (i: number) => (first.has(steps[i] as Step) ? 0 : (out[i]?.concurrency ?? 1));
  const order = out.map((_, i) => i).sort((a, b) => rank(a) - rank(b));
  return { steps: order.map((i) => out[i] as Step), etaS: Math.round(etaS * 10) / 10 };
}

/** Room-making: parking places tried (most room first) and VMs of a host tried (smallest first). */
const ROOM_PARKING = 32;
const ROOM_RESIDENTS = 4;

/** VMs parked at most to make room for one drain unit, when no single one does. */
const ROOM_MAX_PARKED = 3;

/**
 * The drain unit finds no host: the hosts that lack only room for it are tried with one of their VMs (the
 * smallest that makes room) parked on another host first, where that VM breaks no rule and converges. The
 * smallest such VM wins. Where no one VM makes room, several (largest first, up to ROOM_MAX_PARKED) are
 * parked, on the host that needs the fewest. Null when nothing does.
 */
function makeRoom(m: ClusterModel, unit: readonly number[]): { parks: [number, number][]; t: number } | null {
  const one = makeRoomOne(m, unit);
  if (one) return { parks: [[one.w, one.u]], t: one.t };
  return makeRoomSeveral(m, unit);
}

/** Where resident w of host t may be parked for a drain (see makeRoom), or undefined. */
function parkingFor(m: ClusterModel, w: number, t: number, parking: readonly number[]): number | undefined {
  return parking.find(
    (x) =>
      x !== t &&
      m.placementProblem(w, x) === null &&
      m.violationDelta(w, x) <= 0 &&
      m.forecast(w, x, 1).prediction.converges,
  );
}

function parkingHosts(m: ClusterModel): number[] {
  const room = (h: number) => {
    const host = m.hosts[h];
    if (!host) return -Infinity;
    return Math.min(
      ((m.cpuLimit[h] ?? 0) - (m.cpuLoad[h] ?? 0)) / host.cpus,
      ((m.memLimit[h] ?? 0) - (m.memLoad[h] ?? 0)) / host.memMiB,
    );
  };
  const parking: number[] = [];
  for (let h = 0; h < m.hostCount; h += 1) if (m.receivable[h]) parking.push(h);
  parking.sort((a, b) => room(b) - room(a));
  parking.length = Math.min(parking.length, ROOM_PARKING);
  return parking;
}

function unitFits(m: ClusterModel, unit: readonly number[], t: number): boolean {
  const cpu = unit.reduce((s, v) => s + (m.vmCpu[v] ?? 0), 0);
  const mem = unit.reduce((s, v) => s + (m.vmMem[v] ?? 0), 0);
  const vcpus = unit.reduce((s, v) => s + (m.vms[v]?.vcpus ?? 0), 0);
  return (
    (m.cpuLoad[t] ?? 0) + cpu <= (m.cpuLimit[t] ?? 0) + 1e-9 &&
    (m.memLoad[t] ?? 0) + mem <= (m.memLimit[t] ?? 0) + 1e-9 &&
    (m.vcpuAlloc[t] ?? 0) + vcpus <= (m.vcpuCap[t] ?? 0) + 1e-9
  );
}

function unitAllowed(m: ClusterModel, unit: readonly number[], t: number): boolean {
  return unit.every(
    (v) =>
      m.placementProblem(v, t, unit) === null &&
      m.violationDelta(v, t) <= 0 &&
      m.forecast(v, t, 1).prediction.converges,
  );
}

function makeRoomSeveral(
  m: ClusterModel,
  unit: readonly number[],
): { parks: [number, number][]; t: number } | null {
  const parking = parkingHosts(m);
  let best: { parks: [number, number][]; t: number } | null = null;
  for (let t = 0; t < m.hostCount; t += 1) {
    if (!m.receivable[t] || unitFits(m, unit, t)) continue;
    const residents = (m.hostVms[t] ?? [])
      .filter((w) => !unit.includes(w) && !m.moved[w])
      .sort((a, b) => (m.vmMem[b] ?? 0) - (m.vmMem[a] ?? 0));
    const parks: [number, number][] = [];
    const limit = Math.min(ROOM_MAX_PARKED, best ? best.parks.length - 1 : ROOM_MAX_PARKED);
    for (const w of residents) {
      if (parks.length >= limit || unitFits(m, unit, t)) break;
      if (m.immovable(w, 'drain') !== null || !m.forecast(w, t, 1).prediction.converges) continue;
      const u = parkingFor(m, w, t, parking);
      if (u === undefined) continue;
      m.move(w, u);
      parks.push([w, u]);
    }
    const ok = parks.length > 1 && unitFits(m, unit, t) && unitAllowed(m, unit, t);
    for (let i = parks.length - 1; i >= 0; i -= 1) m.unmove(parks[i]?.[0] ?? 0);
    if (ok) best = { parks, t };
  }
  return best;
}

/** makeRoom with one parked VM. */
function makeRoomOne(m: ClusterModel, unit: readonly number[]): { w: number; u: number; t: number } | null {
  const cpu = unit.reduce((s, v) => s + (m.vmCpu[v] ?? 0), 0);
  const mem = unit.reduce((s, v) => s + (m.vmMem[v] ?? 0), 0);
  const vcpus = unit.reduce((s, v) => s + (m.vms[v]?.vcpus ?? 0), 0);
  const parking = parkingHosts(m);
  let best: { w: number; u: number; t: number } | null = null;
  for (let t = 0; t < m.hostCount; t += 1) {
    if (!m.receivable[t]) continue;
    // Only hosts that lack room for the unit: elsewhere room is not what keeps it out.
    if (
      (m.cpuLoad[t] ?? 0) + cpu <= (m.cpuLimit[t] ?? 0) + 1e-9 &&
      (m.memLoad[t] ?? 0) + mem <= (m.memLimit[t] ?? 0) + 1e-9 &&
      (m.vcpuAlloc[t] ?? 0) + vcpus <= (m.vcpuCap[t] ?? 0) + 1e-9
    )
      continue;
    const residents = (m.hostVms[t] ?? [])
      .filter(
        (w) =>
          !unit.includes(w) &&
          !m.moved[w] &&
          (m.cpuLoad[t] ?? 0) - (m.vmCpu[w] ?? 0) + cpu <= (m.cpuLimit[t] ?? 0) + 1e-9 &&
          (m.memLoad[t] ?? 0) - (m.vmMem[w] ?? 0) + mem <= (m.memLimit[t] ?? 0) + 1e-9 &&
          (m.vcpuAlloc[t] ?? 0) - (m.vms[w]?.vcpus ?? 0) + vcpus <= (m.vcpuCap[t] ?? 0) + 1e-9,
      )
      .sort((a, b) => (m.vmMem[a] ?? 0) - (m.vmMem[b] ?? 0))
      .slice(0, ROOM_RESIDENTS);
    for (const w of residents) {
      if (best && (m.vmMem[w] ?? 0) >= (m.vmMem[best.w] ?? 0)) break;
      if (m.immovable(w, 'drain') !== null || !m.forecast(w, t, 1).prediction.converges) continue;
      const u = parkingFor(m, w, t, parking);
      if (u === undefined) continue;
      m.move(w, u);
      const ok = unitAllowed(m, unit, t);
      m.unmove(w);
      if (ok) {
        best = { w, u, t };
        break;
      }
    }
  }
  return best;
}

export const drainStrategy = defineStrategy<DrainArgs>({
  name: 'drain',
  reason: 'drain',
  description: 'empty the hosts in maintenance, after checking that every VM can leave',
  argsSchema: DrainArgsSchema,
  // A drain goes whenever a host is put in maintenance.
  holdTimeS: 0,
  scope: (snapshot, args) => ({ emptying: drainHostIds(snapshot, args) }),
  plan: planDrainSteps,
});
