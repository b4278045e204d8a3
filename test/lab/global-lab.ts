// vitest global setup of the lab project: brings drover's libvirt lab up once for all lab-backed tests and
// down at the end. Several test runs may share one lab (LAB_DIR): each registers its pid in $LAB_DIR/users,
// and the last run to leave takes the lab down, but only when a test run brought it up (a lab started by
// `make lab-up` stays up).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labCommand, labDir, labIsUp } from './lab-client.js';

const usersFile = () => join(labDir(), 'users');
const markerFile = () => join(labDir(), 'started-by-tests');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function liveUsers(): number[] {
  if (!existsSync(usersFile())) return [];
  return readFileSync(usersFile(), 'utf8')
    .split('\n')
    .map(Number)
    .filter((pid) => Number.isInteger(pid) && pid > 0 && alive(pid));
}

function writeUsers(pids: number[]): void {
  writeFileSync(usersFile(), pids.map((p) => `${p}\n`).join(''));
}

export async function setup(): Promise<void> {
  mkdirSync(labDir(), { recursive: true });
  const others = liveUsers().filter((p) => p !== process.pid);
  writeUsers([...others, process.pid]);
  if (!labIsUp() && others.length === 0) writeFileSync(markerFile(), `${process.pid}\n`);
  await labCommand('up'); // also restarts any host daemon a previous run left stopped
}

export async function teardown(): Promise<void> {
  const others = liveUsers().filter((p) => p !== process.pid);
  writeUsers(others);
  if (others.length === 0 && existsSync(markerFile())) {
    rmSync(markerFile(), { force: true });
    await labCommand('down');
  }
}
