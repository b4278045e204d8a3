// drover's error classes. Errors that cross Redis are matched on `code`, never with instanceof.

export class DroverError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
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
