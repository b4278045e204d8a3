// Assembles a Snapshot from the hosts' records and drover's own host states. Pure.
import type { Host, HostState, Snapshot, Vm } from '../domain/snapshot.js';
import type { HostInfo } from '../hypervisor/hypervisor.js';
import { staleRecord, type HostRecord } from './host-history.js';

/** drover's own host state (the hypervisor knows nothing of it); `down` is only ever measured. */
export type DroverHostState = Exclude<HostState, 'down'>;

export interface SnapshotInput {
  /** Every host the hypervisor knows, in snapshot order. */
  hosts: readonly HostInfo[];
  records: ReadonlyMap<string, HostRecord>;
  states: Readonly<Record<string, DroverHostState>>;
  now: number;
  /** A record older than this (or never made) is stale: the host is `down` and never a migration target. */
  staleAfterMs: number;
}

export function isStale(record: HostRecord | undefined, now: number, staleAfterMs: number): boolean {
  return (
    record === undefined ||
    record.stale ||
    record.measuredAt === null ||
    now - record.measuredAt > staleAfterMs
  );
}

export function buildSnapshot(input: SnapshotInput): Snapshot {
  const hosts: Host[] = [];
  const vms: Vm[] = [];
  const seenVms = new Set<string>();
  for (const info of input.hosts) {
    const found = input.records.get(info.id);
    const stale = isStale(found, input.now, input.staleAfterMs);
    const record = found ?? staleRecord(info, null);
    const host: Host = {
      id: info.id,
      cpus: info.cpus,
      memMiB: info.memMiB,
      state: stale ? 'down' : (input.states[info.id] ?? 'active'),
      cpuPct: record.cpuPct,
      memUsedMiB: record.memUsedMiB,
      cpuModel: info.cpuModel,
      labels: info.labels,
      stale,
      measuredAt: record.measuredAt === null ? null : new Date(record.measuredAt).toISOString(),
    };
    if (info.bandwidthMiBps !== null) host.bandwidthMiBps = info.bandwidthMiBps;
    hosts.push(host);
    for (const vm of record.vms) {
      // A VM seen on two hosts (mid-migration, or a stale record of its old host) is listed once: where it runs.
      if (seenVms.has(vm.id)) {
        const i = vms.findIndex((v) => v.id === vm.id);
        const other = vms[i];
        if (other && other.state !== 'running' && vm.state === 'running') vms[i] = vm;
        continue;
      }
      seenVms.add(vm.id);
      vms.push(vm);
    }
  }
  return { version: 1, takenAt: new Date(input.now).toISOString(), hosts, vms };
}
