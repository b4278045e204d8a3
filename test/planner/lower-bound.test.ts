// The band bounds are lower bounds: on tiny clusters, exhaustive search over every placement finds the
// fewest moves that bring both spreads within target, and neither bound may exceed it.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  bandLowerBound,
  bestBand,
  jointLowerBound,
  prepareDimension,
  refineJointBand,
  type DimensionLoads,
} from '../../src/planner/lower-bound.js';

interface Tiny {
  caps: [number[], number[]];
  base: [number[], number[]];
  vmHost: number[];
  vmLoad: [number[], number[]];
  /** Per VM: 0 when it may not move. */
  movable: number[];
  width: [number, number];
}

const tinyArb: fc.Arbitrary<Tiny> = fc
  .record({ hosts: fc.integer({ min: 2, max: 4 }), vms: fc.integer({ min: 1, max: 6 }) })
  .chain(({ hosts, vms }) =>
    fc.record({
      capC: fc.array(fc.constantFrom(8, 16, 32), { minLength: hosts, maxLength: hosts }),
      capM: fc.array(fc.constantFrom(64, 128), { minLength: hosts, maxLength: hosts }),
      baseC: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: hosts, maxLength: hosts }),
      baseM: fc.array(fc.integer({ min: 0, max: 16 }), { minLength: hosts, maxLength: hosts }),
      vmHost: fc.array(fc.integer({ min: 0, max: hosts - 1 }), { minLength: vms, maxLength: vms }),
      vmC: fc.array(fc.integer({ min: 0, max: 8 }), { minLength: vms, maxLength: vms }),
      vmM: fc.array(fc.integer({ min: 1, max: 32 }), { minLength: vms, maxLength: vms }),
      movable: fc.array(fc.constantFrom(1, 1, 1, 0), { minLength: vms, maxLength: vms }),
      width: fc.tuple(fc.integer({ min: 5, max: 40 }), fc.integer({ min: 5, max: 40 })),
    }),
  )
  .map((t) => ({
    caps: [t.capC, t.capM],
    base: [t.baseC, t.baseM],
    vmHost: t.vmHost,
    vmLoad: [t.vmC, t.vmM],
    movable: t.movable,
    width: t.width,
  }));

/** Host loads (base plus VMs) for a placement, in each dimension. */
function loads(t: Tiny, where: readonly number[]): [number[], number[]] {
  const out: [number[], number[]] = [[...t.base[0]], [...t.base[1]]];
  where.forEach((h, v) => {
    for (const d of [0, 1] as const) out[d][h] = (out[d][h] ?? 0) + (t.vmLoad[d][v] ?? 0);
  });
  return out;
}

function within(t: Tiny, where: readonly number[], dims: readonly (0 | 1)[]): boolean {
  const l = loads(t, where);
  return dims.every((d) => {
    const u = l[d].map((x, h) => (x / (t.caps[d][h] ?? 1)) * 100);
    return Math.max(...u) - Math.min(...u) <= t.width[d] + 1e-9;
  });
}

/**
 * Fewest VMs whose host changes, over every placement that brings `dims` within target (null: none); with
 * `fixed`, VMs marked immovable stay where they are.
 */
function fewestMoves(t: Tiny, dims: readonly (0 | 1)[], fixed = false): number | null {
  const H = t.caps[0].length;
  const V = t.vmHost.length;
  let best: number | null = null;
  const where = new Array<number>(V).fill(0);
  const total = H ** V;
  for (let code = 0; code < total; code += 1) {
    let c = code;
    let moves = 0;
    for (let v = 0; v < V; v += 1) {
      where[v] = c % H;
      c = Math.floor(c / H);
      if (where[v] !== t.vmHost[v]) moves += fixed && t.movable[v] === 0 ? Infinity : 1;
    }
    if (best !== null && moves >= best) continue;
    if (within(t, where, dims)) best = moves;
  }
  return best;
}

function dim(t: Tiny, d: 0 | 1, fixed = false): DimensionLoads {
  const dl: DimensionLoads = {
    loads: loads(t, t.vmHost)[d],
    caps: t.caps[d],
    vmHost: t.vmHost,
    vmLoad: t.vmLoad[d],
  };
  if (fixed) dl.movable = t.movable;
  return dl;
}

describe('band lower bounds', () => {
  it('never exceed the fewest moves exhaustive search finds', () => {
    let compared = 0;
    fc.assert(
      fc.property(tinyArb, (t) => {
        for (const d of [0, 1] as const) {
          const opt = fewestMoves(t, [d]);
          if (opt === null) continue;
          expect(bandLowerBound(dim(t, d), t.width[d]).moves).toBeLessThanOrEqual(opt);
        }
        const opt = fewestMoves(t, [0, 1]);
        if (opt === null) return;
        compared += 1;
        expect(jointLowerBound(dim(t, 0), dim(t, 1), t.width)).toBeLessThanOrEqual(opt);
        // With VMs that may not move: only the others count, and the bound holds for that problem.
        const fixedOpt = fewestMoves(t, [0, 1], true);
        if (fixedOpt === null) return;
        expect(jointLowerBound(dim(t, 0, true), dim(t, 1, true), t.width)).toBeLessThanOrEqual(fixedOpt);
        expect(bandLowerBound(dim(t, 0, true), t.width[0]).moves).toBeLessThanOrEqual(fixedOpt);
      }),
      { numRuns: 1500 },
    );
    expect(compared).toBeGreaterThan(100);
  });

  it('finds the fewest moves even where only one band position attains them', () => {
    // Moving the one VM to host 0 gives utilisations 25/37.5/12.5: within 25 points only for the band
    // starting exactly at 12.5.
    const t: Tiny = {
      caps: [
        [8, 8, 8],
        [64, 64, 64],
      ],
      base: [
        [1, 3, 1],
        [0, 0, 0],
      ],
      vmHost: [1],
      vmLoad: [[1], [1]],
      movable: [1],
      width: [25, 5],
    };
    expect(fewestMoves(t, [0])).toBe(1);
    expect(bandLowerBound(dim(t, 0), 25).moves).toBe(1);
  });

  it('is positive when a spread is over target and zero when it is within', () => {
    fc.assert(
      fc.property(tinyArb, (t) => {
        const per = ([0, 1] as const).map((d) => bandLowerBound(dim(t, d), t.width[d]).moves);
        for (const d of [0, 1] as const) {
          const spreadOk = within(t, t.vmHost, [d]);
          if (!spreadOk && fewestMoves(t, [d]) !== null) expect(per[d]).toBeGreaterThan(0);
          if (spreadOk) expect(per[d]).toBe(0);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the refined joint band counts no more than where it started', () => {
    fc.assert(
      fc.property(tinyArb, (t) => {
        const pc = prepareDimension(dim(t, 0));
        const pm = prepareDimension(dim(t, 1));
        const start: [number, number] = [
          bestBand(pc, t.width[0], 0.01).lo,
          bestBand(pm, t.width[1], 0.01).lo,
        ];
        const atStart = refineJointBand(pc, pm, t.width, start, { radius: 0 });
        const refined = refineJointBand(pc, pm, t.width, start, { stepPct: 0.5, radius: 4 });
        expect(refined.moves).toBeLessThanOrEqual(atStart.moves);
      }),
      { numRuns: 200 },
    );
  });
});
