// Where drover keeps its state when it runs its own redis-server, and the lock that keeps a second
// `drover serve` off the same files. Order: --state-dir, the config's stateDir, $STATE_DIRECTORY (systemd's
// StateDirectory=, /var/lib/drover), $XDG_STATE_HOME/drover, ~/.local/state/drover.
import { readFileSync } from 'node:fs';
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { DroverError } from '../domain/errors.js';

export type StateDirSource = 'flag' | 'config' | 'systemd' | 'xdg' | 'home';

export interface StateDir {
  path: string;
  /** Which setting chose it (for `drover doctor` and the start-up log). */
  source: StateDirSource;
}

export function resolveStateDir(opts: {
  flag?: string | undefined;
  /** The config's stateDir, already made absolute against the config's directory. */
  config?: string | undefined;
  env?: NodeJS.ProcessEnv;
}): StateDir {
  const env = opts.env ?? process.env;
  if (opts.flag) return { path: resolve(opts.flag), source: 'flag' };
  if (opts.config) return { path: resolve(opts.config), source: 'config' };
  // systemd may list several directories separated by ':'; drover's unit names one.
  const systemd = env.STATE_DIRECTORY?.split(':')[0];
  if (systemd && isAbsolute(systemd)) return { path: systemd, source: 'systemd' };
  const xdg = env.XDG_STATE_HOME;
  if (xdg && isAbsolute(xdg)) return { path: join(xdg, 'drover'), source: 'xdg' };
  return { path: join(env.HOME || homedir(), '.local', 'state', 'drover'), source: 'home' };
}

export const LOCK_FILE = 'drover.lock';

export interface LockInfo {
  pid: number;
  /** The process's start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid apart. */
  startTicks: number | null;
  hostname: string;
  startedAt: string;
}

/** The start time of a process from /proc, or null where /proc is not there. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) is in parentheses and may hold spaces; count fields after its closing parenthesis.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(rest[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

/** True when `pid` is a live process (EPERM: alive, owned by someone else). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when the lock's holder still runs: same pid alive and, where /proc tells, the same process. */
export function lockHolderAlive(info: LockInfo): boolean {
  if (!pidAlive(info.pid)) return false;
  if (info.startTicks === null) return true;
  const now = processStartTicks(info.pid);
  return now === null || now === info.startTicks;
}

export async function readLock(dir: string): Promise<LockInfo | null> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')) as Partial<LockInfo>;
    if (typeof parsed.pid !== 'number') return null;
    return {
      pid: parsed.pid,
      startTicks: typeof parsed.startTicks === 'number' ? parsed.startTicks : null,
      hostname: String(parsed.hostname ?? ''),
      startedAt: String(parsed.startedAt ?? ''),
    };
  } catch {
    return null;
  }
}

export interface StateLock {
  readonly dir: string;
  /** Whether a stale lock (its process gone) was taken over: the last run did not stop cleanly. */
  readonly tookOver: LockInfo | null;
  release(): Promise<void>;
}

/**
 * Takes the state directory for this process: creates it (mode 0700), then writes drover.lock with this pid
 * atomically (a hard link fails when the file exists). A lock whose process still runs refuses with
 * `state_locked`; one whose process is gone is taken over.
 */
export async function acquireStateLock(dir: string, hostname: string): Promise<StateLock> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new DroverError(
      'state_dir_unusable',
      `cannot create the state directory ${dir}: ${(err as Error).message} (choose another with --state-dir)`,
      { cause: err },
    );
  }
  const lockPath = join(dir, LOCK_FILE);
  const mine: LockInfo = {
    pid: process.pid,
    startTicks: processStartTicks(process.pid),
    hostname,
    startedAt: new Date().toISOString(),
  };
  const tmp = join(dir, `.${LOCK_FILE}.${process.pid}`);
  await writeFile(tmp, `${JSON.stringify(mine)}\n`, { mode: 0o600 });
  let tookOver: LockInfo | null = null;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(tmp, lockPath);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err;
      }
      const held = await readLock(dir);
      if (held && lockHolderAlive(held)) {
        throw new DroverError(
          'state_locked',
          `the state directory ${dir} is in use by drover pid ${held.pid} (since ${held.startedAt}); ` +
            `stop that process first, or give this one another --state-dir`,
        );
      }
      // Gone (or unreadable): move the stale file aside under a name of our own, then try again.
      tookOver = held;
      await rename(lockPath, `${tmp}.stale`).catch(() => undefined);
      await unlink(`${tmp}.stale`).catch(() => undefined);
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  let released = false;
  return {
    dir,
    tookOver,
    async release() {
      if (released) return;
      released = true;
      const held = await readLock(dir);
      if (held?.pid === process.pid) await unlink(lockPath).catch(() => undefined);
    },
  };
}
