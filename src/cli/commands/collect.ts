// `drover collect --once`: samples every host once (two readings, for the CPU deltas) and prints the
// Snapshot — as JSON with --json, else as a table. Against a simulated cluster unless a hypervisor is given.
import type { Command } from 'commander';
import { z } from 'zod';
import { Collector } from '../../collector/collector.js';
import { InMemoryCollectorStore } from '../../collector/collector-store.js';
import type { CollectorOptionsInput } from '../../collector/collector-options.js';
import { errorMessage, ValidationError } from '../../domain/errors.js';
import type { Snapshot } from '../../domain/snapshot.js';
import { parseWith, positiveInt } from '../../domain/validation.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import { generateCluster, SimHypervisor, VirtualClock } from '../../hypervisor/sim/index.js';
import { flagErrorLines } from '../flags.js';

/** Exit codes (the same values as EXIT in main.ts). */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_BAD_INPUT = 3;

/** Collects one snapshot from the hypervisor (the service's config path calls this with its own hosts). */
export async function collectSnapshot(
  hypervisor: Hypervisor,
  options: CollectorOptionsInput = {},
): Promise<Snapshot> {
  const collector = new Collector(
    { hypervisor, store: new InMemoryCollectorStore(() => hypervisor.clock.now()) },
    options,
  );
  return collector.collectOnce();
}

const intFlag = () =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), positiveInt());

const CollectArgsSchema = z.strictObject({
  once: z.boolean().optional(),
  json: z.boolean().optional(),
  hosts: intFlag().default(4),
  vmsPerHost: intFlag().default(6),
  seed: intFlag().default(1),
});

/** A snapshot of a generated simulated cluster, on a virtual clock (so it takes no real time). */
export async function collectSimulated(args: {
  hosts: number;
  vmsPerHost: number;
  seed: number;
}): Promise<Snapshot> {
  const clock = new VirtualClock(Date.now());
  const sim = new SimHypervisor(
    generateCluster({ seed: args.seed, hosts: args.hosts, vmsPerHost: args.vmsPerHost }),
    { clock },
  );
  try {
    // Let the simulated cluster run a minute first, as a real one would have before drover looks at it.
    await clock.advance(60_000);
    return await clock.runUntil(collectSnapshot(sim));
  } finally {
    await sim.close();
  }
}

const fmt = (x: number | null | undefined, digits = 1): string =>
  x === null || x === undefined ? '-' : x.toFixed(digits);

/** The table `drover collect --once` prints without --json. */
export function formatSnapshotTable(snapshot: Snapshot): string {
  const rows = snapshot.hosts.map((h) => {
    const vms = snapshot.vms.filter((v) => v.host === h.id);
    const dirty = vms.reduce((sum, v) => sum + (v.dirtyMiBps ?? 0), 0);
    const measured = vms.filter((v) => v.dirtyMiBps !== null).length;
    return [
      h.id,
      h.state + (h.stale ? ' (stale)' : ''),
      fmt(h.cpuPct),
      h.memUsedMiB === null ? '-' : `${Math.round(h.memUsedMiB)}/${h.memMiB}`,
      String(vms.length),
      `${fmt(dirty)} (${measured} measured)`,
    ];
  });
  const header = ['host', 'state', 'cpu %', 'mem MiB', 'vms', 'dirty MiB/s'];
  const widths = header.map((t, i) => Math.max(t.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [
    `snapshot taken ${snapshot.takenAt}: ${snapshot.hosts.length} hosts, ${snapshot.vms.length} VMs`,
    line(header),
    ...rows.map(line),
  ].join('\n');
}

export function registerCollectCommand(program: Command): void {
  program
    .command('collect')
    .description('sample every host and VM once and print the snapshot (a simulated cluster by default)')
    .option('--once', 'one snapshot, then exit (continuous collection runs in the daemon)')
    .option('--json', 'print the Snapshot as JSON only')
    .option('--hosts <n>', 'simulated hosts', '4')
    .option('--vms-per-host <n>', 'simulated VMs per host', '6')
    .option('--seed <n>', 'simulated cluster seed', '1')
    .action(async (raw: Record<string, unknown>) => {
      let args: z.output<typeof CollectArgsSchema>;
      try {
        args = parseWith(CollectArgsSchema, raw, 'drover collect');
      } catch (err) {
        for (const line of flagErrorLines(err, raw, 'drover collect')) console.error(line);
        process.exit(err instanceof ValidationError ? EXIT_BAD_INPUT : EXIT_FAILURE);
      }
      if (!args.once) {
        console.error(
          'drover collect: only --once is supported here; continuous collection runs in the daemon',
        );
        process.exit(EXIT_USAGE);
      }
      try {
        const snapshot = await collectSimulated(args);
        console.log(args.json ? JSON.stringify(snapshot, null, 2) : formatSnapshotTable(snapshot));
      } catch (err) {
        console.error(`drover collect: ${errorMessage(err)}`);
        process.exit(err instanceof ValidationError ? EXIT_BAD_INPUT : EXIT_FAILURE);
      }
    });
}
