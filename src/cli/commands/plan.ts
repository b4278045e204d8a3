// `drover plan --snapshot FILE [--policy FILE] [--drain HOST]... [--json]`: plans offline from a snapshot
// file, without Redis or the daemon. Prints the Plan (exactly the Plan format with --json, a table with each
// move's reason without). Bad input exits 3 naming the field; a plan that skips any VM (rebalance or drain) exits 5.
import type { Command } from 'commander';
import type { Plan } from '../../domain/plan.js';
import { DEFAULT_POLICY, type Policy } from '../../domain/policy.js';
import { parseSnapshot, type Snapshot } from '../../domain/snapshot.js';
import { errorMessage } from '../../domain/errors.js';
import { loadPolicy } from '../../planner/load-policy.js';
import { FILE_LIMITS, FileTooLarge, readLimited } from '../../service/read-limited.js';
import { makePlan, planWith } from '../../planner/make-plan.js';
import { STRATEGIES } from '../../planner/strategies/registry.js';
import { CliError, runCli, type ConnectionFlags } from '../api-client.js';
import { livePlan } from '../live-plan.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { duration, num, printJson, stepsTable, table } from '../output.js';

interface PlanFlags extends ConnectionFlags {
  snapshot?: string;
  live?: boolean;
  policy?: string;
  drain: string[];
  strategy?: string;
  json?: boolean;
}

async function readSnapshot(path: string): Promise<Snapshot> {
  let text: string;
  try {
    text = await readLimited(path, FILE_LIMITS.snapshot, '--snapshot', 'snapshot file');
  } catch (err) {
    if (err instanceof FileTooLarge) throw new CliError(EXIT.badInput, err.code, err.message, 'snapshot');
    throw new CliError(
      EXIT.badInput,
      'snapshot_unreadable',
      `${path}: cannot read snapshot: ${errorMessage(err)}`,
      'snapshot',
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new CliError(
      EXIT.badInput,
      'snapshot_invalid_json',
      `${path}: not valid JSON: ${errorMessage(err)}`,
      'snapshot',
    );
  }
  return parseSnapshot(data, path);
}

async function readPolicy(path: string | undefined): Promise<Policy> {
  if (path === undefined) return DEFAULT_POLICY;
  try {
    return await loadPolicy(path);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'policy_unreadable')
      throw new CliError(
        EXIT.badInput,
        'policy_unreadable',
        `${path}: cannot read policy: ${errorMessage((err as Error).cause)}`,
        'policy',
      );
    throw err;
  }
}

/** The plan for people: moves with their reasons, what was skipped and why, spreads, ETA. */
export function formatPlan(plan: Plan, snapshot: Snapshot): string {
  const names = new Map(snapshot.vms.map((v) => [v.id, v.name]));
  const out: string[] = [];
  const by = plan.strategy !== undefined && plan.strategy !== plan.reason ? `, ${plan.strategy}` : '';
  out.push(`plan ${plan.id} (${plan.reason}${by}) from snapshot taken ${snapshot.takenAt}`);
  if (plan.steps.length === 0) out.push('no moves');
  else {
    out.push(stepsTable(plan, names));
  }
  if (plan.skipped.length > 0) {
    out.push('', `skipped (${plan.skipped.length}):`);
    out.push(
      table(
        ['VM', 'WHY'],
        plan.skipped.map((s) => [names.get(s.vm) ?? s.vm, s.why]),
      ),
    );
  }
  out.push(
    '',
    `spread cpu ${num(plan.before.cpuSpreadPct)} -> ${num(plan.after.cpuSpreadPct)} points, ` +
      `mem ${num(plan.before.memSpreadPct)} -> ${num(plan.after.memSpreadPct)} points` +
      (plan.etaS !== undefined ? `; ETA ${duration(plan.etaS)}` : ''),
  );
  if (plan.note !== undefined) out.push(`note: ${plan.note}`);
  if (plan.hold?.overriddenBy !== undefined)
    out.push(
      `hold: overridden by ${plan.hold.overriddenBy} (the last ${plan.strategy ?? plan.reason} plan was executed ` +
        `at ${plan.hold.lastExecutedAt}; hold time ${plan.hold.holdTimeS} s, until ${plan.hold.until})`,
    );
  return `${out.join('\n')}\n`;
}

export function registerPlanCommand(program: Command): void {
  program
    .command('plan')
    .description('plan a rebalance (or a drain with --drain) offline from a snapshot file')
    .option('--snapshot <file>', 'snapshot JSON file (the collector writes these)')
    .option('--live', 'ask the running daemon instead: its latest snapshot and policy (a dry run)')
    .option('--url <url>', 'with --live: drover API base URL (default: $DROVER_URL or from --config)')
    .option('--token <token>', 'with --live: API token (default: $DROVER_TOKEN or from --config)')
    .option('-c, --config <file>', "with --live: the daemon's config file, to find its API and a token")
    .option('--policy <file>', 'policy YAML file (default: built-in defaults)')
    .option('--drain <host>', 'drain this host (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option(
      '--strategy <name>',
      `offline: plan with this strategy instead (${STRATEGIES.names().join(', ')}); drain empties --drain hosts or those in maintenance`,
    )
    .option('--json', 'print the Plan as JSON')
    .action((flags: PlanFlags) =>
      runCli(flags.json, async (): Promise<ExitCode> => {
        if (flags.live) {
          const live = await livePlan(flags, flags.drain);
          if (flags.json) printJson(live.plan);
          else process.stdout.write(formatPlan(live.plan, live.snapshot));
          return live.plan.skipped.length > 0 ? EXIT.notConverged : EXIT.ok;
        }
        if (flags.snapshot === undefined)
          throw new CliError(EXIT.usage, 'invalid_input', 'give --snapshot FILE, or --live', 'snapshot');
        const snapshot = await readSnapshot(flags.snapshot);
        const policy = await readPolicy(flags.policy);
        const known = new Set(snapshot.hosts.map((h) => h.id));
        const unknown = flags.drain.filter((h) => !known.has(h));
        if (unknown.length > 0)
          throw new CliError(
            EXIT.badInput,
            'unknown_host',
            `--drain: no host ${unknown.map((h) => JSON.stringify(h)).join(', ')} in ${flags.snapshot}`,
            'drain',
          );
        const strategy = flags.strategy;
        if (strategy !== undefined && !STRATEGIES.has(strategy))
          throw new CliError(
            EXIT.usage,
            'invalid_input',
            `--strategy: no strategy ${JSON.stringify(strategy)} (there are ${STRATEGIES.names().join(', ')})`,
            'strategy',
          );
        if (strategy !== undefined && strategy !== 'drain' && flags.drain.length > 0)
          throw new CliError(
            EXIT.usage,
            'invalid_input',
            `--strategy ${strategy} does not drain; leave out --drain or --strategy`,
            'strategy',
          );
        const plan =
          strategy === undefined || strategy === 'drain'
            ? makePlan(snapshot, policy, { now: Date.now(), drain: flags.drain })
            : planWith(strategy, snapshot, policy, { now: Date.now() });
        if (flags.json) printJson(plan);
        else process.stdout.write(formatPlan(plan, snapshot));
        // Any VM the plan leaves where it is (a rebalance's as much as a drain's) means not everything moved.
        return plan.skipped.length > 0 ? EXIT.notConverged : EXIT.ok;
      }),
    );
}
