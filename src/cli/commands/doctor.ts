// `drover doctor --config FILE`: checks what drover depends on, one line each — the config, the policy,
// Redis and the clock skew against it, where state lives and whether it persists, every host, VMs running or
// defined on two hosts, the daemon's API.
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { SystemClock } from '../../clock/clocks.js';
import { withDeadline } from '../../clock/deadline.js';
import { errorMessage } from '../../domain/errors.js';
import type { Hypervisor, Sampling } from '../../hypervisor/hypervisor.js';
import { loadPolicy } from '../../planner/load-policy.js';
import { loadConfig, type LoadedConfig } from '../../service/config.js';
import { createHypervisor, stateDirOf } from '../../service/main.js';
import { checkPersistence, openRedis } from '../../service/redis-connection.js';
import { securityWarnings } from '../../service/security-warnings.js';
import { lockHolderAlive, readLock } from '../../service/state-dir.js';
import { CliError, runCli } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { paint, printJson, table } from '../output.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';
export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
}

/** Largest tolerated difference between this machine's clock and Redis's (leases and plan expiry use both). */
const MAX_SKEW_MS = 2000;

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(REAL_TIME, ms, work, () => new Error(`${what}: no answer within ${ms} ms`));
}

const REAL_TIME = new SystemClock();

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The private redis-server's state directory: where, from which setting, writable, in use by whom. */
async function checkStateDir(
  loaded: LoadedConfig,
  env: NodeJS.ProcessEnv,
  flag: string | undefined,
  checks: Check[],
): Promise<void> {
  const sd = stateDirOf(loaded, env, flag);
  if (sd === null) return;
  const from = {
    flag: '--state-dir',
    config: 'stateDir in the config',
    systemd: '$STATE_DIRECTORY (systemd)',
    xdg: '$XDG_STATE_HOME',
    home: 'the default',
  }[sd.source];
  let probe = sd.path;
  while (!(await exists(probe)) && dirname(probe) !== probe) probe = dirname(probe);
  try {
    await access(probe, constants.W_OK);
  } catch {
    checks.push({
      name: 'state',
      status: 'fail',
      detail: `${sd.path} (from ${from}) cannot be written: ${probe} is not writable; choose another with --state-dir`,
    });
    return;
  }
  const lock = await readLock(sd.path);
  const holder = lock && lockHolderAlive(lock) ? `in use by drover pid ${lock.pid}` : 'no drover runs on it';
  const data = (await exists(join(sd.path, 'redis', 'appendonlydir')))
    ? 'holds data'
    : (await exists(sd.path))
      ? 'no data yet'
      : 'created at first start';
  checks.push({
    name: 'state',
    status: 'ok',
    detail: `${sd.path} (from ${from}); persists: private redis-server with AOF, appendfsync everysec; ${data}; ${holder}`,
  });
}

async function checkRedis(
  loaded: LoadedConfig,
  env: NodeJS.ProcessEnv,
  checks: Check[],
  stateDirFlag?: string,
): Promise<void> {
  const r = loaded.config.redis;
  if (env.REDIS_URL === undefined && r.url === undefined && !r.sentinel && !r.cluster) {
    checks.push({
      name: 'redis',
      status: 'warn',
      detail: 'none configured: `drover serve` starts a private redis-server (one process only)',
    });
    await checkStateDir(loaded, env, stateDirFlag, checks);
    return;
  }
  const conn = await openRedis(r, env);
  try {
    const before = Date.now();
    const [sec, usec] = await withTimeout(conn.redis.time(), 5000, 'redis TIME');
    const after = Date.now();
    const redisMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    const skewMs = Math.round((before + after) / 2 - redisMs);
    checks.push({
      name: 'redis',
      status: 'ok',
      detail: `${conn.description} answered in ${after - before} ms`,
    });
    checks.push({
      name: 'clock skew',
      status: Math.abs(skewMs) > MAX_SKEW_MS ? 'fail' : 'ok',
      detail: `this machine is ${skewMs >= 0 ? '+' : ''}${skewMs} ms from Redis (limit ±${MAX_SKEW_MS} ms; run NTP)`,
    });
    const persistence = await withTimeout(checkPersistence(conn.redis), 5000, 'redis CONFIG GET');
    checks.push({
      name: 'state',
      status: persistence.persists === true ? 'ok' : 'warn',
      detail: `in Redis ${conn.description}; ${persistence.persists === true ? 'persists: ' : ''}${persistence.detail}`,
    });
  } catch (err) {
    checks.push({ name: 'redis', status: 'fail', detail: `${conn.description}: ${errorMessage(err)}` });
  } finally {
    conn.redis.disconnect();
  }
}

async function checkHosts(hv: Sampling, timeoutMs: number, checks: Check[]): Promise<void> {
  const hosts = await withTimeout(hv.listHosts(), timeoutMs, 'listing hosts');
  const where = new Map<string, { running: string[]; defined: string[]; name: string }>();
  for (const host of hosts) {
    try {
      const started = Date.now();
      await withTimeout(hv.sampleHost(host.id), timeoutMs, host.id);
      const vms = await withTimeout(hv.listVms(host.id), timeoutMs, host.id);
      for (const vm of vms) {
        const entry = where.get(vm.id) ?? { running: [], defined: [], name: vm.name };
        if (vm.state === 'running' || vm.state === 'paused') entry.running.push(host.id);
        if (vm.persistent) entry.defined.push(host.id);
        where.set(vm.id, entry);
      }
      checks.push({
        name: `host ${host.id}`,
        status: 'ok',
        detail: `reachable in ${Date.now() - started} ms, ${vms.length} VM(s), ${host.cpus} CPUs, ${host.memMiB} MiB`,
      });
    } catch (err) {
      checks.push({ name: `host ${host.id}`, status: 'fail', detail: errorMessage(err) });
    }
  }
  const twiceRunning = [...where.entries()].filter(([, e]) => e.running.length > 1);
  const twiceDefined = [...where.entries()].filter(([, e]) => e.running.length <= 1 && e.defined.length > 1);
  checks.push({
    name: 'VMs running on two hosts',
    status: twiceRunning.length > 0 ? 'fail' : 'ok',
    detail:
      twiceRunning.length > 0
        ? twiceRunning.map(([id, e]) => `${e.name} (${id}) on ${e.running.join(' and ')}`).join('; ') +
          ' — run `drover recover VM`'
        : 'none',
  });
  checks.push({
    name: 'VMs defined on two hosts',
    status: twiceDefined.length > 0 ? 'warn' : 'ok',
    detail:
      twiceDefined.length > 0
        ? twiceDefined.map(([id, e]) => `${e.name} (${id}) on ${e.defined.join(' and ')}`).join('; ')
        : 'none',
  });
}

async function checkApi(loaded: LoadedConfig, checks: Check[]): Promise<void> {
  const api = loaded.config.api;
  if (!api.enabled) {
    checks.push({ name: 'api', status: 'warn', detail: 'disabled in the config' });
    return;
  }
  const host = ['0.0.0.0', '::'].includes(api.host) ? '127.0.0.1' : api.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${api.port}/readyz`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    const body = (await res.json()) as { ready?: boolean; checks?: Record<string, { detail: string }> };
    checks.push({
      name: 'daemon',
      status: res.ok ? 'ok' : 'warn',
      detail: res.ok
        ? `${url} ready`
        : `${url} not ready: ${Object.values(body.checks ?? {})
            .map((c) => c.detail)
            .join('; ')}`,
    });
  } catch (err) {
    checks.push({
      name: 'daemon',
      status: 'warn',
      detail: `${url}: ${errorMessage(err)} (is \`drover serve\` running?)`,
    });
  }
}

export async function runDoctor(
  configPath: string,
  env: NodeJS.ProcessEnv = process.env,
  stateDirFlag?: string,
): Promise<Check[]> {
  const checks: Check[] = [];
  const loaded = await loadConfig(configPath, env);
  checks.push({ name: 'config', status: 'ok', detail: `${loaded.path} is valid` });
  for (const w of await securityWarnings(loaded, env))
    checks.push({ name: `security ${w.field}`, status: 'warn', detail: w.message });
  try {
    await loadPolicy(loaded.policyPath);
    checks.push({ name: 'policy', status: 'ok', detail: `${loaded.policyPath} is valid` });
  } catch (err) {
    checks.push({ name: 'policy', status: 'fail', detail: errorMessage(err) });
  }
  await checkRedis(loaded, env, checks, stateDirFlag);
  let hv: Hypervisor | null = null;
  try {
    hv = (await createHypervisor(loaded.config.hypervisor, loaded.dir)).hypervisor;
    await checkHosts(hv, loaded.config.collector.hostTimeoutMs, checks);
  } catch (err) {
    checks.push({ name: 'hosts', status: 'fail', detail: errorMessage(err) });
  } finally {
    await hv?.close();
  }
  await checkApi(loaded, checks);
  return checks;
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description(
      'check the config, policy, Redis and clock skew, where state lives, every host, VMs on two hosts, the daemon',
    )
    .requiredOption('-c, --config <file>', "the daemon's config file")
    .option('--state-dir <dir>', 'the state directory `drover serve` is given (when it runs its own Redis)')
    .option('--json', 'print machine-readable JSON only')
    .action((flags: { config: string; json?: boolean; stateDir?: string }) =>
      runCli(flags.json, async () => {
        if (!flags.config) throw new CliError(EXIT.usage, 'invalid_input', '--config is required');
        const checks = await runDoctor(flags.config, process.env, flags.stateDir);
        const ok = checks.every((c) => c.status !== 'fail');
        if (flags.json) printJson({ ok, checks });
        else {
          const mark = (s: CheckStatus) =>
            paint(s.toUpperCase(), s === 'ok' ? 'green' : s === 'warn' ? 'yellow' : 'red');
          process.stdout.write(
            `${table(
              ['CHECK', 'STATUS', 'DETAIL'],
              checks.map((c) => [c.name, mark(c.status), c.detail]),
            )}\n`,
          );
        }
        return ok ? EXIT.ok : EXIT.failure;
      }),
    );
}
