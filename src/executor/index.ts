// The executor's public surface: what the service composes and the CLI uses.
export {
  Executor,
  jobIdFor,
  type EnqueueResult,
  type ExecutorDeps,
  type MigrationJobResult,
  type MigrationStatus,
} from './executor.js';
export {
  ConcurrencyLimitsSchema,
  ExecutionPolicySchema,
  ExecutorOptionsSchema,
  executionPolicyFromPolicy,
  parseExecutionPolicy,
  parseExecutorOptions,
  type ConcurrencyLimits,
  type ExecutionPolicy,
  type ExecutorOptions,
  type ExecutorOptionsInput,
} from './executor-options.js';
export { HistoryStore, type HistoryStoreOptions, type QuarantineState } from './history-store.js';
export {
  MigrationRunner,
  MigrationStartError,
  RunnerDetached,
  isTransient,
  type MigrationJobData,
  type MigrationProgress,
  type MigrationReport,
  type RunHooks,
  type RunOutcome,
} from './migration-runner.js';
export { Reconciler, type ReconcileReport, type ReconcilerDeps } from './reconciler.js';
export {
  applyRecoveryAction,
  diagnose,
  gatherEvidence,
  type Diagnosis,
  type MigrationHint,
  type RecoveryAction,
  type VmEvidence,
} from './recovery.js';
export { SlotStore, bandwidthShareMiBps, type SlotClaim } from './slot-store.js';
export { CallTimeout, callWithTimeout } from './call-timeout.js';
export { Watchdog, type AbortReason, type WatchdogAction, type WatchdogSample } from './watchdog.js';
export {
  WATCHDOG_PROFILES,
  describeSchedule,
  watchdogSchedule,
  type WatchdogProfile,
  type WatchdogSchedule,
} from './watchdog-schedule.js';
