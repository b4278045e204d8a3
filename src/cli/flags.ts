// Command-line flag errors in the operator's words: the flag as typed (`--mem-mib`, not the parsed key
// `memMib`) and the text given (`got "abc"`, not the number it failed to become).
import { ValidationError } from '../domain/errors.js';

/** `vmsPerHost` -> `--vms-per-host`. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * The lines of a ValidationError from parsing commander's options, each naming the flag and, when one was
 * typed, what was typed. Other errors are returned as their message.
 */
export function flagErrorLines(err: unknown, raw: Record<string, unknown>, command: string): string[] {
  if (!(err instanceof ValidationError)) return [`${command}: ${String((err as Error)?.message ?? err)}`];
  return err.issues.map((issue) => {
    const key = issue.path.split('.')[0] ?? '';
    if (key === '') return `${command}: ${issue.message}`;
    const typed = raw[key];
    const message =
      typeof typed === 'string'
        ? `${issue.message.replace(/,? ?\(?got .*$/, '')}, got ${JSON.stringify(typed)}`
        : issue.message;
    return `${command}: ${flagName(key)}: ${message}`;
  });
}
