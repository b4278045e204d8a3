// `drover plans`, `drover approve ID`, `drover cancel ID`: the daemon's stored plans, and the two decisions an
// operator takes on one.
import type { Command } from 'commander';
import { PLAN_STATUSES, type PlanRecord } from '../../service/plan-store.js';
import { CliError, connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson, table } from '../output.js';

export function plansTable(records: readonly PlanRecord[]): string {
  return table(
    ['ID', 'REASON', 'STRATEGY', 'STATUS', '>STEPS', '>SKIPPED', 'HOST', 'CREATED', 'BY'],
    records.map((r) => [
      r.plan.id,
      r.plan.reason,
      // Plans stored before plans named their strategy were made by drain or balance.
      r.plan.strategy ?? (r.plan.reason === 'drain' ? 'drain' : 'balance'),
      r.status,
      String(r.plan.steps.length),
      String(r.plan.skipped.length),
      r.host ?? '-',
      r.plan.createdAt,
      r.createdBy.replace(/^api:/, ''),
    ]),
  );
}

function registerDecision(program: Command, name: 'approve' | 'cancel'): void {
  withConnection(
    program
      .command(name)
      .description(
        name === 'approve'
          ? 'approve a plan waiting for approval: it starts at once'
          : 'cancel a plan: steps not started are withdrawn, running migrations finish',
      )
      .argument('<id>', 'plan id (drover plans)')
      .option('--note <text>', 'why (kept with the plan and in the audit trail)'),
  ).action((id: string, flags: ConnectionFlags & { note?: string }) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const record = await client.post<PlanRecord>(`/v1/plans/${encodeURIComponent(id)}/${name}`, {
        ...(flags.note !== undefined ? { note: flags.note } : {}),
      });
      if (flags.json) printJson(record);
      else
        process.stdout.write(
          `plan ${record.plan.id} (${record.plan.reason}, ${record.plan.steps.length} step(s)) is ${record.status}\n`,
        );
      return EXIT.ok;
    }),
  );
}

export function registerPlansCommands(program: Command): void {
  withConnection(
    program
      .command('plans')
      .description("the daemon's plans, newest first")
      .option('--status <status>', `only plans in this status (${PLAN_STATUSES.join(', ')})`)
      .option('--limit <n>', 'at most this many (1-500)', '50'),
  ).action((flags: ConnectionFlags & { status?: string; limit: string }) =>
    runCli(flags.json, async () => {
      if (flags.status !== undefined && !(PLAN_STATUSES as readonly string[]).includes(flags.status))
        throw new CliError(
          EXIT.usage,
          'invalid_argument',
          `drover plans: --status: expected one of ${PLAN_STATUSES.join(', ')}, got ${JSON.stringify(flags.status)}`,
          '--status',
        );
      const query = new URLSearchParams({ limit: flags.limit });
      if (flags.status !== undefined) query.set('status', flags.status);
      const client = await connect(flags);
      const { plans } = await client.get<{ plans: PlanRecord[] }>(`/v1/plans?${query.toString()}`);
      if (flags.json) printJson({ plans });
      else if (plans.length === 0) process.stdout.write('no plans\n');
      else process.stdout.write(`${plansTable(plans)}\n`);
      return EXIT.ok;
    }),
  );
  registerDecision(program, 'approve');
  registerDecision(program, 'cancel');
}
