// libvirt job-stats parameters -> drover's JobStats (libvirt's names and units: bytes, ms, pages/s).
import type { JobStats, JobType } from '../hypervisor.js';
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

/**
 * Maps job-stats parameters. `memory_iteration` becomes 0-based: QEMU counts the first full pass as 1
 * (its dirty-bitmap sync count), drover calls that pass round 0.
 */
export function toJobStats(type: JobType, params: ParamRecord, postcopy: boolean): JobStats {
  const n = (key: string) => numberParam(params, key) ?? 0;
  const rawIteration = numberParam(params, 'memory_iteration');
  return {
    type,
    time_elapsed: n('time_elapsed'),
    memory_total: n('memory_total'),
    memory_processed: n('memory_processed'),
    memory_remaining: n('memory_remaining'),
    memory_dirty_rate: n('memory_dirty_rate'),
    memory_page_size: numberParam(params, 'memory_page_size') ?? 4096,
    memory_iteration: rawIteration === undefined ? 0 : Math.max(0, rawIteration - 1),
    memory_bps: n('memory_bps'),
    downtime: n('downtime'),
    disk_total: n('disk_total'),
    disk_processed: n('disk_processed'),
    disk_remaining: n('disk_remaining'),
    auto_converge_throttle: n('auto_converge_throttle'),
    postcopy: postcopy || n('memory_postcopy_requests') > 0,
  };
}

export function emptyJobStats(): JobStats {
  return toJobStats('none', {}, false);
}
