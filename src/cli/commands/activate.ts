// `drover activate HOST`: ends maintenance; the host takes VMs again.
import type { Command } from 'commander';
import type { HostView } from '../../service/operations.js';
import { connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson } from '../output.js';

export function registerActivateCommand(program: Command): void {
  withConnection(
    program
      .command('activate')
      .description('end maintenance of a host: it takes VMs again')
      .argument('<host>')
      .option('--cancel-drain', 'cancel the running drain of the host first (refused otherwise)'),
  ).action((host: string, flags: ConnectionFlags & { cancelDrain?: boolean }) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const view = await client.post<HostView>(`/v1/hosts/${encodeURIComponent(host)}/activate`, {
        cancelDrain: flags.cancelDrain === true,
      });
      if (flags.json) printJson(view);
      else process.stdout.write(`${view.id} is ${view.state} (${view.vms} VMs)\n`);
      return EXIT.ok;
    }),
  );
}
