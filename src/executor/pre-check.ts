// The checks a migration step passes just before it migrates, on both ends and now (not as planned): the
// source still holds the VM in the right state and nowhere else, the destination is known, active, answers
// and has room and a CPU that fits, the disks fit the kind of migration, and what the configuration says about
// storage is proven. A world that changed skips the step (StepSkipped); a source that does not answer is
// worth a retry (MigrationStartError).
import type { Logger } from 'pino';
import { StepSkipped, errorMessage } from '../domain/errors.js';
import type { Step } from '../domain/plan.js';
import type {
  MigrationControl,
  Sampling,
  VmInfo,
  VmPresence,
  VolumeStorage,
} from '../hypervisor/hypervisor.js';
import { BlockDestination, type BlockPreparation } from './block-destination.js';
import { callWithTimeout } from './call-timeout.js';
import type { ExecutorOptions } from './executor-options.js';
import { MigrationStartError, listedVm, type MigrationJobData, type RunHooks } from './migration-step.js';
import { StorageCheck } from './storage-check.js';

/** The hypervisor roles the pre-checks use: inventory and load, the CPU check, and volumes. */
export type PreCheckHypervisor = Sampling & Pick<MigrationControl, 'cpuCompatible'> & VolumeStorage;

/** What passed pre-checks hand to the migration. */
export interface CheckedStep {
  vm: VmInfo;
  /** The disks made on a block migration's destination (released if the migration does not go). */
  blockPrepared: BlockPreparation | null;
  /** Both ends proved they see the disks a live migration leaves in place. */
  storageVerified: boolean;
}

export class PreCheck {
  constructor(
    private readonly hv: PreCheckHypervisor,
    private readonly options: ExecutorOptions,
    private readonly log: Logger,
  ) {}

  private call<T>(name: string, promise: Promise<T>): Promise<T> {
    return callWithTimeout(this.hv.clock, name, this.options.callTimeoutMs, promise);
  }

  /** Both ends, now: source still holds the VM, destination active with room, CPU and storage fit. */
  async run(job: MigrationJobData, presences: VmPresence[], hooks: RunHooks): Promise<CheckedStep> {
    const { step, policy } = job;
    await this.sourceHolds(step, presences);
    const vm = await listedVm(this.hv, this.options.callTimeoutMs, step.from, step.vm);
    if (!vm) throw new StepSkipped(`${step.vm} is not listed on ${step.from}`);
    await this.destinationFits(step, vm, hooks);
    disksFitKind(step, vm, policy.allowBlockMigration);
    // What the configuration says about the disks, proven on both ends (throws StorageCheckError).
    const proof = await new StorageCheck(this.hv, {
      callTimeoutMs: this.options.callTimeoutMs,
      logger: this.log,
    }).verify({ vm, from: step.from, to: step.to, kind: step.kind });
    let blockPrepared: BlockPreparation | null = null;
    if (step.kind === 'block') {
      const destination = new BlockDestination(this.hv, {
        callTimeoutMs: this.options.callTimeoutMs,
        logger: this.log,
      });
      blockPrepared = await destination.prepare({ vm, from: step.from, to: step.to, mode: policy.blockCopy });
    }
    return { vm, blockPrepared, storageVerified: step.kind === 'live' && proof.shared.length > 0 };
  }

  /** The source holds the VM, in the state the kind of migration needs, and no other host runs it. */
  private async sourceHolds(step: Step, presences: VmPresence[]): Promise<void> {
    const here = presences.find((p) => p.hostId === step.from);
    if (!here) {
      // Not seen on the source: gone, or the source does not answer (worth a retry, not a skip).
      try {
        await this.call('sampleHost', this.hv.sampleHost(step.from));
      } catch (err) {
        throw new MigrationStartError(`source ${step.from} does not answer: ${errorMessage(err)}`, true, {
          cause: err,
        });
      }
      throw new StepSkipped(`${step.vm} is no longer on ${step.from}`);
    }
    if (step.kind === 'offline') {
      if (here.state !== 'shutoff')
        throw new StepSkipped(`${step.vm} is ${here.state} on ${step.from}, not shut off`);
    } else if (here.state !== 'running') {
      throw new StepSkipped(`${step.vm} is ${here.state} on ${step.from}, not running`);
    }
    const elsewhere = presences.filter(
      (p) => p.hostId !== step.from && (p.state === 'running' || p.state === 'paused'),
    );
    if (elsewhere.length > 0) {
      throw new StepSkipped(
        `${step.vm} is also ${elsewhere.map((p) => `${p.state} on ${p.hostId}`).join(', ')}`,
      );
    }
  }

  /** The destination is a known, active host that answers, with the memory and CPU the VM needs. */
  private async destinationFits(step: Step, vm: VmInfo, hooks: RunHooks): Promise<void> {
    const hosts = await this.call('listHosts', this.hv.listHosts());
    if (!hosts.some((h) => h.id === step.to))
      throw new StepSkipped(`destination ${step.to} is not a known host`);
    if (hooks.isHostActive && !(await hooks.isHostActive(step.to))) {
      throw new StepSkipped(`destination ${step.to} is not active`);
    }
    let sample;
    try {
      sample = await this.call('sampleHost', this.hv.sampleHost(step.to));
    } catch (err) {
      throw new StepSkipped(`destination ${step.to} does not answer: ${errorMessage(err)}`, { cause: err });
    }
    if (step.kind === 'offline') return;
    const freeMiB = sample.memTotalMiB - sample.memUsedMiB - this.options.memReserveMiB;
    if (freeMiB < vm.memMiB) {
      throw new StepSkipped(
        `destination ${step.to} has ${Math.round(freeMiB)} MiB free, ${step.vm} needs ${vm.memMiB} MiB`,
      );
    }
    const compatible = await this.call('cpuCompatible', this.hv.cpuCompatible(step.vm, step.from, step.to));
    if (!compatible) {
      throw new StepSkipped(`${step.to} cannot run the CPU model ${vm.cpuModel ?? '?'} of ${step.vm}`);
    }
  }
}

/** Live migration needs every disk shared; block migration copies local disks only, when the policy allows. */
function disksFitKind(step: Step, vm: VmInfo, allowBlockMigration: boolean): void {
  if (step.kind === 'live') {
    const local = vm.disks.filter((d) => !d.shared);
    if (local.length > 0) {
      throw new StepSkipped(
        `live migration needs shared storage; local disks: ${local.map((d) => d.target).join(', ')}`,
      );
    }
  }
  if (step.kind === 'block') {
    if (!allowBlockMigration) throw new StepSkipped('the policy forbids block migration');
    const shared = vm.disks.filter((d) => d.shared);
    if (shared.length > 0) {
      throw new StepSkipped(
        `block migration would copy shared disks onto themselves: ${shared.map((d) => d.target).join(', ')}`,
      );
    }
  }
}
