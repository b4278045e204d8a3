// The Snapshot: the planner's only input and a file format (`drover plan --snapshot FILE`).
import { z } from 'zod';
import { ValidationError } from './errors.js';
import {
  isoTime,
  labels,
  nonEmptyString,
  nonNegativeNumber,
  oneOf,
  parseWith,
  percent,
  positiveInt,
  positiveNumber,
} from './validation.js';

export const HOST_STATES = ['active', 'maintenance', 'disabled', 'down'] as const;
export const VM_STATES = ['running', 'paused', 'shutoff'] as const;
export const STORAGE_KINDS = ['shared', 'local'] as const;

export type HostState = (typeof HOST_STATES)[number];
export type VmState = (typeof VM_STATES)[number];
export type StorageKind = (typeof STORAGE_KINDS)[number];

const nullable = <T extends z.ZodType>(schema: T) => schema.nullable();

export const HostSchema = z.strictObject({
  id: nonEmptyString(),
  cpus: positiveInt(),
  memMiB: positiveNumber(),
  state: oneOf(HOST_STATES),
  cpuPct: nullable(percent()),
  memUsedMiB: nullable(nonNegativeNumber()),
  bandwidthMiBps: nullable(positiveNumber()).optional(),
  cpuModel: nullable(z.string()).optional(),
  labels: labels().optional(),
  /** True when the host did not answer its last sample in time: never a migration target. */
  stale: z.boolean().optional(),
  /** When the values above were measured (ISO time); absent for hand-written snapshots. */
  measuredAt: nullable(isoTime()).optional(),
});

export const VmSchema = z.strictObject({
  id: nonEmptyString(),
  name: nonEmptyString(),
  host: nonEmptyString(),
  state: oneOf(VM_STATES),
  vcpus: positiveInt(),
  memMiB: positiveNumber(),
  cpuPct: nullable(percent()),
  memUsedMiB: nullable(nonNegativeNumber()),
  dirtyMiBps: nullable(nonNegativeNumber()),
  /** Peak (high percentile) dirty rate over the collector's history window, when known. */
  dirtyPeakMiBps: nullable(nonNegativeNumber()).optional(),
  storage: oneOf(STORAGE_KINDS),
  /** Disk bytes to copy for a block migration (local storage), when known. */
  diskMiB: nullable(nonNegativeNumber()).optional(),
  cpuModel: nullable(z.string()).optional(),
  labels: labels().optional(),
  measuredAt: nullable(isoTime()).optional(),
});

export const SnapshotSchema = z.strictObject({
  version: z.literal(1, { error: (i) => `expected 1, got ${JSON.stringify(i.input)}` }),
  takenAt: isoTime(),
  hosts: z.array(HostSchema),
  vms: z.array(VmSchema),
});

export type Host = z.output<typeof HostSchema>;
export type Vm = z.output<typeof VmSchema>;
export type Snapshot = z.output<typeof SnapshotSchema>;

/** Validates a snapshot, including cross-field rules (unique ids, every VM on a known host). */
export function parseSnapshot(data: unknown, source = ''): Snapshot {
  const snapshot = parseWith(SnapshotSchema, data, source);
  const issues: { path: string; message: string }[] = [];
  const hostIds = new Map<string, number>();
  snapshot.hosts.forEach((h, i) => {
    if (hostIds.has(h.id))
      issues.push({ path: `hosts[${i}].id`, message: `duplicate host id ${JSON.stringify(h.id)}` });
    hostIds.set(h.id, i);
  });
  const vmIds = new Set<string>();
  snapshot.vms.forEach((v, i) => {
    if (vmIds.has(v.id))
      issues.push({ path: `vms[${i}].id`, message: `duplicate VM id ${JSON.stringify(v.id)}` });
    vmIds.add(v.id);
    if (!hostIds.has(v.host)) {
      issues.push({
        path: `vms[${i}].host`,
        message: `expected the id of a host in hosts, got ${JSON.stringify(v.host)}`,
      });
    }
  });
  if (issues.length > 0) throw new ValidationError(source, issues);
  return snapshot;
}

/** Max minus min host utilisation (points) over active hosts that reported. */
export function spreadOf(snapshot: Snapshot): { cpuSpreadPct: number; memSpreadPct: number } {
  const active = snapshot.hosts.filter((h) => h.state === 'active' && !h.stale);
  const cpu = active.flatMap((h) => (h.cpuPct === null ? [] : [h.cpuPct]));
  const mem = active.flatMap((h) => (h.memUsedMiB === null ? [] : [(h.memUsedMiB / h.memMiB) * 100]));
  const spread = (xs: number[]) =>
    xs.length < 2 ? 0 : Math.round((Math.max(...xs) - Math.min(...xs)) * 10) / 10;
  return { cpuSpreadPct: spread(cpu), memSpreadPct: spread(mem) };
}
