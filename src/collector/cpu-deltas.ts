// CPU utilisation from cumulative CPU-time counters: the difference of two readings, never one instant value.
import type { HostSample } from '../hypervisor/hypervisor.js';

export interface HostCpuReading {
  at: number;
  cpuBusyNs: number;
  cpuTotalNs: number;
}

export interface VmCpuReading {
  at: number;
  cpuTimeNs: number;
}

const clampPct = (pct: number): number => Math.min(100, Math.max(0, pct));

/**
 * Host CPU percent of all its CPUs between two readings: busy-time delta over total-time delta.
 * Null when there is no earlier reading, no time passed, or the counters went backwards (host rebooted).
 */
export function hostCpuPct(prev: HostCpuReading | null, cur: HostCpuReading): number | null {
  if (prev === null) return null;
  const busy = cur.cpuBusyNs - prev.cpuBusyNs;
  const total = cur.cpuTotalNs - prev.cpuTotalNs;
  if (total <= 0 || busy < 0) return null;
  return clampPct((busy / total) * 100);
}

/**
 * VM CPU percent of its own vCPUs: guest CPU-time delta over (wall-time delta x vCPUs).
 * Null without an earlier reading, when no time passed, or when the counter went backwards (VM restarted).
 */
export function vmCpuPct(prev: VmCpuReading | null, cur: VmCpuReading, vcpus: number): number | null {
  if (prev === null || vcpus <= 0) return null;
  const wallNs = (cur.at - prev.at) * 1e6;
  const cpuNs = cur.cpuTimeNs - prev.cpuTimeNs;
  if (wallNs <= 0 || cpuNs < 0) return null;
  return clampPct((cpuNs / (wallNs * vcpus)) * 100);
}

export function hostCpuReading(sample: HostSample): HostCpuReading {
  return { at: sample.at, cpuBusyNs: sample.cpuBusyNs, cpuTotalNs: sample.cpuTotalNs };
}
