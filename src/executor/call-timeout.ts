// Every hypervisor call the executor makes goes through callWithTimeout: a monitor that stops answering
// turns into a CallTimeout after timeoutMs of the hypervisor's clock, never into a hung worker.
import type { Clock } from '../domain/clock.js';
import { DroverError } from '../domain/errors.js';

export class CallTimeout extends DroverError {
  readonly call: string;
  readonly timeoutMs: number;
  constructor(call: string, timeoutMs: number) {
    super('call_timeout', `${call} did not answer within ${timeoutMs} ms`);
    this.name = 'CallTimeout';
    this.call = call;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * Resolves as `promise` does, or rejects with CallTimeout after `timeoutMs` on `clock`. The call itself
 * keeps running (there is no way to cancel it); its late result or error is dropped.
 */
export async function callWithTimeout<T>(
  clock: Clock,
  call: string,
  timeoutMs: number,
  promise: Promise<T>,
): Promise<T> {
  const timer = new AbortController();
  let timedOut = false;
  const timeout = clock.sleep(timeoutMs, timer.signal).then(
    () => {
      timedOut = true;
    },
    () => undefined,
  );
  // A late rejection of the abandoned call must not become an unhandled rejection.
  promise.catch(() => undefined);
  try {
    const result = await Promise.race([promise, timeout]);
    if (timedOut) throw new CallTimeout(call, timeoutMs);
    return result as T;
  } finally {
    timer.abort();
  }
}
