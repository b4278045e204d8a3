// Physics of one simulated migration, the way QEMU runs it, in exact piecewise-constant steps.
//
// Model (all sizes in MiB, rates in MiB/s, times in clock ms):
// - Block migration first copies the local disks (disk bytes) at the migration bandwidth; guest writes to
//   disk during the copy are not modelled.
// - Pre-copy round 0 sends all guest memory M. While a round runs, the guest dirties pages at its dirty
//   rate (times 1 - throttle); the distinct dirty memory is capped at the writable working set W.
// - At the end of round i the dirty bitmap is synced: pending = dirtied during round i (<= W).
//   If pending can be sent within the max downtime at the bandwidth measured over round i
//   (pending <= measuredMiBps * maxDowntimeMs / 1000), QEMU switches over: the guest pauses and the real
//   downtime is pending / bandwidth. Otherwise round i+1 resends `pending`.
//   With a constant dirty rate D below W/T this gives the closed form V0 = M, V(i+1) = min(W, D * Vi / B),
//   i.e. a geometric series with ratio D/B, and downtime = V(n) / B.
// - Auto-converge (QEMU defaults): at each sync, if the bytes dirtied in the round exceed 50 % of the bytes
//   sent in it, a counter goes up; every second time it does, the guest is throttled: first to 20 %, then
//   +10 % per step, at most 99 %. Throttling by p % cuts the guest's dirty rate (and CPU) by p %.
// - Post-copy: the guest pauses briefly (a fixed small downtime), resumes on the destination, and the
//   pages not yet current there (the rest of the round plus what is dirty) are pulled at the bandwidth.
//   The migration completes when they are all pulled.
// The caller guarantees that the bandwidth is constant between calls to advance() and asks, via
// nextEventAt(), when the next boundary (round end, switchover end, disk copy end) falls.
import type { JobStats } from '../hypervisor.js';

export const MIB = 1024 * 1024;
export const PAGE_SIZE_BYTES = 4096;
const PAGES_PER_MIB = MIB / PAGE_SIZE_BYTES;
const EPS_MIB = 1e-9;

export const AUTO_CONVERGE_INITIAL_PCT = 20;
export const AUTO_CONVERGE_INCREMENT_PCT = 10;
export const AUTO_CONVERGE_MAX_PCT = 99;
/** Percent of bytes sent in a round that the bytes dirtied in it must exceed to count as "too fast". */
export const AUTO_CONVERGE_TRIGGER_PCT = 50;

export type PrecopyPhase = 'disk' | 'precopy' | 'switchover' | 'postcopy' | 'done';

export interface PrecopyInput {
  startedAtMs: number;
  memMiB: number;
  wwsMiB: number;
  diskMiB: number;
  maxDowntimeMs: number;
  autoConverge: boolean;
  postcopyDowntimeMs: number;
}

/** What the surroundings tell the model about the guest. */
export interface GuestDirtying {
  /** MiB the unthrottled guest writes over [t0, t1] (0 while paused). */
  dirtiedMiB(t0Ms: number, t1Ms: number): number;
  /** The unthrottled guest's current dirty rate. */
  dirtyMiBpsAt(tMs: number): number;
}

/** Something that happened while advancing, with the clock time it happened at. */
export type PrecopyHappening =
  | { kind: 'iteration'; atMs: number; iteration: number }
  | { kind: 'throttle'; atMs: number; throttlePct: number }
  | { kind: 'switchover'; atMs: number; downtimeMs: number }
  | { kind: 'completed'; atMs: number };

export class PrecopyMigration {
  phase: PrecopyPhase;
  readonly startedAtMs: number;
  readonly memMiB: number;
  readonly wwsMiB: number;
  readonly diskMiB: number;
  maxDowntimeMs: number;
  readonly autoConverge: boolean;
  readonly postcopyDowntimeMs: number;

  /** Time up to which the state is computed. */
  atMs: number;
  diskDoneMiB = 0;
  round = 0;
  roundStartMs: number;
  roundRemainingMiB: number;
  roundSentMiB = 0;
  /** Distinct memory dirtied since the round began (<= wws). */
  dirtiedMiB = 0;
  processedMiB = 0;
  throttlePct = 0;
  private highDirtyCount = 0;
  /** Bandwidth in use during the last advance. */
  currentMiBps = 0;
  /** Bandwidth measured over the last completed round (the switch-over decision uses it). */
  measuredMiBps = 0;
  switchoverStartMs = 0;
  switchoverEndMs = 0;
  switchoverMiB = 0;
  postcopy = false;
  postcopyRemainingMiB = 0;
  downtimeMs = 0;
  endedAtMs: number | null = null;

  constructor(input: PrecopyInput) {
    this.startedAtMs = input.startedAtMs;
    this.memMiB = input.memMiB;
    this.wwsMiB = Math.min(input.wwsMiB, input.memMiB);
    this.diskMiB = input.diskMiB;
    this.maxDowntimeMs = input.maxDowntimeMs;
    this.autoConverge = input.autoConverge;
    this.postcopyDowntimeMs = input.postcopyDowntimeMs;
    this.atMs = input.startedAtMs;
    this.roundStartMs = input.startedAtMs;
    this.roundRemainingMiB = input.memMiB;
    this.phase = input.diskMiB > 0 ? 'disk' : 'precopy';
  }

  get throttleFactor(): number {
    return 1 - this.throttlePct / 100;
  }

  /** The next time something changes by itself at bandwidth `bandwidthMiBps` (Infinity if never). */
  nextEventAt(bandwidthMiBps: number): number {
    const bw = Math.max(bandwidthMiBps, 0);
    switch (this.phase) {
      case 'disk':
        return bw > 0 ? this.atMs + ((this.diskMiB - this.diskDoneMiB) / bw) * 1000 : Infinity;
      case 'precopy':
        return bw > 0 ? this.atMs + (this.roundRemainingMiB / bw) * 1000 : Infinity;
      case 'switchover':
        return this.switchoverEndMs;
      case 'postcopy':
        return bw > 0 ? this.atMs + (this.postcopyRemainingMiB / bw) * 1000 : Infinity;
      case 'done':
        return Infinity;
    }
  }

  /** Advances the state to `toMs` at a constant `bandwidthMiBps`; returns what happened on the way. */
  advance(toMs: number, bandwidthMiBps: number, guest: GuestDirtying): PrecopyHappening[] {
    const out: PrecopyHappening[] = [];
    const bw = Math.max(bandwidthMiBps, 0);
    this.currentMiBps = bw;
    let guard = 0;
    // Keep going while time remains, and also while a boundary is due now (it may take no time at all when
    // what is left is smaller than the clock's resolution).
    while (this.phase !== 'done' && (this.atMs < toMs || this.nextEventAt(bw) <= this.atMs)) {
      if (++guard > 1_000_000) break;
      const t0 = this.atMs;
      const boundary = this.nextEventAt(bw);
      const reached = boundary <= toMs;
      const end = reached ? Math.max(t0, boundary) : toMs;
      const moved = (bw * (end - t0)) / 1000;
      switch (this.phase) {
        case 'disk': {
          this.diskDoneMiB = reached ? this.diskMiB : Math.min(this.diskMiB, this.diskDoneMiB + moved);
          this.atMs = end;
          if (reached) {
            this.phase = 'precopy';
            this.roundStartMs = end;
          }
          break;
        }
        case 'precopy': {
          const sent = reached ? this.roundRemainingMiB : Math.min(this.roundRemainingMiB, moved);
          this.roundRemainingMiB -= sent;
          this.roundSentMiB += sent;
          this.processedMiB += sent;
          this.dirtiedMiB = Math.min(
            this.wwsMiB,
            this.dirtiedMiB + guest.dirtiedMiB(t0, end) * this.throttleFactor,
          );
          this.atMs = end;
          if (reached) {
            this.roundRemainingMiB = 0;
            this.endRound(bw, out);
          }
          break;
        }
        case 'switchover': {
          this.atMs = end;
          if (reached) {
            this.processedMiB += this.switchoverMiB;
            this.finish(out);
          }
          break;
        }
        case 'postcopy': {
          const pulled = reached ? this.postcopyRemainingMiB : Math.min(this.postcopyRemainingMiB, moved);
          this.postcopyRemainingMiB -= pulled;
          this.processedMiB += pulled;
          this.atMs = end;
          if (reached) {
            this.postcopyRemainingMiB = 0;
            this.finish(out);
          }
          break;
        }
      }
    }
    if (this.atMs < toMs) this.atMs = toMs;
    return out;
  }

  private endRound(bw: number, out: PrecopyHappening[]): void {
    const durationMs = this.atMs - this.roundStartMs;
    this.measuredMiBps = durationMs > 0 ? this.roundSentMiB / (durationMs / 1000) : bw;
    const pending = Math.min(this.wwsMiB, this.dirtiedMiB);
    if (this.autoConverge) {
      const tooFast = pending > (this.roundSentMiB * AUTO_CONVERGE_TRIGGER_PCT) / 100;
      if (tooFast && ++this.highDirtyCount >= 2) {
        this.highDirtyCount = 0;
        const next =
          this.throttlePct === 0
            ? AUTO_CONVERGE_INITIAL_PCT
            : Math.min(AUTO_CONVERGE_MAX_PCT, this.throttlePct + AUTO_CONVERGE_INCREMENT_PCT);
        if (next !== this.throttlePct) {
          this.throttlePct = next;
          out.push({ kind: 'throttle', atMs: this.atMs, throttlePct: next });
        }
      }
    }
    const thresholdMiB = (this.measuredMiBps * this.maxDowntimeMs) / 1000;
    if (pending <= thresholdMiB + EPS_MIB) {
      this.startSwitchover(pending, bw, out);
      return;
    }
    this.round += 1;
    this.roundStartMs = this.atMs;
    this.roundRemainingMiB = pending;
    this.roundSentMiB = 0;
    this.dirtiedMiB = 0;
    out.push({ kind: 'iteration', atMs: this.atMs, iteration: this.round });
  }

  private startSwitchover(pendingMiB: number, bw: number, out: PrecopyHappening[]): void {
    this.phase = 'switchover';
    this.switchoverMiB = pendingMiB;
    this.roundRemainingMiB = 0;
    this.downtimeMs = bw > 0 ? (pendingMiB / bw) * 1000 : 0;
    this.switchoverStartMs = this.atMs;
    this.switchoverEndMs = this.atMs + this.downtimeMs;
    out.push({ kind: 'switchover', atMs: this.atMs, downtimeMs: this.downtimeMs });
    if (this.downtimeMs === 0) {
      this.processedMiB += pendingMiB;
      this.finish(out);
    }
  }

  /**
   * QEMU re-checks the switch-over condition all the time, not only at round ends; this does that check
   * now (used when the max downtime changes): pending is everything not yet current on the destination.
   */
  checkSwitchoverNow(bandwidthMiBps: number): PrecopyHappening[] {
    const out: PrecopyHappening[] = [];
    if (this.phase !== 'precopy') return out;
    const pending = Math.min(this.memMiB, this.roundRemainingMiB + this.dirtiedMiB);
    const measured = this.round > 0 && this.measuredMiBps > 0 ? this.measuredMiBps : bandwidthMiBps;
    if (pending <= (measured * this.maxDowntimeMs) / 1000 + EPS_MIB) {
      this.currentMiBps = bandwidthMiBps;
      this.startSwitchover(pending, bandwidthMiBps, out);
    }
    return out;
  }

  /** Switches to post-copy at the current time: the guest runs on the destination from now on. */
  switchToPostcopy(): void {
    this.postcopy = true;
    this.phase = 'postcopy';
    this.postcopyRemainingMiB = Math.min(this.memMiB, this.roundRemainingMiB + this.dirtiedMiB);
    this.roundRemainingMiB = 0;
    this.downtimeMs = this.postcopyDowntimeMs;
    if (this.postcopyRemainingMiB <= EPS_MIB) this.postcopyRemainingMiB = 0;
  }

  /** Completes a post-copy that has nothing left to pull (called by the owner after the switch). */
  finishIfEmpty(): PrecopyHappening[] {
    const out: PrecopyHappening[] = [];
    if (this.phase === 'postcopy' && this.postcopyRemainingMiB === 0) this.finish(out);
    return out;
  }

  private finish(out: PrecopyHappening[]): void {
    this.phase = 'done';
    this.endedAtMs = this.atMs;
    out.push({ kind: 'completed', atMs: this.atMs });
  }

  /** Memory still to send now. */
  remainingMiB(nowMs: number): number {
    switch (this.phase) {
      case 'disk':
        return this.memMiB;
      case 'precopy':
        return this.roundRemainingMiB;
      case 'switchover': {
        const span = this.switchoverEndMs - this.switchoverStartMs;
        const frac = span > 0 ? Math.min(1, Math.max(0, (nowMs - this.switchoverStartMs) / span)) : 1;
        return this.switchoverMiB * (1 - frac);
      }
      case 'postcopy':
        return this.postcopyRemainingMiB;
      case 'done':
        return 0;
    }
  }

  /**
   * Job stats in libvirt's vocabulary and units, as of `nowMs` (the state must be advanced to it);
   * `bandwidthMiBps` is the rate in force now (defaults to the one of the last advance).
   */
  stats(
    type: JobStats['type'],
    nowMs: number,
    guest: GuestDirtying,
    bandwidthMiBps: number = this.currentMiBps,
  ): JobStats {
    const running = this.phase !== 'done' && type === 'active';
    const remaining = running ? this.remainingMiB(nowMs) : 0;
    const sentInSwitchover = this.phase === 'switchover' ? this.switchoverMiB - this.remainingMiB(nowMs) : 0;
    const endMs = this.endedAtMs ?? nowMs;
    const elapsedMs = Math.max(0, endMs - this.startedAtMs);
    const avgMiBps = elapsedMs > 0 ? (this.processedMiB + this.diskDoneMiB) / (elapsedMs / 1000) : 0;
    const bps = running ? bandwidthMiBps : avgMiBps;
    const dirtyMiBps =
      running && this.phase !== 'postcopy' ? guest.dirtyMiBpsAt(nowMs) * this.throttleFactor : 0;
    let downtimeMs = this.downtimeMs;
    if (running && this.phase !== 'switchover' && !this.postcopy) {
      downtimeMs = bandwidthMiBps > 0 ? (remaining / bandwidthMiBps) * 1000 : 0;
    }
    return {
      type,
      time_elapsed: Math.round(Math.max(0, nowMs - this.startedAtMs)),
      memory_total: Math.round(this.memMiB * MIB),
      memory_processed: Math.round((this.processedMiB + sentInSwitchover) * MIB),
      memory_remaining: Math.round(remaining * MIB),
      memory_dirty_rate: Math.round(dirtyMiBps * PAGES_PER_MIB),
      memory_page_size: PAGE_SIZE_BYTES,
      memory_iteration: this.round,
      memory_bps: Math.round(bps * MIB),
      downtime: Math.round(downtimeMs),
      disk_total: Math.round(this.diskMiB * MIB),
      disk_processed: Math.round(this.diskDoneMiB * MIB),
      disk_remaining: Math.round((this.diskMiB - this.diskDoneMiB) * MIB),
      auto_converge_throttle: this.throttlePct,
      postcopy: this.postcopy,
    };
  }
}

/** Stats of "no job". */
export function emptyJobStats(): JobStats {
  return {
    type: 'none',
    time_elapsed: 0,
    memory_total: 0,
    memory_processed: 0,
    memory_remaining: 0,
    memory_dirty_rate: 0,
    memory_page_size: PAGE_SIZE_BYTES,
    memory_iteration: 0,
    memory_bps: 0,
    downtime: 0,
    disk_total: 0,
    disk_processed: 0,
    disk_remaining: 0,
    auto_converge_throttle: 0,
    postcopy: false,
  };
}
