// A lower bound on the moves any planner needs to bring one utilisation dimension within a target spread,
// and the band position that attains it. For a band [lo, lo + width] (in percent): each host above it must
// lose at least its fewest VMs whose loads (largest first) cover its excess, and each host below it must gain
// at least the fewest of the cluster's largest VMs that cover its deficit; moves >= max(leaving, arriving).
// The bound is the smallest such value over all band positions. Leaving never grows and arriving never
// shrinks as the band rises, so the best position is found by bisection.
//
// Why it is a lower bound: a plan that ends with the spread within `width` leaves every host inside some
// band [lo, lo + width]; for that lo, a host above it loses at least its excess, which no fewer than its
// largest VMs can carry, and a host below it gains at least its deficit, which no fewer than the cluster's
// largest VMs can carry; every move is one VM leaving one host and arriving on one other, so the plan has
// at least max(leaving, arriving) moves for its lo, hence at least the minimum over all lo. The joint bound
// (jointLowerBound) counts a host once for both dimensions (max of its two counts, since one set of VMs
// must cover both), with both bands searched. test/planner/lower-bound.test.ts checks both against
// exhaustive search on small clusters.

export interface DimensionLoads {
  /** Load per host (any unit) and what 100 % of the host is in that unit. */
  loads: ArrayLike<number>;
  caps: ArrayLike<number>;
  /** Per VM: its host's index and its load. */
  vmHost: ArrayLike<number>;
  vmLoad: ArrayLike<number>;
  /** Hosts that count (others, and their VMs, are ignored). */
  include?: ArrayLike<number> | undefined;
  /**
   * Per VM: 0 when it can never move (excluded, pinned, predicted not to converge...). Such VMs still
   * load their host but neither leave nor arrive in the counts, which keeps the bound valid for plans
   * under those constraints and makes it tighter. All VMs may move when absent.
   */
  movable?: ArrayLike<number> | undefined;
}

export interface BandBound {
  moves: number;
  /** Lower edge of the best band, percent: the middle of the range of edges that attain the bound. */
  lo: number;
  loRange: [number, number];
}

const EPS = 1e-9;

/** Smallest k >= 1 with prefix[start + k - 1] >= need; Infinity when even all do not cover it. */
function fewest(prefix: Float64Array, start: number, end: number, need: number): number {
  if (end <= start || (prefix[end - 1] ?? 0) < need - EPS) return Infinity;
  let lo = start;
  let hi = end - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((prefix[mid] ?? 0) >= need - EPS) hi = mid;
    else lo = mid + 1;
  }
  return lo - start + 1;
}

/** `tolerancePct`: how finely the band position is searched (the bound is exact up to steps narrower). */
export function bandLowerBound(dim: DimensionLoads, widthPct: number, tolerancePct = 1e-7): BandBound {
  return bestBand(prepareDimension(dim), widthPct, tolerancePct, tolerancePct);
}

/**
 * The band position needing the fewest moves in one prepared dimension (see bandLowerBound).
 *
 * `relaxPct` makes the count a valid lower bound despite the finite search: the fewest moves can be
 * reached at a single position only (where one host leaves the band's top exactly as another would fall
 * below its bottom), which bisection can step over. Counting leaving at lo + relax and arriving at
 * lo - relax never counts more (both are monotone) and turns such a point into an interval wider than the
 * search's tolerance, so the search cannot miss it when relax >= tolerance.
 */
export function bestBand(p: Prepared, widthPct: number, tolerancePct = 1e-7, relaxPct = 0): BandBound {
  const n = p.n;
  if (n === 0) return { moves: 0, lo: 0, loRange: [0, 0] };
  const { util, cap, from, to, flat } = p;
  let outCount = 0;
  let inCount = 0;
  const counts = (lo: number): void => {
    let out = 0;
    let inn = 0;
    const top = lo + relaxPct + widthPct;
    const bottom = lo - relaxPct;
    for (let i = 0; i < n; i += 1) {
      const u = util[i]!;
      if (u > top + EPS) out += fewest(flat, from[i]!, to[i]!, ((u - top) / 100) * cap[i]!);
      else if (u < bottom - EPS) inn += arrivals(p, ((bottom - u) / 100) * cap[i]!);
    }
    outCount = out;
    inCount = inn;
  };
  let a = p.uMin - widthPct;
  let b = p.uMax;
  // Invariant: out(a) >= in(a) (a band below everything has nothing arriving), out(b) <= in(b).
  for (let i = 0; i < 80 && b - a > tolerancePct; i += 1) {
    const m = (a + b) / 2;
    counts(m);
    if (outCount >= inCount) a = m;
    else b = m;
  }
  counts(a);
  const va = Math.max(outCount, inCount);
  counts(b);
  const vb = Math.max(outCount, inCount);
  const best = Math.min(va, vb);
  // Every band from l1 (where leaving first drops to the best count) to l2 (where arriving last stays
  // within it) needs no more than the best count; the middle of that range leaves the most slack.
  let l1 = p.uMin - widthPct;
  let r1 = va <= vb ? a : b;
  for (let i = 0; i < 80 && r1 - l1 > tolerancePct; i += 1) {
    const m = (l1 + r1) / 2;
    counts(m);
    if (outCount <= best) r1 = m;
    else l1 = m;
  }
  let l2 = va <= vb ? a : b;
  let r2 = p.uMax;
  for (let i = 0; i < 80 && r2 - l2 > tolerancePct; i += 1) {
    const m = (l2 + r2) / 2;
    counts(m);
    if (inCount <= best) l2 = m;
    else r2 = m;
  }
  return { moves: best, lo: (r1 + l2) / 2, loRange: [r1, l2] };
}

/** One dimension made ready for counting: hosts that count, their VMs' loads sorted, as prefix sums. */
export interface Prepared {
  n: number;
  util: Float64Array;
  cap: Float64Array;
  from: Int32Array;
  to: Int32Array;
  /** Per host (CSR by `from`/`to`): its VMs' loads, largest first, as prefix sums. */
  flat: Float64Array;
  /**
   * The largest counted VMs' loads, largest first, as prefix sums: enough of them to cover any deficit a
   * host can have; all of them once `arrivals()` needed more.
   */
  global: Float64Array;
  /** Every counted VM's load (to complete `global` on demand), or null once `global` holds them all. */
  rest: Float64Array | null;
  uMin: number;
  uMax: number;
}

export function prepareDimension(dim: DimensionLoads): Prepared {
  const H = dim.loads.length;
  const V = dim.vmLoad.length;
  const include = new Uint8Array(H);
  for (let h = 0; h < H; h += 1) include[h] = !dim.include || dim.include[h] ? 1 : 0;
  // Monomorphic typed copies keep the loops below fast whatever array types the caller has.
  const vmHost = dim.vmHost instanceof Int32Array ? dim.vmHost : Int32Array.from(dim.vmHost);
  const vmLoad = dim.vmLoad instanceof Float64Array ? dim.vmLoad : Float64Array.from(dim.vmLoad);
  const movable = dim.movable;
  const counts = (v: number, h: number) =>
    h >= 0 && h < H && include[h] === 1 && (!movable || movable[v] !== 0);
  const start = new Int32Array(H + 1);
  for (let v = 0; v < V; v += 1) {
    const h = vmHost[v]!;
    if (counts(v, h)) start[h + 1]! += 1;
  }
  for (let h = 0; h < H; h += 1) start[h + 1]! += start[h]!;
  const fill = start.slice(0, H);
  const flat = new Float64Array(start[H]!);
  const global = new Float64Array(start[H]!);
  let k = 0;
  for (let v = 0; v < V; v += 1) {
    const h = vmHost[v]!;
    if (counts(v, h)) {
      flat[fill[h]!++] = -vmLoad[v]!;
      global[k++] = -vmLoad[v]!;
    }
  }
  for (let h = 0; h < H; h += 1) {
    const a = start[h]!;
    const b = start[h + 1]!;
    // Insertion sort: hosts hold a few dozen VMs at most, where this beats a typed-array sort of a view.
    for (let i = a + 1; i < b; i += 1) {
      const x = flat[i]!;
      let j = i - 1;
      while (j >= a && flat[j]! > x) {
        flat[j + 1] = flat[j]!;
        j -= 1;
      }
      flat[j + 1] = x;
    }
    let s = 0;
    for (let i = a; i < b; i += 1) flat[i] = s -= flat[i]!;
  }
  // `global` holds negated loads here. A host's deficit never exceeds its capacity times the spread of
  // utilisations searched, so only the largest VMs whose total covers that are sorted now.
  let maxCap = 0;
  let uLo = Infinity;
  let uHi = -Infinity;
  for (let h = 0; h < H; h += 1) {
    if (!include[h]) continue;
    const c = dim.caps[h] ?? 1;
    const u = ((dim.loads[h] ?? 0) / c) * 100;
    if (c > maxCap) maxCap = c;
    if (u < uLo) uLo = u;
    if (u > uHi) uHi = u;
  }
  const cover = ((Math.max(0, uHi - uLo) + GLOBAL_MARGIN_PCT) / 100) * maxCap;
  const top = largestCovering(global, cover);
  let n = 0;
  for (let h = 0; h < H; h += 1) if (include[h]) n += 1;
  const p: Prepared = {
    n,
    util: new Float64Array(n),
    cap: new Float64Array(n),
    from: new Int32Array(n),
    to: new Int32Array(n),
    flat,
    global: top ?? prefixOfNegated(global),
    rest: top ? global : null,
    uMin: Infinity,
    uMax: -Infinity,
  };
  let i = 0;
  for (let h = 0; h < H; h += 1) {
    if (!include[h]) continue;
    const c = dim.caps[h] ?? 1;
    const u = ((dim.loads[h] ?? 0) / c) * 100;
    p.cap[i] = c;
    p.util[i] = u;
    p.from[i] = start[h]!;
    p.to[i] = start[h + 1]!;
    if (u < p.uMin) p.uMin = u;
    if (u > p.uMax) p.uMax = u;
    i += 1;
  }
  return p;
}

/** Host i's fewest leaving / arriving VMs for band [lo, lo + width] in one dimension. */
function hostOut(p: Prepared, i: number, lo: number, width: number): number {
  const u = p.util[i]!;
  return u > lo + width + EPS
    ? fewest(p.flat, p.from[i]!, p.to[i]!, ((u - lo - width) / 100) * p.cap[i]!)
    : 0;
}
function hostIn(p: Prepared, i: number, lo: number): number {
  const u = p.util[i]!;
  return u < lo - EPS ? arrivals(p, ((lo - u) / 100) * p.cap[i]!) : 0;
}

/** Points beyond the utilisation range that band searches may reach (refinement grids stay within it). */
const GLOBAL_MARGIN_PCT = 25;

/** The fewest of the largest counted VMs covering `need`: sorts the rest of them if ever needed. */
function arrivals(p: Prepared, need: number): number {
  const g = p.global;
  if (p.rest !== null && (g.length === 0 || g[g.length - 1]! < need - EPS)) {
    p.global = prefixOfNegated(p.rest);
    p.rest = null;
  }
  return fewest(p.global, 0, p.global.length, need);
}

/** Sorts negated loads (largest load first) and turns them into prefix sums of the loads, in place. */
function prefixOfNegated(neg: Float64Array): Float64Array {
  neg.sort();
  let s = 0;
  for (let i = 0; i < neg.length; i += 1) neg[i] = s -= neg[i]!;
  return neg;
}

/**
 * Prefix sums of the largest loads (given negated) whose total reaches `cover`, found with a histogram
 * instead of sorting all of them; null when all loads together do not reach it.
 */
function largestCovering(neg: Float64Array, cover: number): Float64Array | null {
  const n = neg.length;
  let max = 0;
  let total = 0;
  for (let i = 0; i < n; i += 1) {
    const x = -neg[i]!;
    total += x;
    if (x > max) max = x;
  }
  if (total < cover || max <= 0) return null;
  const B = 256;
  const sums = new Float64Array(B);
  for (let i = 0; i < n; i += 1) {
    const x = -neg[i]!;
    sums[Math.min(B - 1, Math.floor((x / max) * B))]! += x;
  }
  let b = B - 1;
  let acc = 0;
  for (; b > 0; b -= 1) {
    acc += sums[b]!;
    if (acc >= cover) break;
  }
  const threshold = (b / B) * max;
  let k = 0;
  for (let i = 0; i < n; i += 1) if (-neg[i]! >= threshold) k += 1;
  const top = new Float64Array(k);
  k = 0;
  for (let i = 0; i < n; i += 1) if (-neg[i]! >= threshold) top[k++] = neg[i]!;
  return prefixOfNegated(top);
}

export interface JointBoundOptions {
  /** Cells of the CPU band position examined at most (more: tighter, slower). */
  maxCells?: number;
  tolerancePct?: number;
}

/**
 * The same bound with both dimensions at once: a host above either band must lose at least as many VMs as
 * the worse of the two needs, and one below either band must gain as many. Still a valid lower bound
 * (every host must end inside both bands), and tighter than the larger of the two one-dimensional bounds.
 * The CPU band position is searched by branch and bound over cells: within a cell [c0, c1], leaving is at
 * least its value at c1 and arriving at least its value at c0, so the cell's minimum is bounded below by
 * a one-dimensional bisection over the memory band position.
 */
export function jointLowerBound(
  cpu: DimensionLoads,
  mem: DimensionLoads,
  widthPct: [number, number],
  opts: JointBoundOptions = {},
): number {
  const pc = prepareDimension(cpu);
  const pm = prepareDimension({ ...mem, include: cpu.include, movable: cpu.movable });
  const n = pc.n;
  if (n === 0) return 0;
  const [wc, wm] = widthPct;
  const tol = opts.tolerancePct ?? 1e-3;
  // Minimum over the memory band position of max(out(cOut, .), in(cIn, .)).
  const cellLow = (cOut: number, cIn: number): number => {
    // Leaving counted at lm + tol and arriving at lm - tol: see bestBand's relaxPct.
    const counts = (lm: number): [number, number] => {
      let out = 0;
      let inn = 0;
      for (let i = 0; i < n; i += 1) {
        out += Math.max(hostOut(pc, i, cOut, wc), hostOut(pm, i, lm + tol, wm));
        inn += Math.max(hostIn(pc, i, cIn), hostIn(pm, i, lm - tol));
      }
      return [out, inn];
    };
    let a = pm.uMin - wm;
    let b = pm.uMax;
    for (let i = 0; i < 80 && b - a > tol; i += 1) {
      const mid = (a + b) / 2;
      const [o, x] = counts(mid);
      if (o >= x) a = mid;
      else b = mid;
    }
    return Math.min(Math.max(...counts(a)), Math.max(...counts(b)));
  };
  const lo0 = pc.uMin - wc;
  const hi0 = pc.uMax;
  let best = cellLow(hi0, hi0); // attained at c = uMax: an achievable value, so the minimum is at most this
  const cells: { c0: number; c1: number; low: number }[] = [];
  const SPLIT = 8;
  for (let i = 0; i < SPLIT; i += 1) {
    const c0 = lo0 + ((hi0 - lo0) * i) / SPLIT;
    const c1 = lo0 + ((hi0 - lo0) * (i + 1)) / SPLIT;
    cells.push({ c0, c1, low: cellLow(c1, c0) });
    best = Math.min(best, cellLow(c0, c0));
  }
  let budget = opts.maxCells ?? 64;
  for (;;) {
    cells.sort((x, y) => x.low - y.low);
    const c = cells[0];
    if (!c || c.low >= best || c.c1 - c.c0 <= tol || budget <= 0) break;
    cells.shift();
    const mid = (c.c0 + c.c1) / 2;
    best = Math.min(best, cellLow(mid, mid));
    cells.push({ c0: c.c0, c1: mid, low: Math.max(c.low, cellLow(mid, c.c0)) });
    cells.push({ c0: mid, c1: c.c1, low: Math.max(c.low, cellLow(c.c1, mid)) });
    budget -= 3;
  }
  return Math.min(best, ...cells.map((c) => c.low));
}

/**
 * Moves the two bands' lower edges around `start` (on a grid of `stepPct`, up to `radius` steps each way)
 * to where the joint count of the bound, max(leaving, arriving) with each host counted once for both
 * dimensions, is smallest; ties go to the position nearest `start`. Used by the balance strategy to aim.
 */
export function refineJointBand(
  pc: Prepared,
  pm: Prepared,
  widthPct: [number, number],
  start: [number, number],
  opts: { stepPct?: number; radius?: number } = {},
): { lo: [number, number]; moves: number } {
  const step = opts.stepPct ?? 0.5;
  const r = opts.radius ?? 4;
  const [wc, wm] = widthPct;
  // Hosts that are inside both bands at every grid position never count: leave them out.
  const span = step * r;
  const active: number[] = [];
  for (let i = 0; i < pc.n; i += 1) {
    const uc = pc.util[i]!;
    const um = pm.util[i]!;
    const inside =
      uc >= start[0] + span + EPS &&
      uc <= start[0] - span + wc - EPS &&
      um >= start[1] + span + EPS &&
      um <= start[1] - span + wm - EPS;
    if (!inside) active.push(i);
  }
  // Each host's counts at each grid offset, per dimension, computed once: the grid then only adds.
  const side = 2 * r + 1;
  const A = active.length;
  const outC = new Int32Array(A * side);
  const inC = new Int32Array(A * side);
  const outM = new Int32Array(A * side);
  const inM = new Int32Array(A * side);
  for (let k = 0; k < A; k += 1) {
    const i = active[k]!;
    for (let a = 0; a < side; a += 1) {
      const lc = start[0] + (a - r) * step;
      const lm = start[1] + (a - r) * step;
      outC[k * side + a] = hostOut(pc, i, lc, wc);
      inC[k * side + a] = hostIn(pc, i, lc);
      outM[k * side + a] = hostOut(pm, i, lm, wm);
      inM[k * side + a] = hostIn(pm, i, lm);
    }
  }
  // max(cpu count, mem count) splits per host when one dimension's count is never below the other's over
  // the whole grid: such hosts add to per-row or per-column sums; only the others need the full grid.
  const rowOut = new Float64Array(side);
  const colOut = new Float64Array(side);
  const rowIn = new Float64Array(side);
  const colIn = new Float64Array(side);
  const jointOut: number[] = [];
  const jointIn: number[] = [];
  const split = (c: Int32Array, m: Int32Array, row: Float64Array, col: Float64Array, joint: number[]) => {
    for (let k = 0; k < A; k += 1) {
      let cMin = Infinity;
      let cMax = -Infinity;
      let mMin = Infinity;
      let mMax = -Infinity;
      for (let a = 0; a < side; a += 1) {
        const x = c[k * side + a]!;
        const y = m[k * side + a]!;
        if (x < cMin) cMin = x;
        if (x > cMax) cMax = x;
        if (y < mMin) mMin = y;
        if (y > mMax) mMax = y;
      }
      if (mMax <= cMin) for (let a = 0; a < side; a += 1) row[a]! += c[k * side + a]!;
      else if (cMax <= mMin) for (let b = 0; b < side; b += 1) col[b]! += m[k * side + b]!;
      else joint.push(k);
    }
  };
  split(outC, outM, rowOut, colOut, jointOut);
  split(inC, inM, rowIn, colIn, jointIn);
  let best: [number, number] = [start[0], start[1]];
  let bestMoves = Infinity;
  let bestDist = Infinity;
  for (let a = 0; a < side; a += 1) {
    for (let b = 0; b < side; b += 1) {
      let out = rowOut[a]! + colOut[b]!;
      let inn = rowIn[a]! + colIn[b]!;
      for (const k of jointOut) {
        const oc = outC[k * side + a]!;
        const om = outM[k * side + b]!;
        out += oc > om ? oc : om;
      }
      for (const k of jointIn) {
        const ic = inC[k * side + a]!;
        const im = inM[k * side + b]!;
        inn += ic > im ? ic : im;
      }
      const moves = Math.max(out, inn);
      const dist = (a - r) * (a - r) + (b - r) * (b - r);
      if (moves < bestMoves || (moves === bestMoves && dist < bestDist)) {
        bestMoves = moves;
        bestDist = dist;
        best = [start[0] + (a - r) * step, start[1] + (b - r) * step];
      }
    }
  }
  return { lo: best, moves: bestMoves };
}
