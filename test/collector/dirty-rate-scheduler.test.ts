import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  pickDirtyRateProbes,
  probeInFlight,
  type ProbeCandidate,
} from '../../src/collector/dirty-rate-scheduler.js';
import { VM_STATES } from '../../src/domain/snapshot.js';

const limits = { maxPerHost: 2, windowMs: 5000, remeasureMs: 300_000 };
const vm = (vmId: string, over: Partial<ProbeCandidate> = {}): ProbeCandidate => ({
  vmId,
  state: 'running',
  migrating: false,
  measuring: false,
  probeAt: null,
  ...over,
});

describe('pickDirtyRateProbes', () => {
  it('starts at most maxPerHost, never-measured first, then the longest unmeasured', () => {
    const now = 1_000_000;
    const got = pickDirtyRateProbes(
      [vm('a', { probeAt: now - 400_000 }), vm('b'), vm('c', { probeAt: now - 900_000 }), vm('d')],
      now,
      limits,
    );
    expect(got).toEqual(['b', 'd']);
    const next = pickDirtyRateProbes(
      [vm('a', { probeAt: now - 400_000 }), vm('c', { probeAt: now - 900_000 })],
      now,
      limits,
    );
    expect(next).toEqual(['c', 'a']);
  });

  it('never probes a migrating, paused or stopped VM', () => {
    const got = pickDirtyRateProbes(
      [vm('m', { migrating: true }), vm('p', { state: 'paused' }), vm('s', { state: 'shutoff' }), vm('ok')],
      0,
      { ...limits, maxPerHost: 10 },
    );
    expect(got).toEqual(['ok']);
  });

  it('counts running measurements against the limit, including ones it started that the host does not show yet', () => {
    const now = 100_000;
    expect(pickDirtyRateProbes([vm('a', { measuring: true }), vm('b'), vm('c')], now, limits)).toEqual(['b']);
    expect(pickDirtyRateProbes([vm('a', { probeAt: now - 1000 }), vm('b'), vm('c')], now, limits)).toEqual([
      'b',
    ]);
    expect(
      pickDirtyRateProbes([vm('a', { measuring: true }), vm('b', { measuring: true }), vm('c')], now, limits),
    ).toEqual([]);
  });

  it('does not measure a VM again before remeasureMs', () => {
    const now = 1_000_000;
    expect(pickDirtyRateProbes([vm('a', { probeAt: now - 299_999 })], now, limits)).toEqual([]);
    expect(pickDirtyRateProbes([vm('a', { probeAt: now - 300_000 })], now, limits)).toEqual(['a']);
  });

  it('over any run of cycles, never has more than maxPerHost in flight and never picks a migrating VM', () => {
    const candidate = fc.record({
      state: fc.constantFrom(...VM_STATES),
      migrating: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(fc.array(candidate, { minLength: 8, maxLength: 8 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 60 }),
        (cycles, maxPerHost, windowS, intervalS) => {
          const lim = { maxPerHost, windowMs: windowS * 1000, remeasureMs: 30_000 };
          const probeAt = new Map<string, number>();
          cycles.forEach((vms, k) => {
            const now = k * intervalS * 1000;
            const cands = vms.map((c, i) => {
              const id = `vm${i}`;
              const at = probeAt.get(id) ?? null;
              // The host reports a measurement as running until its window has passed.
              const measuring = at !== null && now - at < lim.windowMs;
              return { vmId: id, state: c.state, migrating: c.migrating, measuring, probeAt: at };
            });
            const picked = pickDirtyRateProbes(cands, now, lim);
            for (const id of picked) {
              const c = cands.find((x) => x.vmId === id);
              expect(c?.migrating).toBe(false);
              expect(c?.state).toBe('running');
              probeAt.set(id, now);
            }
            const inFlight = [...probeAt.values()].filter((at) => now - at < lim.windowMs).length;
            expect(inFlight).toBeLessThanOrEqual(maxPerHost);
          });
        },
      ),
    );
  });
});

describe('probeInFlight', () => {
  it('is true while the host says measuring or within the window after the start', () => {
    expect(probeInFlight(vm('a', { measuring: true }), 0, 5000)).toBe(true);
    expect(probeInFlight(vm('a', { probeAt: 1000 }), 5999, 5000)).toBe(true);
    expect(probeInFlight(vm('a', { probeAt: 1000 }), 6000, 5000)).toBe(false);
    expect(probeInFlight(vm('a'), 6000, 5000)).toBe(false);
  });
});
