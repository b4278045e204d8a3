// The simulated cluster's state, shared by the simulator and its migration engine: VMs, the domain of a VM on
// one host (an instance), hosts, and migrations in flight. Plain data; the behaviour lives in
// sim-hypervisor.ts (the cluster) and migration-engine.ts (progress and link shares of migrations).
import type { VmState, StorageKind } from '../../domain/snapshot.js';
import type { DiskInfo, HostInfo, MigrationJob, MigrationOutcome, MigrationRequest } from '../hypervisor.js';
import type { PrecopyMigration } from './precopy.js';
import type { Prng } from './prng.js';
import type { WorkloadProcess } from './workloads.js';

export interface SimDisk extends DiskInfo {
  capacityMiB: number;
  allocatedMiB: number;
  topLayerMiB: number;
  backing: { path: string; format: string | null; sizeMiB: number } | null;
}

export interface Spike {
  fromMs: number;
  toMs: number;
  dirtyMiBps: number;
}

export interface SimVm {
  id: string;
  name: string;
  vcpus: number;
  memMiB: number;
  memUsedMiB: number;
  cpuModel: string;
  disks: SimDisk[];
  storage: StorageKind;
  labels: Record<string, string>;
  workload: WorkloadProcess;
  spikes: Spike[];
  /** Fault armed: the next switch-over leaves the VM paused on both ends. */
  breakAtSwitchover: boolean;
}

export interface DirtyMeasurement {
  startedAt: number;
  windowS: number;
  resultMiBps: number | null;
}

/** The VM as it exists on one host (a libvirt domain there). */
export interface Instance {
  vm: SimVm;
  hostId: string;
  state: VmState;
  persistent: boolean;
  /** Receiving an incoming migration. */
  incoming: boolean;
  /** CPU time accrued up to cpuSinceMs (ns). */
  cpuNs: number;
  /** Accrual start while running, else null. */
  cpuSinceMs: number | null;
  throttlePct: number;
  dirty: DirtyMeasurement | null;
  /** The migration this domain takes part in (either end). */
  job: SimMigration | null;
  offlineMoving: boolean;
  completed: MigrationJob | null;
  /** Max migration speed set while no job ran (libvirt keeps it for the next migration). */
  maxBandwidthMiBps: number | null;
}

export interface SimHost {
  info: HostInfo;
  bandwidthMiBps: number;
  supported: Set<string>;
  reservedMemMiB: number;
  vms: Map<string, Instance>;
  linkFactor: number;
  migrations: Set<SimMigration>;
  bootMs: number;
  /** CPU time of domains that left or stopped (keeps the host counter monotonic). */
  retiredCpuNs: number;
  lastSourceNs: number;
  reportedBusyNs: number;
  lastSampleMs: number;
  load: { cpuPct: number | null; memUsedMiB: number | null; sinceMs: number } | null;
}

export interface SimMigration {
  request: MigrationRequest;
  vm: SimVm;
  src: SimHost;
  dst: SimHost;
  srcInst: Instance;
  dstInst: Instance;
  /** The destination already had the VM defined (shut off) before. */
  dstExisted: boolean;
  model: PrecopyMigration;
  capMiBps: number | null;
  rng: Prng;
  noiseFactor: number;
  noiseIndex: number;
  /** The VM was paused by its user (not by the migration) when the switch-over began. */
  pausedBeforeSwitch: boolean;
  timer: AbortController | null;
  ended: boolean;
  resolve: (outcome: MigrationOutcome) => void;
}
