// `drover serve` on the libvirt lab as a real process: its configuration over the lab hosts, the process with
// its log in a file, its API with an admin token, and its end (SIGTERM with a grace period, else SIGKILL).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../src/service/private-redis.js';
import { REPO_ROOT, labHostConfigs, waitFor } from './lab-client.js';
import { redisUrl } from '../support/redis.js';
import { DROVER_BIN } from '../support/serve-process.js';

/**
 * The policy of `drover lab-demo`: every lab host is this one machine, so the CPU and memory ceilings are
 * lifted (the hosts share its memory); dirty rates are not measured (an assumed 2 MiB/s instead).
 */
export const LAB_POLICY = `version: 1
hosts: { cpuCeilingPct: 100, memCeilingPct: 100, memReserveMiB: 0 }
limits: { perHostConcurrency: 2, perClusterConcurrency: 4 }
migration: { assumeDirtyMiBpsWhenUnknown: 2 }
`;

export interface ServeOptions {
  /** Directory for the config, policy and log files (the caller removes it). */
  dir: string;
  /** Instance name (also the file names). */
  name: string;
  redisPrefix: string;
  /** Policy file text (default LAB_POLICY). */
  policy?: string;
  /** Admin API token. */
  token: string;
  /** The lab link drover lets migrations use (MiB/s). */
  linkMiBps: number;
  /** Sections that differ from the lab defaults below (merged over them, one level deep). */
  config?: Record<string, object>;
}

export interface ServeProcess {
  name: string;
  child: ChildProcess;
  url: string;
  logPath: string;
  exit: Promise<void>;
  alive(): boolean;
  /** The last lines of its log. */
  logTail(lines?: number): string;
  /** An API call with the admin token; rejects with the status and body on an error answer. */
  api<T>(method: 'GET' | 'POST', path: string, body?: object): Promise<T>;
  /** SIGTERM, then SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
}

/** The daemon config over the lab hosts: drover's lab defaults, with `options.config` sections over them. */
function serveConfig(options: ServeOptions, port: number, policyFile: string): object {
  const base: Record<string, object | string> = {
    instance: options.name,
    hypervisor: {
      kind: 'libvirt',
      hosts: labHostConfigs(options.linkMiBps),
      options: { callTimeoutMs: 15_000, reconnectMinMs: 100, reconnectMaxMs: 1_000 },
    },
    redis: { prefix: options.redisPrefix },
    policy: { file: policyFile, watch: false },
    schedules: { rebalance: { enabled: false }, plans: { intervalS: 1 }, reconcile: { intervalS: 5 } },
    automation: { level: 'partial' },
    api: { port, tokens: [{ name: options.name, role: 'admin', value: options.token }] },
    metrics: { processMetrics: false },
    log: { level: 'info' },
    collector: { intervalS: 2, dirtyRate: { enabled: false }, smoothing: { cpuTauS: 2 } },
  };
  for (const [section, value] of Object.entries(options.config ?? {})) {
    const before = base[section];
    base[section] = typeof before === 'object' ? { ...before, ...value } : value;
  }
  return base;
}

/** Starts `drover serve` on the lab and resolves once its API answers. */
export async function startServe(options: ServeOptions): Promise<ServeProcess> {
  const port = await freePort();
  const policyFile = join(options.dir, `${options.name}.policy.yaml`);
  writeFileSync(policyFile, options.policy ?? LAB_POLICY);
  const file = join(options.dir, `${options.name}.json`);
  writeFileSync(file, JSON.stringify(serveConfig(options, port, policyFile), null, 2));
  const logPath = join(options.dir, `${options.name}.log`);
  const fd = openSync(logPath, 'a');
  const child = spawn(process.execPath, [DROVER_BIN, 'serve', '--config', file], {
    cwd: REPO_ROOT,
    env: { ...process.env, REDIS_URL: redisUrl() },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const url = `http://127.0.0.1:${port}`;
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const logTail = (lines = 40) => {
    try {
      return readFileSync(logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const proc: ServeProcess = {
    name: options.name,
    child,
    url,
    logPath,
    exit,
    alive,
    logTail,
    async api<T>(method: 'GET' | 'POST', path: string, body?: object): Promise<T> {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${options.token}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      const json = (await res.json()) as T;
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    async stop(graceMs = 20_000): Promise<void> {
      if (!alive()) return;
      child.kill('SIGTERM');
      await Promise.race([exit, new Promise((r) => setTimeout(r, graceMs))]);
      if (alive()) child.kill('SIGKILL');
      await exit;
    },
  };
  // A process still starting is not a failure: on a busy machine (guests booting beside it) start-up has
  // taken 25 s and more. The wait ends at once if the process exits, and is capped at 180 s.
  await Promise.race([
    waitFor(
      `${options.name} to serve its API`,
      async () => ((await fetch(`${url}/healthz`)).ok ? true : undefined),
      180_000,
      250,
    ),
    exit.then(() => {
      throw new Error(`${options.name} exited while starting`);
    }),
  ]).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${String(err)}\n--- ${options.name} log ---\n${logTail()}`);
  });
  return proc;
}
