// Best-move-first search on the rebalance objective (objective.ts): each round evaluates moving the VMs of
// the hosts that matter most (hosts holding VMs that break a rule, hosts above a ceiling, hosts above the
// band, the fullest) to the hosts with the most room, takes the move that improves the objective most —
// among equals the one that copies the fewest bytes — and applies it to the model before the next round.
// It stops when no allowed move improves the objective or the move budget is spent, so a budget always buys
// the most valuable moves first. Small clusters are searched exhaustively (every VM to every host).
import type { Step } from '../../../domain/plan.js';
import type { ClusterModel } from '../../constraints/cluster-model.js';
import { compareObjective, OBJECTIVE_EPS, type Objective, type ObjectiveValue } from '../../objective.js';
import { makeStep, pct } from '../strategy.js';

/** Hosts taken per kind of source and destination in a round; widened once when nothing is found. */
const WIDTH = 8;
const WIDTH_STUCK = 24;
/** Candidates whose constraints are checked per round before giving up on the round. */
const CHECKS_PER_ROUND = 256;
/** Hosts above which ceiling relief takes up to BATCH_MOVES moves per round (see batch()). */
const BATCH_MIN_HOSTS = 200;
const BATCH_MOVES = 8;
/** Two-step repairs: hosts tried per broken rule, parking places, and VMs of a host tried for parking. */
const REPAIR_TARGETS = 16;
const REPAIR_PARKING = 32;
const REPAIR_RESIDENTS = 4;
/** VMs parked at most for one repair, when no single one makes room (a repair of up to this many + 1 moves). */
const REPAIR_MAX_PARKED = 3;
/** Feasible candidates of equal value compared for bytes to copy. */
const TIE_CHECKS = 8;

interface Candidate {
  v: number;
  t: number;
  d: ObjectiveValue;
  /** Bytes proxy for ordering: the VM's memory. */
  memMiB: number;
}

/** Keeps the k hosts with the largest key. */
class TopK {
  readonly hosts: number[] = [];
  readonly keys: number[] = [];
  constructor(readonly k: number) {}
  offer(h: number, key: number): void {
    const n = this.hosts.length;
    if (n === this.k && key <= (this.keys[n - 1] ?? -Infinity)) return;
    let i = n === this.k ? n - 1 : n;
    while (i > 0 && (this.keys[i - 1] ?? -Infinity) < key) {
      this.hosts[i] = this.hosts[i - 1] as number;
      this.keys[i] = this.keys[i - 1] as number;
      i -= 1;
    }
    this.hosts[i] = h;
    this.keys[i] = key;
  }
}

export class ObjectiveSearch {
  readonly steps: Step[] = [];
  /** The moves made, as VM index and host index pairs (for undo and redo). */
  readonly moves: number[] = [];
  /** Why a VM could not move, by VM index (first reason). */
  readonly skips = new Map<number, string>();
  private readonly cannot: Uint8Array;
  private readonly eligible: Uint8Array;
  /** Violators for which no repair (direct or in two moves) was found. */
  private readonly noRepair: Uint8Array;
  /**
   * VMs breaking a rule where they stand. Moves never create a violation (placementProblem), so later
   * violators are among the first; the list is filtered as rounds repair them.
   */
  private violators: number[] = [];
  violations: number;

  constructor(
    readonly m: ClusterModel,
    readonly obj: Objective,
    readonly maxMoves: number,
  ) {
    this.cannot = new Uint8Array(m.vms.length);
    this.eligible = new Uint8Array(m.vms.length);
    this.noRepair = new Uint8Array(m.vms.length);
    this.violations = m.violations();
    if (this.violations > 0)
      for (let v = 0; v < m.vms.length; v += 1)
        if (m.hasPlacementRules(v) && m.violationOf(v) !== null) this.violators.push(v);
  }

  /** Takes back the moves after the first `keep` (latest first); returns what was taken back. */
  undoFrom(keep: number): { steps: Step[]; moves: number[] } {
    const steps = this.steps.splice(keep);
    const moves = this.moves.splice(keep * 2);
    for (let i = moves.length - 2; i >= 0; i -= 2) this.m.unmove(moves[i] as number);
    this.violations = this.m.violations();
    return { steps, moves };
  }

  /** Applies moves taken back by undoFrom again. */
  redo(taken: { steps: Step[]; moves: number[] }): void {
    for (let i = 0; i < taken.moves.length; i += 2)
      this.m.move(taken.moves[i] as number, taken.moves[i + 1] as number);
    this.steps.push(...taken.steps);
    this.moves.push(...taken.moves);
    this.violations = this.m.violations();
  }

  full(): boolean {
    return this.steps.length >= this.maxMoves;
  }

  private skip(v: number, why: string): void {
    this.cannot[v] = 1;
    if (!this.skips.has(v)) this.skips.set(v, why);
  }

  private movable(v: number): boolean {
    const m = this.m;
    if (this.cannot[v] || m.moved[v]) return false;
    if (this.eligible[v]) return true;
    const why = m.immovable(v, 'rebalance');
    if (why !== null) {
      this.skip(v, why);
      return false;
    }
    const alone = m.forecast(v, m.vmHost[v] ?? 0);
    if (!alone.prediction.converges) {
      this.skip(v, alone.reason ?? 'predicted not to converge');
      return false;
    }
    this.eligible[v] = 1;
    return true;
  }

  /**
   * Runs rounds until the budget (or `limit` moves) is spent or no move improves. `tiers` 1 counts only rule
   * repair, 2 ceiling relief too, 3 the imbalance too.
   */
  run(tiers: 1 | 2 | 3, limit = Infinity): number {
    let made = 0;
    while (!this.full() && made < limit) {
      // The band (which dimensions count, their totals) matters to tier 3 only; below it, one refresh.
      if (tiers === 3 || made === 0) this.obj.refresh();
      // Rule repair comes first: a direct move where one exists, else two (park a VM of the host that would
      // repair the rule elsewhere, then the repair).
      if (this.repairable()) {
        const repaired =
          this.round(WIDTH, 1) || (this.m.hostCount > WIDTH && this.round(WIDTH_STUCK, 1)) || this.twoStep();
        if (repaired) {
          made += 1;
          continue;
        }
      }
      let done = this.round(WIDTH, tiers);
      if (!done && this.m.hostCount > WIDTH) done = this.round(WIDTH_STUCK, tiers);
      if (!done) break;
      made += 1;
    }
    return made;
  }

  /** True while some VM breaks a rule and a repair of it has not yet been found impossible. */
  private repairable(): boolean {
    if (this.violations <= 0) return false;
    const m = this.m;
    this.violators = this.violators.filter((v) => !m.moved[v] && m.violationOf(v) !== null);
    return this.violators.some((v) => !this.noRepair[v] && !this.cannot[v]);
  }

  /** A repair in two or more moves for the first violator that has one (see repairWithRoom). */
  private twoStep(): boolean {
    if (this.steps.length + 2 > this.maxMoves) return false;
    for (const v of this.violators) {
      if (this.noRepair[v] || !this.movable(v)) continue;
      if (this.repairWithRoom(v)) return true;
      this.noRepair[v] = 1;
    }
    return false;
  }

  /**
   * VM v breaks a rule, and the hosts where it would not lack room for it: park one VM of such a host (the
   * smallest that makes room) on another host, then move v there. The parked VM must be free to move, break
   * no rule where it lands and converge; of the pairs found the one that copies the fewest bytes wins. Where
   * no one VM makes room, several are parked first (parkSeveral).
   */
  private repairWithRoom(v: number): boolean {
    const m = this.m;
    const s = m.vmHost[v] ?? 0;
    const H = m.hostCount;
    const room = (h: number): number => {
      const host = m.hosts[h];
      if (!host) return -Infinity;
      return Math.min(
        ((m.cpuLimit[h] ?? 0) - (m.cpuLoad[h] ?? 0)) / host.cpus,
        ((m.memLimit[h] ?? 0) - (m.memLoad[h] ?? 0)) / host.memMiB,
      );
    };
    // Hosts that would repair v's rule but lack room for it, least short first; parking places by room.
    const targets = new TopK(REPAIR_TARGETS);
    const parking = new TopK(REPAIR_PARKING);
    const vc = m.vmCpu[v] ?? 0;
    const vm = m.vmMem[v] ?? 0;
    for (let t = 0; t < H; t += 1) {
      if (!m.receivable[t]) continue;
      parking.offer(t, room(t));
      if (t === s || m.fits(v, t) || m.violationDelta(v, t) >= 0) continue;
      const host = m.hosts[t];
      if (!host) continue;
      const short = Math.max(
        ((m.cpuLoad[t] ?? 0) + vc - (m.cpuLimit[t] ?? 0)) / host.cpus,
        ((m.memLoad[t] ?? 0) + vm - (m.memLimit[t] ?? 0)) / host.memMiB,
      );
      targets.offer(t, -short);
    }
    let best: { w: number; u: number; t: number; bytes: number } | null = null;
    for (const t of targets.hosts) {
      const residents = (m.hostVms[t] ?? [])
        .filter(
          (w) =>
            w !== v &&
            !m.moved[w] &&
            (m.cpuLoad[t] ?? 0) - (m.vmCpu[w] ?? 0) + vc <= (m.cpuLimit[t] ?? 0) + 1e-9 &&
            (m.memLoad[t] ?? 0) - (m.vmMem[w] ?? 0) + vm <= (m.memLimit[t] ?? 0) + 1e-9 &&
            (m.vcpuAlloc[t] ?? 0) - (m.vms[w]?.vcpus ?? 0) + (m.vms[v]?.vcpus ?? 0) <=
              (m.vcpuCap[t] ?? 0) + 1e-9,
        )
        .sort((a, b) => (m.vmMem[a] ?? 0) - (m.vmMem[b] ?? 0))
        .slice(0, REPAIR_RESIDENTS);
      for (const w of residents) {
        if (!this.movable(w)) continue;
        const u = this.parkingFor(w, t, parking.hosts);
        if (u < 0) continue;
        m.move(w, u);
        const ok =
          m.placementProblem(v, t) === null &&
          m.violationDelta(v, t) < 0 &&
          m.forecast(v, t).prediction.converges;
        const bytes = ok ? m.forecast(v, t).prediction.transferMiB : 0;
        m.unmove(w);
        if (!ok) continue;
        const total = bytes + m.forecast(w, u).prediction.transferMiB;
        if (!best || total < best.bytes) best = { w, u, t, bytes: total };
        break;
      }
    }
    const parks: [number, number][] = best
      ? [[best.w, best.u]]
      : this.parkSeveral(v, targets.hosts, parking.hosts);
    if (parks.length === 0) return false;
    const t = best ? best.t : (m.vmHost[parks[0]?.[0] ?? 0] ?? 0);
    const rule = m.violationOf(v) ?? 'broken placement';
    const name = (x: number) => m.vms[x]?.name ?? m.vms[x]?.id ?? '';
    const host = (h: number) => m.hosts[h]?.id ?? '';
    for (const [w, u] of parks)
      this.push(
        w,
        u,
        `makes room on ${host(t)} to repair a rule of ${name(v)} (${rule}); ${host(u)} has room`,
      );
    const gone = parks.map(([w, u]) => `${name(w)} has moved to ${host(u)}`).join(', ');
    this.push(v, t, `repairs a rule: ${rule}; ${host(t)} keeps it once ${gone}`);
    // The executor starts the repair only once the parking moves have completed.
    const repair = this.steps[this.steps.length - 1];
    if (repair) repair.after = parks.map(([w]) => m.vms[w]?.id ?? '');
    return true;
  }

  /**
   * Where no one VM of a target host makes room for v: park several (largest first, up to REPAIR_MAX_PARKED,
   * each where it breaks no rule and converges) until v fits, on the target that needs the fewest moves (then
   * the fewest bytes). Returns the parking moves, or none. The model is left as it was.
   */
  private parkSeveral(v: number, targets: readonly number[], parking: readonly number[]): [number, number][] {
    const m = this.m;
    const budget = Math.min(REPAIR_MAX_PARKED, this.maxMoves - this.steps.length - 1);
    let best: { parks: [number, number][]; bytes: number } | null = null;
    for (const t of targets) {
      const residents = (m.hostVms[t] ?? [])
        .filter((w) => w !== v && !m.moved[w])
        .sort((a, b) => (m.vmMem[b] ?? 0) - (m.vmMem[a] ?? 0));
      const parks: [number, number][] = [];
      let bytes = 0;
      for (const w of residents) {
        if (parks.length >= budget || m.fits(v, t)) break;
        if (!this.movable(w)) continue;
        const u = this.parkingFor(w, t, parking);
        if (u < 0) continue;
        bytes += m.forecast(w, u).prediction.transferMiB;
        m.move(w, u);
        parks.push([w, u]);
      }
      const ok =
        parks.length > 1 &&
        m.fits(v, t) &&
        m.placementProblem(v, t) === null &&
        m.violationDelta(v, t) < 0 &&
        m.forecast(v, t).prediction.converges;
      if (ok) bytes += m.forecast(v, t).prediction.transferMiB;
      for (let i = parks.length - 1; i >= 0; i -= 1) m.unmove(parks[i]?.[0] ?? 0);
      if (!ok) continue;
      if (
        !best ||
        parks.length < best.parks.length ||
        (parks.length === best.parks.length && bytes < best.bytes)
      )
        best = { parks, bytes };
    }
    return best?.parks ?? [];
  }

  /** Where VM w (on host t) may be parked: a host with room where it breaks no rule and converges. */
  private parkingFor(w: number, t: number, hosts: readonly number[]): number {
    const m = this.m;
    for (const u of hosts) {
      if (u === t || !m.fits(w, u) || m.violationDelta(w, u) > 0) continue;
      if (m.placementProblem(w, u) !== null || !m.forecast(w, u).prediction.converges) continue;
      return u;
    }
    return -1;
  }

  private push(v: number, t: number, why: string): void {
    const m = this.m;
    const d = m.violationDelta(v, t);
    this.steps.push(makeStep(m, v, t, why));
    m.move(v, t);
    this.moves.push(v, t);
    this.violations += d;
  }

  /** Per host: ceiling excess, CPU and memory utilisation, room (see round()); kept current from m.touched. */
  private keys: {
    ceiling: Float64Array;
    cpuPct: Float64Array;
    memPct: Float64Array;
    room: Float64Array;
  } | null = null;
  private keysSeen = 0;

  private hostKeys(): NonNullable<ObjectiveSearch['keys']> {
    const m = this.m;
    const H = m.hostCount;
    const read = (k: NonNullable<ObjectiveSearch['keys']>, h: number): void => {
      const host = m.hosts[h];
      if (!host) return;
      k.ceiling[h] = m.inSpread[h] ? this.obj.hostCeiling(h) : 0;
      k.cpuPct[h] = m.cpuPct(h);
      k.memPct[h] = m.memPct(h);
      k.room[h] = Math.min(
        ((m.cpuLimit[h] ?? 0) - (m.cpuLoad[h] ?? 0)) / host.cpus,
        ((m.memLimit[h] ?? 0) - (m.memLoad[h] ?? 0)) / host.memMiB,
      );
    };
    let k = this.keys;
    if (!k) {
      k = {
        ceiling: new Float64Array(H),
        cpuPct: new Float64Array(H),
        memPct: new Float64Array(H),
        room: new Float64Array(H),
      };
      for (let h = 0; h < H; h += 1) read(k, h);
      this.keys = k;
    } else {
      for (let i = this.keysSeen; i < m.touched.length; i += 1) read(k, m.touched[i] as number);
    }
    this.keysSeen = m.touched.length;
    return k;
  }

  private improves(d: ObjectiveValue, tiers: 1 | 2 | 3): boolean {
    if (d.violations !== 0) return d.violations < 0;
    if (tiers === 1) return false;
    if (Math.abs(d.overCeilingPct) > OBJECTIVE_EPS) return d.overCeilingPct < 0;
    return tiers === 3 && d.imbalancePct < -OBJECTIVE_EPS;
  }

  private round(width: number, tiers: 1 | 2 | 3): boolean {
    const m = this.m;
    const obj = this.obj;
    const H = m.hostCount;
    const exhaustive = H <= width;
    const keys = this.hostKeys();
    const srcCeil = new TopK(width);
    const srcBand = new TopK(width);
    const srcFull: [TopK, TopK] = [new TopK(width), new TopK(width)];
    const dstEmpty: [TopK, TopK] = [new TopK(width), new TopK(width)];
    const dstRoom = new TopK(width);
    const [hi0, hi1] = obj.hi;
    const eps = OBJECTIVE_EPS;
    for (let h = 0; h < H; h += 1) {
      const cu = keys.cpuPct[h] as number;
      const mu = keys.memPct[h] as number;
      // Tier 1 (rule repair) takes no sources: only the destinations.
      if (tiers > 1 && m.inSpread[h]) {
        const c = keys.ceiling[h] as number;
        if (c > eps) srcCeil.offer(h, c);
        if (tiers === 3) {
          const above = Math.max(cu - hi0, mu - hi1);
          if (above > 0) srcBand.offer(h, above);
          srcFull[0].offer(h, cu);
          srcFull[1].offer(h, mu);
        }
      }
      if (m.receivable[h]) {
        dstEmpty[0].offer(h, -cu);
        dstEmpty[1].offer(h, -mu);
        dstRoom.offer(h, keys.room[h] as number);
      }
    }
    // Nothing to repair or relieve: below tier 3 no move can improve.
    if (tiers < 3 && srcCeil.hosts.length === 0 && this.violations === 0) return false;
    const sources = new Set<number>();
    const dests = new Set<number>();
    if (exhaustive) {
      for (let h = 0; h < H; h += 1) {
        if (m.inSpread[h] || m.hostVms[h]?.length) sources.add(h);
        if (m.receivable[h]) dests.add(h);
      }
    } else {
      for (const k of [srcCeil, srcBand, srcFull[0], srcFull[1]]) for (const h of k.hosts) sources.add(h);
      for (const k of [dstEmpty[0], dstEmpty[1], dstRoom]) for (const h of k.hosts) dests.add(h);
    }
    const destList = [...dests];
    const cands: Candidate[] = [];
    const consider = (v: number, t: number): void => {
      if (t === (m.vmHost[v] ?? 0) || !m.receivable[t] || !m.fits(v, t)) return;
      const d = obj.delta(v, t);
      if (this.improves(d, tiers)) cands.push({ v, t, d, memMiB: m.vmMem[v] ?? 0 });
    };
    // VMs that break a rule: every destination considered, plus their affinity groups' hosts.
    if (this.violations > 0) {
      this.violators = this.violators.filter((v) => !m.moved[v] && m.violationOf(v) !== null);
      for (const v of this.violators) {
        if (this.cannot[v]) continue;
        for (const t of destList) consider(v, t);
        for (const t of m.affinityHosts(v)) if (!dests.has(t)) consider(v, t);
      }
    }
    // Rule repair only (tier 1): a move repairs a rule only by moving a VM that breaks one, all considered
    // above; the sources' other VMs cannot improve.
    if (tiers > 1)
      for (const s of sources) {
        for (const v of m.hostVms[s] ?? []) {
          if (this.cannot[v] || m.moved[v]) continue;
          for (const t of destList) consider(v, t);
        }
      }
    if (cands.length === 0) return false;
    cands.sort((a, b) => compareObjective(a.d, b.d) || a.memMiB - b.memMiB);
    let checks = 0;
    const rejected = new Set<Candidate>();
    for (;;) {
      let best: Candidate | null = null;
      let bestTransfer = Infinity;
      let ties = 0;
      for (const c of cands) {
        if (checks >= CHECKS_PER_ROUND) break;
        if (rejected.has(c)) continue;
        if (best && (compareObjective(c.d, best.d) !== 0 || ties >= TIE_CHECKS)) break;
        if (!this.movable(c.v)) continue;
        checks += 1;
        if (m.placementProblem(c.v, c.t) !== null) {
          rejected.add(c);
          continue;
        }
        const f = m.forecast(c.v, c.t);
        if (!f.prediction.converges) {
          rejected.add(c);
          continue;
        }
        if (best) ties += 1;
        if (f.prediction.transferMiB < bestTransfer) {
          best = c;
          bestTransfer = f.prediction.transferMiB;
        }
      }
      if (!best) return false;
      if (this.accept(best)) {
        if (tiers === 2 && H > BATCH_MIN_HOSTS && best.d.violations === 0) this.batch(cands, best, rejected);
        return true;
      }
      rejected.add(best);
    }
  }

  /**
   * On a large cluster, ceiling relief takes more than one move per round: after the best move, the next
   * best moves (in the round's order) between hosts no move of the round touched, each checked again on
   * the model as it now stands. Moves between disjoint hosts change each other's ceiling relief not at all,
   * so the order stays the one a round per move would give, at a fraction of the rounds.
   */
  private batch(cands: readonly Candidate[], first: Candidate, rejected: ReadonlySet<Candidate>): void {
    const m = this.m;
    const used = new Set<number>([first.t, m.vmOrigin[first.v] ?? 0]);
    let taken = 1;
    let checks = 0;
    for (const c of cands) {
      if (this.full() || taken >= BATCH_MOVES || checks >= CHECKS_PER_ROUND) break;
      if (c === first || rejected.has(c) || c.d.violations !== 0 || m.moved[c.v]) continue;
      const s = m.vmHost[c.v] ?? 0;
      if (used.has(s) || used.has(c.t) || !this.movable(c.v)) continue;
      checks += 1;
      const d = this.obj.delta(c.v, c.t);
      if (d.violations !== 0 || d.overCeilingPct >= -OBJECTIVE_EPS) continue;
      if (m.placementProblem(c.v, c.t) !== null || !m.forecast(c.v, c.t).prediction.converges) continue;
      used.add(s);
      used.add(c.t);
      this.accept({ ...c, d });
      taken += 1;
    }
  }

  private accept(c: Candidate): boolean {
    const m = this.m;
    const step = makeStep(m, c.v, c.t, this.why(c, m.vmHost[c.v] ?? 0));
    m.move(c.v, c.t);
    this.steps.push(step);
    this.moves.push(c.v, c.t);
    this.violations += c.d.violations;
    return true;
  }

  private why(c: Candidate, s: number): string {
    const m = this.m;
    const src = m.hosts[s]?.id ?? '';
    const dst = m.hosts[c.t]?.id ?? '';
    if (c.d.violations < 0)
      return `repairs a rule: ${m.violationOf(c.v) ?? 'broken placement'}; ${dst} keeps it`;
    if (c.d.overCeilingPct < 0) {
      const parts: string[] = [];
      const host = m.hosts[s];
      if (host) {
        const cu = m.cpuPct(s);
        const cl = ((m.cpuLimit[s] ?? 0) / host.cpus) * 100;
        if (cu > cl + OBJECTIVE_EPS) parts.push(`cpu ${pct(cu)} > ceiling ${pct(cl)}`);
        const mu = ((m.memLoad[s] ?? 0) / host.memMiB) * 100;
        const ml = ((m.memLimit[s] ?? 0) / host.memMiB) * 100;
        if (mu > ml + OBJECTIVE_EPS) parts.push(`mem ${pct(mu)} > ceiling ${pct(ml)}`);
        const va = m.vcpuAlloc[s] ?? 0;
        const vc = m.vcpuCap[s] ?? Infinity;
        if (va > vc) parts.push(`vCPUs allocated ${va} > ${vc}`);
      }
      return `${src} ${parts.join(', ')}; ${dst} has room`;
    }
    const o = this.obj;
    const dims: string[] = [];
    if (o.active[0]) dims.push(`cpu ${pct(m.cpuPct(s))} vs band ${pct(o.lo[0])}-${pct(o.hi[0])}`);
    if (o.active[1]) dims.push(`mem ${pct(m.memPct(s))} vs band ${pct(o.lo[1])}-${pct(o.hi[1])}`);
    return (
      `${src} ${dims.join(', ')}; to ${dst} (cpu ${pct(m.cpuPct(c.t))}, mem ${pct(m.memPct(c.t))}) ` +
      `lowers the imbalance by ${(-c.d.imbalancePct).toFixed(1)} points`
    );
  }
}
