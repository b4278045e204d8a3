// The Hypervisor interface: everything drover needs from a hypervisor, and nothing more.
// Implementations: libvirt/ (real hosts over drover's libvirt client) and sim/ (in-process cluster).
// Both must pass test/hypervisor/conformance.test.ts.
import type { Clock } from '../domain/clock.js';
import { DroverError } from '../domain/errors.js';
import type { MigrationKind } from '../domain/plan.js';
import type { StorageKind, VmState } from '../domain/snapshot.js';

/** A host as the hypervisor knows it (drover's own host state — maintenance etc. — lives elsewhere). */
export interface HostInfo {
  id: string;
  cpus: number;
  memMiB: number;
  cpuModel: string | null;
  /** Migration link bandwidth, when the hypervisor knows it (the simulator does; libvirt hosts get it from config). */
  bandwidthMiBps: number | null;
  labels: Record<string, string>;
}

/** Cumulative counters: the collector turns deltas of these into utilisation. */
export interface HostSample {
  hostId: string;
  /** Clock time of the reading (ms). */
  at: number;
  /** Sum over all CPUs of non-idle CPU time (ns), monotonic. */
  cpuBusyNs: number;
  /** Sum over all CPUs of all CPU time (ns), monotonic. */
  cpuTotalNs: number;
  memTotalMiB: number;
  memUsedMiB: number;
}

export interface DiskInfo {
  /** Guest device name, e.g. `vda`. */
  target: string;
  /** Source path or volume on the host (null for network disks given by name only). */
  source: string | null;
  /** True when the disk lives on storage every host sees (NFS, Ceph, iSCSI, ...). */
  shared: boolean;
  format: string | null;
  capacityMiB: number | null;
}

export interface VmInfo {
  /** libvirt UUID. */
  id: string;
  name: string;
  hostId: string;
  state: VmState;
  /** Defined persistently on this host (not only running there). */
  persistent: boolean;
  vcpus: number;
  memMiB: number;
  cpuModel: string | null;
  disks: DiskInfo[];
  /** `shared` when every disk is on shared storage (a live migration can go); else `local`. */
  storage: StorageKind;
  labels: Record<string, string>;
}

export type DirtyRateStatus = 'none' | 'measuring' | 'measured';

export interface DirtyRateReading {
  status: DirtyRateStatus;
  /** MiB/s over the measurement window; null unless status is `measured`. */
  dirtyMiBps: number | null;
  /** When the finished measurement started (ms), or null. */
  startedAt: number | null;
  windowS: number | null;
}

export interface VmSample {
  vmId: string;
  hostId: string;
  at: number;
  state: VmState;
  /** Cumulative guest CPU time over all vCPUs (ns). */
  cpuTimeNs: number;
  vcpus: number;
  memMiB: number;
  /** Memory the guest really uses (balloon/RSS), null when the hypervisor cannot tell. */
  memUsedMiB: number | null;
  dirtyRate: DirtyRateReading;
  /** True while a migration job of this VM is active on this host. */
  migrating: boolean;
}

export type JobType = 'none' | 'active' | 'completed' | 'failed' | 'cancelled';

/**
 * A VM's migration job as drover reads it, in drover's units (MiB, MiB/s, ms, percent). Each implementation
 * converts its own figures once (libvirt's job-stats in `libvirt/job-stats.ts`, the simulator's model in
 * `sim/`); nothing above `src/hypervisor/` sees a hypervisor's field names or units.
 */
export interface MigrationJob {
  type: JobType;
  /** Time since the job started. */
  elapsedMs: number;
  memTotalMiB: number;
  memProcessedMiB: number;
  memRemainingMiB: number;
  /** Rate at which the guest dirties memory now. */
  dirtyMiBps: number;
  /** Pre-copy round, 0-based as drover counts it (round 0 sends all memory). */
  iteration: number;
  /** Rate at which the job moves data now (the average over the job once it ended). */
  transferMiBps: number;
  /** Expected downtime while running, the real one once completed. */
  downtimeMs: number;
  diskTotalMiB: number;
  diskProcessedMiB: number;
  diskRemainingMiB: number;
  /** Share of vCPU time auto-converge takes away. */
  autoConvergeThrottlePct: number;
  /** True once the migration switched to post-copy. */
  postCopy: boolean;
}

/** The job of a VM with none running. */
export function noMigrationJob(): MigrationJob {
  return {
    type: 'none',
    elapsedMs: 0,
    memTotalMiB: 0,
    memProcessedMiB: 0,
    memRemainingMiB: 0,
    dirtyMiBps: 0,
    iteration: 0,
    transferMiBps: 0,
    downtimeMs: 0,
    diskTotalMiB: 0,
    diskProcessedMiB: 0,
    diskRemainingMiB: 0,
    autoConvergeThrottlePct: 0,
    postCopy: false,
  };
}

export interface PostCopyResumeRequest {
  vmId: string;
  from: string;
  to: string;
  /** Cap on the pages still to send (MiB/s); null or absent = the link's full rate. */
  bandwidthMiBps?: number | null;
}

export interface MigrationRequest {
  vmId: string;
  from: string;
  to: string;
  kind: MigrationKind;
  /** Max downtime QEMU may use to switch over (ms). */
  maxDowntimeMs: number;
  /** Cap on migration bandwidth (MiB/s); null = the link's full rate. */
  bandwidthMiBps?: number | null;
  autoConverge?: boolean;
  /** Allow a later switch to post-copy (startPostCopy). */
  postCopy?: boolean;
  /** Block migration: copy only the top image layer (the destination must have the backing files). */
  incremental?: boolean;
  /**
   * The caller proved that both hosts see the disk files this live migration leaves in place (a marker file
   * written on one end was found on the other), so the hypervisor need not guess it from the file system type
   * (libvirt's guess knows NFS and a few cluster file systems, not a bind mount or an unlisted one).
   */
  storageVerified?: boolean;
}

export type MigrationResult = 'completed' | 'aborted' | 'failed';

export interface MigrationOutcome {
  result: MigrationResult;
  /** Set when result is `failed` (or when an abort reached the caller as an error). */
  error: string | null;
  /** The completed job when the hypervisor could read it. */
  stats: MigrationJob | null;
}

export interface MigrationHandle {
  readonly request: MigrationRequest;
  /** Settles when the migration ends; never rejects (failures are an outcome). */
  readonly done: Promise<MigrationOutcome>;
}

export type LifecycleEvent =
  | 'defined'
  | 'undefined'
  | 'started'
  | 'suspended'
  | 'resumed'
  | 'stopped'
  | 'shutdown'
  | 'pmsuspended'
  | 'crashed';

export type HypervisorEvent =
  | { kind: 'lifecycle'; hostId: string; vmId: string; event: LifecycleEvent; detail: number }
  | { kind: 'migration-iteration'; hostId: string; vmId: string; iteration: number }
  | { kind: 'job-completed'; hostId: string; vmId: string; stats: MigrationJob };

/** Where a VM exists on one host. */
export interface VmPresence {
  hostId: string;
  state: VmState;
  persistent: boolean;
  /**
   * Set while the VM is in a post-copy migration on this host: `active` while it runs, `failed` once it broke
   * (the guest's memory is then split between the two ends until the migration is resumed).
   */
  postCopy?: 'active' | 'failed';
}

/** A storage pool on one host (libvirt's virStoragePool). */
export interface StoragePoolInfo {
  name: string;
  /** libvirt pool type: `dir`, `fs`, `logical`, `rbd`, ... */
  type: string;
  /** Where its volumes live (a directory for file-based pools), or null. */
  targetPath: string | null;
  active: boolean;
  capacityBytes: number;
  allocationBytes: number;
  /** Room left for new volumes. */
  availableBytes: number;
}

/** A storage volume (disk image) on one host. */
export interface VolumeInfo {
  path: string;
  pool: string;
  name: string;
  /** Image format: `raw`, `qcow2`, ... (null when libvirt cannot tell). */
  format: string | null;
  /** Size the guest sees (bytes). */
  capacityBytes: number;
  /** Bytes it takes on the host. */
  allocationBytes: number;
  /** Length of the image file itself (what a copy of the whole file moves). */
  sizeBytes: number;
  /** The image this one is an overlay of, or null. */
  backing: { path: string; format: string | null } | null;
}

/** What createVolume makes: an empty image, or an overlay of `backing` (which must exist on that host). */
export interface VolumeSpec {
  pool: string;
  name: string;
  format: string;
  capacityBytes: number;
  backing?: { path: string; format: string | null } | null;
}

/** Length and SHA-256 (hex) of a volume's bytes. */
export interface VolumeDigest {
  sizeBytes: number;
  sha256: string;
}

export interface CopyVolumeRequest {
  from: string;
  to: string;
  /** Path of the volume on the source; the copy gets the same path on the destination. */
  path: string;
  /** Destination pool (its target must be the directory of `path`). */
  pool: string;
}

// The interface in roles: each consumer takes the roles it uses (the collector samples, recovery reads jobs
// and controls VMs, the block-migration steps manage volumes), and `Hypervisor` is all of them.

/** What every role carries: the hypervisor's clock (simulated time on the simulator). */
export interface HypervisorClock {
  readonly clock: Clock;
}

/** What exists and where: hosts, the VMs on a host, the hosts a VM is on. */
export interface Inventory extends HypervisorClock {
  listHosts(): Promise<HostInfo[]>;
  listVms(hostId: string): Promise<VmInfo[]>;
  /** Every host on which the VM is running, paused or defined (for recovery and invariant checks). */
  locateVm(vmId: string): Promise<VmPresence[]>;
}

/** Load of hosts and VMs, for the collector. */
export interface Sampling extends Inventory {
  sampleHost(hostId: string): Promise<HostSample>;
  sampleVms(hostId: string): Promise<VmSample[]>;
  /** Starts a dirty-page-rate measurement; the result appears in sampleVms().dirtyRate when done. */
  startDirtyRate(hostId: string, vmId: string, windowS: number): Promise<void>;
}

/** Reading a VM's migration job (current and last finished). */
export interface MigrationJobs extends HypervisorClock {
  /** Current job of the VM on that host (type `none` when there is none). */
  jobStats(hostId: string, vmId: string): Promise<MigrationJob>;
  /** The VM's last finished job on that host, or null. */
  completedJobStats(hostId: string, vmId: string): Promise<MigrationJob | null>;
}

/** Starting and steering migrations. */
export interface MigrationControl extends MigrationJobs {
  /** Whether the VM's CPU definition can run on the destination host (asks the destination). */
  cpuCompatible(vmId: string, fromHostId: string, toHostId: string): Promise<boolean>;
  /** Starts a migration; resolves once it is running (or settled) with a handle whose `done` settles at the end. */
  migrate(request: MigrationRequest): Promise<MigrationHandle>;
  setMaxDowntime(hostId: string, vmId: string, ms: number): Promise<void>;
  setMaxBandwidth(hostId: string, vmId: string, mibps: number): Promise<void>;
  startPostCopy(hostId: string, vmId: string): Promise<void>;
  abortJob(hostId: string, vmId: string): Promise<void>;
  /** Resumes a failed post-copy migration from `from` to `to`; resolves once it has completed. */
  resumePostCopy?(request: PostCopyResumeRequest): Promise<void>;
}

/** Pausing, resuming and stopping one copy of a VM (recovery; tests). */
export interface VmControl extends HypervisorClock {
  suspendVm(hostId: string, vmId: string): Promise<void>;
  resumeVm(hostId: string, vmId: string): Promise<void>;
  /** Hard-stops the VM on that host (recovery of a VM running twice; tests). */
  destroyVm(hostId: string, vmId: string): Promise<void>;
}

/** Storage pools and volumes of each host (block migration's destination disks, storage checks). */
export interface VolumeStorage extends HypervisorClock {
  /** The host's storage pools with their room. */
  listStoragePools(hostId: string): Promise<StoragePoolInfo[]>;
  /** Creates a persistent directory pool at `targetPath` (the directory is made), started and autostarted. */
  createStoragePool(hostId: string, pool: { name: string; targetPath: string }): Promise<StoragePoolInfo>;
  /** The volume at `path` on that host (its pool re-read first), or null when there is none. */
  lookupVolume(hostId: string, path: string): Promise<VolumeInfo | null>;
  /** Creates an empty volume (or an overlay of `spec.backing`) through the host's storage pool. */
  createVolume(hostId: string, spec: VolumeSpec): Promise<VolumeInfo>;
  deleteVolume(hostId: string, path: string): Promise<void>;
  /**
   * Copies a volume's bytes to another host through storage-volume streams, into a new volume of the same
   * name in `request.pool`. Resolves with the length and SHA-256 of the bytes read from the source.
   */
  copyVolume(request: CopyVolumeRequest): Promise<VolumeDigest>;
  /** Reads a volume's bytes on that host and returns their length and SHA-256. */
  volumeDigest(hostId: string, path: string): Promise<VolumeDigest>;
}

/** Events from every host. */
export interface HypervisorEvents {
  /** Subscribes to events from every host; returns the unsubscribe function. */
  subscribe(listener: (event: HypervisorEvent) => void): () => void;
}

/** Everything drover needs from a hypervisor: every role, and closing its connections. */
export interface Hypervisor extends Sampling, MigrationControl, VmControl, VolumeStorage, HypervisorEvents {
  close(): Promise<void>;
}

/**
 * Stable error codes every Hypervisor implementation uses (the conformance suite checks them). Errors are
 * DroverErrors (`HypervisorError` or a subclass) carrying one of these codes.
 */
export const HYPERVISOR_ERROR_CODES = {
  /** The host id is not one this hypervisor knows. */
  noHost: 'no_host',
  /** The VM does not exist on that host (libvirt VIR_ERR_NO_DOMAIN). */
  noDomain: 'no_domain',
  /** The host did not answer (down, unreachable, connection lost). */
  hostUnreachable: 'host_unreachable',
  /** The VM is not in a state that allows the call (not running, no active job, post-copy already, ...). */
  operationInvalid: 'operation_invalid',
  /** A live migration of a VM whose disks are not all on shared storage (libvirt VIR_ERR_MIGRATE_UNSAFE). */
  migrateUnsafe: 'migrate_unsafe',
  /** The destination cannot run the VM's CPU definition. */
  cpuIncompatible: 'cpu_incompatible',
  /** An argument is out of range (negative downtime, same source and destination, ...). */
  invalidArgument: 'invalid_argument',
  /** The hypervisor refused or failed the operation for another reason. */
  operationFailed: 'operation_failed',
} as const;

export type HypervisorErrorCode = (typeof HYPERVISOR_ERROR_CODES)[keyof typeof HYPERVISOR_ERROR_CODES];

export class HypervisorError extends DroverError {
  declare readonly code: HypervisorErrorCode;
  constructor(code: HypervisorErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'HypervisorError';
  }
}
