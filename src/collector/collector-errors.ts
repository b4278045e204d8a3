// Errors of the collector, matched on `code`.
import { DroverError } from '../domain/errors.js';

/** A host did not answer within the collector's timeout. */
export class HostTimeoutError extends DroverError {
  readonly hostId: string;
  constructor(hostId: string, timeoutMs: number, what: string) {
    super('host_timeout', `host ${hostId}: ${what} did not answer within ${timeoutMs} ms`);
    this.name = 'HostTimeoutError';
    this.hostId = hostId;
  }
}

/** A host answered something that does not make a valid snapshot entry (names the field). */
export class HostSampleInvalid extends DroverError {
  readonly hostId: string;
  constructor(hostId: string, detail: string, options?: { cause?: unknown }) {
    super('host_sample_invalid', `host ${hostId}: ${detail}`, options);
    this.name = 'HostSampleInvalid';
    this.hostId = hostId;
  }
}
