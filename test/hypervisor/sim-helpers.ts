// Shared set-up for the simulator's tests: small clusters on a virtual clock, and the closed-form
// pre-copy model the physics is checked against.
import { VirtualClock } from '../../src/clock/clocks.js';
import type { HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import {
  SimHypervisor,
  type MigrationCosts,
  type SimHostSpec,
  type SimVmSpec,
} from '../../src/hypervisor/sim/index.js';

export interface SimSetup {
  clock: VirtualClock;
  sim: SimHypervisor;
  events: HypervisorEvent[];
}

export function host(id: string, bandwidthMiBps = 1000, extra: Partial<SimHostSpec> = {}): SimHostSpec {
  return { id, cpus: 32, memMiB: 262144, bandwidthMiBps, cpuModel: 'Cascadelake-Server', ...extra };
}

/** A VM with a constant workload. */
export function constantVm(
  id: string,
  hostId: string,
  memMiB: number,
  dirtyMiBps: number,
  wwsMiB: number,
  extra: Partial<SimVmSpec> = {},
): SimVmSpec {
  return {
    id,
    name: id,
    host: hostId,
    vcpus: 2,
    memMiB,
    workload: { kind: 'constant', cpuPct: 10, dirtyMiBps, wwsMiB },
    ...extra,
  };
}

export function setup(
  hosts: SimHostSpec[],
  vms: SimVmSpec[],
  options: { seed?: number; bandwidthNoisePct?: number; migrationCosts?: MigrationCosts } = {},
): SimSetup {
  const clock = new VirtualClock();
  const sim = new SimHypervisor(
    { seed: options.seed ?? 1, hosts, vms },
    {
      clock,
      bandwidthNoisePct: options.bandwidthNoisePct ?? 0,
      ...(options.migrationCosts ? { migrationCosts: options.migrationCosts } : {}),
    },
  );
  const events: HypervisorEvent[] = [];
  sim.subscribe((e) => events.push(e));
  return { clock, sim, events };
}

export interface ClosedForm {
  converges: boolean;
  /** Index of the last pre-copy round (0 when round 0 alone suffices). */
  iterations: number;
  durationS: number;
  downtimeMs: number;
}

/**
 * The closed-form pre-copy model with a constant dirty rate D, bandwidth B and working set W:
 * V0 = M, Ti = Vi / B, V(i+1) = min(W, D * Ti); switch over after round i when V(i+1) <= B * downtime.
 */
export function closedForm(p: {
  memMiB: number;
  dirtyMiBps: number;
  wwsMiB: number;
  bandwidthMiBps: number;
  maxDowntimeMs: number;
}): ClosedForm {
  let volume = p.memMiB;
  let timeS = 0;
  for (let round = 0; round < 10_000; round++) {
    const roundS = volume / p.bandwidthMiBps;
    timeS += roundS;
    const pending = Math.min(p.wwsMiB, p.dirtyMiBps * roundS);
    if (pending <= (p.bandwidthMiBps * p.maxDowntimeMs) / 1000) {
      const downS = pending / p.bandwidthMiBps;
      return { converges: true, iterations: round, durationS: timeS + downS, downtimeMs: downS * 1000 };
    }
    volume = pending;
  }
  return { converges: false, iterations: Infinity, durationS: Infinity, downtimeMs: Infinity };
}
