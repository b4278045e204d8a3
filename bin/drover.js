#!/usr/bin/env node
// Entry point of the `drover` command. An installed package (npm, the container image) has only the compiled
// CLI in dist/ and runs it with plain Node. A source checkout (src/ present) runs the sources through tsx, so
// a dist/ left by `npm pack` never shadows newer sources.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

// engines in package.json is advice npm may ignore; an older Node (Debian 12's own nodejs is 18) would fail
// later in an unrelated place, so say what is wrong before anything else runs.
const NODE_MIN_MAJOR = 20;
const nodeMajor = Number(process.versions.node.split('.')[0]);
if (!(nodeMajor >= NODE_MIN_MAJOR)) {
  process.stderr.write(
    `drover: needs Node.js ${NODE_MIN_MAJOR} or later, but ${process.execPath} is ${process.version}` +
      ' (set NODE in /etc/default/drover for the systemd unit)\n',
  );
  process.exit(1);
}

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
