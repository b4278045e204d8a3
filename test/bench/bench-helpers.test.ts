// The pure pieces of the benches: the predictor bench's link calibration, the SVG scatter plot, the report's
// statistics and table reading, and the dirty rates the drain bench's bound is computed with.
import { describe, expect, it } from 'vitest';
import { meanDirtyMiBps } from '../../bench/drain/guest-dirty-rate.js';
import { LinkCalibration, type ObservedMigration } from '../../bench/predictor/link-calibration.js';
import { scatterSvg } from '../../bench/predictor/scatter-svg.js';
import { markdownTable, percentile, tablesOf } from '../../bench/report.js';
import { constantVm, host, setup } from '../hypervisor/sim-helpers.js';

const observed = (o: Partial<ObservedMigration>): ObservedMigration => ({
  capMiBps: 100,
  completed: true,
  wallS: 10,
  passes: 2,
  round0MiB: null,
  processedMiB: 100,
  transferS: null,
  throughputMiBps: 50,
  downtimeMs: 200,
  modelStopMs: 50,
  ...o,
});

describe('LinkCalibration', () => {
  it('uses the defaults before it has seen a migration', () => {
    const c = new LinkCalibration({ setupS: 1, switchoverOverheadMs: 20 });
    expect(c.bandwidthMiBps(50)).toBe(50);
    expect(c.setupS()).toBe(1);
    expect(c.switchoverOverheadMs()).toBe(20);
  });

  it('learns the rate per cap, and falls back to faster caps', () => {
    const c = new LinkCalibration({ setupS: 1, switchoverOverheadMs: 20 });
    c.observe(observed({ capMiBps: 100, throughputMiBps: 30 }));
    c.observe(observed({ capMiBps: 100, throughputMiBps: 40 }));
    c.observe(observed({ capMiBps: 100, throughputMiBps: 35 }));
    expect(c.bandwidthMiBps(100)).toBe(35);
    // nothing seen at 50: the host never sent faster than 40 under a higher cap
    expect(c.bandwidthMiBps(50)).toBe(40);
    // a cap below what the host manages is the cap
    expect(c.bandwidthMiBps(20)).toBe(20);
    // tiny transfers say nothing about the link
    c.observe(observed({ capMiBps: 20, throughputMiBps: 1, processedMiB: 2 }));
    expect(c.bandwidthMiBps(20)).toBe(20);
    // QEMU keeps its cap loosely: what the link carried under a cap is the rate, also above the cap
    c.observe(observed({ capMiBps: 25, throughputMiBps: 26.5 }));
    expect(c.bandwidthMiBps(25)).toBe(26.5);
  });

  it('setup is the wall time not spent sending; overhead is downtime beyond the modelled stop', () => {
    const c = new LinkCalibration({ setupS: 1, switchoverOverheadMs: 20 });
    c.observe(observed({ wallS: 10, processedMiB: 100, throughputMiBps: 50 })); // 8 s
    c.observe(observed({ wallS: 12, transferS: 2, downtimeMs: 500, modelStopMs: 100 })); // 10 s
    c.observe(observed({ wallS: 30, completed: false })); // aborted: not a setup sample
    expect(c.setupS()).toBe(9);
    expect(c.switchoverOverheadMs()).toBe((150 + 400) / 2);
  });

  it('takes setup from migrations that sent little after round 0 once there are any', () => {
    const c = new LinkCalibration({ setupS: 1, switchoverOverheadMs: 20 });
    // many rounds: 300 MiB sent after a 100 MiB round 0, their sending time only estimated -> 8 s "setup"
    c.observe(observed({ wallS: 14, round0MiB: 100, processedMiB: 400, throughputMiBps: 50 }));
    expect(c.setupS()).toBe(6);
    // round 0 and a little more: the fixed cost is well known, 3 s
    c.observe(observed({ wallS: 5.2, round0MiB: 100, processedMiB: 110, throughputMiBps: 50 }));
    expect(c.setupS()).toBe(3);
  });

  it('prefers migrations with at most one pass after round 0: more passes read their syncs as set-up', () => {
    const c = new LinkCalibration({ setupS: 1, switchoverOverheadMs: 20 });
    // six passes sending little each: 4.2 s of wall time not explained by the 110 MiB at 50 MiB/s
    c.observe(observed({ wallS: 6.4, passes: 6, round0MiB: 100, processedMiB: 110, throughputMiBps: 50 }));
    expect(c.setupS()).toBeCloseTo(4.2, 9);
    // round 0 and one pass: 3 s, and the many-pass one no longer counts
    c.observe(observed({ wallS: 5.2, passes: 2, round0MiB: 100, processedMiB: 110, throughputMiBps: 50 }));
    expect(c.setupS()).toBeCloseTo(3, 9);
    c.observe(observed({ wallS: 7.2, passes: 7, round0MiB: 100, processedMiB: 110, throughputMiBps: 50 }));
    expect(c.setupS()).toBeCloseTo(3, 9);
  });
});

describe('scatterSvg', () => {
  it('draws one dot per point, a legend entry per series, and escapes text', () => {
    const svg = scatterSvg(
      [
        { x: 10, y: 12, series: 'cap 20 MiB/s', label: 'a<b' },
        { x: 20, y: 18, series: 'cap 100 MiB/s' },
        { x: 5, y: 5, series: 'cap 20 MiB/s' },
      ],
      { title: 'T & t', xLabel: 'x', yLabel: 'y' },
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<circle cx=/g)?.length).toBe(3 + 2); // dots + legend markers
    expect(svg).toContain('T &amp; t');
    expect(svg).toContain('<title>a&lt;b</title>');
    expect(svg).not.toContain('NaN');
  });
});

describe('report helpers', () => {
  it('percentile interpolates and is NaN for no data', () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([5, 1, 3], 0)).toBe(1);
    expect(percentile([5, 1, 3], 100)).toBe(5);
    expect(percentile([], 50)).toBeNaN();
  });

  it('reads explicit tables and rows of flat objects', () => {
    const explicit = tablesOf({ tables: [{ title: 'x', header: ['a', 'b'], rows: [[1, 'p|q']] }] });
    expect(explicit).toHaveLength(1);
    expect(markdownTable(explicit[0] ?? { header: [], rows: [] })).toContain('p\\|q');
    const flat = tablesOf({
      rows: [
        { hosts: 100, cpuPct: 0.123456 },
        { hosts: 1000, extra: true },
      ],
    });
    expect(flat[0]?.header).toEqual(['hosts', 'cpuPct', 'extra']);
    expect(flat[0]?.rows).toEqual([
      [100, 0.1235, null],
      [1000, null, 'yes'],
    ]);
    // no table at all: the scalar measures, one level of nesting flattened
    expect(tablesOf({ date: 'x', speedup: 93.812, rss: { max: 120, samples: [1] }, list: [1, 2] })).toEqual([
      {
        header: ['measure', 'value'],
        rows: [
          ['speedup', 93.81],
          ['rss.max', 120],
        ],
      },
    ]);
  });
});

describe("the drain bound's dirty rates", () => {
  it('reads what a guest writes where a 5-s reading tops out at memory / 5 s', async () => {
    const jvm = {
      id: 'jvm',
      name: 'jvm',
      host: 'a',
      vcpus: 1,
      memMiB: 2048,
      workload: {
        kind: 'bursty' as const,
        cpuPct: 40,
        dirtyMiBps: 800,
        burstCpuPct: 95,
        burstDirtyMiBps: 1400,
        periodS: 30,
        burstS: 3,
        phaseS: 0,
        wwsMiB: 6144,
      },
    };
    const { clock, sim } = setup([host('a')], [jvm, constantVm('web', 'a', 4096, 50, 1024)]);
    await sim.startDirtyRate('a', 'jvm', 5);
    await clock.advance(5000);
    const fiveS = (await sim.sampleVms('a')).find((v) => v.vmId === 'jvm')?.dirtyRate.dirtyMiBps;
    expect(fiveS).toBeCloseTo(2048 / 5, 6);
    const mean = await meanDirtyMiBps(sim, clock, 'a');
    // 800 MiB/s, 1400 for 3 s of every 30: about 860 on average, whichever seconds the readings fall on.
    expect(mean.get('jvm')).toBeGreaterThan(800 - 1e-6);
    expect(mean.get('jvm')).toBeLessThan(1400);
    expect(mean.get('web')).toBeCloseTo(50, 6);
  });
});
