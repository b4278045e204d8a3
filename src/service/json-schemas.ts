// The JSON Schemas drover ships for editors and other tools (schemas/*.json), derived from the zod schemas that
// validate the same documents, so they cannot say something else. `npm run schemas` writes them; a test checks
// the shipped files equal what this produces.
import { z } from 'zod';
import { PolicySchema } from '../domain/policy.js';
import { ConfigSchema } from './config.js';

/** JSON Schema (draft 2020-12) of what a document may contain: the zod schema's input side. */
export function inputJsonSchema(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io: 'input',
    // Refinements (cron syntax, "exactly one of", duplicate ids) have no JSON Schema form: drover still checks
    // them at load time; the schema describes the shape.
    unrepresentable: 'any',
  });
}

function documentSchema(schema: z.ZodType, title: string, source: string): Record<string, unknown> {
  const { $schema, ...rest } = inputJsonSchema(schema);
  return {
    $schema,
    title,
    $comment: `Generated from ${source} by \`npm run schemas\`; do not edit.`,
    ...rest,
  };
}

/** `drover serve --config` files (drover.example.yaml). */
export function configJsonSchema(): Record<string, unknown> {
  return documentSchema(ConfigSchema, 'drover configuration file', 'src/service/config.ts (ConfigSchema)');
}

/** Policy files (policies/*.yaml). */
export function policyJsonSchema(): Record<string, unknown> {
  return documentSchema(PolicySchema, 'drover policy file', 'src/domain/policy.ts (PolicySchema)');
}

/** Every generated file, by its path in the repository and the package. */
export function generatedSchemaFiles(): Record<string, string> {
  const text = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
  return {
    'schemas/drover.schema.json': text(configJsonSchema()),
    'schemas/policy.schema.json': text(policyJsonSchema()),
  };
}
