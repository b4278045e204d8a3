// Clocks that implement the domain's Clock: real time, real time sped up (the demo), and a deterministic
// virtual clock on which a ten-minute migration runs in milliseconds (tests, simulations).
import type { Clock } from '../domain/clock.js';
import { DroverError } from '../domain/errors.js';

/** What an aborted sleep rejects with: the signal's reason (wrapped in a DroverError when not an Error). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new DroverError('aborted', `sleep aborted: ${String(reason)}`, { cause: reason });
}

/**
 * Real time: `now()` is `Date.now()`, `sleep` is a timer. Aborting a sleep rejects it with the signal's
 * reason (the same contract as every other clock here).
 */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return realSleep(Math.max(0, ms), signal);
  }
}

function realSleep(realMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      if (signal) reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, realMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Real time sped up by `factor` (> 0): clock time starts at `startMs` (default: the real time at
 * construction) and runs `factor` times faster than the wall clock; `sleep(ms)` waits `ms / factor` real
 * milliseconds. With factor 20 a 40 s migration shows in 2 s. Timers fire late by the event loop's delay
 * multiplied by the factor, so code on this clock must read `now()` rather than assume a sleep was exact.
 */
export class ScaledClock implements Clock {
  readonly factor: number;
  private readonly realOriginMs: number;
  private readonly originMs: number;

  constructor(factor: number, startMs?: number) {
    if (!Number.isFinite(factor) || factor <= 0) {
      throw new DroverError('invalid_argument', `clock factor: expected a positive number, got ${factor}`);
    }
    this.factor = factor;
    this.realOriginMs = Date.now();
    this.originMs = startMs ?? this.realOriginMs;
  }

  now(): number {
    return this.originMs + (Date.now() - this.realOriginMs) * this.factor;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return realSleep(Math.max(0, ms) / this.factor, signal);
  }
}

interface VirtualTimer {
  dueMs: number;
  seq: number;
  fire: () => void;
  cancelled: boolean;
}

export interface RunUntilOptions {
  /** Give up (reject with `clock_limit`) rather than move the clock more than this far (virtual ms). Default 24 h. */
  maxMs?: number;
  /**
   * Real milliseconds to wait, when nothing is scheduled, for outside work (sockets, files) to schedule
   * something before the run is declared stalled. Default 0: a few event-loop turns only.
   */
  idleRealMs?: number;
}

export interface AutoAdvanceOptions {
  /** Real milliseconds the program must stay idle before the clock jumps to the next timer. Default 0. */
  idleRealMs?: number;
}

/** Yields one macrotask turn: every pending promise continuation (microtask) runs before it returns. */
function turn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

const IDLE_TURNS = 20;

/**
 * A deterministic clock that moves only when told to.
 *
 * - `now()` returns the virtual time (ms since the epoch; default start 2026-01-01T00:00:00Z).
 * - `sleep(ms)` registers a timer due at `now() + ms` (negative counts as 0). Timers with the same due time
 *   fire in the order they were created. Aborting removes the timer and rejects with the signal's reason.
 * - `advance(ms)` moves time forward by `ms`, firing every timer that falls due on the way, in time order.
 *   `now()` equals each timer's due time while it fires, and after every fired timer one macrotask turn is
 *   yielded, so async code awaiting that sleep runs (and may schedule further timers, which fire in the
 *   same call if they are due by the end). A chain `await sleep(10); await sleep(10)` therefore behaves as
 *   it would in real time.
 * - `runUntil(promise)` is for code whose duration is unknown: it lets the program run; whenever it is idle
 *   (a few turns pass with no progress) it jumps straight to the next timer. A ten-minute migration takes
 *   milliseconds of real time. It stops as soon as the promise settles and returns its result.
 * - `autoAdvance()` does the same in the background for code that cannot be wrapped; call the returned
 *   function to stop.
 * Only one of advance/runUntil/runAll/autoAdvance may drive the clock at a time.
 */
export class VirtualClock implements Clock {
  private nowMs: number;
  private seq = 0;
  /** Binary min-heap on (dueMs, seq); cancelled timers are dropped lazily. */
  private heap: VirtualTimer[] = [];
  private live = 0;
  private driving = false;

  constructor(startMs: number = Date.UTC(2026, 0, 1)) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = (): void => {
        if (timer.cancelled) return;
        timer.cancelled = true;
        this.live--;
        if (signal) reject(abortReason(signal));
      };
      const timer: VirtualTimer = {
        dueMs: this.nowMs + Math.max(0, Number.isFinite(ms) ? ms : 0),
        seq: this.seq++,
        cancelled: false,
        fire: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.push(timer);
      this.live++;
    });
  }

  /** Number of timers waiting to fire. */
  pendingTimers(): number {
    return this.live;
  }

  /** Due time of the earliest pending timer, or null when none is pending. */
  nextTimerAt(): number | null {
    return this.peek()?.dueMs ?? null;
  }

  /** Moves time forward by `ms`, firing due timers in order (see the class comment). */
  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.nowMs + Math.max(0, ms));
  }

  /** Moves time forward to `targetMs` (never backwards), firing due timers in order. */
  async advanceTo(targetMs: number): Promise<void> {
    this.claim();
    try {
      await turn();
      for (;;) {
        const next = this.peek();
        if (!next || next.dueMs > targetMs) break;
        this.fireNext();
        await turn();
      }
      if (targetMs > this.nowMs) this.nowMs = targetMs;
      await turn();
    } finally {
      this.driving = false;
    }
  }

  /**
   * Runs the program until `promise` settles, jumping to the next timer whenever it is idle; resolves or
   * rejects as the promise does. Rejects with a DroverError `clock_limit` when the next timer lies beyond
   * `maxMs` of virtual time from the start, and `clock_stalled` when the program is idle with no timer
   * pending (it would wait forever).
   */
  async runUntil<T>(promise: Promise<T>, options: RunUntilOptions = {}): Promise<T> {
    const maxMs = options.maxMs ?? 24 * 3600_000;
    const idleRealMs = options.idleRealMs ?? 0;
    let settled = false;
    const watched = promise.then(
      (value) => {
        settled = true;
        return value;
      },
      (err: unknown) => {
        settled = true;
        throw err;
      },
    );
    // Keep an early rejection from being reported as unhandled while the loop below runs.
    watched.catch(() => undefined);
    const limitMs = this.nowMs + maxMs;
    this.claim();
    try {
      let idle = 0;
      for (;;) {
        await turn();
        if (settled) break;
        const next = this.peek();
        if (!next) {
          idle++;
          if (idleRealMs > 0) await realSleep(idleRealMs / IDLE_TURNS);
          if (idle >= IDLE_TURNS) {
            throw new DroverError(
              'clock_stalled',
              'virtual clock: the program is idle and no timer is pending, so it would wait forever',
            );
          }
          continue;
        }
        idle = 0;
        if (next.dueMs > limitMs) {
          this.nowMs = Math.max(this.nowMs, limitMs);
          throw new DroverError(
            'clock_limit',
            `virtual clock: still not done after ${maxMs} ms of virtual time`,
          );
        }
        if (next.dueMs > this.nowMs && idleRealMs > 0) {
          // Give outside work a chance before jumping.
          await realSleep(idleRealMs);
          if (settled) break;
          if (this.peek() !== next) continue;
        }
        this.fireNext();
      }
    } finally {
      this.driving = false;
    }
    return watched;
  }

  /** Fires timers until none is pending (or `maxMs` of virtual time passed: `clock_limit`). */
  async runAll(options: { maxMs?: number } = {}): Promise<void> {
    const maxMs = options.maxMs ?? 24 * 3600_000;
    const limitMs = this.nowMs + maxMs;
    this.claim();
    try {
      await turn();
      for (;;) {
        const next = this.peek();
        if (!next) break;
        if (next.dueMs > limitMs) {
          throw new DroverError(
            'clock_limit',
            `virtual clock: timers still pending after ${maxMs} ms of virtual time`,
          );
        }
        this.fireNext();
        await turn();
      }
    } finally {
      this.driving = false;
    }
  }

  /**
   * Drives the clock in the background: whenever the program has been idle for a few turns (plus
   * `idleRealMs` real ms), time jumps to the next timer. Returns the function that stops it.
   */
  autoAdvance(options: AutoAdvanceOptions = {}): () => void {
    const idleRealMs = options.idleRealMs ?? 0;
    this.claim();
    let running = true;
    const loop = async (): Promise<void> => {
      while (running) {
        for (let i = 0; i < 3 && running; i++) await turn();
        if (idleRealMs > 0) await realSleep(idleRealMs);
        if (!running) break;
        if (this.peek()) this.fireNext();
        else await realSleep(1);
      }
    };
    void loop();
    return () => {
      running = false;
      this.driving = false;
    };
  }

  private claim(): void {
    if (this.driving) {
      throw new DroverError(
        'clock_busy',
        'virtual clock: already being driven (advance/runUntil/runAll/autoAdvance)',
      );
    }
    this.driving = true;
  }

  /** Pops the earliest live timer, moves time to it and fires it. */
  private fireNext(): void {
    const timer = this.peek();
    if (!timer) return;
    this.pop();
    if (timer.dueMs > this.nowMs) this.nowMs = timer.dueMs;
    this.live--;
    timer.cancelled = true;
    timer.fire();
  }

  private peek(): VirtualTimer | undefined {
    while (this.heap.length > 0) {
      const top = this.heap[0];
      if (top && !top.cancelled) return top;
      this.pop();
    }
    return undefined;
  }

  private static before(a: VirtualTimer, b: VirtualTimer): boolean {
    return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.seq < b.seq);
  }

  private push(timer: VirtualTimer): void {
    const heap = this.heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent];
      if (!p || !VirtualClock.before(timer, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = timer;
  }

  private pop(): VirtualTimer | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length === 0 || !last) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const left = heap[l];
      const right = heap[r];
      let c = l;
      let child = left;
      if (right && left && VirtualClock.before(right, left)) {
        c = r;
        child = right;
      }
      if (!child || !VirtualClock.before(child, last)) break;
      heap[i] = child;
      i = c;
    }
    heap[i] = last;
    return top;
  }
}
