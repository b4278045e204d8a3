// `drover serve --config FILE [--state-dir DIR]`: runs the daemon. A bad config exits with EXIT.badInput naming
// every bad field. Without a configured Redis it runs its own redis-server on the state directory (locked: a
// second serve there is refused); when that redis-server dies and cannot be started again it exits 1. SIGHUP reloads the policy (a bad one is rejected and the old one kept); SIGTERM/SIGINT stop taking
// work, hand running migrations over and exit 0 (a second signal exits at once).
import type { Command } from 'commander';
import { ValidationError } from '../../domain/errors.js';
import { loadConfig } from '../../service/config.js';
import { startService } from '../../service/main.js';
import { exitCodeOf } from '../api-client.js';
import { EXIT } from '../exit-codes.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the drover daemon: collector, executor workers, leader election, schedules, HTTP API')
    .requiredOption('-c, --config <file>', 'config file (see drover.example.yaml)')
    .option(
      '--state-dir <dir>',
      'where the private redis-server keeps its data (default: $STATE_DIRECTORY, $XDG_STATE_HOME/drover, ~/.local/state/drover)',
    )
    .action(async (opts: { config: string; stateDir?: string }) => {
      let loaded;
      try {
        loaded = await loadConfig(opts.config);
      } catch (err) {
        if (err instanceof ValidationError) {
          process.stderr.write(`drover: the config is not valid:\n`);
          for (const issue of err.issues)
            process.stderr.write(`  ${err.source}: ${issue.path ? `${issue.path}: ` : ''}${issue.message}\n`);
        } else {
          process.stderr.write(`drover: ${err instanceof Error ? err.message : String(err)}\n`);
        }
        process.exit(EXIT.badInput);
      }
      let svc;
      try {
        svc = await startService(loaded, {
          ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}),
          onFatal: (err) => {
            process.stderr.write(`drover: stopping: ${err.message}\n`);
            process.exit(EXIT.failure);
          },
        });
      } catch (err) {
        process.stderr.write(
          `drover: could not start: ${err instanceof Error ? err.message : String(err)}\n`,
        );
        process.exit(exitCodeOf(err) === EXIT.failure ? EXIT.failure : exitCodeOf(err));
      }
      const running = svc;
      process.on('SIGHUP', () => {
        void running.reloadPolicy('SIGHUP');
      });
      let signals = 0;
      const shutdown = (signal: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          running.log.warn({ signal }, 'second signal: exiting now');
          process.exit(EXIT.failure);
        }
        const grace = setTimeout(() => {
          running.log.error({ graceMs: running.config.shutdown.graceMs }, 'shutdown took too long: exiting');
          process.exit(EXIT.failure);
        }, running.config.shutdown.graceMs);
        grace.unref();
        running.stop(signal).then(
          () => process.exit(EXIT.ok),
          (err: unknown) => {
            running.log.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
            process.exit(EXIT.failure);
          },
        );
      };
      process.on('SIGTERM', shutdown);
      process.on('SIGINT', shutdown);
    });
}
