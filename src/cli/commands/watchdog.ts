// `drover watchdog schedule`: prints what a watchdog profile will do to a migration over time.
import type { Command } from 'commander';
import { z } from 'zod';
import { oneOf, parseWith, positiveNumber } from '../../domain/validation.js';
import {
  describeSchedule,
  WATCHDOG_PROFILES,
  watchdogSchedule,
  type WatchdogSchedule,
} from '../../executor/watchdog-schedule.js';
import { flagErrorLines } from '../flags.js';

/** Exit code for bad input (the same value as EXIT.badInput in main.ts). */
const EXIT_BAD_INPUT = 3;

const numberFlag = (schema: z.ZodNumber) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), schema);

const ScheduleArgsSchema = z.strictObject({
  profile: oneOf(WATCHDOG_PROFILES),
  memMib: numberFlag(positiveNumber()),
  diskGib: numberFlag(z.number().min(0, { error: 'expected a number >= 0' })).optional(),
  kind: oneOf(['live', 'block'] as const).optional(),
  budgetMs: numberFlag(positiveNumber()).optional(),
  predictedS: numberFlag(positiveNumber()).optional(),
  predictedDowntimeMs: numberFlag(z.number().min(0)).optional(),
  allowAutoConverge: z.boolean().optional(),
  allowPostCopy: z.boolean().optional(),
  json: z.boolean().optional(),
});

export interface ScheduleReport {
  profile: string;
  input: { memMiB: number; diskGiB: number; kind: 'live' | 'block'; downtimeBudgetMs: number | null };
  schedule: WatchdogSchedule;
  timeline: ReturnType<typeof describeSchedule>;
}

/** Builds the report `drover watchdog schedule` prints (exported for tests and the HTTP API). */
export function scheduleReport(raw: Record<string, unknown>): ScheduleReport {
  const args = parseWith(ScheduleArgsSchema, raw, 'drover watchdog schedule');
  const diskGiB = args.diskGib ?? 0;
  const kind = args.kind ?? (diskGiB > 0 ? 'block' : 'live');
  const schedule = watchdogSchedule({
    profile: args.profile,
    memMiB: args.memMib,
    diskGiB,
    kind,
    downtimeBudgetMs: args.budgetMs ?? null,
    allowAutoConverge: args.allowAutoConverge ?? false,
    allowPostCopy: args.allowPostCopy ?? false,
    // Without a planner prediction at hand, assume the link moves the memory at 1 GiB/s.
    prediction: {
      converges: true,
      durationS: args.predictedS ?? Math.max(1, args.memMib / 1024),
      downtimeMs: args.predictedDowntimeMs ?? 100,
      transferMiB: args.memMib,
    },
  });
  return {
    profile: args.profile,
    input: { memMiB: args.memMib, diskGiB, kind, downtimeBudgetMs: args.budgetMs ?? null },
    schedule,
    timeline: describeSchedule(schedule),
  };
}

function formatSeconds(s: number | null): string {
  if (s === null) return '-';
  if (s >= 3600) return `${(s / 3600).toFixed(2)} h`;
  if (s >= 60) return `${(s / 60).toFixed(1)} min`;
  return `${s} s`;
}

/** The readable table. */
export function formatScheduleTable(report: ScheduleReport): string {
  const rows = report.timeline.map((e) => [
    formatSeconds(e.atS),
    e.when,
    e.action,
    e.maxDowntimeMs === undefined ? '' : `${e.maxDowntimeMs} ms`,
    e.detail,
  ]);
  const header = ['time', 'when', 'action', 'max downtime', 'detail'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const s = report.schedule;
  const intro = [
    `profile ${report.profile}: ${report.input.memMiB} MiB RAM` +
      (report.input.diskGiB > 0 ? `, ${report.input.diskGiB} GiB disk` : '') +
      ` (${report.input.kind}), data ${Number(s.dataGiB.toFixed(3))} GiB` +
      (s.downtimeBudgetMs === null ? '' : `, downtime budget ${s.downtimeBudgetMs} ms`),
    `deadline ${formatSeconds(s.deadlineMs / 1000)}; stall = no fall in remaining data for ${
      s.stallWindowMs / 1000
    } s${s.stallMinIterations > 0 ? ` and ${s.stallMinIterations} rounds` : ''}`,
    '',
  ];
  return [...intro, line(header), ...rows.map(line)].join('\n');
}

export function registerWatchdogCommand(program: Command): void {
  const watchdog = program.command('watchdog').description('inspect the migration watchdog');
  watchdog
    .command('schedule')
    .description('print what a watchdog profile will do to a migration, with the time of each action')
    .requiredOption('--profile <profile>', `watchdog profile: ${WATCHDOG_PROFILES.join(' | ')}`)
    .requiredOption('--mem-mib <n>', 'guest memory (MiB)')
    .option('--disk-gib <n>', 'disk data copied by a block migration (GiB); implies --kind block')
    .option('--kind <kind>', 'live | block')
    .option('--budget-ms <n>', "the VM's downtime budget (ms)")
    .option('--predicted-s <n>', 'predicted duration for the predictive profile (s)')
    .option('--predicted-downtime-ms <n>', 'predicted downtime for the predictive profile (ms)')
    .option('--allow-auto-converge', 'the policy allows auto-converge')
    .option('--allow-post-copy', 'the policy allows post-copy')
    .option('--json', 'print JSON only')
    .action((opts: Record<string, unknown>) => {
      let report: ScheduleReport;
      try {
        report = scheduleReport(opts);
      } catch (err) {
        for (const line of flagErrorLines(err, opts, 'drover watchdog schedule'))
          process.stderr.write(`${line}\n`);
        process.exitCode = EXIT_BAD_INPUT;
        return;
      }
      if (opts.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(`${formatScheduleTable(report)}\n`);
    });
}
