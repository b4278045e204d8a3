// The `drover` command's program: each sub-command lives in commands/<name>.ts and registers itself here.
// main.ts runs it; tests parse command lines with it (the documentation test, with every action replaced).
import { Command } from 'commander';
import { EXIT } from './exit-codes.js';
import { registerWatchdogCommand } from './commands/watchdog.js';
import { registerServeCommand } from './commands/serve.js';
import { registerStatusCommand } from './commands/status.js';
import { registerDrainCommand } from './commands/drain.js';
import { registerActivateCommand } from './commands/activate.js';
import { registerMigrationsCommand } from './commands/migrations.js';
import { registerAbortCommand } from './commands/abort.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerRecoverCommand } from './commands/recover.js';
import { registerCollectCommand } from './commands/collect.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerPlanCommand } from './commands/plan.js';
import { registerLabDemoCommand } from './commands/lab-demo.js';
import { registerAutomationCommands } from './commands/automation.js';
import { registerPlansCommands } from './commands/plans.js';
import { registerQuarantineCommand } from './commands/quarantine.js';
import { registerAuditCommand } from './commands/audit.js';

import { DROVER_VERSION } from '../domain/version.js';

/** The `drover` program with every command registered (not run). */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('drover')
    .description('keeps libvirt/KVM clusters balanced and drains hosts with migrations that finish')
    .version(DROVER_VERSION, '-V, --version', "print drover's version");
  program.showHelpAfterError();
  program.exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
  });
  registerWatchdogCommand(program);
  registerServeCommand(program);
  registerStatusCommand(program);
  registerDrainCommand(program);
  registerActivateCommand(program);
  registerMigrationsCommand(program);
  registerAbortCommand(program);
  registerDoctorCommand(program);
  registerRecoverCommand(program);
  registerCollectCommand(program);
  registerDemoCommand(program);
  registerPlanCommand(program);
  registerLabDemoCommand(program);
  registerAutomationCommands(program);
  registerPlansCommands(program);
  registerQuarantineCommand(program);
  registerAuditCommand(program);

  return program;
}
