// `balance`: bring CPU and memory utilisation spread within target with the fewest, cheapest moves.
// It aims at the band that needs the fewest moves (see lower-bound.ts): first hosts above the band shed VMs
// (one VM that covers the excess when there is one, the cheapest such; else the largest), each to the host
// with the most room below the band; then hosts still below the band take VMs from hosts with load to spare.
// Every move is applied to the model before the next is chosen.
import type { Skip, Step } from '../../../domain/plan.js';
import type { ClusterModel } from '../../constraints/cluster-model.js';
import { bandLowerBound } from '../../lower-bound.js';
import { HostHeap } from '../../constraints/host-heap.js';
import { makeStep, pct, type Strategy, type StrategyContext, type StrategyResult } from '../strategy.js';
import { BalanceArgsSchema, type BalanceArgs } from './balance-args.js';

const EPS = 1e-9;
/** Hosts tried per VM (least loaded first) and donor hosts scanned per fill. */
const TARGET_CANDIDATES = 48;
const DONOR_CANDIDATES = 32;
const PAIR_CANDIDATES = 8;
type Dim = 0 | 1; // 0 cpu, 1 memory
const DIM_NAME = ['cpu', 'mem'] as const;

interface Band {
  lo: [number, number];
  hi: [number, number];
}

class BalanceRun {
  readonly m: ClusterModel;
  readonly steps: Step[] = [];
  readonly skipped: Skip[] = [];
  private readonly skippedVm = new Set<number>();
  private readonly cannot = new Set<number>();
  readonly receivers: number[] = [];
  readonly maxMoves: number;
  /** Receivers by utilisation, least first; hosts that count by utilisation, most first (per dimension). */
  private readonly emptiest: [HostHeap, HostHeap];
  private readonly fullest: [HostHeap, HostHeap];

  constructor(m: ClusterModel, maxMoves: number) {
    this.m = m;
    this.maxMoves = maxMoves;
    this.emptiest = [new HostHeap(m.hostCount, 1), new HostHeap(m.hostCount, 1)];
    this.fullest = [new HostHeap(m.hostCount, -1), new HostHeap(m.hostCount, -1)];
    for (let h = 0; h < m.hostCount; h += 1) {
      if (m.receivable[h]) this.receivers.push(h);
      this.reindex(h);
    }
  }

  private reindex(h: number): void {
    for (const d of [0, 1] as Dim[]) {
      if (this.m.receivable[h]) this.emptiest[d].push(h, this.util(d, h));
      if (this.m.inSpread[h]) this.fullest[d].push(h, this.util(d, h));
    }
  }

  load(d: Dim, h: number): number {
    return d === 0 ? (this.m.cpuLoad[h] ?? 0) : (this.m.memLoad[h] ?? 0);
  }
  cap(d: Dim, h: number): number {
    const host = this.m.hosts[h];
    return d === 0 ? (host?.cpus ?? 1) : (host?.memMiB ?? 1);
  }
  vmLoad(d: Dim, v: number): number {
    return d === 0 ? (this.m.vmCpu[v] ?? 0) : (this.m.vmMem[v] ?? 0);
  }
  util(d: Dim, h: number): number {
    return (this.load(d, h) / this.cap(d, h)) * 100;
  }

  band(targets: [number, number]): Band {
    const lo: [number, number] = [0, 0];
    for (const d of [0, 1] as Dim[]) {
      const loads = d === 0 ? this.m.cpuLoad : this.m.memLoad;
      const caps = Float64Array.from(this.m.hosts, (h) => (d === 0 ? h.cpus : h.memMiB));
      const vmLoad = d === 0 ? this.m.vmCpu : this.m.vmMem;
      lo[d] = bandLowerBound(
        { loads, caps, vmHost: this.m.vmHost, vmLoad, include: this.m.inSpread },
        targets[d],
      ).lo;
    }
    return { lo, hi: [lo[0] + targets[0], lo[1] + targets[1]] };
  }

  skip(v: number, why: string): void {
    this.cannot.add(v);
    if (this.skippedVm.has(v)) return;
    this.skippedVm.add(v);
    this.skipped.push({ vm: this.m.vms[v]?.id ?? '', why });
  }

  full(): boolean {
    return this.steps.length >= this.maxMoves;
  }

  /** The best host for VM v within the band's upper edges, or a reason why there is none. */
  target(v: number, d: Dim, band: Band): number | string {
    const m = this.m;
    const from = m.vmHost[v] ?? 0;
    const alone = m.forecast(v, from);
    if (!alone.prediction.converges) return alone.reason ?? 'predicted not to converge';
    if ((m.effects[v]?.prefer.length ?? 0) > 0) return this.scanTarget(v, d, band);
    const cpu = m.vmCpu[v] ?? 0;
    const mem = m.vmMem[v] ?? 0;
    let problem = 'no host has room within the band';
    const popped: number[] = [];
    let best = -1;
    for (let checked = 0; checked < TARGET_CANDIDATES; checked += 1) {
      const t = this.emptiest[d].pop();
      if (t < 0) break;
      popped.push(t);
      if (t === from) continue;
      const host = m.hosts[t];
      if (!host) continue;
      const cAfter = (((m.cpuLoad[t] ?? 0) + cpu) / host.cpus) * 100;
      const mAfter = (((m.memLoad[t] ?? 0) + mem) / host.memMiB) * 100;
      if (cAfter > band.hi[0] + EPS || mAfter > band.hi[1] + EPS || !m.fits(v, t)) continue;
      const p = m.placementProblem(v, t);
      if (p !== null) {
        problem = p;
        continue;
      }
      const f = m.forecast(v, t);
      if (!f.prediction.converges) {
        problem = f.reason ?? 'predicted not to converge';
        continue;
      }
      best = t;
      break;
    }
    for (const h of popped) this.emptiest[d].push(h, this.util(d, h));
    return best >= 0 ? best : problem;
  }

  /** Full scan for VMs with prefer-hosts rules: preferred first, then under the band, then least loaded. */
  private scanTarget(v: number, d: Dim, band: Band): number | string {
    const m = this.m;
    const from = m.vmHost[v] ?? 0;
    let best = -1;
    let bestPref = -1;
    let bestUnder = -1;
    let bestUtil = Infinity;
    let problem = 'no host has room within the band';
    const cpu = m.vmCpu[v] ?? 0;
    const mem = m.vmMem[v] ?? 0;
    for (const t of this.receivers) {
      if (t === from) continue;
      const host = m.hosts[t];
      if (!host) continue;
      const cAfter = (((m.cpuLoad[t] ?? 0) + cpu) / host.cpus) * 100;
      const mAfter = (((m.memLoad[t] ?? 0) + mem) / host.memMiB) * 100;
      if (cAfter > band.hi[0] + EPS || mAfter > band.hi[1] + EPS) continue;
      if (!m.fits(v, t)) continue;
      const pref = m.preferred(v, t);
      const under = this.util(d, t) < band.lo[d] ? 1 : 0;
      const u = d === 0 ? cAfter : mAfter;
      if (
        pref < bestPref ||
        (pref === bestPref && (under < bestUnder || (under === bestUnder && u >= bestUtil)))
      )
        continue;
      const p = m.placementProblem(v, t);
      if (p !== null) {
        problem = p;
        continue;
      }
      const f = m.forecast(v, t);
      if (!f.prediction.converges) {
        problem = f.reason ?? 'predicted not to converge';
        continue;
      }
      best = t;
      bestPref = pref;
      bestUnder = under;
      bestUtil = u;
    }
    return best >= 0 ? best : problem;
  }

  apply(v: number, to: number, why: string): void {
    const from = this.m.vmHost[v] ?? 0;
    this.steps.push(makeStep(this.m, v, to, why));
    this.m.move(v, to);
    this.reindex(from);
    this.reindex(to);
  }

  /** Hosts above the band shed VMs. Returns the number of moves made. */
  shed(band: Band): number {
    const m = this.m;
    let made = 0;
    const over: { h: number; x: number }[] = [];
    for (let h = 0; h < m.hostCount; h += 1) {
      if (!m.inSpread[h]) continue;
      const x = Math.max(this.util(0, h) - band.hi[0], this.util(1, h) - band.hi[1]);
      if (x > EPS) over.push({ h, x });
    }
    over.sort((a, b) => b.x - a.x);
    for (const { h: s } of over) {
      for (let guard = 0; guard < 64 && !this.full(); guard += 1) {
        const ex: [number, number] = [
          this.load(0, s) - (band.hi[0] / 100) * this.cap(0, s),
          this.load(1, s) - (band.hi[1] / 100) * this.cap(1, s),
        ];
        if (ex[0] <= EPS && ex[1] <= EPS) break;
        const d: Dim = ex[0] / this.cap(0, s) >= ex[1] / this.cap(1, s) ? 0 : 1;
        const capC = this.cap(0, s);
        const capM = this.cap(1, s);
        const exC = Math.max(0, ex[0]);
        const exM = Math.max(0, ex[1]);
        const spareC = this.load(0, s) - (band.lo[0] / 100) * capC;
        const spareM = this.load(1, s) - (band.lo[1] / 100) * capM;
        // Fewest moves: the largest VMs (in the dimensions that are over) that do not take the host below
        // the band go first, since the emptiest host takes them and a big VM fixes both ends at once;
        // among VMs of equal weight the cheaper to migrate. VMs that would overshoot come last.
        const within: number[] = [];
        const rest: number[] = [];
        const weight = new Map<number, number>();
        for (const v of m.hostVms[s] ?? []) {
          if (this.cannot.has(v) || this.vmLoad(d, v) <= EPS) continue;
          const why = m.immovable(v, 'rebalance');
          if (why !== null) {
            if (!m.moved[v]) this.skip(v, why);
            continue;
          }
          const lc = m.vmCpu[v] ?? 0;
          const lm = m.vmMem[v] ?? 0;
          weight.set(
            v,
            (exC > EPS ? Math.min(lc, spareC) / capC : 0) + (exM > EPS ? Math.min(lm, spareM) / capM : 0),
          );
          if (lc <= spareC + EPS && lm <= spareM + EPS) within.push(v);
          else rest.push(v);
        }
        const cost = (v: number) => m.forecast(v, s).prediction.transferMiB;
        const order = (a: number, b: number) =>
          (weight.get(b) ?? 0) - (weight.get(a) ?? 0) || cost(a) - cost(b);
        within.sort(order);
        rest.sort(order);
        const fitting = within;
        let placed = false;
        for (const v of [...fitting, ...rest]) {
          const t = this.target(v, d, band);
          if (typeof t === 'string') {
            this.skip(v, t);
            continue;
          }
          const src = m.hosts[s]?.id ?? '';
          const dst = m.hosts[t]?.id ?? '';
          const why =
            `${src} ${DIM_NAME[d]} ${pct(this.util(d, s))} > ${pct(band.hi[d])}; ` +
            `${dst} ${DIM_NAME[d]} ${pct(this.util(d, t))} has room`;
          this.apply(v, t, why);
          made += 1;
          placed = true;
          break;
        }
        if (!placed) break;
      }
      if (this.full()) break;
    }
    return made;
  }

  /** Hosts below the band take VMs from hosts with load above the band's lower edge. */
  fill(band: Band): number {
    const m = this.m;
    let made = 0;
    const under: { h: number; x: number }[] = [];
    for (const h of this.receivers) {
      if (!m.inSpread[h]) continue;
      const x = Math.max(band.lo[0] - this.util(0, h), band.lo[1] - this.util(1, h));
      if (x > EPS) under.push({ h, x });
    }
    if (under.length === 0) return 0;
    under.sort((a, b) => b.x - a.x);
    for (const { h: t } of under) {
      const host = m.hosts[t];
      if (!host) continue;
      for (let guard = 0; guard < 64 && !this.full(); guard += 1) {
        const def: [number, number] = [
          (band.lo[0] / 100) * host.cpus - this.load(0, t),
          (band.lo[1] / 100) * host.memMiB - this.load(1, t),
        ];
        if (def[0] <= EPS && def[1] <= EPS) break;
        const d: Dim = def[0] / host.cpus >= def[1] / host.memMiB ? 0 : 1;
        let best = -1;
        let bestKey = -Infinity;
        const popped: number[] = [];
        for (let scanned = 0; scanned < DONOR_CANDIDATES;) {
          const s = this.fullest[d].pop();
          if (s < 0) break;
          popped.push(s);
          if (s === t) continue;
          const surplus = this.load(d, s) - (band.lo[d] / 100) * this.cap(d, s);
          if (surplus <= EPS) break;
          scanned += 1;
          for (const v of m.hostVms[s] ?? []) {
            if (this.cannot.has(v) || m.moved[v]) continue;
            const l = this.vmLoad(d, v);
            if (l <= EPS || l > surplus + EPS) continue;
            const cAfter = (((m.cpuLoad[t] ?? 0) + (m.vmCpu[v] ?? 0)) / host.cpus) * 100;
            const mAfter = (((m.memLoad[t] ?? 0) + (m.vmMem[v] ?? 0)) / host.memMiB) * 100;
            if (cAfter > band.hi[0] + EPS || mAfter > band.hi[1] + EPS) continue;
            // Prefer a VM that covers every deficit (the smallest such), else the one covering the most.
            const lc = m.vmCpu[v] ?? 0;
            const lm = m.vmMem[v] ?? 0;
            const covers = lc >= def[0] - EPS && lm >= def[1] - EPS;
            const key = covers
              ? 1e12 - l
              : Math.min(lc, Math.max(0, def[0])) / host.cpus +
                Math.min(lm, Math.max(0, def[1])) / host.memMiB;
            if (key > bestKey) {
              bestKey = key;
              best = v;
            }
          }
          if (bestKey >= 1e11) break;
        }
        for (const h of popped) this.fullest[d].push(h, this.util(d, h));
        if (best < 0) break;
        const v = best;
        const why = m.immovable(v, 'rebalance') ?? m.placementProblem(v, t);
        if (why !== null) {
          this.cannot.add(v);
          continue;
        }
        const f = m.forecast(v, t);
        if (!f.prediction.converges) {
          this.skip(v, f.reason ?? 'predicted not to converge');
          continue;
        }
        const s = m.vmHost[v] ?? 0;
        this.apply(
          v,
          t,
          `${host.id} ${DIM_NAME[d]} ${pct(this.util(d, t))} < ${pct(band.lo[d])}; ` +
            `${m.hosts[s]?.id ?? ''} ${DIM_NAME[d]} ${pct(this.util(d, s))} has load to spare`,
        );
        made += 1;
      }
      if (this.full()) break;
    }
    return made;
  }

  /**
   * Pairwise phase: while a dimension's spread exceeds its target, move from one of the fullest hosts to
   * one of the emptiest the VM that best evens the pair, as long as the move lowers the maximum or raises
   * the minimum without creating a new extreme in either dimension.
   */
  pairwise(targets: [number, number]): number {
    const m = this.m;
    let made = 0;
    while (!this.full()) {
      const ext = [0, 1].map((d) => {
        const hi = this.fullest[d as Dim].peek();
        const lo = this.emptiest[d as Dim].peek();
        return hi < 0 || lo < 0
          ? null
          : { hi, lo, max: this.util(d as Dim, hi), min: this.util(d as Dim, lo) };
      });
      const e0 = ext[0];
      const e1 = ext[1];
      if (!e0 || !e1) break;
      const over0 = e0.max - e0.min - targets[0];
      const over1 = e1.max - e1.min - targets[1];
      if (over0 <= EPS && over1 <= EPS) break;
      const d: Dim = over0 >= over1 ? 0 : 1;
      const o: Dim = d === 0 ? 1 : 0;
      const e = d === 0 ? e0 : e1;
      const eo = d === 0 ? e1 : e0;
      // The other dimension may use the room its target leaves.
      const oMax = Math.max(eo.max, eo.min + targets[o]);
      const oMin = Math.min(eo.min, eo.max - targets[o]);
      const srcs: number[] = [];
      const dsts: number[] = [];
      for (let k = 0; k < PAIR_CANDIDATES; k += 1) {
        const s = this.fullest[d].pop();
        if (s >= 0) srcs.push(s);
        const t = this.emptiest[d].pop();
        if (t >= 0) dsts.push(t);
      }
      let done = false;
      for (const s of srcs) {
        for (const t of dsts) {
          if (s === t || (s !== e.hi && t !== e.lo)) continue;
          const us = this.util(d, s);
          const ut = this.util(d, t);
          if (us <= ut) continue;
          const cands: { v: number; gap: number }[] = [];
          for (const v of m.hostVms[s] ?? []) {
            if (this.cannot.has(v) || m.moved[v]) continue;
            const l = this.vmLoad(d, v);
            if (l <= EPS) continue;
            const sAfter = us - (l / this.cap(d, s)) * 100;
            const tAfter = ut + (l / this.cap(d, t)) * 100;
            if (Math.max(sAfter, tAfter) > e.max + EPS || Math.min(sAfter, tAfter) < e.min - EPS) continue;
            if (Math.max(sAfter, tAfter) >= us - EPS && Math.min(sAfter, tAfter) <= ut + EPS) continue;
            const lo2 = this.vmLoad(o, v);
            const soAfter = this.util(o, s) - (lo2 / this.cap(o, s)) * 100;
            const toAfter = this.util(o, t) + (lo2 / this.cap(o, t)) * 100;
            if (toAfter > oMax + EPS || soAfter < oMin - EPS) continue;
            if (!m.fits(v, t)) continue;
            cands.push({ v, gap: Math.abs(sAfter - tAfter) });
          }
          cands.sort((a, b) => a.gap - b.gap);
          for (const { v } of cands) {
            const why = m.immovable(v, 'rebalance');
            if (why !== null) {
              this.skip(v, why);
              continue;
            }
            if (m.placementProblem(v, t) !== null) continue;
            const f = m.forecast(v, t);
            if (!f.prediction.converges) {
              this.skip(v, f.reason ?? 'predicted not to converge');
              continue;
            }
            for (const h of srcs) this.reindex(h);
            for (const h of dsts) this.reindex(h);
            this.apply(
              v,
              t,
              `${m.hosts[s]?.id ?? ''} ${DIM_NAME[d]} ${pct(us)} and ${m.hosts[t]?.id ?? ''} ${DIM_NAME[d]} ` +
                `${pct(ut)} are ${Math.round(us - ut)} points apart (target spread ${targets[d]})`,
            );
            made += 1;
            done = true;
            break;
          }
          if (done) break;
        }
        if (done) break;
      }
      if (!done) {
        for (const h of srcs) this.reindex(h);
        for (const h of dsts) this.reindex(h);
        break;
      }
    }
    return made;
  }
}

function planBalance(ctx: StrategyContext, args: BalanceArgs): StrategyResult {
  const m = ctx.model;
  const pol = m.policy.balance;
  const targets: [number, number] = [pol.targetCpuSpreadPct, pol.targetMemSpreadPct];
  const before = m.spread();
  const within = (s: { cpuSpreadPct: number; memSpreadPct: number }) =>
    s.cpuSpreadPct <= targets[0] && s.memSpreadPct <= targets[1];
  if (within(before)) {
    return {
      steps: [],
      skipped: [],
      note:
        `spread within target: cpu ${before.cpuSpreadPct} <= ${targets[0]} points, ` +
        `mem ${before.memSpreadPct} <= ${targets[1]} points`,
    };
  }
  if (ctx.lastRebalanceAtMs != null && ctx.nowMs - ctx.lastRebalanceAtMs < pol.holdTimeS * 1000) {
    const ago = Math.round((ctx.nowMs - ctx.lastRebalanceAtMs) / 1000);
    return {
      steps: [],
      skipped: [],
      note: `holding: the last rebalance was ${ago} s ago, hold time is ${pol.holdTimeS} s`,
    };
  }
  const run = new BalanceRun(m, args.maxMoves ?? m.policy.limits.maxMovesPerRun);
  // Pairwise moves do most of the work with the fewest moves; where they get stuck (a dimension's extreme
  // host has nothing that fits the pair), the band phases finish, and pairwise moves tidy up after them.
  run.pairwise(targets);
  for (let round = 0; round < 4 && !run.full() && !within(m.spread()); round += 1) {
    const band = run.band(targets);
    const made = run.shed(band) + run.fill(band) + run.pairwise(targets);
    if (made === 0) break;
  }
  const after = m.spread();
  const gain = before.cpuSpreadPct - after.cpuSpreadPct + (before.memSpreadPct - after.memSpreadPct);
  if (run.steps.length > 0 && gain < pol.minImprovementPct) {
    return {
      steps: [],
      skipped: run.skipped,
      note: `the best moves found improve the spread by ${gain.toFixed(1)} points, less than the minimum ${pol.minImprovementPct}`,
    };
  }
  const result: StrategyResult = { steps: run.steps, skipped: run.skipped };
  if (run.steps.length === 0) result.note = 'no move can improve the spread within the constraints';
  else if (!within(after))
    result.note = run.full()
      ? `stopped at the limit of ${run.maxMoves} moves; spread not yet within target`
      : 'spread not within target: no further move fits the constraints';
  return result;
}

export const balanceStrategy: Strategy<BalanceArgs> = {
  name: 'balance',
  reason: 'rebalance',
  description: 'bring CPU and memory spread within target with the fewest, cheapest moves',
  argsSchema: BalanceArgsSchema,
  plan: planBalance,
};
