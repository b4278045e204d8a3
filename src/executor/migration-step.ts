// One migration step's vocabulary, shared by the runner and its parts (pre-checks, the watch loop, the
// finish): the job data, hooks, progress and report, the errors a run ends with, and the context of a watch.
import type { Logger } from 'pino';
import { DroverError, errorCode } from '../domain/errors.js';
import type { Step } from '../domain/plan.js';
import type {
  HypervisorEvents,
  Inventory,
  MigrationControl,
  MigrationHandle,
  Sampling,
  VmControl,
  VmInfo,
  VolumeStorage,
} from '../hypervisor/hypervisor.js';
import { callWithTimeout } from './call-timeout.js';
import type { ExecutionPolicy } from './executor-options.js';
import type { VmEvidence } from './recovery.js';
import type { AbortReason, Watchdog, WatchdogAction } from './watchdog.js';
import type { PredictiveForecast, WatchdogSchedule } from './watchdog-schedule.js';

/** What a migration job carries (BullMQ job data; plain JSON). */
export interface MigrationJobData {
  planId: string;
  step: Step;
  policy: ExecutionPolicy;
  /** The planner's predictive watchdog forecast for this step, when it made one. */
  forecast?: PredictiveForecast | null;
  enqueuedAt: string;
}

export type RunPhase = 'pre-check' | 'starting' | 'migrating' | 'post-copy' | 'aborting' | 'finishing';

/** Progress as BullMQ shows it (job.progress). */
export interface MigrationProgress {
  vmId: string;
  from: string;
  to: string;
  phase: RunPhase;
  percent: number;
  remainingMiB: number;
  iteration: number;
  expectedDowntimeMs: number;
  maxDowntimeMs: number;
  /** QEMU's auto-converge vCPU throttle now (percent; 0 when it does not throttle). */
  throttlePct: number;
  bandwidthMiBps: number | null;
  elapsedS: number;
  stuck: boolean;
  adopted: boolean;
}

export type RunOutcome = 'completed' | 'aborted' | 'failed' | 'stuck';

export interface WatchdogRecord {
  atMs: number;
  action: WatchdogAction;
  /** Error of the hypervisor call that carried the action out, if it failed. */
  error: string | null;
}

export interface MigrationReport {
  planId: string;
  vmId: string;
  from: string;
  to: string;
  kind: Step['kind'];
  outcome: RunOutcome;
  reason: string;
  /** True when this run took over a migration another worker had started. */
  adopted: boolean;
  startedAtMs: number;
  endedAtMs: number;
  durationS: number;
  downtimeMs: number | null;
  iterations: number;
  transferMiB: number;
  memMiB: number;
  /** The guest's dirty rate in the last migration job seen (MiB/s), when there were any. */
  dirtyMiBps: number | null;
  maxDowntimeMs: number;
  downtimeBudgetMs: number;
  bandwidthMiBps: number | null;
  profile: WatchdogSchedule['profile'];
  abortReason: AbortReason | null;
  /** Highest auto-converge throttle the watchdog saw (percent; 0 when QEMU never throttled the guest). */
  maxThrottlePct: number;
  watchdog: WatchdogRecord[];
  /** Verification after the end: empty when the VM is where it should be and nowhere else. */
  problems: string[];
  /** Evidence gathered after an abort, failure or stuck state. */
  evidence: VmEvidence | null;
}

export interface RunHooks {
  /** Stops watching without touching the migration (shutdown; the next worker adopts it). */
  signal?: AbortSignal;
  /** Called on every poll; keep it cheap and non-blocking (the worker throttles Redis writes). */
  onProgress?: (progress: MigrationProgress) => void;
  /** Polled every loop: non-null asks the watchdog to abort. */
  abortRequested?: () => AbortReason | null;
  /** This migration's current share of the links (MiB/s), or null for no cap. */
  bandwidthShareMiBps?: () => number | null;
  /**
   * Once, when the job first shows data moving: its set-up (QEMU's per-migration start) is over and it now
   * takes a share of its links. Before that it sends nothing, so the others' shares need not count it.
   */
  onSending?: () => void;
  /**
   * Subscribes to changes of this migration's link share (a peer ended, started sending, or stopped holding
   * it back): the watch then applies the new share at once instead of at its next poll. Returns the
   * unsubscribe.
   */
  onShareChange?: (listener: () => void) => () => void;
  /**
   * True while the executor holds this migration back to a trickle: it took over the slots of one predicted
   * to end within a set-up's time, and waits for that one to end. The time it spends held after its set-up
   * does not count against its deadline or stall window.
   */
  heldBack?: () => boolean;
  /** Right before the migration call (the worker records that a migration is starting). */
  beforeMigrate?: () => Promise<void>;
  /** Clock time of the migration call and of each abort (benchmarks). */
  onMigrateCall?: (atMs: number) => void;
  /** `dueAtMs`: the moment the abort fell due (the deadline, the stall proven), for reaction measurements. */
  onAbortIssued?: (atMs: number, reason: AbortReason, dueAtMs: number) => void;
  /** An earlier attempt of this job may have started the migration (the worker knows from Redis). */
  resumed?: boolean;
  /** When that earlier attempt called migrate (clock ms), if known. */
  startedAtMs?: number;
  /** drover's own host state (maintenance, disabled): the destination must be active. */
  isHostActive?: (hostId: string) => Promise<boolean>;
}

/** The runner stopped watching because its signal was aborted; the migration itself was left alone. */
export class RunnerDetached extends DroverError {
  constructor() {
    super('runner_detached', 'stopped watching the migration (shutdown); it continues without this worker');
    this.name = 'RunnerDetached';
  }
}

/** The migration could not be started; `transient` failures are worth a retry. */
export class MigrationStartError extends DroverError {
  readonly transient: boolean;
  constructor(message: string, transient: boolean, options?: { cause?: unknown }) {
    super(transient ? 'migration_start_failed' : 'migration_refused', message, options);
    this.name = 'MigrationStartError';
    this.transient = transient;
  }
}

/**
 * How long the executor waits for a migration's end to settle on the hosts, and how often it looks (ms).
 * libvirt's last phases (the destination resuming the guest, then the source letting it go) take seconds on a
 * loaded host, and what is read in between (the job over, the VM paused on both ends) is no outcome yet.
 */
export const END_SETTLE_MS = 30_000;
export const END_SETTLE_POLL_MS = 500;

const TRANSIENT_CODES = new Set([
  'host_unreachable',
  'call_timeout',
  'operation_failed',
  'migration_start_failed',
]);

/** Whether an error (possibly one that crossed Redis) is worth retrying. */
export function isTransient(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && TRANSIENT_CODES.has(code);
}

/**
 * The hypervisor roles a migration step uses: sampling and inventory (pre-checks, adoption), migration control
 * and its events, VM control (recovery after an abort) and volumes (block migration). Everything but close().
 */
export type RunnerHypervisor = Sampling & MigrationControl & VmControl & VolumeStorage & HypervisorEvents;

/** One migration being watched: the job, its schedule and watchdog, and how it started. */
export interface WatchContext {
  job: MigrationJobData;
  vm: { memMiB: number };
  schedule: WatchdogSchedule;
  watchdog: Watchdog;
  handle: MigrationHandle | null;
  adopted: boolean;
  startedAtMs: number;
  bandwidthMiBps: number | null;
  hooks: RunHooks;
  log: Logger;
  /** What the watchdog already did while the migrate call was still waiting for the job to show. */
  earlyRecords?: WatchdogRecord[];
}

/** Local disks of a VM (GiB): what a block migration copies. */
export function diskGiB(vm: VmInfo | null): number {
  if (!vm) return 0;
  return vm.disks.filter((d) => !d.shared).reduce((sum, d) => sum + (d.capacityMiB ?? 0), 0) / 1024;
}

/** The VM as the host lists it, or null when it is not there. */
export async function listedVm(
  hv: Inventory,
  timeoutMs: number,
  hostId: string,
  vmId: string,
): Promise<VmInfo | null> {
  const vms = await callWithTimeout(hv.clock, 'listVms', timeoutMs, hv.listVms(hostId));
  return vms.find((v) => v.id === vmId) ?? null;
}
