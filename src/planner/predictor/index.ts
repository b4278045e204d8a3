// The predictor's public surface.
export {
  AUTO_CONVERGE,
  chooseTechnique,
  simulateMigration,
  type PrecopyInput,
  type PrecopyLimits,
  type PrecopyOutcome,
  type Technique,
} from './precopy-model.js';
export {
  historyCorrection,
  historyDirtyFactor,
  plannedDirtyMiBps,
  precopyLimits,
  predictiveWatchdogPlan,
  predictVmMigration,
  round0MiB,
  STREAM_MAX_MIBPS,
  ZERO_PAGE_SCAN_MIBPS,
  expectedDowntimeMs,
  type LinkShare,
  type PredictiveWatchdogPlan,
  type PredictOptions,
  type VmForecast,
} from './predict-vm.js';
export {
  fitDowntime,
  SwitchoverBook,
  switchoverSample,
  switchoverWho,
  type DowntimeFit,
  type SwitchoverCost,
  type SwitchoverSource,
} from './switchover.js';
