// Which VMs of one host get a dirty-rate measurement now: never more than maxPerHost at once on a host,
// never a VM that is migrating (the probe disturbs a running migration) or not running, the longest-unmeasured
// first. Pure, so the limits can be checked exhaustively.
import type { VmState } from '../domain/snapshot.js';

export interface ProbeCandidate {
  vmId: string;
  state: VmState;
  migrating: boolean;
  /** The hypervisor reports a measurement of this VM in progress. */
  measuring: boolean;
  /** When drover last started a measurement of this VM (ms), or null. */
  probeAt: number | null;
}

export interface ProbeLimits {
  maxPerHost: number;
  windowMs: number;
  remeasureMs: number;
}

/** A measurement counts as running while the hypervisor says so or until its window has passed. */
export function probeInFlight(c: ProbeCandidate, now: number, windowMs: number): boolean {
  return c.measuring || (c.probeAt !== null && now - c.probeAt < windowMs);
}

/** Ids of the VMs to start measuring now, in start order. */
export function pickDirtyRateProbes(
  candidates: readonly ProbeCandidate[],
  now: number,
  limits: ProbeLimits,
): string[] {
  const running = candidates.filter((c) => probeInFlight(c, now, limits.windowMs)).length;
  const free = limits.maxPerHost - running;
  if (free <= 0) return [];
  return candidates
    .filter(
      (c) =>
        c.state === 'running' &&
        !c.migrating &&
        !probeInFlight(c, now, limits.windowMs) &&
        (c.probeAt === null || now - c.probeAt >= limits.remeasureMs),
    )
    .sort((a, b) => (a.probeAt ?? -Infinity) - (b.probeAt ?? -Infinity) || a.vmId.localeCompare(b.vmId))
    .slice(0, free)
    .map((c) => c.vmId);
}
