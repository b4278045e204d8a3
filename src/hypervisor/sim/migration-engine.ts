// The simulator's migration engine: advances each migration in flight (its pre-copy model) on the clock, shares
// every host's link max-min fairly between the migrations that send over it (a migration still setting up takes
// no share, one capped below an equal share takes only its cap), draws bandwidth noise per period, and wakes
// each migration at its next boundary. What a migration does to the cluster (a round ended, the guest
// throttled, the switch-over, the completion) goes out through a narrow port; the engine knows no domains,
// lifecycle events or storage.
import type { Clock } from '../../domain/clock.js';
import type { GuestDirtying, PrecopyHappening } from './precopy.js';
import type { SimHost, SimMigration, SimVm } from './sim-model.js';

/** What the engine needs from the cluster around it. */
export interface MigrationEnginePort {
  /** MiB the guest writes between t0 and t1, and its dirty rate at t (the engine counts none while paused). */
  dirtiedMiB(vm: SimVm, t0: number, t1: number): number;
  dirtyRateAt(vm: SimVm, t: number): number;
  /** Pre-copy round `iteration` began (0-based). */
  roundStarted(m: SimMigration, iteration: number): void;
  /** Auto-converge set the guest's throttle. */
  throttled(m: SimMigration, pct: number, atMs: number): void;
  /** The switch-over began; false when the migration ended there (nothing more to apply). */
  switchingOver(m: SimMigration, atMs: number): boolean;
  /** The migration completed at `atMs` (the engine has already released it). */
  completed(m: SimMigration, atMs: number): void;
}

export interface MigrationEngineOptions {
  clock: Clock;
  /** Each noise period the rate is multiplied by 1 ± up to this percent (0: no noise). */
  noisePct: number;
  noisePeriodMs: number;
}

export class MigrationEngine {
  private readonly clock: Clock;
  private readonly noisePct: number;
  private readonly noisePeriodMs: number;
  private readonly inFlight = new Set<SimMigration>();
  private closed = false;

  constructor(
    options: MigrationEngineOptions,
    private readonly port: MigrationEnginePort,
  ) {
    this.clock = options.clock;
    this.noisePct = options.noisePct;
    this.noisePeriodMs = options.noisePeriodMs;
  }

  /** Migrations in flight. */
  get active(): ReadonlySet<SimMigration> {
    return this.inFlight;
  }

  /** Takes a new migration in: it joins its hosts' links (the others settled at their old shares first). */
  start(m: SimMigration): void {
    m.noiseFactor = this.drawNoise(m);
    this.changeShares([m.src, m.dst], () => {
      m.src.migrations.add(m);
      m.dst.migrations.add(m);
      this.inFlight.add(m);
    });
  }

  /** No more wake-ups (the simulator is closing). */
  close(): void {
    this.closed = true;
  }

  /** The guest's dirtying as the migration sees it: nothing while the source is paused. */
  guest(m: SimMigration): GuestDirtying {
    return {
      dirtiedMiB: (t0, t1) => (m.srcInst.state === 'paused' ? 0 : this.port.dirtiedMiB(m.vm, t0, t1)),
      dirtyMiBpsAt: (t) => (m.srcInst.state === 'paused' ? 0 : this.port.dirtyRateAt(m.vm, t)),
    };
  }

  /**
   * The migration's rate now: its share of both hosts' links, its cap, and the noise. A link is shared max-min
   * fairly among the migrations that send over it: one held below an equal share (by its cap or its stream's
   * own limit) takes only what it can use and leaves the rest to the others, as TCP streams do.
   */
  bandwidthOf(m: SimMigration): number {
    const ceiling = (o: SimMigration): number => Math.min(o.capMiBps ?? Infinity, o.model.streamMaxMiBps);
    // A migration still setting up sends nothing and leaves the link to the others.
    const share = (h: SimHost): number => {
      const ceilings: number[] = [];
      for (const o of h.migrations) if (o !== m && o.model.phase !== 'setup') ceilings.push(ceiling(o));
      ceilings.push(ceiling(m));
      ceilings.sort((a, b) => a - b);
      let left = h.bandwidthMiBps * h.linkFactor;
      let n = ceilings.length;
      for (const c of ceilings) {
        if (c * n > left) break;
        left -= c;
        n -= 1;
      }
      return n > 0 ? left / n : Infinity;
    };
    let bw = Math.min(share(m.src), share(m.dst), ceiling(m));
    if (!Number.isFinite(bw))
      bw = Math.min(m.src.bandwidthMiBps * m.src.linkFactor, m.dst.bandwidthMiBps * m.dst.linkFactor);
    return bw * m.noiseFactor;
  }

  private drawNoise(m: SimMigration): number {
    if (this.noisePct <= 0) return 1;
    return 1 + m.rng.uniform(-this.noisePct, this.noisePct) / 100;
  }

  private noiseBoundary(m: SimMigration): number {
    return this.noisePct > 0 ? m.model.startedAtMs + (m.noiseIndex + 1) * this.noisePeriodMs : Infinity;
  }

  /** Brings the migration's state up to `now`, applying what happened on the way. */
  settle(m: SimMigration, now: number): void {
    // When its set-up ends, this migration starts taking a share of its hosts' links: the others are first
    // brought up to that moment at their old shares.
    const setupEnd = m.model.setupEndMs;
    if (m.model.phase === 'setup' && setupEnd <= now) {
      for (const h of [m.src, m.dst])
        for (const o of h.migrations)
          // (One still setting up until then or later takes no share before then: leave it.)
          if (
            o !== m &&
            !o.ended &&
            o.model.atMs < setupEnd &&
            !(o.model.phase === 'setup' && o.model.setupEndMs >= setupEnd)
          )
            this.settle(o, setupEnd);
    }
    // At least one pass, so a boundary due exactly now is processed even when no time passed.
    let guard = 0;
    do {
      const boundary = this.noiseBoundary(m);
      const chunkEnd = Math.min(now, boundary);
      const happened = m.model.advance(chunkEnd, this.bandwidthOf(m), this.guest(m));
      this.apply(m, happened);
      if (chunkEnd === boundary) {
        m.noiseIndex++;
        m.noiseFactor = this.drawNoise(m);
      }
    } while (!m.ended && m.model.atMs < now && ++guard < 1_000_000);
  }

  /** Applies what the model says happened: link shares here, the rest through the port. */
  apply(m: SimMigration, happened: PrecopyHappening[]): void {
    for (const h of happened) {
      if (m.ended) return;
      switch (h.kind) {
        case 'transfer-started':
          this.reshare(m, h.atMs);
          break;
        case 'iteration':
          this.port.roundStarted(m, h.iteration);
          break;
        case 'throttle':
          this.port.throttled(m, h.throttlePct, h.atMs);
          break;
        case 'switchover':
          if (!this.port.switchingOver(m, h.atMs)) return;
          break;
        case 'completed':
          this.release(m);
          this.port.completed(m, h.atMs);
          return;
      }
    }
  }

  /** Sets the migration's next wake-up on the clock (its next boundary at the current bandwidth). */
  schedule(m: SimMigration): void {
    m.timer?.abort();
    m.timer = null;
    if (m.ended || this.closed) return;
    const now = this.clock.now();
    const next = Math.min(m.model.nextEventAt(this.bandwidthOf(m)), this.noiseBoundary(m));
    if (!Number.isFinite(next)) return; // no bandwidth: waits until something changes
    const ctrl = new AbortController();
    m.timer = ctrl;
    this.clock.sleep(Math.max(0, next - now), ctrl.signal).then(
      () => {
        if (m.timer !== ctrl) return;
        m.timer = null;
        this.settle(m, this.clock.now());
        this.schedule(m);
      },
      () => undefined, // aborted: a newer wake-up replaced this one
    );
  }

  /**
   * Runs `change` (which alters how many migrations share some hosts' links) with every migration on
   * those hosts settled before and rescheduled after, so each one's progress is exact at the change.
   */
  changeShares(hosts: SimHost[], change: () => void): void {
    const now = this.clock.now();
    const affected = new Set<SimMigration>();
    for (const h of hosts) for (const m of h.migrations) affected.add(m);
    for (const m of affected) this.settle(m, now);
    change();
    for (const h of hosts) for (const m of h.migrations) affected.add(m);
    for (const m of affected) if (!m.ended) this.schedule(m);
  }

  /** `m` started sending at `atMs`: the other migrations on its hosts get smaller shares from then on. */
  private reshare(m: SimMigration, atMs: number): void {
    const others = new Set<SimMigration>();
    for (const h of [m.src, m.dst]) for (const o of h.migrations) if (o !== m && !o.ended) others.add(o);
    for (const o of others) {
      if (o.model.atMs < atMs) this.settle(o, atMs);
      if (!o.ended) this.schedule(o);
    }
  }

  /** The migration ended: it leaves its hosts' links (the others get their shares back). */
  release(m: SimMigration): void {
    m.ended = true;
    m.timer?.abort();
    m.timer = null;
    this.changeShares([m.src, m.dst], () => {
      m.src.migrations.delete(m);
      m.dst.migrations.delete(m);
      this.inFlight.delete(m);
    });
  }
}
