// A private redis-server for when no Redis is configured: free loopback port, a directory of its own, stopped on
// exit. `drover serve` runs it with AOF persistence in its state directory and supervises it: a redis-server
// that dies is started again on the same files and port; when that fails, the owner is told (drover exits).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DroverError } from '../domain/errors.js';

export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  /** The current redis-server's pid (it changes when the supervisor restarts it). */
  readonly pid: number;
  readonly dir: string;
  /** Whether it writes an append-only file (its data survives a restart). */
  readonly persistent: boolean;
  /** How many times the supervisor has started it again. */
  readonly restarts: number;
  stop(): Promise<void>;
}

export interface SuperviseOptions {
  /** Restarts allowed within `windowMs` before giving up (default 5 in 60 s). */
  maxRestarts?: number;
  windowMs?: number;
  onExit?: (info: { pid: number; code: number | null; signal: string | null }) => void;
  onRestart?: (info: { pid: number; restarts: number }) => void;
  /** It died and could not be started again: the data is unreachable, the owner must stop. */
  onGiveUp: (err: Error) => void;
}

export interface PrivateRedisOptions {
  /** Turn on AOF persistence, `appendfsync everysec` (drover's state directory; fault tests restarting Redis). */
  appendOnly?: boolean;
  /**
   * The directory belongs to this process (it holds the state lock): a redis-server still running on it from a
   * run that was killed is stopped before a new one starts on the same files.
   */
  reclaim?: boolean;
  /** Start it again when it dies (needs appendOnly to be of use: the data comes back from the AOF). */
  supervise?: SuperviseOptions;
  /** Reuse this directory and port (a restart of the same server); default: new ones. */
  dir?: string;
  port?: number;
  binary?: string;
  startTimeoutMs?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Waits until the server answers PING on the port (a bare TCP connect could reach some other listener). */
async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new DroverError(
        'redis_start_failed',
        `redis-server exited with ${child.exitCode ?? child.signalCode} (port 127.0.0.1:${port})`,
      );
    const ok = await new Promise<boolean>((resolve) => {
      let got = '';
      const sock = connect({ host: '127.0.0.1', port }, () => sock.write('PING\r\n'));
      const done = (v: boolean) => {
        sock.destroy();
        resolve(v);
      };
      sock.setTimeout(1000, () => done(false));
      sock.on('data', (c: Buffer) => {
        got += c.toString();
        if (got.includes('\r\n')) done(got.startsWith('+PONG'));
      });
      sock.once('error', () => done(false));
      sock.once('close', () => done(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new DroverError(
    'redis_start_failed',
    `redis-server did not answer on 127.0.0.1:${port} within ${timeoutMs} ms`,
  );
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of running) child.kill('SIGTERM');
  });
}

export const PID_FILE = 'redis.pid';

function isRedisServer(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('redis-server');
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops a redis-server left running on `dir` by a killed owner (SIGTERM: it finishes its AOF write and exits). */
export async function reclaimOrphan(dir: string, timeoutMs = 10_000): Promise<number | null> {
  let pid: number;
  try {
    pid = Number((await readFile(join(dir, PID_FILE), 'utf8')).trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid) || !isRedisServer(pid)) return null;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
  return pid;
}

async function spawnServer(
  binary: string,
  args: string[],
  port: number,
  timeoutMs: number,
): Promise<ChildProcess> {
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const spawned = await new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.once('error', (err) => resolve(err));
  });
  if (spawned) {
    throw new DroverError(
      'redis_missing',
      'redis-server was not found: install it (Debian: apt-get install redis-server) or set REDIS_URL',
      { cause: spawned },
    );
  }
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-2000);
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  installExitHook();
  try {
    await waitForPort(port, child, timeoutMs);
  } catch (err) {
    child.kill('SIGKILL');
    running.delete(child);
    const said = stderr.trim().split('\n').slice(-3).join(' | ');
    if (said && err instanceof DroverError)
      throw new DroverError(err.code, `${err.message}: ${said}`, { cause: err });
    throw err;
  }
  return child;
}

export async function startPrivateRedis(options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'drover-redis-')));
  const port = options.port ?? (await freePort());
  const persistent = options.appendOnly === true;
  const binary = options.binary ?? 'redis-server';
  const timeoutMs = options.startTimeoutMs ?? 10_000;
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    persistent ? 'yes' : 'no',
    // everysec: a write is in the kernel before Redis answers, so a crash of redis-server or drover loses
    // nothing acknowledged; only a crash of the machine can lose the last second (see README).
    '--appendfsync',
    'everysec',
    '--daemonize',
    'no',
    '--protected-mode',
    'yes',
    '--loglevel',
    'warning',
    ...(options.dir !== undefined ? ['--pidfile', join(dir, PID_FILE)] : []),
  ];
  if (options.dir !== undefined) await mkdir(dir, { recursive: true, mode: 0o700 });
  if (options.reclaim && options.dir !== undefined) await reclaimOrphan(dir);
  let child = await spawnServer(binary, args, port, timeoutMs);
  let stopping = false;
  let restarts = 0;
  const restartTimes: number[] = [];
  const supervise = options.supervise;

  const watch = (c: ChildProcess) => {
    c.once('exit', (code, signal) => {
      if (stopping || !supervise) return;
      supervise.onExit?.({ pid: c.pid ?? -1, code, signal });
      void restart();
    });
  };
  const restart = async (): Promise<void> => {
    const max = supervise?.maxRestarts ?? 5;
    const windowMs = supervise?.windowMs ?? 60_000;
    let lastErr: Error = new Error('redis-server exited');
    for (let attempt = 0; !stopping; attempt++) {
      const now = Date.now();
      while (restartTimes.length > 0 && restartTimes[0]! < now - windowMs) restartTimes.shift();
      if (restartTimes.length >= max) {
        supervise?.onGiveUp(
          new DroverError(
            'redis_lost',
            `the private redis-server died and could not be kept running (${restartTimes.length} restarts in ` +
              `${Math.round(windowMs / 1000)} s; last: ${lastErr.message})`,
            { cause: lastErr },
          ),
        );
        return;
      }
      restartTimes.push(now);
      // A short pause before each try (0.2, 0.4, 0.8 s …) lets the port and files be freed.
      await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
      if (stopping) return;
      try {
        child = await spawnServer(binary, args, port, timeoutMs);
        restarts++;
        watch(child);
        supervise?.onRestart?.({ pid: child.pid ?? -1, restarts });
        return;
      } catch (err) {
        lastErr = err instanceof Error ? err : new Error(String(err));
      }
    }
  };
  watch(child);

  const ownsDir = options.dir === undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return child.pid ?? -1;
    },
    dir,
    persistent,
    get restarts() {
      return restarts;
    },
    async stop() {
      stopping = true;
      const c = child;
      if (c.exitCode === null && c.signalCode === null) {
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        await exited;
      }
      running.delete(c);
      if (ownsDir) await rm(dir, { recursive: true, force: true });
    },
  };
}
