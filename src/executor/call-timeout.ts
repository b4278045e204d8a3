// Every hypervisor call the executor makes goes through callWithTimeout: a monitor that stops answering
// turns into a CallTimeout after timeoutMs of the hypervisor's clock, never into a hung worker.
import type { Clock } from '../domain/clock.js';
import { DroverError } from '../domain/errors.js';
import { withDeadline } from '../clock/deadline.js';

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

/** Resolves as `promise` does, or rejects with CallTimeout after `timeoutMs` on `clock`. */
export function callWithTimeout<T>(
  clock: Clock,
  call: string,
  timeoutMs: number,
  promise: Promise<T>,
): Promise<T> {
  return withDeadline(clock, timeoutMs, promise, () => new CallTimeout(call, timeoutMs));
}
