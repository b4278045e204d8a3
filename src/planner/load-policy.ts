// Reads a policy file (YAML or JSON). The one planner module that touches the filesystem; everything else in
// src/planner is pure.
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { DroverError, ValidationError } from '../domain/errors.js';
import { parsePolicy, type Policy } from '../domain/policy.js';

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
  return parsePolicy(doc.toJS() as unknown, source);
}

/** Reads and validates a policy file; errors name the file and each offending field. */
export async function loadPolicy(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new DroverError('policy_unreadable', `${path}: cannot read policy file`, { cause: err });
  }
  return parsePolicyText(text, path);
}
