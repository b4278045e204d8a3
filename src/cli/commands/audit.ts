// `drover audit`: the audit trail, newest first: every change asked of the API, who asked, when, and how it
// ended.
import type { Command } from 'commander';
import type { AuditEntry } from '../../service/audit-log.js';
import { connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson, table } from '../output.js';

export function registerAuditCommand(program: Command): void {
  withConnection(
    program
      .command('audit')
      .description('the audit trail of operator actions, newest first')
      .option('--limit <n>', 'at most this many entries', '50'),
  ).action((flags: ConnectionFlags & { limit: string }) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const query = new URLSearchParams({ limit: flags.limit });
      const { entries } = await client.get<{ entries: AuditEntry[] }>(`/v1/audit?${query.toString()}`);
      if (flags.json) printJson({ entries });
      else if (entries.length === 0) process.stdout.write('the audit trail is empty\n');
      else
        process.stdout.write(
          `${table(
            ['AT', 'WHO', 'ACTION', 'TARGET', 'OUTCOME', 'DETAIL'],
            entries.map((e) => [e.at, e.who, e.action, e.target ?? '-', e.outcome, e.detail ?? '']),
          )}\n`,
        );
      return EXIT.ok;
    }),
  );
}
