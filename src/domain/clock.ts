// Time as drover sees it. Everything that waits or timestamps goes through a Clock, so the simulator's
// virtual clock can run a ten-minute migration in milliseconds.

export interface Clock {
  /** Milliseconds since the epoch (virtual on a simulated clock). */
  now(): number;
  /** Resolves after `ms` of this clock's time; rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}
