// Shared zod building blocks and the formatter that turns zod issues into `path: expected X, got Y` lines.
import { z } from 'zod';
import { ValidationError, type InputIssue } from './errors.js';
import { knownKeysAt, nearestKey } from './key-suggestions.js';

/** Renders a received value for an error message: strings quoted, long values cut. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  let text: string;
  try {
    text = JSON.stringify(value) ?? typeof value;
  } catch {
    text = typeof value;
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function expecting(what: string) {
  return (issue: { input?: unknown }) => `expected ${what}, got ${show(issue.input)}`;
}

export const positiveNumber = () =>
  z.number({ error: expecting('a positive number') }).positive({ error: expecting('a positive number') });
export const nonNegativeNumber = () =>
  z.number({ error: expecting('a number >= 0') }).min(0, { error: expecting('a number >= 0') });
export const positiveInt = () =>
  z
    .number({ error: expecting('a positive integer') })
    .int({ error: expecting('a positive integer') })
    .positive({ error: expecting('a positive integer') });
export const nonNegativeInt = () =>
  z
    .number({ error: expecting('an integer >= 0') })
    .int({ error: expecting('an integer >= 0') })
    .min(0, { error: expecting('an integer >= 0') });
export const percent = () =>
  z
    .number({ error: expecting('a percentage from 0 to 100') })
    .min(0, { error: expecting('a percentage from 0 to 100') })
    .max(100, { error: expecting('a percentage from 0 to 100') });
export const nonEmptyString = () =>
  z.string({ error: expecting('a non-empty string') }).min(1, { error: expecting('a non-empty string') });
export const labels = () =>
  z.record(z.string(), z.string({ error: expecting('a string label value') }), {
    error: expecting('an object of string labels'),
  });
export const isoTime = () =>
  z.iso.datetime({ offset: true, error: expecting('an ISO-8601 date-time such as 2026-11-25T12:00:00Z') });
export const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: expecting(`one of ${values.join(' | ')}`) });

/** `["hosts", 3, "memMiB"]` -> `hosts[3].memMiB`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/** What was validated: lets an unknown key's message name the known key it was probably meant to be. */
export interface IssueContext {
  schema: z.ZodType;
  data: unknown;
}

/** `unknown field`, with "did you mean `x`?" when a known key at the same place is spelt nearly the same. */
export function unknownFieldMessage(key: string, known: readonly string[]): string {
  const near = nearestKey(key, known);
  return near === undefined ? 'unknown field' : `unknown field; did you mean \`${near}\`?`;
}

export function zodIssues(error: z.ZodError, context?: IssueContext): InputIssue[] {
  const issues: InputIssue[] = [];
  for (const issue of error.issues) {
    const path = formatPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      const known = context ? knownKeysAt(context.schema, context.data, issue.path) : [];
      for (const key of issue.keys) {
        issues.push({ path: formatPath([...issue.path, key]), message: unknownFieldMessage(key, known) });
      }
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // Report the branch that got furthest, rather than zod's generic "invalid input".
      const deepest = issue.errors.reduce((a, b) => (b.length > a.length ? b : a), issue.errors[0] ?? []);
      if (deepest.length > 0) {
        issues.push(
          ...zodIssues(
            new z.ZodError(deepest.map((i) => ({ ...i, path: [...issue.path, ...i.path] }))),
            context,
          ),
        );
        continue;
      }
    }
    let message = issue.message;
    if (!message.startsWith('expected') && 'input' in issue)
      message = `${message} (got ${show(issue.input)})`;
    issues.push({ path, message });
  }
  return issues;
}

/** Parses `data` with `schema`, or throws a ValidationError listing every issue with its path. */
export function parseWith<S extends z.ZodType>(schema: S, data: unknown, source = ''): z.output<S> {
  let result: z.ZodSafeParseResult<z.output<S>>;
  try {
    result = schema.safeParse(data, { reportInput: true });
  } catch (err) {
    // A recursive schema fed a hostile, deeply nested document overflows the stack: refuse the input.
    if (err instanceof RangeError)
      throw new ValidationError(source, [{ path: '', message: `cannot validate: ${err.message}` }]);
    throw err;
  }
  if (!result.success) throw new ValidationError(source, zodIssues(result.error, { schema, data }));
  return result.data;
}
