// Per-VM migration history: written by the executor after each migration, read by the planner
// (cooldown, daily budget, quarantine, and the predictor's per-VM correction factor).
import type { MigrationKind } from './plan.js';

export type MigrationRecordResult = 'completed' | 'aborted' | 'failed';

export interface MigrationRecord {
  vmId: string;
  from: string;
  to: string;
  kind: MigrationKind;
  /** When the migration ended (ISO time). */
  endedAt: string;
  result: MigrationRecordResult;
  /** What the planner predicted for this step, when it made one. */
  predictedDurationS: number | null;
  /**
   * The history correction factor that prediction already carried (1: none). With it, the next correction
   * is this factor times measured / predicted, so the factor converges instead of feeding on itself.
   */
  predictionCorrection?: number;
  measuredDurationS: number;
  /** Real switch-over downtime (completed migrations only). */
  downtimeMs: number | null;
  /** The VM's downtime budget, the downtime predicted, and the max downtime last set (ms). */
  downtimeBudgetMs?: number;
  predictedDowntimeMs?: number;
  /** The last round the model put in that prediction, at the link share (ms): what the switch-over learns from. */
  predictedLastRoundMs?: number;
  maxDowntimeMs?: number;
  iterations: number;
  transferMiB: number;
  /** The VM's memory. */
  memMiB: number;
  /** The dirty rate QEMU reported while the VM migrated (its last reading), null when it reported none. */
  dirtyMiBps: number | null;
  /** The dirty rate the prediction planned with, and the history factor already in it (1: none). */
  plannedDirtyMiBps?: number | null;
  plannedDirtyFactor?: number;
  bandwidthMiBps: number | null;
}

export interface VmHistory {
  vmId: string;
  /** Newest last; bounded by the store. */
  records: MigrationRecord[];
  /** A VM that failed to converge is not planned again before this time (ISO), with back-off. */
  quarantinedUntil: string | null;
}
