// What a simulated cluster is made of: hosts, VMs, their disks and workloads. Hand-written specs are
// validated with zod (every error names its path); generateCluster() builds large reproducible ones.
import { z } from 'zod';
import { ValidationError } from '../../domain/errors.js';
import { VM_STATES } from '../../domain/snapshot.js';
import {
  labels,
  nonEmptyString,
  nonNegativeNumber,
  oneOf,
  parseWith,
  positiveInt,
  positiveNumber,
} from '../../domain/validation.js';
import { Prng, weightedPicker } from './prng.js';
import {
  WORKLOAD_PRESET_NAMES,
  WorkloadSpecSchema,
  presetWorkload,
  type WorkloadPresetName,
} from './workloads.js';

export const SimHostSpecSchema = z.strictObject({
  id: nonEmptyString(),
  cpus: positiveInt(),
  memMiB: positiveNumber(),
  /** Migration link bandwidth, shared by every migration into and out of this host. */
  bandwidthMiBps: positiveNumber(),
  cpuModel: nonEmptyString().default('Cascadelake-Server'),
  /** VM CPU models this host can run; default: cpuModelsRunnableOn(cpuModel) (src/domain/cpu-models.ts). */
  supportedCpuModels: z.array(nonEmptyString()).optional(),
  /** Memory the host itself uses, beside its VMs. */
  reservedMemMiB: nonNegativeNumber().default(0),
  labels: labels().default({}),
  /** Storage pools; default one `default` pool at /var/lib/libvirt/images with 4 TiB of room. */
  pools: z
    .array(
      z.strictObject({
        name: nonEmptyString(),
        targetPath: nonEmptyString(),
        capacityMiB: nonNegativeNumber(),
      }),
    )
    .optional(),
});

export const SimDiskSpecSchema = z.strictObject({
  target: nonEmptyString(),
  source: z.string().nullable().default(null),
  shared: z.boolean(),
  format: z.string().nullable().default('qcow2'),
  capacityMiB: nonNegativeNumber(),
  /** Bytes a full block migration copies (allocated blocks); default capacityMiB. */
  allocatedMiB: nonNegativeNumber().optional(),
  /** Bytes an incremental block migration copies (the top image layer); default allocatedMiB. */
  topLayerMiB: nonNegativeNumber().optional(),
  /** The image this disk is an overlay of (present on the VM's host only). */
  backing: z
    .strictObject({
      path: nonEmptyString(),
      format: z.string().nullable().default('qcow2'),
      /** Length of the backing file. */
      sizeMiB: nonNegativeNumber(),
    })
    .optional(),
});

export const SimVmSpecSchema = z.strictObject({
  /** The VM's UUID. */
  id: nonEmptyString(),
  name: nonEmptyString(),
  /** The host it is defined (and, unless shut off, running) on. */
  host: nonEmptyString(),
  vcpus: positiveInt(),
  memMiB: positiveNumber(),
  /** Guest memory in use; default memMiB. */
  memUsedMiB: nonNegativeNumber().optional(),
  state: oneOf(VM_STATES).default('running'),
  persistent: z.boolean().default(true),
  /** CPU model of the VM's definition; default the model of its first host. */
  cpuModel: nonEmptyString().optional(),
  /** Default: one 20 GiB disk on shared storage. */
  disks: z.array(SimDiskSpecSchema).optional(),
  labels: labels().default({}),
  /** A workload spec, or a preset name drawn from the cluster seed. */
  workload: z.union([WorkloadSpecSchema, oneOf(WORKLOAD_PRESET_NAMES)]),
});

export const ClusterSpecSchema = z.strictObject({
  /** Seeds preset draws and bandwidth noise: the same spec and seed give the same run. */
  seed: z.number().int().default(1),
  hosts: z.array(SimHostSpecSchema),
  vms: z.array(SimVmSpecSchema),
});

export type SimHostSpec = z.input<typeof SimHostSpecSchema>;
export type SimDiskSpec = z.input<typeof SimDiskSpecSchema>;
export type SimVmSpec = z.input<typeof SimVmSpecSchema>;
export type ClusterSpec = z.input<typeof ClusterSpecSchema>;
export type ParsedClusterSpec = z.output<typeof ClusterSpecSchema>;
export type ParsedVmSpec = z.output<typeof SimVmSpecSchema>;
export type ParsedHostSpec = z.output<typeof SimHostSpecSchema>;
export type ParsedDiskSpec = z.output<typeof SimDiskSpecSchema>;

/**
 * Specs made by generateCluster() are valid by construction; remembering them lets a 150,000-VM cluster
 * skip validation (treat a generated spec as immutable).
 */
const generatedSpecs = new WeakSet<object>();

/** Validates a cluster spec, including cross-field rules (unique ids, VMs on known hosts). */
export function parseClusterSpec(data: unknown, source = 'cluster'): ParsedClusterSpec {
  if (typeof data === 'object' && data !== null && generatedSpecs.has(data)) return data as ParsedClusterSpec;
  const spec = parseWith(ClusterSpecSchema, data, source);
  const issues: { path: string; message: string }[] = [];
  const hostIds = new Set<string>();
  spec.hosts.forEach((h, i) => {
    if (hostIds.has(h.id)) issues.push({ path: `hosts[${i}].id`, message: `duplicate host id "${h.id}"` });
    hostIds.add(h.id);
  });
  const vmIds = new Set<string>();
  spec.vms.forEach((v, i) => {
    if (vmIds.has(v.id)) issues.push({ path: `vms[${i}].id`, message: `duplicate VM id "${v.id}"` });
    vmIds.add(v.id);
    if (!hostIds.has(v.host)) {
      issues.push({ path: `vms[${i}].host`, message: `expected the id of a host in hosts, got "${v.host}"` });
    }
  });
  if (issues.length > 0) throw new ValidationError(source, issues);
  return spec;
}

export interface VmSize {
  vcpus: number;
  memMiB: number;
}

export interface GenerateClusterOptions {
  seed: number;
  hosts: number;
  /** VMs per host: a fixed number or an inclusive [min, max] range. */
  vmsPerHost: number | [number, number];
  host?: { cpus?: number; memMiB?: number; bandwidthMiBps?: number; cpuModel?: string };
  /** Relative weights of the workload presets (default idle 3, web 4, database 2, jvm 1). */
  mix?: Partial<Record<WorkloadPresetName, number>>;
  /** Weight of trace-driven VMs (Bitbrains traces) beside the presets; default 0. */
  traceWeight?: number;
  sizes?: VmSize[];
  /** Fraction of VMs whose disk is local (block migration needed); default 0.1. */
  localStorageFraction?: number;
  /** Racks to spread hosts over (label `rack`); default 4. */
  racks?: number;
}

const DEFAULT_SIZES: VmSize[] = [
  { vcpus: 1, memMiB: 2048 },
  { vcpus: 2, memMiB: 4096 },
  { vcpus: 4, memMiB: 8192 },
  { vcpus: 8, memMiB: 16384 },
];

/** Builds a reproducible cluster: the same options give the same spec, ids included. */
export function generateCluster(options: GenerateClusterOptions): ParsedClusterSpec {
  const rng = new Prng(options.seed);
  const sizes = options.sizes ?? DEFAULT_SIZES;
  const mix: Record<string, number> = {
    idle: 3,
    web: 4,
    database: 2,
    jvm: 1,
    ...options.mix,
    trace: options.traceWeight ?? 0,
  };
  const pickKind = weightedPicker(mix);
  const racks = options.racks ?? 4;
  const width = String(options.hosts).length < 3 ? 3 : String(options.hosts).length;
  const hosts: ParsedHostSpec[] = [];
  const vms: ParsedVmSpec[] = [];
  for (let h = 0; h < options.hosts; h++) {
    const id = `kvm-${String(h + 1).padStart(width, '0')}`;
    hosts.push({
      id,
      cpus: options.host?.cpus ?? 64,
      memMiB: options.host?.memMiB ?? 524288,
      bandwidthMiBps: options.host?.bandwidthMiBps ?? 1150,
      cpuModel: options.host?.cpuModel ?? 'Cascadelake-Server',
      reservedMemMiB: 0,
      labels: { rack: `r${(h % racks) + 1}` },
    });
    const count = Array.isArray(options.vmsPerHost)
      ? rng.int(options.vmsPerHost[0], options.vmsPerHost[1])
      : options.vmsPerHost;
    for (let v = 0; v < count; v++) {
      const kind = pickKind(rng);
      const size = rng.pick(sizes);
      const local = rng.next() < (options.localStorageFraction ?? 0.1);
      let workload: ParsedVmSpec['workload'];
      if (kind === 'trace') {
        workload = {
          kind: 'trace',
          trace: rng.next() < 0.5 ? 'bitbrains-vm1' : 'bitbrains-vm2',
          offsetSteps: rng.int(0, 8000),
          idleDirtyMiBps: 1,
          dirtyMiBpsAtFullCpu: rng.uniform(200, 600),
          wwsMiB: Math.round(size.memMiB / 2),
        };
      } else {
        workload = presetWorkload(kind as WorkloadPresetName, rng) as ParsedVmSpec['workload'];
      }
      const name = `${kind}-${String(vms.length + 1).padStart(5, '0')}`;
      vms.push({
        id: rng.uuid(),
        name,
        host: id,
        vcpus: size.vcpus,
        memMiB: size.memMiB,
        memUsedMiB: Math.round(size.memMiB * rng.uniform(0.5, 0.95)),
        state: 'running',
        persistent: true,
        disks: [
          {
            target: 'vda',
            source: local ? `/var/lib/libvirt/images/${name}.qcow2` : `ceph:vms/${name}`,
            shared: !local,
            format: local ? 'qcow2' : 'raw',
            capacityMiB: 20480,
            allocatedMiB: Math.round(rng.uniform(2048, 20480)),
            topLayerMiB: Math.round(rng.uniform(256, 2048)),
          },
        ],
        labels: { app: kind },
        workload,
      });
    }
  }
  const spec: ParsedClusterSpec = { seed: options.seed, hosts, vms };
  generatedSpecs.add(spec);
  return spec;
}
