// `drover serve` as a real child process for tests: its JSON log lines (stdout) and stderr are kept, its
// exit is a promise, and `until` polls a condition with a generous deadline that names what it waited for.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '../..');

/**
 * The `drover` command tests start: the installed-package copy the unit project's global setup builds
 * (test/support/global-build.ts), else bin/drover.js of the checkout.
 */
export const DROVER_BIN = process.env.DROVER_TEST_BIN ?? join(root, 'bin/drover.js');

export interface ServeProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (null when a signal ended it). */
  readonly exit: Promise<number | null>;
  logs: Record<string, unknown>[];
  stderr: string;
  /** Last lines of stderr and log messages, for failure messages. */
  tail(): string;
  alive(): boolean;
}

export function spawnServe(name: string, args: string[], env: NodeJS.ProcessEnv = process.env): ServeProcess {
  const child = spawn(process.execPath, [DROVER_BIN, 'serve', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let pending = '';
  const proc: ServeProcess = {
    name,
    child,
    pid: child.pid ?? -1,
    exit: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    logs: [],
    stderr: '',
    tail() {
      const msgs = proc.logs.slice(-15).map((l) => `${String(l.msg)} ${JSON.stringify(l)}`.slice(0, 400));
      return `${name} (pid ${proc.pid}):\n  stderr: ${proc.stderr.slice(-1500)}\n  log: ${msgs.join('\n  log: ')}`;
    },
    alive: () => child.exitCode === null && child.signalCode === null,
  };
  child.stdout?.on('data', (c: Buffer) => {
    pending += c.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      try {
        proc.logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        proc.logs.push({ msg: line });
      }
    }
  });
  child.stderr?.on('data', (c: Buffer) => {
    proc.stderr += c.toString();
  });
  return proc;
}

/** The first log line with this message, once it is there. */
export function logLine(p: ServeProcess, msg: string): Record<string, unknown> | undefined {
  return p.logs.find((l) => l.msg === msg);
}

export async function until<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeoutMs: number,
  context: () => string = () => '',
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${context()}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** True while the process exists and is not a zombie (an orphan's exit may wait for its reaper). */
export function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGKILLs a process by pid and waits until it is gone. */
export async function killAndWait(pid: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  await until(`pid ${pid} gone`, () => !running(pid), 30_000);
}
