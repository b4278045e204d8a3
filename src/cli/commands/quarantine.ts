// `drover quarantine list|add|lift`: VMs that failed to converge are left alone for a while (doubling with
// each failure); an operator can see them, quarantine one by hand (`add VM --for 2h`) and lift one at once.
import type { Command } from 'commander';
import type { QuarantineAdded, QuarantineView } from '../../service/operations.js';
import { CliError, connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson, table } from '../output.js';

export function registerQuarantineCommand(program: Command): void {
  const quarantine = program
    .command('quarantine')
    .description(
      'VMs drover leaves alone after they failed to converge or an operator said so: list, add, lift',
    );
  withConnection(quarantine.command('list').description('the VMs quarantined now')).action(
    (flags: ConnectionFlags) =>
      runCli(flags.json, async () => {
        const client = await connect(flags);
        const { quarantines } = await client.get<{ quarantines: QuarantineView[] }>('/v1/quarantines');
        if (flags.json) printJson({ quarantines });
        else if (quarantines.length === 0) process.stdout.write('no VM is quarantined\n');
        else
          process.stdout.write(
            `${table(
              ['VM', 'ID', '>FAILURES', 'UNTIL'],
              quarantines.map((q) => [q.vmName ?? '-', q.vm, String(q.failures), q.until ?? '-']),
            )}\n`,
          );
        return EXIT.ok;
      }),
  );
  withConnection(
    quarantine
      .command('add')
      .description('quarantine a VM by hand: drover leaves it where it is for a while')
      .argument('<vm>', 'VM id or name')
      .requiredOption(
        '--for <duration>',
        'how long: a whole number of seconds, minutes, hours or days (90s, 30m, 2h, 1d)',
      )
      .option('--reason <text>', 'why, kept in the audit trail'),
  ).action((vm: string, flags: ConnectionFlags & { for: string; reason?: string }) =>
    runCli(flags.json, async () => {
      const forS = durationSeconds(flags.for);
      const client = await connect(flags);
      const added = await client.post<QuarantineAdded>(`/v1/quarantines/${encodeURIComponent(vm)}`, {
        forS,
        ...(flags.reason !== undefined ? { reason: flags.reason } : {}),
      });
      const name = added.vmName ?? added.vm;
      if (flags.json) printJson(added);
      else if (added.keptLonger)
        process.stdout.write(
          `${name} stays quarantined until ${added.until}: ` +
            `its quarantine in force ends later than the ${flags.for} asked (${added.requestedUntil}), so it was kept\n`,
        );
      else process.stdout.write(`quarantined ${name} until ${added.until}\n`);
      return EXIT.ok;
    }),
  );
  withConnection(
    quarantine
      .command('lift')
      .description("lift a VM's quarantine now (and forget its failures)")
      .argument('<vm>', 'VM id or name'),
  ).action((vm: string, flags: ConnectionFlags) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const lifted = await client.post<QuarantineView>(`/v1/quarantines/${encodeURIComponent(vm)}/lift`);
      if (flags.json) printJson(lifted);
      else
        process.stdout.write(
          `lifted the quarantine of ${lifted.vmName ?? lifted.vm} (was until ${lifted.until ?? '-'})\n`,
        );
      return EXIT.ok;
    }),
  );
}

const UNIT_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90s`, `30m`, `2h`, `1d` (or bare seconds) in seconds; the daemon bounds it. */
export function durationSeconds(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m)
    throw new CliError(
      EXIT.badInput,
      'invalid_input',
      `--for: expected e.g. 90s, 30m, 2h or 1d, got ${JSON.stringify(text)}`,
      'for',
    );
  return Number(m[1]) * UNIT_S[m[2] || 's']!;
}
