// Restarts of the default deployment, through real processes: `drover serve` with its private Redis on a state
// directory; a host drained into maintenance and a rebalance plan waiting for approval; then SIGTERM, then
// SIGKILL of drover and its redis-server, then SIGKILL of drover alone (its redis-server left running on the
// files). Each time drover starts again on the same directory and finds the host in maintenance and the plan
// still pending. The simulated cluster itself lives in the drover process and is built again from its spec on
// each start, so this test asserts drover's own state (Redis), not VM placement across restarts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/service/private-redis.js';
import {
  killAndWait,
  logLine,
  running,
  spawnServe,
  until,
  type ServeProcess,
} from '../support/serve-process.js';
import { ADMIN_TOKEN, smallCluster, writeFixture, type Fixture } from './service-fixture.js';

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

async function api(method: string, path: string, body: unknown = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function start(name: string): Promise<ServeProcess> {
  const p = spawnServe(name, ['--config', configPath, '--state-dir', stateDir], env());
  procs.push(p);
  await until(
    `${name} serves`,
    async () => {
      if (!p.alive()) throw new Error(`drover exited\n${p.tail()}`);
      return (await api('GET', '/v1/hosts').catch(() => null))?.status === 200;
    },
    120_000,
    ctx,
    200,
  );
  return p;
}

const redisPid = async () => Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8'));

async function planStatus(id: string): Promise<string> {
  const { body } = await api('GET', `/v1/plans/${id}`);
  const record = (body.record ?? body) as { status?: string };
  return String(record.status);
}

async function expectStateKept(planId: string): Promise<void> {
  expect((await api('GET', '/v1/hosts/kvm-04')).body.state).toBe('maintenance');
  expect(await planStatus(planId)).toBe('pending');
}

describe('drover serve restarted on its state directory', () => {
  it('keeps maintenance and a pending plan over SIGTERM, SIGKILL of drover and Redis, SIGKILL of drover alone', async () => {
    const first = await start('first');
    // 503 until the first snapshot is in and a leader is elected.
    const pending = await until(
      'a rebalance plan created',
      async () => {
        const res = await api('POST', '/v1/plans', { reason: 'rebalance' });
        return res.status === 503 ? null : res;
      },
      60_000,
      ctx,
      200,
    );
    expect(pending.status).toBe(201);
    const planId = (pending.body.record as { plan: { id: string } }).plan.id;
    expect(await planStatus(planId)).toBe('pending');
    expect((await api('POST', '/v1/hosts/kvm-04/drain')).status).toBeLessThan(300);
    await until(
      'kvm-04 in maintenance',
      async () => (await api('GET', '/v1/hosts/kvm-04')).body.state === 'maintenance',
      30_000,
      ctx,
    );

    // SIGTERM: a clean stop; the lock is released and the redis-server stopped with it.
    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    const second = await start('second');
    expect(
      logLine(
        second,
        'the last drover on this state directory did not stop cleanly; its lock was taken over',
      ),
    ).toBeUndefined();
    await expectStateKept(planId);

    // SIGKILL of drover and of its redis-server: nothing stops cleanly; the AOF brings the state back.
    const redisOfSecond = await redisPid();
    await killAndWait(second.pid);
    await killAndWait(redisOfSecond);
    const third = await start('third');
    expect(
      logLine(third, 'the last drover on this state directory did not stop cleanly; its lock was taken over'),
    ).toBeDefined();
    await expectStateKept(planId);

    // SIGKILL of drover alone: its redis-server stays on the files; the next start stops it before its own.
    const orphan = await redisPid();
    await killAndWait(third.pid);
    expect(running(orphan)).toBe(true);
    const fourth = await start('fourth');
    expect(running(orphan)).toBe(false);
    expect(await redisPid()).not.toBe(orphan);
    await expectStateKept(planId);
    fourth.child.kill('SIGTERM');
    expect(await fourth.exit).toBe(0);
  }, 300_000);
});
