// `drover drain HOST`: shows the drain plan and its ETA, asks for confirmation (unless --yes), puts the host
// in maintenance and follows the migrations with a progress bar each (remaining MiB, ETA) until the plan ends.
import { createInterface } from 'node:readline/promises';
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import type { Plan } from '../../domain/plan.js';
import type { Snapshot } from '../../domain/snapshot.js';
import type { CreatedPlan, MigrationView } from '../../service/operations.js';
import type { PlanRecord } from '../../service/plan-store.js';
import {
  CliError,
  connect,
  runCli,
  withConnection,
  type ApiClient,
  type ConnectionFlags,
} from '../api-client.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { duration, num, paint, printJson, stepsTable, table } from '../output.js';

interface DrainFlags extends ConnectionFlags {
  yes?: boolean;
  wait: boolean;
  pollMs: string;
  partial?: boolean;
}

const FINAL = new Set(['completed', 'failed', 'cancelled', 'expired']);
const ENDED = new Set(['completed', 'aborted', 'failed', 'skipped', 'stuck', 'removed']);

export function planTable(plan: Plan, names: ReadonlyMap<string, string> = new Map()): string {
  const name = (vm: string) => names.get(vm) ?? vm;
  const steps = stepsTable(plan, names);
  const lines = [plan.steps.length > 0 ? steps : 'no VM to move'];
  for (const skip of plan.skipped) lines.push(`${paint('skipped', 'yellow')} ${name(skip.vm)}: ${skip.why}`);
  if (plan.note) lines.push(plan.note);
  // A drain's skipped VMs stay on the host (with --partial the others still move); say so in those words.
  const left = plan.reason === 'drain' ? 'stay' : 'skipped';
  lines.push(
    `${plan.steps.length} move(s), ${plan.skipped.length} ${left}, ETA ${duration(plan.etaS ?? null)}` +
      ` · spread cpu ${num(plan.before.cpuSpreadPct)} -> ${num(plan.after.cpuSpreadPct)} pts`,
  );
  return lines.join('\n');
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export interface FollowOptions {
  pollMs: number;
  /** No bars and no progress lines (--json). */
  quiet: boolean;
  /** Called with the plan's migrations after every poll (the demo injects faults from here). */
  onPoll?: ((migrations: MigrationView[]) => void) | undefined;
}

/** Follows a running plan until it ends; draws bars on a terminal, prints state changes otherwise. */
export async function followPlan(
  client: ApiClient,
  plan: Plan,
  options: FollowOptions,
): Promise<{ record: PlanRecord; migrations: MigrationView[] }> {
  const { pollMs, quiet } = options;
  const bars = new Map<string, SingleBar>();
  const lastState = new Map<string, string>();
  const tty = !quiet && Boolean(process.stderr.isTTY);
  const multi = tty
    ? new MultiBar(
        {
          format: '{vm} {bar} {percentage}% | {remaining} MiB left | ETA {eta_text} | {state}',
          hideCursor: true,
          clearOnComplete: false,
          stopOnComplete: false,
          barsize: 30,
          stream: process.stderr,
        },
        Presets.shades_classic,
      )
    : null;
  const width = Math.max(...plan.steps.map((s) => s.vm.length), 4);
  try {
    for (;;) {
      const [record, { migrations }] = await Promise.all([
        client.get<PlanRecord>(`/v1/plans/${encodeURIComponent(plan.id)}`),
        client.get<{ migrations: MigrationView[] }>('/v1/migrations'),
      ]);
      const mine = migrations.filter((m) => m.planId === plan.id);
      options.onPoll?.(mine);
      for (const step of plan.steps) {
        const m = mine.find((x) => x.vm === step.vm);
        const state = m?.state ?? 'waiting';
        const total = Math.max(1, Math.round(m?.totalMiB ?? step.predicted.transferMiB));
        const remaining = ENDED.has(state) ? 0 : (m?.remainingMiB ?? total);
        const payload = {
          vm: (m?.vmName ?? step.vm).padEnd(width),
          remaining: String(Math.round(remaining)),
          // Before the daemon lists the job: the plan's predicted duration.
          eta_text: ENDED.has(state) ? '-' : duration(m ? m.etaS : step.predicted.durationS),
          state,
        };
        if (multi) {
          let bar = bars.get(step.vm);
          if (!bar) {
            bar = multi.create(total, 0, payload);
            bars.set(step.vm, bar);
          }
          bar.setTotal(Math.max(total, 1));
          bar.update(state === 'completed' ? total : Math.max(0, total - remaining), payload);
        } else if (!quiet && lastState.get(step.vm) !== state) {
          process.stderr.write(
            `${payload.vm.trimEnd()}: ${state}` +
              (ENDED.has(state) ? '' : ` (${payload.remaining} MiB left, ETA ${payload.eta_text})`) +
              '\n',
          );
        }
        lastState.set(step.vm, state);
      }
      if (FINAL.has(record.status)) return { record, migrations: mine };
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    multi?.stop();
  }
}

function outcomeExit(record: PlanRecord, migrations: readonly MigrationView[]): ExitCode {
  if (record.status !== 'completed' && record.status !== 'failed') return EXIT.notConverged;
  if (migrations.some((m) => m.state === 'failed' || m.state === 'stuck')) return EXIT.failure;
  if (record.plan.skipped.length > 0 || migrations.some((m) => m.state !== 'completed'))
    return EXIT.notConverged;
  return record.status === 'completed' ? EXIT.ok : EXIT.failure;
}

export function registerDrainCommand(program: Command): void {
  withConnection(
    program
      .command('drain')
      .description('put a host in maintenance and move its VMs away, with progress until done')
      .argument('<host>')
      .option('-y, --yes', 'do not ask for confirmation')
      .option('--no-wait', 'start the drain and return without following it')
      .option('--partial', 'move what can move even if some VMs cannot leave (they stay, each with why)')
      .option('--poll-ms <ms>', 'progress refresh interval', '500'),
  ).action((host: string, flags: DrainFlags) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const pollMs = Number(flags.pollMs);
      if (!Number.isFinite(pollMs) || pollMs < 50)
        throw new CliError(
          EXIT.usage,
          'invalid_input',
          `--poll-ms: expected a number >= 50, got ${JSON.stringify(flags.pollMs)}`,
        );
      const path = `/v1/hosts/${encodeURIComponent(host)}/drain`;
      const partial = Boolean(flags.partial);
      const preview = await client.post<CreatedPlan>(path, { dryRun: true, partial });
      // VM names as `plan` and `status` show them, from the daemon's latest snapshot (ids if it has none).
      const names = flags.json
        ? new Map<string, string>()
        : await client
            .get<Snapshot>('/v1/snapshots/latest')
            .then((snap) => new Map(snap.vms.map((v) => [v.id, v.name])))
            .catch(() => new Map<string, string>());
      if (!flags.json) process.stdout.write(`Drain plan for ${host}:\n${planTable(preview.plan, names)}\n`);
      if (!flags.yes) {
        if (!process.stdin.isTTY)
          throw new CliError(
            EXIT.usage,
            'confirmation_needed',
            'not a terminal: add --yes to drain without asking',
          );
        if (
          !(await confirm(`Put ${host} in maintenance and move ${preview.plan.steps.length} VM(s)? [y/N] `))
        ) {
          process.stderr.write('nothing changed\n');
          return EXIT.ok;
        }
      }
      const started = await client.post<CreatedPlan>(path, { dryRun: false, partial });
      const record = started.record;
      if (!record) throw new CliError(EXIT.failure, 'bad_response', 'the daemon stored no plan');
      if (record.status === 'pending') {
        if (flags.json) printJson({ plan: record, migrations: [] });
        else
          process.stdout.write(
            `${host} is in maintenance; plan ${record.plan.id} waits for approval (automation ${record.automation}):` +
              ` POST /v1/plans/${record.plan.id}/approve\n`,
          );
        return EXIT.notConverged;
      }
      if (!flags.wait) {
        const { steps, skipped } = record.plan;
        if (flags.json) printJson({ plan: record, migrations: [] });
        else if (steps.length === 0 && skipped.length > 0)
          process.stdout.write(
            `nothing moved: ${skipped.length} VM(s) stay on ${host}, which is in maintenance` +
              ` (plan ${record.plan.id}, ${record.status}; \`drover activate ${host}\` ends maintenance)\n`,
          );
        else
          process.stdout.write(
            `drain of ${host} started: plan ${record.plan.id} (${record.status})` +
              (skipped.length > 0 ? `; ${skipped.length} VM(s) will stay on ${host}` : '') +
              '\n',
          );
        // Known now: VMs the plan leaves behind mean the drain cannot finish with the host empty.
        return skipped.length > 0 ? EXIT.notConverged : EXIT.ok;
      }
      const result = await followPlan(client, started.plan, { pollMs, quiet: Boolean(flags.json) });
      if (flags.json) {
        printJson({ plan: result.record, migrations: result.migrations });
      } else {
        const rows = result.migrations.map((m) => [m.vmName ?? m.vm, m.to, m.state, duration(m.elapsedS)]);
        process.stdout.write(`\n${table(['VM', 'TO', 'RESULT', '>TOOK'], rows)}\n`);
        const colour = result.record.status === 'completed' ? 'green' : 'red';
        const last = result.record.events.at(-1);
        process.stdout.write(
          `plan ${result.record.plan.id}: ${paint(result.record.status, colour)}${last?.note ? ` (${last.note})` : ''}\n`,
        );
        // What stayed: the VMs the plan left (cannot leave) and those whose migration did not complete.
        const moved = result.migrations.filter((m) => m.state === 'completed').length;
        const stayed = [
          ...result.record.plan.skipped.map((s) => names.get(s.vm) ?? s.vm),
          ...result.migrations.filter((m) => m.state !== 'completed').map((m) => m.vmName ?? m.vm),
        ];
        process.stdout.write(`${moved} VM(s) moved off ${host}, ${stayed.length} stay\n`);
        if (stayed.length > 0)
          process.stdout.write(
            paint(`${stayed.length} VM(s) stay on ${host}: ${stayed.join(', ')}\n`, 'yellow'),
          );
      }
      return outcomeExit(result.record, result.migrations);
    }),
  );
}
