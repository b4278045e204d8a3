// The state directory of the default deployment: where it is, its lock (a second `drover serve` on it is
// refused, a dead holder's lock is taken over), `drover doctor` on it, and the supervised private redis-server
// (killed, it comes back on its AOF with drover's state; when it cannot, drover exits 1).
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor } from '../../src/cli/commands/doctor.js';
import { freePort } from '../../src/service/private-redis.js';
import { acquireStateLock, LOCK_FILE, resolveStateDir } from '../../src/service/state-dir.js';
import {
  killAndWait,
  logLine,
  running,
  spawnServe,
  until,
  type ServeProcess,
} from '../support/serve-process.js';
import { ADMIN_TOKEN, smallCluster, writeFixture, type Fixture } from './service-fixture.js';

describe('resolveStateDir', () => {
  const env = { STATE_DIRECTORY: '/var/lib/drover', XDG_STATE_HOME: '/x/state', HOME: '/home/op' };
  it('takes --state-dir, then the config, then systemd, then XDG, then ~/.local/state', () => {
    expect(resolveStateDir({ flag: 'rel', config: '/c', env })).toEqual({
      path: join(process.cwd(), 'rel'),
      source: 'flag',
    });
    expect(resolveStateDir({ config: '/c/state', env })).toEqual({ path: '/c/state', source: 'config' });
    expect(resolveStateDir({ env })).toEqual({ path: '/var/lib/drover', source: 'systemd' });
    expect(resolveStateDir({ env: { ...env, STATE_DIRECTORY: '' } })).toEqual({
      path: '/x/state/drover',
      source: 'xdg',
    });
    // A relative XDG_STATE_HOME is invalid by the XDG spec and ignored.
    expect(resolveStateDir({ env: { XDG_STATE_HOME: 'rel', HOME: '/home/op' } })).toEqual({
      path: '/home/op/.local/state/drover',
      source: 'home',
    });
  });
});

describe('state lock', () => {
  it('refuses a second holder while the first lives and takes over the lock of a dead one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-lock-'));
    const lock = await acquireStateLock(dir, 'h');
    await expect(acquireStateLock(dir, 'h')).rejects.toThrow(
      new RegExp(`in use by drover pid ${process.pid}.*--state-dir`),
    );
    await lock.release();
    await expect(readFile(join(dir, LOCK_FILE))).rejects.toThrow(/ENOENT/);

    // A lock left by a process that is gone (SIGKILLed drover): taken over, and said so.
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => child.once('exit', r));
    await writeFile(
      join(dir, LOCK_FILE),
      JSON.stringify({ pid: child.pid, startTicks: null, hostname: 'h', startedAt: 'then' }),
    );
    const second = await acquireStateLock(dir, 'h');
    expect(second.tookOver?.pid).toBe(child.pid);
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    await second.release();
    await rm(dir, { recursive: true, force: true });
  });
});

describe('drover serve on a state directory', () => {
  let fixture: Fixture;
  let stateDir: string;
  let configPath: string;
  let port: number;
  const procs: ServeProcess[] = [];
  const ctx = () => procs.map((p) => p.tail()).join('\n');

  beforeAll(async () => {
    port = await freePort();
    fixture = await writeFixture(
      '{unused}',
      {
        redis: { prefix: '{drover}' },
        api: { port, tokens: [{ name: 'ops', role: 'admin', value: ADMIN_TOKEN }] },
        log: { level: 'info' },
        shutdown: { graceMs: 10_000 },
      },
      smallCluster(),
    );
    stateDir = join(fixture.dir, 'state');
    configPath = join(fixture.dir, 'drover.yaml');
  });

  afterAll(async () => {
    for (const p of procs) if (p.alive()) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exit));
    const pid = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8').catch(() => '0'));
    if (pid > 0 && running(pid)) await killAndWait(pid);
    await fixture.cleanup();
  });

  const env = () => {
    const e = { ...process.env };
    delete e.REDIS_URL;
    return e;
  };
  const api = async (method: string, path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(method === 'POST' ? { body: '{}' } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const redisPid = async () => Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8'));

  it('refuses a second serve, keeps state over a redis-server crash, exits 1 when Redis cannot come back', async () => {
    const first = spawnServe('first', ['--config', configPath, '--state-dir', stateDir], env());
    procs.push(first);
    await until(
      'first serves',
      async () => {
        if (!first.alive()) throw new Error(`drover exited\n${first.tail()}`);
        return (await api('GET', '/v1/hosts').catch(() => null))?.status === 200;
      },
      120_000,
      ctx,
      200,
    );
    expect(String(logLine(first, 'redis connected')?.redis)).toContain(`state in ${stateDir}`);

    // A second serve on the same directory: refused, naming the holder; the first one keeps running.
    const second = spawnServe('second', ['--config', configPath, '--state-dir', stateDir], env());
    procs.push(second);
    expect(await second.exit).toBe(1);
    expect(second.stderr).toContain(`state directory ${stateDir} is in use by drover pid ${first.pid}`);
    expect(first.alive()).toBe(true);

    const checks = await runDoctor(configPath, env(), stateDir);
    const state = checks.find((c) => c.name === 'state');
    expect(state?.status).toBe('ok');
    expect(state?.detail).toContain(stateDir);
    expect(state?.detail).toContain('persists: private redis-server with AOF');
    expect(state?.detail).toContain(`in use by drover pid ${first.pid}`);

    // Drover state in Redis, then the redis-server killed: started again, on its AOF, the host still drained.
    expect((await api('POST', '/v1/hosts/kvm-04/drain')).status).toBeLessThan(300);
    await until(
      'kvm-04 in maintenance',
      async () => (await api('GET', '/v1/hosts/kvm-04')).body.state === 'maintenance',
      30_000,
      ctx,
    );
    const before = await redisPid();
    await killAndWait(before);
    const after = await until(
      'redis-server restarted',
      async () => {
        const pid = await redisPid().catch(() => 0);
        return pid !== before && pid > 0 && running(pid) ? pid : null;
      },
      30_000,
      ctx,
    );
    expect(after).not.toBe(before);
    await until(
      'the API answers again',
      async () => (await api('GET', '/v1/hosts/kvm-04').catch(() => null))?.status === 200,
      30_000,
      ctx,
    );
    expect((await api('GET', '/v1/hosts/kvm-04')).body.state).toBe('maintenance');
    expect(logLine(first, 'the private redis-server runs again')).toBeDefined();

    // Its directory replaced by a file: every restart fails, and drover exits 1 rather than run without state.
    await rename(join(stateDir, 'redis'), join(stateDir, 'redis.moved'));
    await writeFile(join(stateDir, 'redis'), 'not a directory\n');
    await killAndWait(after);
    expect(await first.exit).toBe(1);
    expect(first.stderr).toContain('could not be kept running');
    await rm(join(stateDir, 'redis'));
    await rename(join(stateDir, 'redis.moved'), join(stateDir, 'redis'));
    await mkdir(stateDir, { recursive: true });
  }, 240_000);
});
