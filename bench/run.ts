// `npm run bench -- <name>...`: runs the named benches (all of them when none is given). Each writes
// bench/results/<name>.json; `npm run bench:report` turns the results into BENCHMARKS.md.
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Every bench: its name (and results file) and the entry point, named for what it measures. */
const BENCHES: Record<string, string> = {
  collector: 'collector/collection-cpu.ts',
  drain: 'drain/drain-vs-bound.ts',
  executor: 'executor/executor-reaction.ts',
  fleet: 'fleet/fleet-collection.ts',
  'libvirt-rpc': 'libvirt-rpc/rpc-vs-virsh.ts',
  load: 'load/soak.ts',
  outcomes: 'outcomes/stuck-migrations.ts',
  planner: 'planner/plan-time-and-quality.ts',
  predictor: 'predictor/predictor-accuracy.ts',
  rules: 'rules/rule-evaluation.ts',
};

const here = dirname(fileURLToPath(import.meta.url));
const available = Object.keys(BENCHES).sort();
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(', ')} (available: ${available.join(', ')})`);
  process.exit(2);
}
for (const name of wanted.length > 0 ? wanted : available) {
  const entry = BENCHES[name] as string;
  console.log(`\n## bench ${name} (bench/${entry})\n`);
  const mod = (await import(pathToFileURL(join(here, entry)).href)) as { main?: () => Promise<void> };
  if (typeof mod.main !== 'function') throw new Error(`bench/${entry} exports no main()`);
  await mod.main();
}
