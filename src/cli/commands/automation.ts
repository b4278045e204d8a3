// `drover pause` / `drover resume`: stop and restart automation. Paused, the scheduled runs plan nothing and
// every new plan waits for `drover approve`; plans already running finish. Kept in Redis: it outlives restarts.
import type { Command } from 'commander';
import type { AutomationView } from '../../service/operations.js';
import { connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson } from '../output.js';

/** One line on automation, as `drover status` and these commands print it. */
export function automationLine(view: AutomationView): string {
  if (!view.paused) return `automation ${view.level}, running`;
  const who = view.changedBy ? ` by ${view.changedBy.replace(/^api:/, '')}` : '';
  const when = view.changedAt ? ` at ${view.changedAt}` : '';
  const note = view.note ? ` (${view.note})` : '';
  return `automation ${view.level}, PAUSED${who}${when}${note}`;
}

function register(program: Command, name: 'pause' | 'resume'): void {
  const paused = name === 'pause';
  withConnection(
    program
      .command(name)
      .description(
        paused
          ? 'pause automation: scheduled runs plan nothing, new plans wait for approval, running plans finish'
          : 'resume automation after drover pause',
      )
      .option('--note <text>', 'why (kept in the audit trail)'),
  ).action((flags: ConnectionFlags & { note?: string }) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const view = await client.post<AutomationView>('/v1/automation', {
        paused,
        ...(flags.note !== undefined ? { note: flags.note } : {}),
      });
      if (flags.json) printJson(view);
      else process.stdout.write(`${automationLine(view)}\n`);
      return EXIT.ok;
    }),
  );
}

export function registerAutomationCommands(program: Command): void {
  register(program, 'pause');
  register(program, 'resume');
}
