// `drover migrations`: running, waiting and recently finished migrations with their progress.
import type { Command } from 'commander';
import type { MigrationView } from '../../service/operations.js';
import { connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { printJson } from '../output.js';
import { migrationsTable } from './status.js';

export function registerMigrationsCommand(program: Command): void {
  withConnection(
    program.command('migrations').description('running, waiting and recently finished migrations'),
  ).action((flags: ConnectionFlags) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const { migrations } = await client.get<{ migrations: MigrationView[] }>('/v1/migrations');
      if (flags.json) printJson({ migrations });
      else
        process.stdout.write(migrations.length > 0 ? `${migrationsTable(migrations)}\n` : 'no migrations\n');
      return EXIT.ok;
    }),
  );
}
