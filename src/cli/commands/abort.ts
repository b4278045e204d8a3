// `drover abort VM`: stops a VM's migration (a waiting one is withdrawn; a running one is aborted by its
// watchdog, which confirms the VM is back on its source).
import type { Command } from 'commander';
import type { MigrationView } from '../../service/operations.js';
import { connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson } from '../output.js';

export function registerAbortCommand(program: Command): void {
  withConnection(
    program.command('abort').description("abort a VM's migration").argument('<vm>', 'VM id or name'),
  ).action((vm: string, flags: ConnectionFlags) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const result = await client.post<MigrationView>(`/v1/migrations/${encodeURIComponent(vm)}/abort`);
      if (flags.json) printJson(result);
      else
        process.stdout.write(
          result.state === 'removed'
            ? `withdrew the waiting migration of ${result.vmName ?? result.vm}\n`
            : `abort requested for ${result.vmName ?? result.vm} (${result.from} -> ${result.to}); it stays on ${result.from}\n`,
        );
      return EXIT.ok;
    }),
  );
}
