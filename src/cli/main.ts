// The `drover` command. Each sub-command lives in commands/<name>.ts and registers itself here.
import { Command } from 'commander';
import { registerWatchdogCommand } from './commands/watchdog.js';
import { registerRecoverCommand } from './commands/recover.js';
import { registerCollectCommand } from './commands/collect.js';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  badInput: 3,
  unreachable: 4,
  notConverged: 5,
} as const;

const program = new Command();
program
  .name('drover')
  .description('keeps libvirt/KVM clusters balanced and drains hosts with migrations that finish');
program.showHelpAfterError();
program.exitOverride((err) => {
  process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
});
registerWatchdogCommand(program);
registerRecoverCommand(program);
registerCollectCommand(program);

await program.parseAsync(process.argv);
