// A small simulated cluster for executor tests, on a virtual clock, and helpers to build jobs.
import { VirtualClock } from '../../../src/clock/clocks.js';
import { SimHypervisor, type SimVmSpec } from '../../../src/hypervisor/sim/index.js';
import type { Step } from '../../../src/domain/plan.js';
import {
  parseExecutionPolicy,
  parseExecutorOptions,
  type ExecutionPolicy,
  type ExecutorOptions,
} from '../../../src/executor/executor-options.js';
import type { MigrationJobData } from '../../../src/executor/migration-runner.js';

const constant = (dirtyMiBps: number, wwsMiB: number) => ({
  kind: 'constant' as const,
  cpuPct: 20,
  dirtyMiBps,
  wwsMiB,
});

/** VMs by what they do when migrated over a 1000 MiB/s link. */
export const VMS = {
  /** Converges at once. */
  idle: 'vm-idle',
  /** Dirties twice the link rate: never converges by pre-copy alone. */
  hot: 'vm-hot',
  /** Flat at 300 MiB pending per round: converges only once max downtime reaches about 300 ms. */
  stubborn: 'vm-stubborn',
  /** A second idle VM for concurrency tests. */
  idle2: 'vm-idle-2',
  /** Disks on local storage. */
  local: 'vm-local',
  /** A CPU model the other hosts cannot run. */
  newCpu: 'vm-new-cpu',
  /** Shut off: for offline migration. */
  off: 'vm-off',
} as const;

export function simCluster(
  extraVms: SimVmSpec[] = [],
  opts: { switchoverMs?: number; setupMs?: number } = {},
): { hv: SimHypervisor; clock: VirtualClock } {
  const clock = new VirtualClock();
  const host = (id: string, cpuModel = 'Cascadelake-Server') => ({
    id,
    cpus: 32,
    memMiB: 65536,
    bandwidthMiBps: 1000,
    cpuModel,
  });
  const vm = (id: string, hostId: string, memMiB: number, dirtyMiBps: number, wwsMiB: number) => ({
    id,
    name: id,
    host: hostId,
    vcpus: 2,
    memMiB,
    cpuModel: 'Cascadelake-Server',
    workload: constant(dirtyMiBps, wwsMiB),
  });
  const hv = new SimHypervisor(
    {
      seed: 7,
      hosts: [host('h1', 'Icelake-Server'), host('h2'), host('h3')],
      vms: [
        vm(VMS.idle, 'h1', 4096, 2, 64),
        vm(VMS.idle2, 'h1', 2048, 2, 64),
        vm(VMS.hot, 'h1', 4096, 2000, 2048),
        vm(VMS.stubborn, 'h1', 4096, 1500, 300),
        {
          ...vm(VMS.local, 'h1', 2048, 2, 64),
          disks: [{ target: 'vda', shared: false, capacityMiB: 10240, allocatedMiB: 2048 }],
        },
        { ...vm(VMS.newCpu, 'h1', 2048, 2, 64), cpuModel: 'Icelake-Server' },
        { ...vm(VMS.off, 'h1', 2048, 0, 0), state: 'shutoff' as const },
        ...extraVms,
      ],
    },
    {
      clock,
      migrationCosts: {
        ...(opts.switchoverMs !== undefined ? { switchoverMs: opts.switchoverMs } : {}),
        ...(opts.setupMs !== undefined ? { setupMs: opts.setupMs } : {}),
      },
    },
  );
  return { hv, clock };
}

export function testOptions(overrides: Record<string, unknown> = {}): ExecutorOptions {
  return parseExecutorOptions(overrides);
}

export function policy(overrides: Record<string, unknown> = {}): ExecutionPolicy {
  return parseExecutionPolicy(overrides);
}

export function step(vm: string, overrides: Partial<Step> = {}): Step {
  return {
    vm,
    from: 'h1',
    to: 'h2',
    kind: 'live',
    why: 'test',
    predicted: { converges: true, durationS: 5, downtimeMs: 50, transferMiB: 4200 },
    downtimeBudgetMs: 400,
    ...overrides,
  };
}

export function job(s: Step, p: ExecutionPolicy = policy()): MigrationJobData {
  return { planId: 'plan-1', step: s, policy: p, forecast: null, enqueuedAt: new Date(0).toISOString() };
}
