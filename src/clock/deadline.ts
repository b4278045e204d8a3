// One deadline for every call that must not wait forever: hypervisor calls (executor, collector), Redis
// answers (leader lease, API), and the checks of `drover doctor`.
import type { Clock } from '../domain/clock.js';

/** Why a settled call's timer is cancelled (a constant: abort() without one builds a DOMException each time). */
const SETTLED = Symbol('settled');

/**
 * Settles as `work` does, or rejects with the error `expired()` makes once `ms` of `clock` time pass first.
 * The work keeps running (a promise cannot be cancelled); its late result or rejection is dropped, so an
 * abandoned call never becomes an unhandled rejection.
 */
export async function withDeadline<T>(
  clock: Clock,
  ms: number,
  work: Promise<T>,
  expired: () => Error,
): Promise<T> {
  const cancel = new AbortController();
  let late = false;
  const deadline = clock.sleep(ms, cancel.signal).then(
    () => {
      late = true;
    },
    () => undefined,
  );
  work.catch(() => undefined);
  try {
    const result = await Promise.race([work, deadline]);
    if (late) throw expired();
    return result as T;
  } finally {
    cancel.abort(SETTLED);
  }
}
