// Calibration of the predictor's link inputs from migrations already run on that link: the bandwidth a
// migration really gets under a given cap, the fixed cost of a migration (connection, destination start-up,
// device state), and the switch-over overhead on top of the memory sent while paused. These go into the
// predictor through its existing inputs (the LinkShare bandwidth, policy.migration.setupS and
// switchoverOverheadMs); the pre-copy model itself is unchanged.
import { median } from '../report.js';

/** What one finished (completed or aborted) migration showed. */
export interface ObservedMigration {
  /** The bandwidth cap it ran under (MiB/s). */
  capMiBps: number;
  completed: boolean;
  /** From the migrate call to the end (s). */
  wallS: number;
  /** Passes QEMU made, round 0 counted. */
  passes: number;
  /** Memory sent by round 0 (MiB), when the caller saw round 0 end. */
  round0MiB: number | null;
  /** Memory QEMU sent (MiB). */
  processedMiB: number;
  /** Time spent sending, when the caller could tell it from the job's progress (s); else sent / rate. */
  transferS: number | null;
  /** Transfer rate QEMU reported for its passes after round 0 (MiB/s), null when there were none. */
  throughputMiBps: number | null;
  /** Measured downtime (completed only). */
  downtimeMs: number | null;
  /** The model's part of the downtime for this migration (what it predicted minus the overhead it used). */
  modelStopMs: number | null;
}

/** Below this much memory sent, a migration's transfer rate says nothing about the link. */
const MIN_PROCESSED_FOR_RATE_MIB = 16;
/** A migration that sent at most this multiple of its round 0 has a well-known sending time. */
const CLEAN_FACTOR = 1.25;

export class LinkCalibration {
  private readonly observed: ObservedMigration[] = [];

  constructor(
    private readonly defaults: { setupS: number; switchoverOverheadMs: number },
    private readonly window = 12,
  ) {}

  observe(o: ObservedMigration): void {
    this.observed.push(o);
  }

  get count(): number {
    return this.observed.length;
  }

  private recent(filter: (o: ObservedMigration) => boolean): ObservedMigration[] {
    return this.observed.filter(filter).slice(-this.window);
  }

  private rates(filter: (o: ObservedMigration) => boolean): number[] {
    return this.recent(
      (o) => filter(o) && o.throughputMiBps !== null && o.processedMiB >= MIN_PROCESSED_FOR_RATE_MIB,
    ).map((o) => o.throughputMiBps ?? 0);
  }

  /**
   * Bandwidth a migration gets under `capMiBps`: the median rate seen under that cap (it may be above the
   * cap: QEMU keeps its cap loosely); without any, the cap limited by the fastest rate seen under any
   * higher cap (the host could not send faster); else the cap.
   */
  bandwidthMiBps(capMiBps: number): number {
    const same = this.rates((o) => o.capMiBps === capMiBps);
    if (same.length > 0) return median(same);
    const higher = this.rates((o) => o.capMiBps > capMiBps);
    if (higher.length > 0) return Math.min(capMiBps, Math.max(...higher));
    return capMiBps;
  }

  /**
   * Fixed cost per migration: median of (wall time - time spent sending) over the completed migrations whose
   * sending time is known best: round 0 seen whole and at most one pass after it, sending little beyond
   * round 0. Each further pass adds a dirty-bitmap sync and a gap the rate does not show, which would read
   * as fixed cost (on the lab, guests writing 40-80 MiB/s made 4-7 passes and read 0.5 s more set-up than the
   * idle guest). Without such migrations, those that sent little after round 0 however many passes; else
   * every completed one.
   */
  setupS(): number {
    const seen = (o: ObservedMigration) => o.completed && o.round0MiB !== null;
    const little = (o: ObservedMigration) => o.processedMiB <= CLEAN_FACTOR * (o.round0MiB ?? 0);
    let pool = this.recent((o) => seen(o) && little(o) && o.passes <= 2);
    if (pool.length === 0) pool = this.recent((o) => seen(o) && little(o));
    if (pool.length === 0) pool = this.recent((o) => o.completed);
    const samples = pool.map((o) => this.fixedCostS(o));
    return samples.length > 0 ? median(samples) : this.defaults.setupS;
  }

  /** One migration's wall time less the time it spent sending. */
  fixedCostS(o: ObservedMigration): number {
    const rate = o.throughputMiBps ?? this.bandwidthMiBps(o.capMiBps);
    const sendingS = o.transferS ?? (rate > 0 ? o.processedMiB / rate : 0);
    return Math.max(0, o.wallS - sendingS);
  }

  /** Switch-over overhead: median of (measured downtime - the model's stop time) over completed migrations. */
  switchoverOverheadMs(): number {
    const samples = this.recent((o) => o.completed && o.downtimeMs !== null && o.modelStopMs !== null).map(
      (o) => Math.max(0, (o.downtimeMs ?? 0) - (o.modelStopMs ?? 0)),
    );
    return samples.length > 0 ? median(samples) : this.defaults.switchoverOverheadMs;
  }
}
