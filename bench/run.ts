// `npm run bench -- <name>...`: runs bench/<name>/index.ts for each name given (all of them when none is).
import { readdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(here, d.name, 'index.ts')))
  .map((d) => d.name)
  .sort();
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(', ')} (available: ${available.join(', ')})`);
  process.exit(2);
}
for (const name of wanted.length > 0 ? wanted : available) {
  console.log(`\n## bench ${name}\n`);
  const mod = (await import(pathToFileURL(join(here, name, 'index.ts')).href)) as {
    main?: () => Promise<void>;
  };
  if (typeof mod.main !== 'function') throw new Error(`bench/${name}/index.ts exports no main()`);
  await mod.main();
}
