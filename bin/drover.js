#!/usr/bin/env node
// Entry point of the `drover` command. An installed package (npm, the container image) has only the compiled
// CLI in dist/ and runs it with plain Node. A source checkout (src/ present) runs the sources through tsx, so
// a dist/ left by `npm pack` never shadows newer sources.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli', 'main.js');
const source = join(root, 'src', 'cli', 'main.ts');
if (!existsSync(source)) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
}
