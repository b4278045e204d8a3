// The `drover` command. Each sub-command lives in commands/<name>.ts and registers itself here.
import { Command } from 'commander';
import { EXIT } from './exit-codes.js';
import { registerWatchdogCommand } from './commands/watchdog.js';
import { registerRecoverCommand } from './commands/recover.js';
import { registerCollectCommand } from './commands/collect.js';

export { EXIT } from './exit-codes.js';

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
