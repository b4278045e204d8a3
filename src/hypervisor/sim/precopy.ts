// Physics of one simulated migration, the way QEMU runs it, in exact piecewise-constant steps.
//
// Model (all sizes in MiB, rates in MiB/s, times in clock ms):
// - Set-up: before any byte moves, libvirt starts the destination QEMU and connects the migration stream
//   (setupMs). The migration holds no bandwidth meanwhile.
// - Block migration first copies the local disks (disk bytes) at the migration bandwidth; guest writes to
//   disk during the copy are not modelled.
// - Pre-copy round 0 walks all guest memory M, but only the pages the guest ever wrote (U = memUsedMiB)
//   travel as data: a never-written page is a zero page, which QEMU detects and sends as a flag of a few
//   bytes. Zero pages cost the migration thread scan time (zeroScanMiBps) but no link bandwidth. Data and
//   zero pages are interleaved evenly through round 0. Later rounds resend dirtied pages, all data.
// - A single migration stream cannot send faster than streamMaxMiBps (one migration thread's limit),
//   whatever its share of the link.
// - While a round runs, the guest dirties pages at its dirty
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
import type { MigrationJob } from '../hypervisor.js';

const EPS_MIB = 1e-9;

export const AUTO_CONVERGE_INITIAL_PCT = 20;
export const AUTO_CONVERGE_INCREMENT_PCT = 10;
export const AUTO_CONVERGE_MAX_PCT = 99;
/** Percent of bytes sent in a round that the bytes dirtied in it must exceed to count as "too fast". */
export const AUTO_CONVERGE_TRIGGER_PCT = 50;

export type PrecopyPhase = 'setup' | 'disk' | 'precopy' | 'switchover' | 'postcopy' | 'done';

/**
 * Per-migration costs of real QEMU/libvirt migrations (see the simulator README for the numbers' sources).
 * All optional: without them a migration starts sending at once, zero pages cost nothing and one stream can
 * fill any link (the ideal the closed-form model describes).
 */
export interface MigrationCosts {
  /** Set-up before data flows (destination QEMU started, stream connected). */
  setupMs?: number;
  /** Most one migration stream sends, whatever the link. */
  streamMaxMiBps?: number;
  /** Rate at which the migration thread scans never-written (zero) pages. */
  zeroScanMiBps?: number;
  /**
   * The pause on top of the last round: stopping the vCPUs, device state, starting the destination. QEMU's
   * max downtime does not bound it (it bounds only the last round's estimate).
   */
  switchoverMs?: number;
}

/**
 * Costs of a real QEMU/libvirt migration, as the benchmarks assume them:
 * - setupMs 1000: libvirt's Begin/Prepare phases start the destination QEMU with -incoming and connect the
 *   stream before any page moves; about a second on an idle host (it is also drover's policy default
 *   `migration.setupS`).
 * - streamMaxMiBps 1120 (~9.4 Gbit/s): one migration thread (no multifd) is CPU-bound near 10 Gbit/s; QEMU's
 *   maintainers say a decent CPU pushes "close to 10 Gbps" without multifd, and oVirt needs 8–16 parallel
 *   connections (6–12 Gbit/s each) to fill 100 Gbit/s. Below 10 Gbit/s links it never binds.
 * - zeroScanMiBps 4096: the migration thread tests each never-written 4 KiB page for zero and sends only a
 *   page header; an order of GiB/s per thread. An assumption, not a measurement.
 */
export const QEMU_MIGRATION_COSTS: Required<Omit<MigrationCosts, 'switchoverMs'>> = {
  setupMs: 1000,
  streamMaxMiBps: 1120,
  zeroScanMiBps: 4096,
};

export interface PrecopyInput extends MigrationCosts {
  startedAtMs: number;
  memMiB: number;
  /** Memory the guest has written (non-zero pages); the rest of round 0 is zero pages. Default memMiB. */
  usedMiB?: number;
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
  | { kind: 'transfer-started'; atMs: number }
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
  readonly setupEndMs: number;
  readonly streamMaxMiBps: number;
  readonly zeroScanMiBps: number;
  /** Zero pages round 0 still has to scan (part of roundRemainingMiB). */
  zeroLeftMiB: number;

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
  private readonly switchoverCostMs: number;
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
    this.setupEndMs = input.startedAtMs + Math.max(0, input.setupMs ?? 0);
    this.streamMaxMiBps = input.streamMaxMiBps ?? Infinity;
    this.zeroScanMiBps = input.zeroScanMiBps ?? Infinity;
    this.switchoverCostMs = Math.max(0, input.switchoverMs ?? 0);
    const used = Math.min(input.memMiB, Math.max(0, input.usedMiB ?? input.memMiB));
    this.zeroLeftMiB = input.memMiB - used;
    this.atMs = input.startedAtMs;
    this.roundStartMs = input.startedAtMs;
    this.roundRemainingMiB = input.memMiB;
    this.phase = this.setupEndMs > input.startedAtMs ? 'setup' : this.firstTransferPhase();
  }

  private firstTransferPhase(): PrecopyPhase {
    return this.diskMiB > 0 ? 'disk' : 'precopy';
  }

  /** The data rate of the memory stream at link share `bw`. */
  private dataRate(bw: number): number {
    return Math.min(Math.max(bw, 0), this.streamMaxMiBps);
  }

  /** Time (ms) to finish the current pre-copy round at link share `bw`: data at the stream's rate, zero pages at the scan rate. */
  private roundTimeLeftMs(bw: number): number {
    const data = this.roundRemainingMiB - this.zeroLeftMiB;
    const rate = this.dataRate(bw);
    const dataMs = data > EPS_MIB ? (rate > 0 ? (data / rate) * 1000 : Infinity) : 0;
    const zeroMs = this.zeroLeftMiB > EPS_MIB ? (this.zeroLeftMiB / this.zeroScanMiBps) * 1000 : 0;
    return dataMs + zeroMs;
  }

  get throttleFactor(): number {
    return 1 - this.throttlePct / 100;
  }

  /** The next time something changes by itself at bandwidth `bandwidthMiBps` (Infinity if never). */
  nextEventAt(bandwidthMiBps: number): number {
    const bw = Math.max(bandwidthMiBps, 0);
    switch (this.phase) {
      case 'setup':
        return this.setupEndMs;
      case 'disk':
        return bw > 0 ? this.atMs + ((this.diskMiB - this.diskDoneMiB) / bw) * 1000 : Infinity;
      case 'precopy':
        return this.atMs + this.roundTimeLeftMs(bw);
      case 'switchover':
        return this.switchoverEndMs;
      case 'postcopy': {
        const rate = this.dataRate(bw);
        return rate > 0 ? this.atMs + (this.postcopyRemainingMiB / rate) * 1000 : Infinity;
      }
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
        case 'setup': {
          this.atMs = end;
          if (reached) {
            this.phase = this.firstTransferPhase();
            this.roundStartMs = end;
            out.push({ kind: 'transfer-started', atMs: end });
            // The owner recomputes the link shares now that this migration sends.
            return out;
          }
          break;
        }
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
          // Data and zero pages are spread evenly over what the round has left: process the same fraction
          // of each in the time available.
          const leftMs = this.roundTimeLeftMs(bw);
          const frac = reached || !(leftMs > 0) ? 1 : Math.min(1, (end - t0) / leftMs);
          const zero = this.zeroLeftMiB * frac;
          const data = (this.roundRemainingMiB - this.zeroLeftMiB) * frac;
          this.zeroLeftMiB -= zero;
          this.roundRemainingMiB -= zero + data;
          this.roundSentMiB += data;
          this.processedMiB += data;
          this.dirtiedMiB = Math.min(
            this.wwsMiB,
            this.dirtiedMiB + guest.dirtiedMiB(t0, end) * this.throttleFactor,
          );
          this.atMs = end;
          if (reached) {
            this.roundRemainingMiB = 0;
            this.zeroLeftMiB = 0;
            this.endRound(this.dataRate(bw), out);
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
          const pullable = (this.dataRate(bw) * (end - t0)) / 1000;
          const pulled = reached ? this.postcopyRemainingMiB : Math.min(this.postcopyRemainingMiB, pullable);
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
    this.downtimeMs = (bw > 0 ? (pendingMiB / bw) * 1000 : 0) + this.switchoverCostMs;
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
    const rate = this.dataRate(bandwidthMiBps);
    const pending = Math.min(this.memMiB, this.roundRemainingMiB - this.zeroLeftMiB + this.dirtiedMiB);
    const measured = this.round > 0 && this.measuredMiBps > 0 ? this.measuredMiBps : rate;
    if (pending <= (measured * this.maxDowntimeMs) / 1000 + EPS_MIB) {
      this.currentMiBps = bandwidthMiBps;
      this.zeroLeftMiB = 0;
      this.startSwitchover(pending, rate, out);
    }
    return out;
  }

  /** Switches to post-copy at the current time: the guest runs on the destination from now on. */
  switchToPostcopy(): void {
    this.postcopy = true;
    this.phase = 'postcopy';
    this.postcopyRemainingMiB = Math.min(
      this.memMiB,
      this.roundRemainingMiB - this.zeroLeftMiB + this.dirtiedMiB,
    );
    this.roundRemainingMiB = 0;
    this.zeroLeftMiB = 0;
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
      case 'setup':
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
   * The job in drover's units, as of `nowMs` (the state must be advanced to it);
   * `bandwidthMiBps` is the rate in force now (defaults to the one of the last advance).
   */
  stats(
    type: MigrationJob['type'],
    nowMs: number,
    guest: GuestDirtying,
    bandwidthMiBps: number = this.currentMiBps,
  ): MigrationJob {
    const running = this.phase !== 'done' && type === 'active';
    const remaining = running ? this.remainingMiB(nowMs) : 0;
    const sentInSwitchover = this.phase === 'switchover' ? this.switchoverMiB - this.remainingMiB(nowMs) : 0;
    const endMs = this.endedAtMs ?? nowMs;
    const elapsedMs = Math.max(0, endMs - this.startedAtMs);
    const avgMiBps = elapsedMs > 0 ? (this.processedMiB + this.diskDoneMiB) / (elapsedMs / 1000) : 0;
    const runningBps =
      this.phase === 'setup' ? 0 : this.phase === 'disk' ? bandwidthMiBps : this.dataRate(bandwidthMiBps);
    const bps = running ? runningBps : avgMiBps;
    const dirtyMiBps =
      running && this.phase !== 'postcopy' ? guest.dirtyMiBpsAt(nowMs) * this.throttleFactor : 0;
    let downtimeMs = this.downtimeMs;
    if (running && this.phase !== 'switchover' && !this.postcopy) {
      downtimeMs = bandwidthMiBps > 0 ? (remaining / bandwidthMiBps) * 1000 : 0;
    }
    return {
      type,
      elapsedMs: Math.round(Math.max(0, nowMs - this.startedAtMs)),
      memTotalMiB: this.memMiB,
      memProcessedMiB: this.processedMiB + sentInSwitchover,
      memRemainingMiB: remaining,
      dirtyMiBps,
      iteration: this.round,
      transferMiBps: bps,
      downtimeMs: Math.round(downtimeMs),
      diskTotalMiB: this.diskMiB,
      diskProcessedMiB: this.diskDoneMiB,
      diskRemainingMiB: this.diskMiB - this.diskDoneMiB,
      autoConvergeThrottlePct: this.throttlePct,
      postCopy: this.postcopy,
    };
  }
}
