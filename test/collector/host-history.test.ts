import { describe, expect, it } from 'vitest';
import { parseCollectorOptions } from '../../src/collector/collector-options.js';
import {
  applyHostRound,
  emptyHostHistory,
  staleRecord,
  type HostHistory,
  type HostRecord,
} from '../../src/collector/host-history.js';
import type { DirtyRateReading, HostInfo, VmInfo, VmSample } from '../../src/hypervisor/hypervisor.js';

const S = 1e9;
const info: HostInfo = {
  id: 'kvm-01',
  cpus: 4,
  memMiB: 65536,
  cpuModel: 'Skylake-Server',
  bandwidthMiBps: 1150,
  labels: { rack: 'r1' },
};
const vmInfo = (id: string, over: Partial<VmInfo> = {}): VmInfo => ({
  id,
  name: `vm-${id}`,
  hostId: 'kvm-01',
  state: 'running',
  persistent: true,
  vcpus: 2,
  memMiB: 4096,
  cpuModel: 'Skylake-Server',
  disks: [{ target: 'vda', source: '/nfs/a.qcow2', shared: true, format: 'qcow2', capacityMiB: 10240 }],
  storage: 'shared',
  labels: {},
  ...over,
});
const none: DirtyRateReading = { status: 'none', dirtyMiBps: null, startedAt: null, windowS: null };

/** Feeds rounds of (host busy fraction, vm busy fraction, dirty reading) 30 s apart. */
function feed(
  rounds: { hostBusy: number; vmBusy?: number; dirty?: DirtyRateReading; migrating?: boolean }[],
  optionsInput: Parameters<typeof parseCollectorOptions>[0] = {},
): { history: HostHistory; records: HostRecord[] } {
  const options = parseCollectorOptions(optionsInput);
  let history = emptyHostHistory('kvm-01');
  let busy = 0;
  let total = 0;
  let vmCpu = 0;
  const records: HostRecord[] = [];
  rounds.forEach((r, k) => {
    const at = 1_000_000 + k * 30_000;
    if (k > 0) {
      total += 30 * 4 * S;
      busy += r.hostBusy * 30 * 4 * S;
      vmCpu += (r.vmBusy ?? 0) * 30 * 2 * S;
    }
    const sample: VmSample = {
      vmId: 'a',
      hostId: 'kvm-01',
      at,
      state: 'running',
      cpuTimeNs: vmCpu,
      vcpus: 2,
      memMiB: 4096,
      memUsedMiB: 3000,
      dirtyRate: r.dirty ?? none,
      migrating: r.migrating ?? false,
    };
    const out = applyHostRound(
      history,
      {
        info,
        host: {
          hostId: 'kvm-01',
          at,
          cpuBusyNs: busy,
          cpuTotalNs: total,
          memTotalMiB: 65536,
          memUsedMiB: 20000,
        },
        vmInfos: [vmInfo('a')],
        vmSamples: [sample],
      },
      options,
    );
    history = out.history;
    records.push(out.record);
  });
  return { history, records };
}

describe('applyHostRound', () => {
  it('has no CPU figure before two readings, then the delta', () => {
    const { records } = feed([{ hostBusy: 0 }, { hostBusy: 0.5, vmBusy: 0.25 }], { smoothing: { holdS: 0 } });
    expect(records[0]?.cpuPct).toBeNull();
    expect(records[0]?.vms[0]?.cpuPct).toBeNull();
    expect(records[1]?.cpuPct).toBe(50);
    expect(records[1]?.vms[0]?.cpuPct).toBe(25);
    expect(records[1]?.memUsedMiB).toBe(20000);
    expect(records[1]?.vms[0]?.memUsedMiB).toBe(3000);
    expect(records[1]?.measuredAt).toBe(1_030_000);
    expect(records[1]?.vms[0]?.measuredAt).toBe(new Date(1_030_000).toISOString());
  });

  it('smooths CPU with the EWMA and keeps the high percentile', () => {
    const { records } = feed([{ hostBusy: 0 }, { hostBusy: 0.2 }, { hostBusy: 0.2 }, { hostBusy: 1 }], {
      smoothing: { cpuTauS: 60, holdS: 0 },
    });
    const last = records[3];
    const a = 1 - Math.exp(-0.5);
    expect(last?.cpuEwmaPct).toBeCloseTo(20 + a * (100 - 20), 1);
    expect(last?.cpuPeakPct).toBe(100);
    expect(last?.cpuPct).toBe(last?.cpuEwmaPct);
  });

  it('reports a host as loaded only after the load has held for holdS', () => {
    const rounds = [{ hostBusy: 0 }, ...Array.from({ length: 4 }, () => ({ hostBusy: 0.3 }))];
    const high = Array.from({ length: 8 }, () => ({ hostBusy: 0.95 }));
    const { records } = feed([...rounds, ...high], { smoothing: { cpuTauS: 1, holdS: 120 } });
    // The first 30 s readings of 95 % do not show; after 120 s of it, they do.
    expect(records[5]?.cpuEwmaPct).toBeCloseTo(95, 0);
    expect(records[5]?.cpuPct).toBeCloseTo(30, 0);
    expect(records[7]?.cpuPct).toBeCloseTo(30, 0);
    expect(records[9]?.cpuPct).toBeCloseTo(95, 0);
  });

  it('takes each finished dirty-rate measurement once: typical (mean, then EWMA) and peak (percentile)', () => {
    const m = (startedAt: number, dirtyMiBps: number): DirtyRateReading => ({
      status: 'measured',
      dirtyMiBps,
      startedAt,
      windowS: 5,
    });
    const { records, history } = feed(
      [
        { hostBusy: 0 },
        { hostBusy: 0, dirty: m(1_010_000, 100) },
        { hostBusy: 0, dirty: m(1_010_000, 100) }, // same measurement again: not a new point
        { hostBusy: 0, dirty: m(1_070_000, 10) },
        { hostBusy: 0, dirty: { status: 'measuring', dirtyMiBps: null, startedAt: null, windowS: 5 } },
      ],
      { smoothing: { dirtyTauS: 600, percentile: 95 } },
    );
    expect(records[0]?.vms[0]?.dirtyMiBps).toBeNull();
    expect(records[0]?.vms[0]?.dirtyPeakMiBps).toBeNull();
    expect(records[1]?.vms[0]?.dirtyMiBps).toBe(100);
    expect(history.vms.a?.dirtyPoints.length).toBe(2);
    // Two readings a minute apart against a 10-minute tau: the typical rate is their even mean, not a value
    // still close to the first reading (what the EWMA alone would give: 91.4).
    const typical = 55;
    expect(records[3]?.vms[0]?.dirtyMiBps).toBeCloseTo(typical, 1);
    expect(records[3]?.vms[0]?.dirtyPeakMiBps).toBe(100);
    // While a new measurement runs the last values stay.
    expect(records[4]?.vms[0]?.dirtyMiBps).toBeCloseTo(typical, 1);
  });

  it('forgets VMs that left the host and fills storage, disk and labels from the domain', () => {
    const options = parseCollectorOptions({});
    const host = { hostId: 'kvm-01', at: 1, cpuBusyNs: 0, cpuTotalNs: 0, memTotalMiB: 1, memUsedMiB: 1 };
    const local = vmInfo('b', {
      storage: 'local',
      disks: [
        { target: 'vda', source: '/var/lib/a.qcow2', shared: false, format: 'qcow2', capacityMiB: 2048 },
        { target: 'vdb', source: '/var/lib/b.qcow2', shared: false, format: 'qcow2', capacityMiB: 1024 },
      ],
      labels: { app: 'db' },
    });
    const first = applyHostRound(
      emptyHostHistory('kvm-01'),
      { info, host, vmInfos: [vmInfo('a'), local], vmSamples: [] },
      options,
    );
    expect(Object.keys(first.history.vms).sort()).toEqual(['a', 'b']);
    const vmB = first.record.vms.find((v) => v.id === 'b');
    expect(vmB).toMatchObject({
      storage: 'local',
      diskMiB: 3072,
      labels: { app: 'db' },
      cpuPct: null,
      measuredAt: null,
    });
    const second = applyHostRound(
      first.history,
      { info, host: { ...host, at: 2 }, vmInfos: [local], vmSamples: [] },
      options,
    );
    expect(Object.keys(second.history.vms)).toEqual(['b']);
  });
});

describe('staleRecord', () => {
  it('keeps the last values with their time, marked stale; with none, nulls', () => {
    const { records } = feed([{ hostBusy: 0 }, { hostBusy: 0.5 }], { smoothing: { holdS: 0 } });
    const last = records[1];
    if (!last) throw new Error('no record');
    const stale = staleRecord(info, last);
    expect(stale).toMatchObject({ stale: true, cpuPct: 50, measuredAt: last.measuredAt });
    expect(staleRecord(info, null)).toMatchObject({
      stale: true,
      cpuPct: null,
      memUsedMiB: null,
      measuredAt: null,
      vms: [],
    });
  });
});
