// `balance`: bring CPU and memory utilisation spread within target with the fewest, cheapest moves.
// It aims at the band (one per dimension, as wide as the target) that needs the fewest moves (see
// lower-bound.ts). Hosts above the band shed their largest suitable VMs, each best-fitted onto a host below
// the band so that one move brings both ends in; hosts still below the band then take VMs from hosts with
// load to spare; a pairwise local search on the extreme hosts finishes. Every move is applied to the model
// before the next is chosen.
import type { Skip, Step } from '../../../domain/plan.js';
import type { ClusterModel } from '../../constraints/cluster-model.js';
import { bestBand, prepareDimension, refineJointBand, type Prepared } from '../../lower-bound.js';
import { HostHeap } from '../../constraints/host-heap.js';
import { defineStrategy, makeStep, pct, type StrategyContext, type StrategyResult } from '../strategy.js';
import { BalanceArgsSchema, type BalanceArgs } from './balance-args.js';
import { compareObjective, Objective, OBJECTIVE_EPS, type ObjectiveValue } from '../../objective.js';
import { ObjectiveSearch } from './objective-search.js';

const EPS = 1e-9;
/** Hosts tried per VM (least loaded first) when no host below the band takes it. */
const TARGET_CANDIDATES = 48;
/** Donor hosts scanned per fill. */
const DONOR_CANDIDATES = 32;
/** Fullest and emptiest hosts paired per step of the local search (more when it gets stuck). */
const PAIR_CANDIDATES = 8;
const PAIR_CANDIDATES_STUCK = 64;
/** Receivers below the band tried per VM before falling back to any host with room. */
const PLACE_ATTEMPTS = 6;
/** Receivers (largest deficits first) considered for a VM that completes none. */
const PARTIAL_CANDIDATES = 32;
/** VMs of a host (its largest) searched for the fewest that cover its excess. */
const COVER_CANDIDATES = 24;
/** Band positions are searched to this precision (points). */
const BAND_TOLERANCE_PCT = 0.01;
/** The joint refinement's grid: step (points) and steps each way. */
const BAND_GRID_STEP_PCT = 0.25;
const BAND_GRID_RADIUS = 8;
type Dim = 0 | 1; // 0 cpu, 1 memory
const DIM_NAME = ['cpu', 'mem'] as const;

interface Band {
  lo: [number, number];
  hi: [number, number];
}

class BalanceRun {
  readonly m: ClusterModel;
  readonly steps: Step[] = [];
  /** The VM of each step, by index. */
  private readonly moved: number[] = [];
  /** VMs skipped, with why, by VM index. */
  private readonly skips = new Map<number, string>();
  /** VMs skipped only because no host below the band could take them. */
  private readonly placementSkips = new Set<number>();
  /** Per VM: 1 once skipped with a reason (reported once). */
  private readonly skippedVm: Uint8Array;
  /** Per VM: 1 when it cannot move in this run (immovable, or predicted not to converge anywhere). */
  private readonly cannot: Uint8Array;
  /** Per VM: 1 once its VM-level eligibility was checked and found fine. */
  private readonly eligible: Uint8Array;
  readonly receivers: number[] = [];
  readonly maxMoves: number;
  readonly capC: Float64Array;
  readonly capM: Float64Array;
  /** Receivers by utilisation, least first; hosts that count by utilisation, most first (per dimension). */
  private readonly emptiest: [HostHeap, HostHeap];
  private readonly fullest: [HostHeap, HostHeap];
  /** Receivers below the band of the current round (entries that left it are dropped lazily). */
  private under: number[] = [];
  /** Per host: its index in `under`, or -1. */
  private readonly underPos: Int32Array;
  /** Each entry's deficit (see deficit()). */
  private underKey: number[] = [];
  /** The smallest receiver's capacity in each dimension. */
  private readonly minCapC: number;
  private readonly minCapM: number;
  /** Scratch space for fewestCover(). */
  private coverVm = new Int32Array(64);
  private coverCpu = new Float64Array(64);
  private coverMem = new Float64Array(64);
  private coverSize = new Float64Array(64);
  /** Why the last placement failed. */
  private problem = '';
  /** The band `under` was collected for. */
  private current: Band | null = null;

  constructor(m: ClusterModel, maxMoves: number) {
    this.m = m;
    this.maxMoves = maxMoves;
    const V = m.vms.length;
    this.skippedVm = new Uint8Array(V);
    this.cannot = new Uint8Array(V);
    this.eligible = new Uint8Array(V);
    this.underPos = new Int32Array(m.hostCount).fill(-1);
    this.capC = Float64Array.from(m.hosts, (h) => h.cpus);
    this.capM = Float64Array.from(m.hosts, (h) => h.memMiB);
    this.emptiest = [new HostHeap(m.hostCount, 1), new HostHeap(m.hostCount, 1)];
    this.fullest = [new HostHeap(m.hostCount, -1), new HostHeap(m.hostCount, -1)];
    let minC = Infinity;
    let minM = Infinity;
    for (let h = 0; h < m.hostCount; h += 1) {
      if (m.receivable[h]) {
        this.receivers.push(h);
        minC = Math.min(minC, this.capC[h] ?? 1);
        minM = Math.min(minM, this.capM[h] ?? 1);
      }
      this.reindex(h);
    }
    this.minCapC = Number.isFinite(minC) ? minC : 1;
    this.minCapM = Number.isFinite(minM) ? minM : 1;
  }

  private reindex(h: number): void {
    const m = this.m;
    const c = this.util(0, h);
    const u = this.util(1, h);
    if (m.receivable[h]) {
      this.emptiest[0].push(h, c);
      this.emptiest[1].push(h, u);
    }
    if (m.inSpread[h]) {
      this.fullest[0].push(h, c);
      this.fullest[1].push(h, u);
    }
  }

  load(d: Dim, h: number): number {
    return d === 0 ? (this.m.cpuLoad[h] ?? 0) : (this.m.memLoad[h] ?? 0);
  }
  cap(d: Dim, h: number): number {
    return d === 0 ? (this.capC[h] ?? 1) : (this.capM[h] ?? 1);
  }
  vmLoad(d: Dim, v: number): number {
    return d === 0 ? (this.m.vmCpu[v] ?? 0) : (this.m.vmMem[v] ?? 0);
  }
  util(d: Dim, h: number): number {
    return (this.load(d, h) / this.cap(d, h)) * 100;
  }

  /**
   * The band needing the fewest moves: in each dimension on its own (the middle of the positions that
   * attain the one-dimensional bound), then moved on a grid to where the joint count is smallest.
   */
  band(targets: [number, number]): Band {
    const m = this.m;
    const movable = this.ruleMovable();
    const prep = ([0, 1] as Dim[]).map((d) =>
      prepareDimension({
        loads: d === 0 ? m.cpuLoad : m.memLoad,
        caps: d === 0 ? this.capC : this.capM,
        vmHost: m.vmHost,
        vmLoad: d === 0 ? m.vmCpu : m.vmMem,
        include: m.inSpread,
        movable,
      }),
    ) as [Prepared, Prepared];
    const start: [number, number] = [
      bestBand(prep[0], targets[0], BAND_TOLERANCE_PCT).lo,
      bestBand(prep[1], targets[1], BAND_TOLERANCE_PCT).lo,
    ];
    const { lo } = refineJointBand(prep[0], prep[1], targets, start, {
      stepPct: BAND_GRID_STEP_PCT,
      radius: BAND_GRID_RADIUS,
    });
    return { lo, hi: [lo[0] + targets[0], lo[1] + targets[1]] };
  }

  /** Per VM: 0 when rules exclude or pin it, or it already moved in this plan. */
  private ruleMovable(): Uint8Array {
    const m = this.m;
    const out = new Uint8Array(m.vms.length);
    for (let v = 0; v < out.length; v += 1) {
      const fx = m.effects[v];
      out[v] =
        m.moved[v] || this.cannot[v] || fx?.excludedBy !== undefined || fx?.pinnedBy !== undefined ? 0 : 1;
    }
    return out;
  }

  /** `placement`: the VM could go but found no host; reported only when the plan falls short of target. */
  skip(v: number, why: string, placement = false): void {
    this.cannot[v] = 1;
    if (this.skippedVm[v]) return;
    this.skippedVm[v] = 1;
    this.skips.set(v, why);
    if (placement) this.placementSkips.add(v);
  }

  /** The skipped VMs in snapshot order; without the placement ones when the plan reached its target. */
  skippedVms(reachedTarget: boolean): Skip[] {
    return [...this.skips.entries()]
      .filter(([v]) => !(reachedTarget && this.placementSkips.has(v)))
      .sort((a, b) => a[0] - b[0])
      .map(([v, why]) => ({ vm: this.m.vms[v]?.id ?? '', why }));
  }

  /** False (and the VM marked) when VM v may not move at all in this run (rules, cooldown, history). */
  movable(v: number): boolean {
    if (this.cannot[v] || this.m.moved[v]) return false;
    if (this.eligible[v]) return true;
    const why = this.m.immovable(v, 'rebalance');
    if (why !== null) {
      this.skip(v, why);
      return false;
    }
    this.eligible[v] = 1;
    return true;
  }

  /**
   * False (and the VM skipped) when VM v is predicted not to converge even over its own host's link; asked
   * only of VMs about to be placed, so that the predictor runs for few VMs.
   */
  converges(v: number): boolean {
    const alone = this.m.forecast(v, this.m.vmHost[v] ?? 0);
    if (alone.prediction.converges) return true;
    this.skip(v, alone.reason ?? 'predicted not to converge');
    return false;
  }

  full(): boolean {
    return this.steps.length >= this.maxMoves;
  }

  /** Null when VM v may go to host t (rules, capacity, prediction), else why not. */
  private check(v: number, t: number): string | null {
    const p = this.m.placementProblem(v, t);
    if (p !== null) return p;
    const f = this.m.forecast(v, t);
    return f.prediction.converges ? null : (f.reason ?? 'predicted not to converge');
  }

  /**
   * The best host for VM v: a host below the band that v brings into it (the one with the largest deficit,
   * so that the VM's size is used best), else the host below the band whose deficit v covers most, else the
   * least loaded host that stays within the band. -1 (and `problem` set) when there is none.
   */
  place(v: number, d: Dim, band: Band): number {
    const m = this.m;
    if ((m.effects[v]?.prefer.length ?? 0) > 0) return this.scanTarget(v, d, band);
    const from = m.vmHost[v] ?? 0;
    const vc = m.vmCpu[v] ?? 0;
    const vm = m.vmMem[v] ?? 0;
    const cL = m.cpuLoad;
    const mL = m.memLoad;
    const [loC, loM] = band.lo;
    const [hiC, hiM] = band.hi;
    this.problem = 'no host has room within the band';
    let failures = 0;
    let partial = -1;
    let partialKey = -Infinity;
    // `under` is sorted by deficit, largest first. Hosts whose deficit exceeds what v could fill even on
    // the smallest receiver cannot be completed by v: skip them (binary search); after them, the first
    // receiver v completes is the best one.
    const under = this.under;
    const keys = this.underKey;
    const reach = Math.max(vc / this.minCapC, vm / this.minCapM) + EPS;
    let lo = 0;
    let hi = under.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((keys[mid] ?? 0) > reach) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < under.length; i += 1) {
      const u = under[i] as number;
      if (u === from) continue;
      const cc = this.capC[u] ?? 1;
      const cm = this.capM[u] ?? 1;
      const c = cL[u] ?? 0;
      const mm = mL[u] ?? 0;
      const ac = c + vc;
      const am = mm + vm;
      if (ac < (loC * cc) / 100 - EPS || am < (loM * cm) / 100 - EPS) continue;
      if (ac > (hiC * cc) / 100 + EPS || am > (hiM * cm) / 100 + EPS) continue;
      if (!m.fits(v, u)) continue;
      const p = this.check(v, u);
      if (p === null) return u;
      this.problem = p;
      failures += 1;
      if (failures >= PLACE_ATTEMPTS) break;
    }
    // Else the receiver (among those with the largest deficits) whose deficit v covers most.
    const scan = Math.min(under.length, PARTIAL_CANDIDATES);
    for (let i = 0; i < scan; i += 1) {
      const u = under[i] as number;
      if (u === from) continue;
      const cc = this.capC[u] ?? 1;
      const cm = this.capM[u] ?? 1;
      const c = cL[u] ?? 0;
      const mm = mL[u] ?? 0;
      if (c + vc > (hiC * cc) / 100 + EPS || mm + vm > (hiM * cm) / 100 + EPS) continue;
      const dc = (loC * cc) / 100 - c;
      const dm = (loM * cm) / 100 - mm;
      const key = Math.min(vc, Math.max(0, dc)) / cc + Math.min(vm, Math.max(0, dm)) / cm;
      if (key > partialKey) {
        partialKey = key;
        partial = u;
      }
    }
    if (partial >= 0 && failures < PLACE_ATTEMPTS && m.fits(v, partial)) {
      const p = this.check(v, partial);
      if (p === null) return partial;
      this.problem = p;
    }
    return this.heapTarget(v, d, band);
  }

  /** Takes back the steps after the first `keep` (latest first). */
  undoFrom(keep: number): void {
    for (let i = this.moved.length - 1; i >= keep; i -= 1) {
      const v = this.moved[i] as number;
      const to = this.m.vmHost[v] ?? 0;
      this.m.unmove(v);
      this.reindex(to);
      this.reindex(this.m.vmHost[v] ?? 0);
    }
    this.moved.length = keep;
    this.steps.length = keep;
  }

  /** How far host h is below the band (the larger of its two deficits, as a share of capacity). */
  private deficit(h: number, band: Band): number {
    const dc = band.lo[0] / 100 - (this.m.cpuLoad[h] ?? 0) / (this.capC[h] ?? 1);
    const dm = band.lo[1] / 100 - (this.m.memLoad[h] ?? 0) / (this.capM[h] ?? 1);
    return Math.max(dc, dm);
  }

  /** Keeps `under` sorted after host h's load changed: drops it when no longer below the band. */
  private reposition(h: number): void {
    const band = this.current;
    if (band === null) return;
    let i = this.underPos[h] ?? -1;
    if (i < 0) return;
    const under = this.under;
    const keys = this.underKey;
    const key = this.deficit(h, band);
    if (key <= EPS) {
      under.splice(i, 1);
      keys.splice(i, 1);
      this.underPos[h] = -1;
      for (let k = i; k < under.length; k += 1) this.underPos[under[k] as number] = k;
      return;
    }
    while (i + 1 < under.length && (keys[i + 1] ?? 0) > key) {
      const next = under[i + 1] as number;
      under[i] = next;
      keys[i] = keys[i + 1] as number;
      this.underPos[next] = i;
      i += 1;
    }
    while (i > 0 && (keys[i - 1] ?? 0) < key) {
      const prev = under[i - 1] as number;
      under[i] = prev;
      keys[i] = keys[i - 1] as number;
      this.underPos[prev] = i;
      i -= 1;
    }
    under[i] = h;
    keys[i] = key;
    this.underPos[h] = i;
  }

  /** The least loaded host (in dimension d) that v keeps within the band. */
  private heapTarget(v: number, d: Dim, band: Band): number {
    const m = this.m;
    const from = m.vmHost[v] ?? 0;
    const cpu = m.vmCpu[v] ?? 0;
    const mem = m.vmMem[v] ?? 0;
    const popped: number[] = [];
    let best = -1;
    for (let checked = 0; checked < TARGET_CANDIDATES; checked += 1) {
      const t = this.emptiest[d].pop();
      if (t < 0) break;
      popped.push(t);
      if (t === from) continue;
      const cAfter = (((m.cpuLoad[t] ?? 0) + cpu) / (this.capC[t] ?? 1)) * 100;
      const mAfter = (((m.memLoad[t] ?? 0) + mem) / (this.capM[t] ?? 1)) * 100;
      if (cAfter > band.hi[0] + EPS || mAfter > band.hi[1] + EPS || !m.fits(v, t)) continue;
      const p = this.check(v, t);
      if (p !== null) {
        this.problem = p;
        continue;
      }
      best = t;
      break;
    }
    for (const h of popped) this.emptiest[d].push(h, this.util(d, h));
    return best;
  }

  /** Full scan for VMs with prefer-hosts rules: preferred first, then under the band, then least loaded. */
  private scanTarget(v: number, d: Dim, band: Band): number {
    const m = this.m;
    const from = m.vmHost[v] ?? 0;
    let best = -1;
    let bestPref = -1;
    let bestUnder = -1;
    let bestUtil = Infinity;
    this.problem = 'no host has room within the band';
    const cpu = m.vmCpu[v] ?? 0;
    const mem = m.vmMem[v] ?? 0;
    for (const t of this.receivers) {
      if (t === from) continue;
      const cAfter = (((m.cpuLoad[t] ?? 0) + cpu) / (this.capC[t] ?? 1)) * 100;
      const mAfter = (((m.memLoad[t] ?? 0) + mem) / (this.capM[t] ?? 1)) * 100;
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
      const p = this.check(v, t);
      if (p !== null) {
        this.problem = p;
        continue;
      }
      best = t;
      bestPref = pref;
      bestUnder = under;
      bestUtil = u;
    }
    return best;
  }

  apply(v: number, to: number, why: string): void {
    const from = this.m.vmHost[v] ?? 0;
    this.steps.push(makeStep(this.m, v, to, why));
    this.moved.push(v);
    this.m.move(v, to);
    this.reindex(from);
    this.reindex(to);
    this.reposition(from);
    this.reposition(to);
  }

  /** Collects the receivers below the band, largest deficit first. */
  collectUnder(band: Band): void {
    const m = this.m;
    const list: { h: number; x: number }[] = [];
    for (const h of this.receivers) {
      if (!m.inSpread[h]) continue;
      const x = this.deficit(h, band);
      if (x > EPS) list.push({ h, x });
    }
    list.sort((a, b) => b.x - a.x);
    this.under = list.map((e) => e.h);
    this.underKey = list.map((e) => e.x);
    this.underPos.fill(-1);
    this.under.forEach((h, i) => (this.underPos[h] = i));
    this.current = band;
  }

  /**
   * Hosts above the band shed VMs: one VM that covers the whole excess when there is one (the largest
   * such that keeps the host within the band), else the VM covering most of it; each goes where place()
   * says. Returns the number of moves made.
   */
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
      const capC = this.capC[s] ?? 1;
      const capM = this.capM[s] ?? 1;
      for (let guard = 0; guard < 256 && !this.full(); guard += 1) {
        const cLoad = m.cpuLoad[s] ?? 0;
        const mLoad = m.memLoad[s] ?? 0;
        const exC = cLoad - (band.hi[0] / 100) * capC;
        const exM = mLoad - (band.hi[1] / 100) * capM;
        if (exC <= EPS && exM <= EPS) break;
        const spareC = cLoad - (band.lo[0] / 100) * capC;
        const spareM = mLoad - (band.lo[1] / 100) * capM;
        let best = this.fewestCover(s, exC, exM, spareC, spareM);
        if (best < 0) {
          let bestKey = 0;
          for (const v of m.hostVms[s] ?? []) {
            if (this.cannot[v] || m.moved[v]) continue;
            const lc = m.vmCpu[v] ?? 0;
            const lm = m.vmMem[v] ?? 0;
            const cov =
              (exC > EPS ? Math.min(lc, exC) / capC : 0) + (exM > EPS ? Math.min(lm, exM) / capM : 0);
            if (cov <= EPS) continue;
            const within = (lc <= EPS || lc <= spareC + EPS) && (lm <= EPS || lm <= spareM + EPS);
            // Within the band's lower edges first (covering most), then the rest.
            const key = within ? 4 + cov : cov;
            if (key > bestKey + EPS) {
              if (!this.movable(v)) continue;
              bestKey = key;
              best = v;
            }
          }
        }
        if (best < 0) break;
        if (!this.converges(best)) continue;
        const d: Dim = exC / capC >= exM / capM ? 0 : 1;
        const t = this.place(best, d, band);
        if (t < 0) {
          this.skip(best, this.problem, true);
          continue;
        }
        const src = m.hosts[s]?.id ?? '';
        const dst = m.hosts[t]?.id ?? '';
        const dstUnder = this.util(d, t) < band.lo[d];
        this.apply(
          best,
          t,
          `${src} ${DIM_NAME[d]} ${pct(this.util(d, s))} > ${pct(band.hi[d])}; ` +
            `${dst} ${DIM_NAME[d]} ${pct(this.util(d, t))} ${dstUnder ? `< ${pct(band.lo[d])}` : 'has room'}`,
        );
        made += 1;
      }
      if (this.full()) break;
    }
    return made;
  }

  /**
   * The fewest VMs of `host` (up to three, among its largest) whose removal covers its excess in both
   * dimensions without taking it below the band's lower edges; of those sets the one with the most load
   * (so that each move also fills its receiver the most). Returns the set's largest VM, or -1.
   */
  private fewestCover(
    host: number,
    excessCpu: number,
    excessMem: number,
    spareCpu: number,
    spareMem: number,
  ): number {
    const model = this.m;
    const cpuCap = this.capC[host] ?? 1;
    const memCap = this.capM[host] ?? 1;
    const vms = model.hostVms[host] ?? [];
    if (this.coverVm.length < vms.length) this.growCover(vms.length);
    const ids = this.coverVm;
    const cpuOf = this.coverCpu;
    const memOf = this.coverMem;
    const sizeOf = this.coverSize;
    // Candidates, largest first (insertion sort: a host holds a few dozen VMs).
    let count = 0;
    let topC1 = 0;
    let topC2 = 0;
    let topC3 = 0;
    let topM1 = 0;
    let topM2 = 0;
    let topM3 = 0;
    for (const vm of vms) {
      if (this.cannot[vm] || model.moved[vm]) continue;
      const vmCpu = model.vmCpu[vm] ?? 0;
      const vmMem = model.vmMem[vm] ?? 0;
      if ((excessCpu <= EPS || vmCpu <= EPS) && (excessMem <= EPS || vmMem <= EPS)) continue;
      if (vmCpu > spareCpu + EPS || vmMem > spareMem + EPS) continue;
      if (!this.movable(vm)) continue;
      const size = vmCpu / cpuCap + vmMem / memCap;
      let j = count;
      while (j > 0 && (sizeOf[j - 1] ?? 0) < size) {
        ids[j] = ids[j - 1] ?? 0;
        cpuOf[j] = cpuOf[j - 1] ?? 0;
        memOf[j] = memOf[j - 1] ?? 0;
        sizeOf[j] = sizeOf[j - 1] ?? 0;
        j -= 1;
      }
      ids[j] = vm;
      cpuOf[j] = vmCpu;
      memOf[j] = vmMem;
      sizeOf[j] = size;
      count += 1;
      if (vmCpu > topC1) [topC1, topC2, topC3] = [vmCpu, topC1, topC2];
      else if (vmCpu > topC2) [topC2, topC3] = [vmCpu, topC2];
      else if (vmCpu > topC3) topC3 = vmCpu;
      if (vmMem > topM1) [topM1, topM2, topM3] = [vmMem, topM1, topM2];
      else if (vmMem > topM2) [topM2, topM3] = [vmMem, topM2];
      else if (vmMem > topM3) topM3 = vmMem;
    }
    if (count > COVER_CANDIDATES) count = COVER_CANDIDATES;
    const needCpu = excessCpu > EPS ? excessCpu - EPS : -Infinity;
    const needMem = excessMem > EPS ? excessMem - EPS : -Infinity;
    const maxCpu = spareCpu + EPS;
    const maxMem = spareMem + EPS;
    let best = -1;
    let bestSize = -1;
    for (let i = 0; i < count; i += 1) {
      const setCpu = cpuOf[i] ?? 0;
      const setMem = memOf[i] ?? 0;
      if (setCpu >= needCpu && setMem >= needMem && setCpu <= maxCpu && setMem <= maxMem) return ids[i] ?? -1; // largest first
    }
    // Sets of k cannot cover a dimension that even its k largest VMs do not cover.
    if (topC1 + topC2 >= needCpu && topM1 + topM2 >= needMem) {
      for (let i = 0; i < count; i += 1)
        for (let j = i + 1; j < count; j += 1) {
          const setCpu = (cpuOf[i] ?? 0) + (cpuOf[j] ?? 0);
          const setMem = (memOf[i] ?? 0) + (memOf[j] ?? 0);
          if (setCpu >= needCpu && setMem >= needMem && setCpu <= maxCpu && setMem <= maxMem) {
            const size = (sizeOf[i] ?? 0) + (sizeOf[j] ?? 0);
            if (size > bestSize) {
              bestSize = size;
              best = i;
            }
          }
        }
      if (best >= 0) return ids[best] ?? -1;
    }
    if (topC1 + topC2 + topC3 < needCpu || topM1 + topM2 + topM3 < needMem) return -1;
    for (let i = 0; i < count; i += 1)
      for (let j = i + 1; j < count; j += 1)
        for (let k = j + 1; k < count; k += 1) {
          const setCpu = (cpuOf[i] ?? 0) + (cpuOf[j] ?? 0) + (cpuOf[k] ?? 0);
          const setMem = (memOf[i] ?? 0) + (memOf[j] ?? 0) + (memOf[k] ?? 0);
          if (setCpu >= needCpu && setMem >= needMem && setCpu <= maxCpu && setMem <= maxMem) {
            const size = (sizeOf[i] ?? 0) + (sizeOf[j] ?? 0) + (sizeOf[k] ?? 0);
            if (size > bestSize) {
              bestSize = size;
              best = i;
            }
          }
        }
    return best >= 0 ? (ids[best] ?? -1) : -1;
  }

  private growCover(n: number): void {
    const size = Math.max(n, 2 * this.coverVm.length);
    this.coverVm = new Int32Array(size);
    this.coverCpu = new Float64Array(size);
    this.coverMem = new Float64Array(size);
    this.coverSize = new Float64Array(size);
  }

  /** Hosts below the band take VMs from hosts with load above the band's lower edge. */
  fill(band: Band): number {
    const m = this.m;
    let made = 0;
    this.collectUnder(band);
    const todo = [...this.under];
    for (const t of todo) {
      const host = m.hosts[t];
      if (!host) continue;
      const capC = this.capC[t] ?? 1;
      const capM = this.capM[t] ?? 1;
      const hiC = (band.hi[0] / 100) * capC;
      const hiM = (band.hi[1] / 100) * capM;
      let refused: number[] | null = null;
      let madeRoom = false;
      for (let guard = 0; guard < 64 && !this.full(); guard += 1) {
        const defC = (band.lo[0] / 100) * capC - (m.cpuLoad[t] ?? 0);
        const defM = (band.lo[1] / 100) * capM - (m.memLoad[t] ?? 0);
        if (defC <= EPS && defM <= EPS) break;
        const d: Dim = defC / capC >= defM / capM ? 0 : 1;
        let best = -1;
        let bestKey = -Infinity;
        const popped: number[] = [];
        for (let scanned = 0; scanned < DONOR_CANDIDATES;) {
          const s = this.fullest[d].pop();
          if (s < 0) break;
          popped.push(s);
          if (s === t) continue;
          const sc = this.capC[s] ?? 1;
          const sm = this.capM[s] ?? 1;
          const spareC = (m.cpuLoad[s] ?? 0) - (band.lo[0] / 100) * sc;
          const spareM = (m.memLoad[s] ?? 0) - (band.lo[1] / 100) * sm;
          if ((d === 0 ? spareC : spareM) <= EPS) break;
          scanned += 1;
          for (const v of m.hostVms[s] ?? []) {
            if (this.cannot[v] || m.moved[v]) continue;
            const lc = m.vmCpu[v] ?? 0;
            const lm = m.vmMem[v] ?? 0;
            if ((d === 0 ? lc : lm) <= EPS) continue;
            // The donor stays within the band's lower edges, the receiver within its upper edges.
            if ((lc > EPS && lc > spareC + EPS) || (lm > EPS && lm > spareM + EPS)) continue;
            if ((m.cpuLoad[t] ?? 0) + lc > hiC + EPS || (m.memLoad[t] ?? 0) + lm > hiM + EPS) continue;
            if (refused !== null && refused.includes(v)) continue;
            // Prefer a VM that covers every deficit (the smallest such), else the one covering the most.
            const covers = lc >= defC - EPS && lm >= defM - EPS;
            const key = covers
              ? 8 - lc / capC - lm / capM
              : Math.min(lc, Math.max(0, defC)) / capC + Math.min(lm, Math.max(0, defM)) / capM;
            if (key > bestKey) {
              if (!this.movable(v)) continue;
              bestKey = key;
              best = v;
            }
          }
          if (bestKey >= 4) break;
        }
        for (const h of popped) this.fullest[d].push(h, this.util(d, h));
        if (best < 0) {
          // Nothing fits under the band's upper edge in the other dimension: make room there first by
          // sending away the VM heaviest in it and lightest in this one, then try again.
          if (!madeRoom && this.makeRoom(t, d, band)) {
            madeRoom = true;
            made += 1;
            continue;
          }
          break;
        }
        const v = best;
        if (!this.converges(v)) continue;
        if (!m.fits(v, t) || this.check(v, t) !== null) {
          (refused ??= []).push(v);
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
   * Host t is below the band in dimension d but has no room left in the other one: move away the VM that
   * frees the most of the other dimension for the least of d, keeping t above the band's lower edge there.
   */
  private makeRoom(t: number, d: Dim, band: Band): boolean {
    const m = this.m;
    const o: Dim = d === 0 ? 1 : 0;
    if (this.full()) return false;
    const spareO = this.load(o, t) - (band.lo[o] / 100) * this.cap(o, t);
    let best = -1;
    let bestKey = 0;
    for (const v of m.hostVms[t] ?? []) {
      if (this.cannot[v] || m.moved[v]) continue;
      const lo = this.vmLoad(o, v);
      if (lo <= EPS || lo > spareO + EPS) continue;
      const key = lo / this.cap(o, t) - this.vmLoad(d, v) / this.cap(d, t);
      if (key > bestKey && this.movable(v)) {
        bestKey = key;
        best = v;
      }
    }
    if (best < 0 || !this.converges(best)) return false;
    const to = this.place(best, o, band);
    if (to < 0) return false;
    this.apply(
      best,
      to,
      `${m.hosts[t]?.id ?? ''} ${DIM_NAME[d]} ${pct(this.util(d, t))} < ${pct(band.lo[d])} but ` +
        `${DIM_NAME[o]} ${pct(this.util(o, t))} leaves no room; ${m.hosts[to]?.id ?? ''} has room`,
    );
    return true;
  }

  /**
   * Local search on the extremes: while a dimension's spread exceeds its target, move from one of the
   * fullest hosts to one of the emptiest the VM that best evens the pair, as long as the move lowers the
   * maximum or raises the minimum without creating a new extreme in either dimension.
   */
  pairwise(targets: [number, number]): number {
    let made = 0;
    let width = PAIR_CANDIDATES;
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
      // The worse dimension first; when it is stuck, the other.
      const order: Dim[] = over0 >= over1 ? [0, 1] : [1, 0];
      let done = false;
      for (const d of order) {
        const over = d === 0 ? over0 : over1;
        if (over <= EPS) continue;
        done = this.pairStep(d, d === 0 ? e0 : e1, d === 0 ? e1 : e0, targets, width);
        if (done) break;
      }
      if (done) {
        made += 1;
        width = PAIR_CANDIDATES;
        continue;
      }
      if (width >= PAIR_CANDIDATES_STUCK) break;
      width = PAIR_CANDIDATES_STUCK;
    }
    return made;
  }

  private pairStep(
    d: Dim,
    e: { hi: number; lo: number; max: number; min: number },
    eo: { hi: number; lo: number; max: number; min: number },
    targets: [number, number],
    width: number,
  ): boolean {
    const m = this.m;
    const o: Dim = d === 0 ? 1 : 0;
    // The other dimension may use the room its target leaves.
    const oMax = Math.max(eo.max, eo.min + targets[o]);
    const oMin = Math.min(eo.min, eo.max - targets[o]);
    const srcs: number[] = [];
    const dsts: number[] = [];
    for (let k = 0; k < width; k += 1) {
      const s = this.fullest[d].pop();
      if (s >= 0) srcs.push(s);
      const t = this.emptiest[d].pop();
      if (t >= 0) dsts.push(t);
    }
    const restore = () => {
      for (const h of srcs) this.fullest[d].push(h, this.util(d, h));
      for (const h of dsts) this.emptiest[d].push(h, this.util(d, h));
    };
    for (const s of srcs) {
      for (const t of dsts) {
        if (s === t || (s !== e.hi && t !== e.lo)) continue;
        const us = this.util(d, s);
        const ut = this.util(d, t);
        if (us <= ut) continue;
        const cands: { v: number; gap: number }[] = [];
        for (const v of m.hostVms[s] ?? []) {
          if (this.cannot[v] || m.moved[v]) continue;
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
          if (!this.movable(v) || !this.converges(v)) continue;
          if (this.check(v, t) !== null) continue;
          restore();
          this.apply(
            v,
            t,
            `${m.hosts[s]?.id ?? ''} ${DIM_NAME[d]} ${pct(us)} and ${m.hosts[t]?.id ?? ''} ${DIM_NAME[d]} ` +
              `${pct(ut)} are ${Math.round(us - ut)} points apart (target spread ${targets[d]})`,
          );
          return true;
        }
      }
    }
    restore();
    return false;
  }
}

/** Budgets (moves) up to which best-move-first also runs for the imbalance, whatever the cluster's size. */
const GREEDY_MAX_MOVES = 50;
/** Hosts up to which it runs whatever the budget. */
const GREEDY_ANY_HOSTS = 200;

function planBalance(ctx: StrategyContext, args: BalanceArgs): StrategyResult {
  const m = ctx.model;
  const pol = m.policy.balance;
  const targets: [number, number] = [pol.targetCpuSpreadPct, pol.targetMemSpreadPct];
  const within = (s: { cpuSpreadPct: number; memSpreadPct: number }) =>
    s.cpuSpreadPct <= targets[0] && s.memSpreadPct <= targets[1];
  const before = m.spread();
  const obj = new Objective(m, pol.offloadOnly);
  const start = obj.value();
  const urgent = start.violations > 0 || start.overCeilingPct > OBJECTIVE_EPS;
  if (!urgent && (within(before) || pol.offloadOnly)) {
    return {
      steps: [],
      skipped: [],
      note: pol.offloadOnly
        ? 'no host above a ceiling and no rule broken (offload only)'
        : `spread within target: cpu ${before.cpuSpreadPct} <= ${targets[0]} points, ` +
          `mem ${before.memSpreadPct} <= ${targets[1]} points`,
    };
  }
  if (!urgent && pol.trigger === 'threshold') {
    return {
      steps: [],
      skipped: [],
      note: 'no host above a ceiling and no rule broken (trigger: threshold)',
    };
  }
  const maxMoves = args.maxMoves ?? m.policy.limits.maxMovesPerRun;
  const search = new ObjectiveSearch(m, obj, maxMoves);
  // Rules first, then hosts above their ceilings, best move first whatever the cluster's size: the most
  // valuable moves take the budget first (on a large cluster, ceiling relief takes several moves between
  // disjoint hosts per round; objective-search.ts).
  search.run(2);
  let bandSkips: Skip[] = [];
  obj.refresh();
  if (!search.full() && !pol.offloadOnly && (obj.active[0] || obj.active[1])) {
    // The imbalance two ways from here: best move first, and the band search that reaches the target with
    // the fewest moves (lower-bound.ts); the plan keeps whichever leaves the better objective (then the
    // fewer moves, then the fewer bytes).
    const kept = search.steps.length;
    // Best move first costs a round over the candidate hosts per move: on a large cluster with a large
    // budget only the band search runs (it needs a fraction of the time for thousands of moves).
    const greedyToo =
      pol.memoryBasis === 'used' || maxMoves - kept <= GREEDY_MAX_MOVES || m.hostCount <= GREEDY_ANY_HOSTS;
    if (greedyToo) search.run(3);
    obj.refresh();
    const greedyValue = greedyToo ? obj.value() : null;
    if (pol.memoryBasis === 'allocated') {
      const greedy = search.undoFrom(kept);
      const run = new BalanceRun(m, maxMoves - kept);
      for (let round = 0; round < 4 && !run.full() && !within(m.spread()); round += 1) {
        // A later round aims at a band placed for what is left to move, which can be far from the first
        // (when hosts that cannot shed keep the spread over target, the band climbs to meet them): it is
        // kept only when it lowers the objective by the minimum improvement, else taken back.
        obj.refresh();
        const prior = round > 0 ? obj.value() : null;
        const keep = run.steps.length;
        const band = run.band(targets);
        run.collectUnder(band);
        const made = run.shed(band) + run.fill(band) + run.pairwise(targets);
        if (made === 0) break;
        if (prior !== null) {
          obj.refresh();
          const now = obj.value();
          const worth =
            now.violations < prior.violations ||
            now.overCeilingPct < prior.overCeilingPct - OBJECTIVE_EPS ||
            (compareObjective(now, prior) < 0 &&
              prior.imbalancePct - now.imbalancePct >= pol.minImprovementPct);
          if (!worth) {
            run.undoFrom(keep);
            break;
          }
        }
      }
      obj.refresh();
      const bandValue = obj.value();
      const cmp =
        greedyValue === null
          ? -1
          : compareObjective(bandValue, greedyValue) ||
            run.steps.length - greedy.steps.length ||
            transferMiB(run.steps) - transferMiB(greedy.steps);
      if (cmp < 0) {
        search.steps.push(...run.steps);
        // The band search places VMs only within its band: a VM larger than the band's room (or one whose
        // host the band never reaches) is left where a move would still lower the objective. Best move first
        // finishes (for a bounded number of moves on a cluster where it did not run before).
        if (!within(m.spread())) search.run(3, greedyToo ? Infinity : GREEDY_MAX_MOVES);
        bandSkips = run.skippedVms(within(m.spread()));
      } else {
        const index = new Map(run.steps.map((st) => [st.vm, -1]));
        m.vms.forEach((x, i) => {
          if (index.has(x.id)) index.set(x.id, i);
        });
        for (let i = run.steps.length - 1; i >= 0; i -= 1) {
          const v = index.get(run.steps[i]?.vm ?? '') ?? -1;
          if (v >= 0) m.unmove(v);
        }
        search.redo(greedy);
      }
    }
  }
  obj.refresh();
  const end = obj.value();
  const after = m.spread();
  const steps = search.steps;
  const skipped = mergeSkips(m, search.skips, bandSkips);
  const gain = start.imbalancePct - end.imbalancePct;
  const passes =
    end.violations < start.violations ||
    end.overCeilingPct < start.overCeilingPct - OBJECTIVE_EPS ||
    (within(after) && !within(before)) ||
    gain >= pol.minImprovementPct;
  if (steps.length > 0 && !passes) {
    return {
      steps: [],
      skipped,
      note:
        `the best moves found lower the imbalance by ${gain.toFixed(1)} points, ` +
        `less than the minimum ${pol.minImprovementPct}`,
    };
  }
  const result: StrategyResult = { steps, skipped };
  if (steps.length === 0) result.note = 'no move improves the balance within the constraints';
  else if (end.violations > 0 || end.overCeilingPct > OBJECTIVE_EPS || (!pol.offloadOnly && !within(after)))
    result.note =
      steps.length >= maxMoves
        ? `stopped at the limit of ${maxMoves} moves; ${shortOf(end, within(after))}`
        : `${shortOf(end, within(after))}: no further move fits the constraints`;
  return result;
}

function shortOf(end: ObjectiveValue, balanced: boolean): string {
  const parts: string[] = [];
  if (end.violations > 0) parts.push(`${end.violations} rule violation(s) left`);
  if (end.overCeilingPct > OBJECTIVE_EPS)
    parts.push(`hosts still ${end.overCeilingPct.toFixed(1)} points above ceilings`);
  if (!balanced) parts.push('spread not yet within target');
  return parts.join('; ');
}

function transferMiB(steps: readonly Step[]): number {
  let n = 0;
  for (const s of steps) n += s.predicted.transferMiB;
  return n;
}

/** Skipped VMs of both searches, once each, in snapshot order. */
function mergeSkips(m: ClusterModel, search: ReadonlyMap<number, string>, band: readonly Skip[]): Skip[] {
  const byId = new Map<string, string>();
  for (const s of band) byId.set(s.vm, s.why);
  const out: { v: number; skip: Skip }[] = [];
  for (const [v, why] of search) {
    const id = m.vms[v]?.id ?? '';
    if (m.moved[v]) continue;
    out.push({ v, skip: { vm: id, why } });
    byId.delete(id);
  }
  const index = byId.size > 0 ? new Map(m.vms.map((x, i) => [x.id, i])) : new Map<string, number>();
  for (const [id, why] of byId) out.push({ v: index.get(id) ?? 0, skip: { vm: id, why } });
  return out.sort((a, b) => a.v - b.v).map((e) => e.skip);
}

export const balanceStrategy = defineStrategy<BalanceArgs>({
  name: 'balance',
  reason: 'rebalance',
  description:
    'repair broken rules, relieve hosts above their ceilings, then bring CPU and memory spread within target',
  argsSchema: BalanceArgsSchema,
  holdTimeS: 900,
  plan: planBalance,
});
