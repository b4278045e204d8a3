// `drover quarantine list` / `drover quarantine lift VM`: VMs that failed to converge are left alone for a
// while (doubling with each failure); an operator can see them and lift one at once.
import type { Command } from 'commander';
import type { QuarantineView } from '../../service/operations.js';
import { connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson, table } from '../output.js';

export function registerQuarantineCommand(program: Command): void {
  const quarantine = program
    .command('quarantine')
    .description('VMs drover leaves alone after they failed to converge: list, lift');
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
