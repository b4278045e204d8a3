// Handing slots over ahead: a migration predicted to end within one set-up's time lets the next step take its
// slots, so that step's set-up (QEMU starting the destination and connecting, about a second in which no byte
// moves) overlaps the end of the one it follows. The newcomer is held to a trickle and counts for no one's
// link share until the one it follows has ended, so that one's last rounds keep their bandwidth. Holding has a
// price: a guest's pages written while its first round waits are sent again, so only steps whose guest writes
// little take over ahead, and only where a set-up is a real share of the migration they follow (on a slow link
// the set-up is lost in the transfer and a held step could wait long on a late one).
import type { Step } from '../domain/plan.js';

/** What a held migration may send (MiB/s) until the one it follows ends. */
export const HELD_MIBPS = 1;
/** A step takes over ahead only if its guest writes at most this share of its link share. */
export const HAND_OVER_MAX_DIRTY_SHARE = 0.02;
/** A migration hands over only if a set-up is at least this share of its predicted duration. */
export const HAND_OVER_MIN_SETUP_SHARE = 0.1;

/**
 * When (clock ms) a migration whose set-up began at `startedAtMs` may hand its slots over: one set-up before
 * its predicted end, and never before its own set-up is over. Null: never (no predicted duration, no set-up,
 * or a set-up too small a share of it).
 */
export function handOverAtMs(step: Step, startedAtMs: number, setupS: number): number | null {
  const predictedS = step.predicted.durationS;
  if (!(predictedS > 0) || !(setupS > 0)) return null;
  if (setupS < predictedS * HAND_OVER_MIN_SETUP_SHARE) return null;
  return startedAtMs + Math.max(setupS, predictedS - setupS) * 1000;
}

/** Whether `step` may take over the slots of a migration still ending (its guest writes little). */
export function takesOverAhead(step: Step, linkMiBps: number | null): boolean {
  const dirty = step.predicted.dirtyMiBps;
  if (step.kind !== 'live' || dirty === undefined || linkMiBps === null) return false;
  return dirty <= (HAND_OVER_MAX_DIRTY_SHARE * linkMiBps) / Math.max(1, step.concurrency ?? 1);
}
