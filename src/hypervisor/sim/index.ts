// The simulator's public API.
export { cpuModelsRunnableOn, CPU_MODEL_LINES } from '../../domain/cpu-models.js';
export { SimHypervisor, LIFECYCLE_DETAIL, type SimHypervisorOptions } from './sim-hypervisor.js';
export {
  generateCluster,
  parseClusterSpec,
  type ClusterSpec,
  type SimHostSpec,
  type SimVmSpec,
  type SimDiskSpec,
  type GenerateClusterOptions,
  type VmSize,
} from './cluster-spec.js';
export {
  WORKLOAD_PRESETS,
  WORKLOAD_PRESET_NAMES,
  presetWorkload,
  createWorkload,
  type WorkloadSpec,
  type WorkloadPresetName,
  type WorkloadProcess,
} from './workloads.js';
export { SimFaults, type HostDownMode, type HostDownOptions, type HostLoad } from './faults.js';
export {
  PrecopyMigration,
  AUTO_CONVERGE_INITIAL_PCT,
  AUTO_CONVERGE_INCREMENT_PCT,
  AUTO_CONVERGE_MAX_PCT,
  AUTO_CONVERGE_TRIGGER_PCT,
  QEMU_MIGRATION_COSTS,
  type MigrationCosts,
} from './precopy.js';
export { Prng } from './prng.js';
export { loadTrace, BUILTIN_TRACES, type Trace, type BuiltinTraceName } from './traces.js';
export { SystemClock, ScaledClock, VirtualClock } from '../../clock/clocks.js';
