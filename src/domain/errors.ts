// drover's error classes. Errors that cross Redis are matched on `code`, never with instanceof.

/**
 * Every code a DroverError carries: closed, so a misspelt code does not compile and a map keyed by code
 * (the API's HTTP statuses) must name them all. Grouped by the layer that raises them.
 */
export const DROVER_ERROR_CODES = [
  // input and documents
  'invalid_input',
  'invalid_argument',
  'file_too_large',
  'policy_too_large',
  'policy_unreadable',
  'plan_unreadable',
  'snapshot_unreadable',
  'trace_invalid',
  'trace_not_found',
  'trace_too_large',
  'history_corrupt',
  'unknown_strategy',
  // API and service
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'plan_expired',
  'snapshot_stale',
  'no_snapshot',
  'not_leader',
  'shutting_down',
  'body_too_large',
  'unsupported_media_type',
  'bad_instance',
  'planner_closed',
  'planner_failed',
  'redis_missing',
  'redis_start_failed',
  'redis_timeout',
  'redis_lost',
  'redis_unavailable',
  'state_dir_unusable',
  'state_locked',
  // clocks
  'aborted',
  'clock_busy',
  'clock_limit',
  'clock_stalled',
  // hypervisor (HYPERVISOR_ERROR_CODES)
  'no_host',
  'no_domain',
  'host_unreachable',
  'operation_invalid',
  'migrate_unsafe',
  'cpu_incompatible',
  'operation_failed',
  // collector
  'host_timeout',
  'host_sample_invalid',
  // executor
  'call_timeout',
  'step_skipped',
  'runner_detached',
  'migration_start_failed',
  'migration_refused',
  'block_destination_failed',
  'watchdog_profile',
  'storage_not_shared',
  'storage_shared',
] as const;

export type DroverErrorCode = (typeof DROVER_ERROR_CODES)[number];

const KNOWN_CODES: ReadonlySet<string> = new Set(DROVER_ERROR_CODES);

/** Whether `value` is one of drover's error codes (for codes that crossed a thread or Redis as text). */
export function isDroverErrorCode(value: unknown): value is DroverErrorCode {
  return typeof value === 'string' && KNOWN_CODES.has(value);
}

export class DroverError extends Error {
  readonly code: DroverErrorCode;
  constructor(code: DroverErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DroverError';
    this.code = code;
  }
}

/** One problem found in some input, with the path of the offending field. */
export interface InputIssue {
  path: string;
  message: string;
}

/** Input (config, policy, snapshot, API body) that failed validation; lists every issue at once. */
export class ValidationError extends DroverError {
  readonly issues: readonly InputIssue[];
  readonly source: string;
  constructor(source: string, issues: readonly InputIssue[]) {
    const lines = issues.map(
      (i) => `${source ? `${source}: ` : ''}${i.path ? `${i.path}: ` : ''}${i.message}`,
    );
    super('invalid_input', lines.join('\n'));
    this.name = 'ValidationError';
    this.issues = issues;
    this.source = source;
  }
}

/** A plan step whose world changed before it ran: skipped with a reason rather than failed. */
export class StepSkipped extends DroverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('step_skipped', message, options);
    this.name = 'StepSkipped';
  }
}

export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = err.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
