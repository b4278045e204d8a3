// What a rebalance improves, in order of worth: (1) hard-rule violations (broken anti-affinity, split
// affinity groups, VMs on hosts a rule avoids), (2) load above the hosts' ceilings (CPU load, memory,
// vCPU allocation), (3) imbalance — for each dimension whose spread exceeds its target, the points by which
// hosts stand outside a band as wide as the target, centred on the cluster's mean utilisation. Compared
// lexicographically: no amount of (3) buys any of (2).
//
// Why band excess rather than a standard deviation: it is zero exactly when every host sits within the
// target band, so a balanced cluster has nothing left to gain and moves inside the target never look like
// progress (no churn); unlike max − min it credits every host brought closer, so partial relief counts.
// The band's centre (total load over total capacity) does not move when VMs move, so a move's effect on it
// is local to its two hosts.
import type { ClusterModel } from './constraints/cluster-model.js';

export interface ObjectiveValue {
  violations: number;
  /** Sum over active hosts of the points above each ceiling (CPU, memory, vCPU allocation). */
  overCeilingPct: number;
  /** Sum over over-target dimensions of the points hosts stand outside the band. */
  imbalancePct: number;
}

export const OBJECTIVE_EPS = 1e-6;

/** Negative when a is better than b, positive when worse, 0 when equal (within OBJECTIVE_EPS). */
export function compareObjective(a: ObjectiveValue, b: ObjectiveValue): number {
  if (a.violations !== b.violations) return a.violations - b.violations;
  const c = a.overCeilingPct - b.overCeilingPct;
  if (Math.abs(c) > OBJECTIVE_EPS) return c;
  const i = a.imbalancePct - b.imbalancePct;
  return Math.abs(i) > OBJECTIVE_EPS ? i : 0;
}

export class Objective {
  readonly m: ClusterModel;
  /** Band per dimension (percent): [cpu, mem]. */
  readonly lo: [number, number];
  readonly hi: [number, number];
  readonly targets: [number, number];
  /** Dimensions whose spread is over target (recomputed by refresh()). */
  active: [boolean, boolean] = [false, false];
  /** Tier 3 is not counted at all (offload-only). */
  readonly ceilingsOnly: boolean;

  constructor(m: ClusterModel, ceilingsOnly = false) {
    this.m = m;
    this.ceilingsOnly = ceilingsOnly;
    const pol = m.policy.balance;
    this.targets = [pol.targetCpuSpreadPct, pol.targetMemSpreadPct];
    let cL = 0;
    let cC = 0;
    let mL = 0;
    let mC = 0;
    for (let h = 0; h < m.hostCount; h += 1) {
      if (!m.inSpread[h]) continue;
      cL += m.cpuLoad[h] ?? 0;
      cC += m.hosts[h]?.cpus ?? 0;
      mL += m.memBalLoad[h] ?? 0;
      mC += m.hosts[h]?.memMiB ?? 0;
    }
    const mean: [number, number] = [cC > 0 ? (cL / cC) * 100 : 0, mC > 0 ? (mL / mC) * 100 : 0];
    this.lo = [mean[0] - this.targets[0] / 2, mean[1] - this.targets[1] / 2];
    this.hi = [mean[0] + this.targets[0] / 2, mean[1] + this.targets[1] / 2];
    this.refresh();
  }

  /** Per dimension: the band excess of all hosts (counted in the objective only while active). */
  private total: [number, number] = [0, 0];
  /** Per dimension: the three most and three least utilised hosts that count, as [host, util] pairs. */
  private top: [number[], number[]] = [[], []];
  private bottom: [number[], number[]] = [[], []];

  /** Re-reads which dimensions are over target, their band totals and the extreme hosts. */
  refresh(): void {
    const m = this.m;
    this.top = [[], []];
    this.bottom = [[], []];
    for (let h = 0; h < m.hostCount; h += 1) {
      if (!m.inSpread[h]) continue;
      keep3(this.top[0], h, m.cpuPct(h), 1);
      keep3(this.top[1], h, m.memPct(h), 1);
      keep3(this.bottom[0], h, m.cpuPct(h), -1);
      keep3(this.bottom[1], h, m.memPct(h), -1);
    }
    const spread = (d: 0 | 1) => (this.top[d][1] ?? 0) - (this.bottom[d][1] ?? 0) || 0;
    this.active = [
      !this.ceilingsOnly && spread(0) > this.targets[0] + OBJECTIVE_EPS,
      !this.ceilingsOnly && spread(1) > this.targets[1] + OBJECTIVE_EPS,
    ];
    this.total = [0, 0];
    for (let h = 0; h < m.hostCount; h += 1) {
      if (!m.inSpread[h]) continue;
      const host = m.hosts[h];
      if (!host) continue;
      this.total[0] += this.dimExcess(0, ((m.cpuLoad[h] ?? 0) / host.cpus) * 100);
      this.total[1] += this.dimExcess(1, ((m.memBalLoad[h] ?? 0) / host.memMiB) * 100);
    }
  }

  private dimExcess(d: 0 | 1, u: number): number {
    if (u > this.hi[d]) return u - this.hi[d];
    if (u < this.lo[d]) return this.lo[d] - u;
    return 0;
  }

  /** The spread of dimension d once hosts s and t have utilisations us and ut (NaN: host does not count). */
  private spreadWith(d: 0 | 1, s: number, us: number, t: number, ut: number): number {
    let max = -Infinity;
    let min = Infinity;
    const top = this.top[d];
    const bottom = this.bottom[d];
    for (let i = 0; i < top.length; i += 2) {
      const h = top[i] as number;
      if (h === s || h === t) continue;
      max = top[i + 1] as number;
      break;
    }
    for (let i = 0; i < bottom.length; i += 2) {
      const h = bottom[i] as number;
      if (h === s || h === t) continue;
      min = bottom[i + 1] as number;
      break;
    }
    for (const u of [us, ut]) {
      if (Number.isNaN(u)) continue;
      if (u > max) max = u;
      if (u < min) min = u;
    }
    return max > min ? max - min : 0;
  }

  /** Host h's points above its ceilings with these loads (0 for hosts that do not count). */
  ceilingExcess(h: number, cpu: number, mem: number, vcpus: number): number {
    const m = this.m;
    if (!m.inSpread[h]) return 0;
    const host = m.hosts[h];
    if (!host) return 0;
    let x = 0;
    const cLim = m.cpuLimit[h] ?? 0;
    if (cpu > cLim) x += ((cpu - cLim) / host.cpus) * 100;
    const mLim = m.memLimit[h] ?? 0;
    if (mem > mLim) x += ((mem - mLim) / host.memMiB) * 100;
    const vCap = m.vcpuCap[h] ?? Infinity;
    if (vcpus > vCap) x += vCap > 0 ? ((vcpus - vCap) / vCap) * 100 : 100;
    return x;
  }

  /** Host h's points outside the band in the active dimensions with these loads. */
  bandExcess(h: number, cpu: number, memBal: number): number {
    const m = this.m;
    if (!m.inSpread[h]) return 0;
    const host = m.hosts[h];
    if (!host) return 0;
    let x = 0;
    if (this.active[0]) {
      const u = (cpu / host.cpus) * 100;
      if (u > this.hi[0]) x += u - this.hi[0];
      else if (u < this.lo[0]) x += this.lo[0] - u;
    }
    if (this.active[1]) {
      const u = (memBal / host.memMiB) * 100;
      if (u > this.hi[1]) x += u - this.hi[1];
      else if (u < this.lo[1]) x += this.lo[1] - u;
    }
    return x;
  }

  hostCeiling(h: number): number {
    const m = this.m;
    return this.ceilingExcess(h, m.cpuLoad[h] ?? 0, m.memLoad[h] ?? 0, m.vcpuAlloc[h] ?? 0);
  }
  hostBand(h: number): number {
    return this.bandExcess(h, this.m.cpuLoad[h] ?? 0, this.m.memBalLoad[h] ?? 0);
  }

  /** The whole cluster's value (O(hosts + VMs with avoid rules)). */
  value(): ObjectiveValue {
    const m = this.m;
    let c = 0;
    let b = 0;
    for (let h = 0; h < m.hostCount; h += 1) {
      c += this.hostCeiling(h);
      b += this.hostBand(h);
    }
    return { violations: m.violations(), overCeilingPct: c, imbalancePct: b };
  }

  /** What moving VM v to host t changes, with the active dimensions as they are (see refresh()). */
  delta(v: number, t: number): ObjectiveValue {
    const m = this.m;
    const s = m.vmHost[v] ?? 0;
    const vc = m.vmCpu[v] ?? 0;
    const vm = m.vmMem[v] ?? 0;
    const vb = m.vmMemBal[v] ?? 0;
    const vv = m.vms[v]?.vcpus ?? 0;
    const sc = m.cpuLoad[s] ?? 0;
    const sm = m.memLoad[s] ?? 0;
    const sb = m.memBalLoad[s] ?? 0;
    const sv = m.vcpuAlloc[s] ?? 0;
    const tc = m.cpuLoad[t] ?? 0;
    const tm = m.memLoad[t] ?? 0;
    const tb = m.memBalLoad[t] ?? 0;
    const tv = m.vcpuAlloc[t] ?? 0;
    const ceil =
      this.ceilingExcess(s, sc - vc, sm - vm, sv - vv) -
      this.ceilingExcess(s, sc, sm, sv) +
      this.ceilingExcess(t, tc + vc, tm + vm, tv + vv) -
      this.ceilingExcess(t, tc, tm, tv);
    let band = 0;
    if (!this.ceilingsOnly) {
      const hs = m.hosts[s];
      const ht = m.hosts[t];
      for (const d of [0, 1] as const) {
        const capS = d === 0 ? (hs?.cpus ?? 1) : (hs?.memMiB ?? 1);
        const capT = d === 0 ? (ht?.cpus ?? 1) : (ht?.memMiB ?? 1);
        const ls = d === 0 ? sc : sb;
        const lt = d === 0 ? tc : tb;
        const lv = d === 0 ? vc : vb;
        const us0 = (ls / capS) * 100;
        const ut0 = (lt / capT) * 100;
        const us1 = ((ls - lv) / capS) * 100;
        const ut1 = ((lt + lv) / capT) * 100;
        const sIn = m.inSpread[s] === 1;
        const tIn = m.inSpread[t] === 1;
        const over =
          this.spreadWith(d, s, sIn ? us1 : NaN, t, tIn ? ut1 : NaN) > this.targets[d] + OBJECTIVE_EPS;
        const local =
          (sIn ? this.dimExcess(d, us1) - this.dimExcess(d, us0) : 0) +
          (tIn ? this.dimExcess(d, ut1) - this.dimExcess(d, ut0) : 0);
        // A dimension counts while its spread is over target: brought within, its whole excess goes; pushed
        // over, its whole excess comes.
        if (this.active[d]) band += over ? local : -this.total[d];
        else if (over) band += this.total[d] + local;
      }
    }
    return { violations: m.violationDelta(v, t), overCeilingPct: ceil, imbalancePct: band };
  }
}

/** Keeps the three hosts with the highest (dir 1) or lowest (dir -1) utilisation, as flat [host, util]. */
function keep3(list: number[], h: number, u: number, dir: 1 | -1): void {
  let i = list.length;
  if (i === 6 && (u - (list[5] as number)) * dir <= 0) return;
  if (i === 6) i = 4;
  while (i >= 2 && (u - (list[i - 1] as number)) * dir > 0) {
    list[i] = list[i - 2] as number;
    list[i + 1] = list[i - 1] as number;
    i -= 2;
  }
  list[i] = h;
  list[i + 1] = u;
  if (list.length > 6) list.length = 6;
}
