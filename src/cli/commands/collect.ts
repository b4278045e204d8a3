// `drover collect`: samples every host and VM and writes the Snapshot `drover plan --snapshot` reads — no
// daemon and no Redis (the collector keeps its state in memory). The hosts are those of a config's hypervisor
// (`--config drover.yaml`: the real libvirt hosts, or its simulator), else a generated simulated cluster.
// With --once: one snapshot (two readings, for the CPU deltas), then exit. Without: a snapshot, then one every
// `collector.intervalS` until SIGINT/SIGTERM, each written over the last (--out is replaced atomically).
// Prints each snapshot as a table, or as JSON with --json (JSON only, one document per snapshot).
import { rename, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import { Collector } from '../../collector/collector.js';
import { InMemoryCollectorStore } from '../../collector/collector-store.js';
import {
  parseCollectorOptions,
  primeGapMs,
  type CollectorOptions,
  type CollectorOptionsInput,
} from '../../collector/collector-options.js';
import { errorMessage, ValidationError } from '../../domain/errors.js';
import type { Snapshot } from '../../domain/snapshot.js';
import { parseWith, positiveInt } from '../../domain/validation.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import { generateCluster, SimHypervisor, VirtualClock } from '../../hypervisor/sim/index.js';
import { SystemClock } from '../../clock/clocks.js';
import { loadConfig } from '../../service/config.js';
import { createHypervisor } from '../../service/main.js';
import { EXIT } from '../exit-codes.js';
import { flagErrorLines } from '../flags.js';

/** A collector that works alone: its own in-memory store, on the hypervisor's clock. */
function soloCollector(hypervisor: Hypervisor, options: CollectorOptionsInput | CollectorOptions): Collector {
  const store = new InMemoryCollectorStore(() => hypervisor.clock.now());
  return new Collector(
    {
      hypervisor,
      store,
      logger: {
        warn: (obj, msg) => {
          const o = obj as { host?: unknown; err?: unknown };
          const host = typeof o.host === 'string' ? ` ${o.host}` : '';
          const err = typeof o.err === 'string' ? `: ${o.err}` : '';
          process.stderr.write(`drover collect:${host} ${msg}${err}\n`);
        },
      },
    },
    options,
  );
}

/** Collects one snapshot from the hypervisor (two readings, for the CPU deltas). */
export async function collectSnapshot(
  hypervisor: Hypervisor,
  options: CollectorOptionsInput = {},
): Promise<Snapshot> {
  return soloCollector(hypervisor, options).collectOnce();
}

const intFlag = () =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), positiveInt());

const CollectArgsSchema = z.strictObject({
  config: z.string().min(1).optional(),
  out: z.string().min(1).optional(),
  once: z.boolean().optional(),
  json: z.boolean().optional(),
  hosts: intFlag().default(4),
  vmsPerHost: intFlag().default(6),
  seed: intFlag().default(1),
});
type CollectArgs = z.output<typeof CollectArgsSchema>;

/** A cluster running a minute before drover looks at it, as a real one would have been. */
const SIM_WARM_UP_MS = 60_000;

/**
 * A snapshot of a generated simulated cluster, on a virtual clock (so it takes no real time). The clock is
 * set back by the time the collection spans, so the snapshot is stamped with the time it is printed, not later.
 */
export async function collectSimulated(args: {
  hosts: number;
  vmsPerHost: number;
  seed: number;
}): Promise<Snapshot> {
  const options = parseCollectorOptions({});
  const spanMs = SIM_WARM_UP_MS + primeGapMs(options);
  const clock = new VirtualClock(Date.now() - spanMs);
  const sim = new SimHypervisor(
    generateCluster({ seed: args.seed, hosts: args.hosts, vmsPerHost: args.vmsPerHost }),
    { clock },
  );
  try {
    await clock.advance(SIM_WARM_UP_MS);
    return await clock.runUntil(collectSnapshot(sim, options));
  } finally {
    await sim.close();
  }
}

/** Writes the snapshot to path through a temporary file and a rename, so a reader never sees half of one. */
export async function writeSnapshotFile(path: string, snapshot: Snapshot): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(snapshot, null, 2)}\n`);
  await rename(tmp, path);
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

/** Writes (with --out) and prints one snapshot. */
async function emit(args: CollectArgs, snapshot: Snapshot): Promise<void> {
  if (args.out !== undefined) await writeSnapshotFile(args.out, snapshot);
  if (args.json) process.stdout.write(`${JSON.stringify(snapshot, null, 2)}\n`);
  else
    process.stdout.write(
      `${formatSnapshotTable(snapshot)}\n${args.out !== undefined ? `written to ${args.out}\n` : ''}`,
    );
}

/** The hypervisor and collector options: the config's, or a generated simulated cluster on real time. */
async function openHypervisor(
  args: CollectArgs,
): Promise<{ hypervisor: Hypervisor; options: CollectorOptions }> {
  if (args.config === undefined) {
    const spec = generateCluster({ seed: args.seed, hosts: args.hosts, vmsPerHost: args.vmsPerHost });
    return {
      hypervisor: new SimHypervisor(spec, { clock: new SystemClock() }),
      options: parseCollectorOptions({}),
    };
  }
  const loaded = await loadConfig(args.config);
  const { hypervisor } = await createHypervisor(loaded.config.hypervisor, loaded.dir);
  return { hypervisor, options: loaded.config.collector };
}

/**
 * One snapshot, then (unless once) one every interval until the signal aborts. A failed cycle after the first
 * is reported and the next one tried; the file keeps the last good snapshot.
 */
async function collectLoop(args: CollectArgs, signal: AbortSignal): Promise<void> {
  const { hypervisor, options } = await openHypervisor(args);
  try {
    const collector = soloCollector(hypervisor, options);
    await emit(args, await collector.collectOnce());
    if (args.once) return;
    const clock = hypervisor.clock;
    const intervalMs = options.intervalS * 1000;
    while (!signal.aborted) {
      const next = (Math.floor(clock.now() / intervalMs) + 1) * intervalMs;
      try {
        await clock.sleep(next - clock.now(), signal);
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      }
      try {
        await emit(args, (await collector.runCycle()).snapshot);
      } catch (err) {
        process.stderr.write(`drover collect: cycle failed: ${errorMessage(err)}\n`);
      }
    }
  } finally {
    await hypervisor.close();
  }
}

export function registerCollectCommand(program: Command): void {
  program
    .command('collect')
    .description(
      "sample every host and VM and write the snapshot `drover plan --snapshot` reads (a config's hosts, or a simulated cluster), without the daemon",
    )
    .option('-c, --config <file>', "sample the hosts of this config's hypervisor (e.g. your libvirt hosts)")
    .option('-o, --out <file>', 'write each snapshot to this file (replaced atomically)')
    .option('--once', 'one snapshot, then exit (default: one every collector.intervalS until SIGINT/SIGTERM)')
    .option('--json', 'print each snapshot as JSON only')
    .option('--hosts <n>', 'without --config: simulated hosts', '4')
    .option('--vms-per-host <n>', 'without --config: simulated VMs per host', '6')
    .option('--seed <n>', 'without --config: simulated cluster seed', '1')
    .action(async (raw: Record<string, unknown>) => {
      let args: CollectArgs;
      try {
        args = parseWith(CollectArgsSchema, raw, 'drover collect');
      } catch (err) {
        for (const line of flagErrorLines(err, raw, 'drover collect')) console.error(line);
        process.exit(err instanceof ValidationError ? EXIT.badInput : EXIT.failure);
      }
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        if (args.once && args.config === undefined) await emit(args, await collectSimulated(args));
        else await collectLoop(args, abort.signal);
        process.exit(EXIT.ok);
      } catch (err) {
        if (err instanceof ValidationError) {
          console.error(`drover collect: ${err.source ? `${err.source}: ` : ''}not valid:`);
          for (const issue of err.issues)
            console.error(`  ${issue.path ? `${issue.path}: ` : ''}${issue.message}`);
          process.exit(EXIT.badInput);
        }
        console.error(`drover collect: ${errorMessage(err)}`);
        process.exit(EXIT.failure);
      }
    });
}
