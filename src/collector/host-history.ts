// One host's sampling history and the step that turns a new round of samples into snapshot entries.
// Pure and serialisable: the state lives in Redis between cycles so any collector process can continue it.
import type { Vm } from '../domain/snapshot.js';
import type { HostInfo, HostSample, VmInfo, VmSample } from '../hypervisor/hypervisor.js';
import type { CollectorOptions } from './collector-options.js';
import { hostCpuPct, vmCpuPct, type HostCpuReading, type VmCpuReading } from './cpu-deltas.js';
import { ewmaStep, heldLevel, pushPoint, windowPercentile, type EwmaState, type Point } from './smoothing.js';

export interface VmHistory {
  cpuPrev: VmCpuReading | null;
  cpu: EwmaState;
  dirty: EwmaState;
  /** Finished dirty-rate measurements: [startedAt, MiB/s, typical after it]. */
  dirtyPoints: Point[];
  /** When drover last started a measurement of this VM (ms). */
  probeAt: number | null;
}

export interface HostHistory {
  hostId: string;
  cpuPrev: HostCpuReading | null;
  cpu: EwmaState;
  /** CPU per sample: [at, raw cpuPct, EWMA]. */
  cpuPoints: Point[];
  vms: Record<string, VmHistory>;
}

/** The snapshot entries of one host as its last sampling left them. */
export interface HostRecord {
  hostId: string;
  /** When the values were measured (ms), null when never. */
  measuredAt: number | null;
  /** The host did not answer its last sample in time. */
  stale: boolean;
  cpus: number;
  memMiB: number;
  /** Held level of the smoothed CPU (see smoothing.holdS). */
  cpuPct: number | null;
  /** EWMA and high percentile of the CPU, for metrics and the API. */
  cpuEwmaPct: number | null;
  cpuPeakPct: number | null;
  memUsedMiB: number | null;
  bandwidthMiBps: number | null;
  cpuModel: string | null;
  labels: Record<string, string>;
  vms: Vm[];
}

export function emptyHostHistory(hostId: string): HostHistory {
  return { hostId, cpuPrev: null, cpu: { value: null, at: null }, cpuPoints: [], vms: {} };
}

export function emptyVmHistory(): VmHistory {
  return {
    cpuPrev: null,
    cpu: { value: null, at: null },
    dirty: { value: null, at: null },
    dirtyPoints: [],
    probeAt: null,
  };
}

export function vmHistory(history: HostHistory, vmId: string): VmHistory {
  return history.vms[vmId] ?? emptyVmHistory();
}

const iso = (ms: number): string => new Date(ms).toISOString();
const round = (x: number | null, digits = 2): number | null =>
  x === null ? null : Math.round(x * 10 ** digits) / 10 ** digits;

export interface HostRound {
  info: HostInfo;
  host: HostSample;
  vmInfos: readonly VmInfo[];
  vmSamples: readonly VmSample[];
}

/** Folds one round of samples into the history and returns the new history and the host's record. */
export function applyHostRound(
  prev: HostHistory,
  round_: HostRound,
  options: CollectorOptions,
): { history: HostHistory; record: HostRecord } {
  const s = options.smoothing;
  const { info, host } = round_;
  const now = host.at;
  const reading: HostCpuReading = { at: host.at, cpuBusyNs: host.cpuBusyNs, cpuTotalNs: host.cpuTotalNs };
  const raw = hostCpuPct(prev.cpuPrev, reading);
  let cpu = prev.cpu;
  let cpuPoints = prev.cpuPoints;
  if (raw !== null) {
    cpu = ewmaStep(prev.cpu, raw, now, s.cpuTauS * 1000);
    cpuPoints = pushPoint(cpuPoints, [now, raw, cpu.value ?? raw], s.cpuWindowS * 1000, s.maxPoints);
  }

  const samples = new Map(round_.vmSamples.map((v) => [v.vmId, v]));
  const vms: Record<string, VmHistory> = {};
  const entries: Vm[] = [];
  for (const vi of round_.vmInfos) {
    const vs = samples.get(vi.id);
    const h = { ...vmHistory(prev, vi.id) };
    let cpuPct: number | null = null;
    if (vs) {
      const cur: VmCpuReading = { at: vs.at, cpuTimeNs: vs.cpuTimeNs };
      const rawVm = vmCpuPct(h.cpuPrev, cur, vs.vcpus);
      h.cpuPrev = cur;
      if (rawVm !== null) h.cpu = ewmaStep(h.cpu, rawVm, vs.at, s.cpuTauS * 1000);
      else if (vs.state !== 'running') h.cpu = { value: null, at: null };
      cpuPct = rawVm === null ? null : h.cpu.value;
      const d = vs.dirtyRate;
      const last = h.dirtyPoints[h.dirtyPoints.length - 1];
      if (
        d.status === 'measured' &&
        d.dirtyMiBps !== null &&
        d.startedAt !== null &&
        (last === undefined || d.startedAt > last[0])
      ) {
        const rate = Math.max(0, d.dirtyMiBps);
        h.dirty = ewmaStep(h.dirty, rate, d.startedAt, s.dirtyTauS * 1000, true);
        h.dirtyPoints = pushPoint(
          h.dirtyPoints,
          [d.startedAt, rate, h.dirty.value ?? rate],
          s.dirtyWindowS * 1000,
          s.maxPoints,
        );
      }
    }
    vms[vi.id] = h;
    const hasDirty = h.dirtyPoints.length > 0;
    const vm: Vm = {
      id: vi.id,
      name: vi.name,
      host: info.id,
      state: vs?.state ?? vi.state,
      vcpus: vs?.vcpus ?? vi.vcpus,
      memMiB: vs?.memMiB ?? vi.memMiB,
      cpuPct: round(cpuPct),
      memUsedMiB: vs?.memUsedMiB ?? null,
      dirtyMiBps: hasDirty ? round(h.dirty.value) : null,
      dirtyPeakMiBps: hasDirty
        ? round(windowPercentile(h.dirtyPoints, now, s.dirtyWindowS * 1000, s.percentile))
        : null,
      storage: vi.storage,
      diskMiB: localDiskMiB(vi),
      cpuModel: vi.cpuModel,
      labels: vi.labels,
      measuredAt: vs ? iso(vs.at) : null,
    };
    entries.push(vm);
  }

  const history: HostHistory = { hostId: info.id, cpuPrev: reading, cpu, cpuPoints, vms };
  const fresh = raw !== null;
  const record: HostRecord = {
    hostId: info.id,
    measuredAt: now,
    stale: false,
    cpus: info.cpus,
    memMiB: info.memMiB,
    cpuPct: fresh ? round(heldLevel(cpuPoints, now, s.holdS * 1000)) : null,
    cpuEwmaPct: fresh ? round(cpu.value) : null,
    cpuPeakPct: fresh ? round(windowPercentile(cpuPoints, now, s.cpuWindowS * 1000, s.percentile)) : null,
    memUsedMiB: host.memUsedMiB,
    bandwidthMiBps: info.bandwidthMiBps,
    cpuModel: info.cpuModel,
    labels: info.labels,
    vms: entries,
  };
  return { history, record };
}

/** Bytes a block migration copies: the local disks' capacity, when every local disk's size is known. */
function localDiskMiB(vi: VmInfo): number | null {
  if (vi.storage === 'shared') return 0;
  let total = 0;
  for (const d of vi.disks) {
    if (d.shared) continue;
    if (d.capacityMiB === null) return null;
    total += d.capacityMiB;
  }
  return total;
}

/** The record of a host that did not answer: its last values, with when they were measured, marked stale. */
export function staleRecord(info: HostInfo, last: HostRecord | null): HostRecord {
  if (last) return { ...last, stale: true };
  return {
    hostId: info.id,
    measuredAt: null,
    stale: true,
    cpus: info.cpus,
    memMiB: info.memMiB,
    cpuPct: null,
    cpuEwmaPct: null,
    cpuPeakPct: null,
    memUsedMiB: null,
    bandwidthMiBps: info.bandwidthMiBps,
    cpuModel: info.cpuModel,
    labels: info.labels,
    vms: [],
  };
}
