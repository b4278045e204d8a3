// vitest global setup of the lab project: brings drover's libvirt lab up once for all lab-backed tests and
// down at the end (a lab that was already up, e.g. from `make lab-up`, is reused and left up).
import { labCommand, labIsUp } from './lab-client.js';

let startedHere = false;

export async function setup(): Promise<void> {
  if (labIsUp()) {
    await labCommand('up'); // restarts any host daemon a previous run left stopped
    return;
  }
  startedHere = true;
  await labCommand('up');
}

export async function teardown(): Promise<void> {
  if (startedHere) await labCommand('down');
}
