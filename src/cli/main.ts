// The `drover` command: builds the program (program.ts) and runs it on the process's arguments.
import { buildProgram } from './program.js';

export { EXIT } from './exit-codes.js';

await buildProgram().parseAsync(process.argv);
