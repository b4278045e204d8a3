// `npm run schemas`: writes the generated JSON Schemas (schemas/*.json) from the zod schemas.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { generatedSchemaFiles } from '../src/service/json-schemas.js';

const root = join(import.meta.dirname, '..');
for (const [path, text] of Object.entries(generatedSchemaFiles())) {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), text);
  process.stdout.write(`wrote ${path}\n`);
}
