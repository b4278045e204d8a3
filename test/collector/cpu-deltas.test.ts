import { describe, expect, it } from 'vitest';
import { hostCpuPct, vmCpuPct } from '../../src/collector/cpu-deltas.js';

const S = 1e9; // ns per second

describe('hostCpuPct', () => {
  it.each([
    { name: 'no earlier reading', prev: null, busy: 5 * S, total: 10 * S, want: null },
    { name: 'half busy', prev: [0, 0], busy: 8 * S, total: 16 * S, want: 50 },
    { name: 'idle', prev: [4 * S, 10 * S], busy: 4 * S, total: 20 * S, want: 0 },
    { name: 'fully busy', prev: [4 * S, 10 * S], busy: 14 * S, total: 20 * S, want: 100 },
    { name: 'no time passed', prev: [4 * S, 10 * S], busy: 4 * S, total: 10 * S, want: null },
    { name: 'counters reset (reboot)', prev: [400 * S, 1000 * S], busy: 1 * S, total: 2 * S, want: null },
    { name: 'busy above total is clamped', prev: [0, 0], busy: 12 * S, total: 10 * S, want: 100 },
  ])('$name', ({ prev, busy, total, want }) => {
    const p = prev === null ? null : { at: 0, cpuBusyNs: prev[0] ?? 0, cpuTotalNs: prev[1] ?? 0 };
    expect(hostCpuPct(p, { at: 1000, cpuBusyNs: busy, cpuTotalNs: total })).toBe(want);
  });

  it('uses the delta, not the cumulative ratio', () => {
    // Busy 90 % for the first hour, then 10 % for 10 s: the reading is 10 %, not ~90 %.
    const prev = { at: 0, cpuBusyNs: 0.9 * 3600 * 32 * S, cpuTotalNs: 3600 * 32 * S };
    const cur = {
      at: 10_000,
      cpuBusyNs: prev.cpuBusyNs + 0.1 * 10 * 32 * S,
      cpuTotalNs: prev.cpuTotalNs + 10 * 32 * S,
    };
    expect(hostCpuPct(prev, cur)).toBeCloseTo(10, 6);
  });
});

describe('vmCpuPct', () => {
  it.each([
    { name: 'no earlier reading', prev: null, cpu: 10 * S, at: 10_000, vcpus: 2, want: null },
    { name: 'one of two vCPUs busy', prev: [0, 0], cpu: 10 * S, at: 10_000, vcpus: 2, want: 50 },
    { name: 'four vCPUs busy a quarter', prev: [0, 0], cpu: 10 * S, at: 10_000, vcpus: 4, want: 25 },
    { name: 'idle', prev: [0, 5 * S], cpu: 5 * S, at: 10_000, vcpus: 1, want: 0 },
    { name: 'VM restarted (counter back)', prev: [0, 50 * S], cpu: 1 * S, at: 10_000, vcpus: 1, want: null },
    { name: 'no time passed', prev: [10_000, 0], cpu: 1 * S, at: 10_000, vcpus: 1, want: null },
    { name: 'more than its vCPUs is clamped', prev: [0, 0], cpu: 30 * S, at: 10_000, vcpus: 2, want: 100 },
  ])('$name', ({ prev, cpu, at, vcpus, want }) => {
    const p = prev === null ? null : { at: prev[0] ?? 0, cpuTimeNs: prev[1] ?? 0 };
    expect(vmCpuPct(p, { at, cpuTimeNs: cpu }, vcpus)).toBe(want);
  });
});
