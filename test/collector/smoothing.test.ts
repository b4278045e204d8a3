import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ewmaStep,
  heldLevel,
  percentile,
  pushPoint,
  windowPercentile,
  type Point,
} from '../../src/collector/smoothing.js';

describe('ewmaStep', () => {
  it('takes the first value as it is', () => {
    expect(ewmaStep({ value: null, at: null }, 42, 1000, 60_000)).toEqual({ value: 42, at: 1000 });
  });

  it('weights by elapsed time: after one time constant it has moved 1 - 1/e of the way', () => {
    const next = ewmaStep({ value: 0, at: 0 }, 100, 60_000, 60_000);
    expect(next.value).toBeCloseTo(100 * (1 - Math.exp(-1)), 6);
    const short = ewmaStep({ value: 0, at: 0 }, 100, 6_000, 60_000);
    expect(short.value).toBeCloseTo(100 * (1 - Math.exp(-0.1)), 6);
  });

  it('ignores a reading that is not newer', () => {
    const state = { value: 10, at: 5000 };
    expect(ewmaStep(state, 90, 5000, 1000)).toBe(state);
    expect(ewmaStep(state, 90, 4000, 1000)).toBe(state);
  });

  it('with warm-up, averages the first samples evenly until the time constant weighs more', () => {
    let s = ewmaStep({ value: null, at: null }, 10, 0, 1_800_000, true);
    s = ewmaStep(s, 20, 300_000, 1_800_000, true);
    s = ewmaStep(s, 60, 600_000, 1_800_000, true);
    expect(s.value).toBeCloseTo(30, 9); // (10 + 20 + 60) / 3
    expect(s.n).toBe(3);
    // A step an hour later weighs 1 - e^-2 (0.86), more than 1/4: the time constant decides.
    const late = ewmaStep(s, 130, 4_200_000, 1_800_000, true);
    expect(late.value).toBeCloseTo(30 + (1 - Math.exp(-2)) * 100, 6);
    // Many close samples: the weight settles at 1/n, the even mean.
    let many = ewmaStep({ value: null, at: null }, 0, 0, 1_800_000, true);
    for (let i = 1; i < 10; i += 1) many = ewmaStep(many, i % 2 === 0 ? 0 : 100, i * 1000, 1_800_000, true);
    expect(many.value).toBeCloseTo(50, 0);
  });

  it('treats a stored state without a count as warm (plain EWMA)', () => {
    const next = ewmaStep({ value: 0, at: 0 }, 100, 6_000, 60_000, true);
    expect(next.value).toBeCloseTo(100 * (1 - Math.exp(-0.1)), 6);
  });

  it('stays between the old value and the new one', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.integer({ min: 1, max: 10_000_000 }),
        (old, value, dt) => {
          const v = ewmaStep({ value: old, at: 0 }, value, dt, 60_000).value ?? NaN;
          expect(v).toBeGreaterThanOrEqual(Math.min(old, value) - 1e-9);
          expect(v).toBeLessThanOrEqual(Math.max(old, value) + 1e-9);
        },
      ),
    );
  });
});

describe('percentile (nearest rank)', () => {
  it.each([
    { values: [], p: 95, want: null },
    { values: [7], p: 95, want: 7 },
    { values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], p: 90, want: 9 },
    { values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], p: 95, want: 10 },
    { values: [10, 1, 5], p: 50, want: 5 },
    { values: [3, 1, 2], p: 0, want: 1 },
    { values: [3, 1, 2], p: 100, want: 3 },
  ])('p$p of $values is $want', ({ values, p, want }) => {
    expect(percentile(values, p)).toBe(want);
  });

  it('is one of the values and grows with p', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1000, noNaN: true }), { minLength: 1, maxLength: 50 }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (values, a, b) => {
          const lo = percentile(values, Math.min(a, b));
          const hi = percentile(values, Math.max(a, b));
          expect(values).toContain(lo);
          expect(hi ?? NaN).toBeGreaterThanOrEqual(lo ?? NaN);
        },
      ),
    );
  });
});

describe('pushPoint', () => {
  it('drops points older than the window and beyond the count', () => {
    let pts: Point[] = [];
    for (let t = 0; t <= 100_000; t += 10_000) pts = pushPoint(pts, [t, t / 1000, 0], 35_000, 100);
    expect(pts.map((p) => p[0])).toEqual([70_000, 80_000, 90_000, 100_000]);
    pts = pushPoint(pts, [110_000, 1, 1], 1_000_000, 2);
    expect(pts.map((p) => p[0])).toEqual([100_000, 110_000]);
  });

  it('replaces a point with the same time', () => {
    const pts = pushPoint([[5, 1, 1]], [5, 2, 2], 1000, 10);
    expect(pts).toEqual([[5, 2, 2]]);
  });
});

describe('windowPercentile', () => {
  it('only counts the raw values inside the window', () => {
    const pts: Point[] = [
      [0, 500, 0],
      [60_000, 10, 0],
      [120_000, 20, 0],
    ];
    expect(windowPercentile(pts, 120_000, 200_000, 100)).toBe(500);
    expect(windowPercentile(pts, 120_000, 90_000, 100)).toBe(20);
    expect(windowPercentile(pts, 500_000, 90_000, 100)).toBeNull();
  });
});

describe('heldLevel', () => {
  // [at, raw, smoothed]: a host at 40 % that spikes to 95 % for one minute, then stays at 95 % for five.
  const series = (smoothed: number[]): Point[] => smoothed.map((v, i) => [i * 30_000, v, v]);

  it('does not report a spike shorter than the hold time', () => {
    const pts = series([40, 40, 40, 40, 95, 95]);
    expect(heldLevel(pts, 150_000, 120_000)).toBe(40);
  });

  it('reports the level once it has held for the hold time', () => {
    const pts = series([40, 40, 95, 95, 95, 95, 95, 95]);
    expect(heldLevel(pts, 210_000, 120_000)).toBe(95);
  });

  it('follows a drop at once', () => {
    const pts = series([95, 95, 95, 95, 95, 30]);
    expect(heldLevel(pts, 150_000, 120_000)).toBe(30);
  });

  it('with no hold time is the newest smoothed value; with no points, null', () => {
    expect(heldLevel(series([10, 80, 20, 60]), 90_000, 0)).toBe(60);
    expect(heldLevel([], 0, 1000)).toBeNull();
  });

  it('never exceeds the newest smoothed value and is reached by some point in the hold window', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 100, noNaN: true }), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 0, max: 600_000 }),
        (values, holdMs) => {
          const pts = series(values);
          const now = (values.length - 1) * 30_000;
          const level = heldLevel(pts, now, holdMs) ?? NaN;
          expect(level).toBeLessThanOrEqual(values[values.length - 1] ?? NaN);
          const inWindow = pts.filter((p) => p[0] >= now - holdMs).map((p) => p[2]);
          expect(inWindow).toContain(level);
        },
      ),
    );
  });
});
