// Reads a policy file (YAML or JSON). The one planner module that touches the filesystem; everything else in
// src/planner is pure.
import { readFile, stat } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { DroverError, ValidationError, errorMessage } from '../domain/errors.js';
import { parsePolicy, type Policy } from '../domain/policy.js';
import { checkPolicyStrategies } from './policy-strategies.js';

/** Largest policy file drover reads; a bigger one is refused before it is read. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;

/** Parses policy text; YAML syntax errors are reported with their line and column. */
export function parsePolicyText(text: string, source: string): Policy {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ValidationError(
      source,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const where = pos ? `line ${pos.line}, column ${pos.col}` : '';
        return {
          path: where,
          message: `YAML syntax error: ${(e.message.split('\n')[0] ?? e.code).replace(/ at line \d+, column \d+:?$/, '')}`,
        };
      }),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    // The yaml library refuses alias bombs (and similar resource exhaustion) here, with a plain error.
    throw new ValidationError(source, [{ path: '', message: `cannot load the YAML: ${errorMessage(err)}` }]);
  }
  const policy = parsePolicy(data, source);
  checkPolicyStrategies(policy, source);
  return policy;
}

/** Reads and validates a policy file; errors name the file and each offending field. */
export async function loadPolicy(path: string): Promise<Policy> {
  let text: string;
  try {
    const st = await stat(path);
    const size = st.size;
    // A device or FIFO reports no size and could be read without end.
    if (!st.isFile())
      throw new DroverError('policy_unreadable', `${path}: cannot read policy file`, {
        cause: new Error('not a regular file'),
      });
    if (size > MAX_POLICY_FILE_BYTES)
      throw new DroverError(
        'policy_too_large',
        `${path}: policy file of ${size} bytes is more than the limit of ${MAX_POLICY_FILE_BYTES}`,
      );
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof DroverError) throw err;
    throw new DroverError('policy_unreadable', `${path}: cannot read policy file`, { cause: err });
  }
  return parsePolicyText(text, path);
}
