// libvirt job-stats parameters (libvirt's names and units: bytes, ms, pages/s) -> drover's MigrationJob.
import type { JobType, MigrationJob } from '../hypervisor.js';
import { JobType as VirJobType } from '../../libvirt/remote-protocol.js';
import { numberParam, type ParamRecord } from '../../libvirt/libvirt-client.js';

export function jobTypeName(virType: number): JobType {
  switch (virType) {
    case VirJobType.BOUNDED:
    case VirJobType.UNBOUNDED:
      return 'active';
    case VirJobType.COMPLETED:
      return 'completed';
    case VirJobType.FAILED:
      return 'failed';
    case VirJobType.CANCELLED:
      return 'cancelled';
    default:
      return 'none';
  }
}

const MiB = 1024 * 1024;

/** Converts libvirt's dirty rate in pages/s to MiB/s. */
export function pagesPerSecondToMiBps(pagesPerS: number, pageSizeBytes: number): number {
  return (pagesPerS * pageSizeBytes) / MiB;
}

/**
 * Converts job-stats parameters (bytes, bytes/s, pages/s, ms) to a MigrationJob in drover's units. The
 * iteration becomes 0-based: QEMU counts the first full pass as 1 (its dirty-bitmap sync count), drover calls
 * that pass round 0.
 */
export function toMigrationJob(type: JobType, params: ParamRecord, postcopy: boolean): MigrationJob {
  const n = (key: string) => numberParam(params, key) ?? 0;
  const mib = (key: string) => n(key) / MiB;
  const rawIteration = numberParam(params, 'memory_iteration');
  const pageSizeBytes = numberParam(params, 'memory_page_size') ?? 4096;
  return {
    type,
    elapsedMs: n('time_elapsed'),
    memTotalMiB: mib('memory_total'),
    memProcessedMiB: mib('memory_processed'),
    memRemainingMiB: mib('memory_remaining'),
    dirtyMiBps: pagesPerSecondToMiBps(n('memory_dirty_rate'), pageSizeBytes),
    iteration: rawIteration === undefined ? 0 : Math.max(0, rawIteration - 1),
    transferMiBps: mib('memory_bps'),
    downtimeMs: n('downtime'),
    diskTotalMiB: mib('disk_total'),
    diskProcessedMiB: mib('disk_processed'),
    diskRemainingMiB: mib('disk_remaining'),
    autoConvergeThrottlePct: n('auto_converge_throttle'),
    postCopy: postcopy || n('memory_postcopy_requests') > 0,
  };
}
