import { describe, expect, it } from 'vitest';
import type { HostRecord } from '../../src/collector/host-history.js';
import { buildSnapshot } from '../../src/collector/snapshot-builder.js';
import { parseSnapshot, type Vm } from '../../src/domain/snapshot.js';
import type { HostInfo } from '../../src/hypervisor/hypervisor.js';

const hostInfo = (id: string): HostInfo => ({
  id,
  cpus: 8,
  memMiB: 32768,
  cpuModel: null,
  bandwidthMiBps: null,
  labels: {},
});
const vm = (id: string, host: string, state: Vm['state'] = 'running'): Vm => ({
  id,
  name: id,
  host,
  state,
  vcpus: 1,
  memMiB: 1024,
  cpuPct: 5,
  memUsedMiB: 512,
  dirtyMiBps: null,
  dirtyPeakMiBps: null,
  storage: 'shared',
  diskMiB: 0,
  cpuModel: null,
  labels: {},
  measuredAt: '2026-01-01T00:00:00.000Z',
});
const record = (id: string, measuredAt: number, vms: Vm[], stale = false): HostRecord => ({
  hostId: id,
  measuredAt,
  stale,
  cpus: 8,
  memMiB: 32768,
  cpuPct: 40,
  cpuEwmaPct: 40,
  cpuPeakPct: 60,
  memUsedMiB: 1000,
  bandwidthMiBps: null,
  cpuModel: null,
  labels: {},
  vms,
});

describe('buildSnapshot', () => {
  const now = Date.UTC(2026, 0, 1, 0, 10);
  it('gives drover states to fresh hosts and marks old, failed or missing records stale and down', () => {
    const snap = buildSnapshot({
      hosts: ['a', 'b', 'c', 'd', 'e'].map(hostInfo),
      records: new Map([
        ['a', record('a', now - 30_000, [vm('v1', 'a')])],
        ['b', record('b', now - 30_000, [], true)],
        ['c', record('c', now - 70_000, [vm('v2', 'c')])],
        ['e', record('e', now, [])],
      ]),
      states: { a: 'maintenance', c: 'disabled' },
      now,
      staleAfterMs: 65_000,
    });
    expect(parseSnapshot(snap)).toEqual(snap);
    const byId = Object.fromEntries(snap.hosts.map((h) => [h.id, h]));
    expect(byId.a).toMatchObject({ state: 'maintenance', stale: false, cpuPct: 40 });
    expect(byId.b).toMatchObject({ state: 'down', stale: true });
    expect(byId.c).toMatchObject({ state: 'down', stale: true, cpuPct: 40 });
    expect(byId.d).toMatchObject({ state: 'down', stale: true, cpuPct: null, measuredAt: null });
    expect(byId.e).toMatchObject({ state: 'active', stale: false });
    expect(snap.vms.map((v) => v.id)).toEqual(['v1', 'v2']);
    expect(snap.takenAt).toBe(new Date(now).toISOString());
  });

  it('lists a VM seen on two hosts once, where it runs', () => {
    const snap = buildSnapshot({
      hosts: ['a', 'b'].map(hostInfo),
      records: new Map([
        ['a', record('a', now, [vm('v1', 'a', 'paused')])],
        ['b', record('b', now, [vm('v1', 'b', 'running')])],
      ]),
      states: {},
      now,
      staleAfterMs: 65_000,
    });
    expect(snap.vms).toHaveLength(1);
    expect(snap.vms[0]?.host).toBe('b');
    expect(() => parseSnapshot(snap)).not.toThrow();
  });
});
