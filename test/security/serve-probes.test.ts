// The attacker's and the careless operator's probes, against a real `drover serve` process (the simulator,
// its private Redis on a state directory, /metrics behind a token): percent-encoded and fragment spellings of
// admin and metrics paths, a change without JSON, parallel drains of one host, activate during a drain,
// parallel rebalances (unique plan ids), over-long ids, a frozen and a killed redis-server, and the warnings
// a weak token and a world-readable config get at start. Every refusal is checked to have changed nothing.
import { request } from 'node:http';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/service/private-redis.js';
import { killAndWait, running, spawnServe, until, type ServeProcess } from '../support/serve-process.js';
import {
  ADMIN_TOKEN,
  READ_TOKEN,
  smallCluster,
  writeFixture,
  type Fixture,
} from '../service/service-fixture.js';

const WEAK_TOKEN = 'a'.repeat(16);

let fixture: Fixture;
let stateDir: string;
let port: number;
let serve: ServeProcess;
const ctx = () => serve.tail();

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** One request with the path exactly as written (no URL normalisation), like `curl --path-as-is`. */
function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, timeout: 30_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(text) as Record<string, unknown>;
        } catch {
          parsed = { text };
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const admin = (method: string, path: string, body: unknown = {}) =>
  raw(
    method,
    path,
    { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    method === 'POST' ? JSON.stringify(body) : undefined,
  );

interface PlanView {
  id: string;
  status: string;
  plan: { reason: string; steps: { vm: string }[] };
}

async function plans(): Promise<PlanView[]> {
  const res = await admin('GET', '/v1/plans');
  expect(res.status).toBe(200);
  return res.body.plans as PlanView[];
}

async function hostState(id: string): Promise<string> {
  const res = await admin('GET', `/v1/hosts/${id}`);
  expect(res.status).toBe(200);
  return (res.body as { state: string }).state;
}

/** The small cluster with kvm-02's one VM large enough that draining it takes tens of seconds. */
function slowDrainCluster() {
  const cluster = smallCluster();
  const onKvm02 = cluster.vms.find((v) => v.host === 'kvm-02');
  if (!onKvm02) throw new Error('the small cluster has no VM on kvm-02');
  onKvm02.memMiB = 24576;
  onKvm02.workload = { kind: 'constant', cpuPct: 80, dirtyMiBps: 5, wwsMiB: 16384 };
  return cluster;
}

beforeAll(async () => {
  port = await freePort();
  fixture = await writeFixture(
    '{unused}',
    {
      redis: { prefix: '{drover}' },
      api: {
        port,
        metricsAuth: true,
        tokens: [
          { name: 'ops', role: 'admin', value: ADMIN_TOKEN },
          { name: 'viewer', role: 'read', value: READ_TOKEN },
          { name: 'weak', role: 'read', value: WEAK_TOKEN },
        ],
      },
      log: { level: 'info' },
    },
    slowDrainCluster(),
  );
  stateDir = join(fixture.dir, 'state');
  const configPath = join(fixture.dir, 'drover.yaml');
  await chmod(configPath, 0o644); // world-readable, and it holds tokens
  const env = { ...process.env };
  delete env.REDIS_URL;
  serve = spawnServe('drover', ['--config', configPath, '--state-dir', stateDir], env);
  await until(
    'drover serves with every VM sampled and its dirty rate measured',
    async () => {
      if (!serve.alive()) throw new Error(`drover exited\n${serve.tail()}`);
      const res = await admin('GET', '/v1/snapshots/latest').catch(() => null);
      const vms = res?.status === 200 ? (res.body.vms as { dirtyMiBps: number | null }[]) : [];
      return vms.length === 9 && vms.every((v) => v.dirtyMiBps !== null);
    },
    120_000,
    ctx,
    200,
  );
}, 180_000);

afterAll(async () => {
  if (serve?.alive()) serve.child.kill('SIGTERM');
  await Promise.race([serve?.exit, new Promise((r) => setTimeout(r, 20_000))]);
  if (serve?.alive()) serve.child.kill('SIGKILL');
  const pid = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8').catch(() => '0'));
  if (pid > 0 && running(pid)) await killAndWait(pid);
  await fixture?.cleanup();
});

describe('probes against a running drover serve', () => {
  it('warns at start about the world-readable config holding tokens and the low-entropy token', () => {
    const warnings = serve.logs.filter((l) => l.msg === 'security warning').map((l) => JSON.stringify(l));
    expect(warnings.join('\n')).toMatch(/every local user can read it/);
    expect(warnings.join('\n')).toMatch(/weak|entropy/i);
    expect(warnings.join('\n')).not.toContain(WEAK_TOKEN);
  }, 120_000);

  it('refuses encoded spellings of admin paths without a token, and nothing changes', async () => {
    const before = (await plans()).length;
    for (const path of [
      '/%761/hosts/kvm-04/drain',
      '/%76%31/hosts/kvm-04/drain',
      '/v1/hosts/kvm-04/%64rain',
      '//v1/hosts/kvm-04/drain',
      '/v1/./hosts/kvm-04/drain',
      '/V1/hosts/kvm-04/drain',
      '/v1/hosts/kvm-04/drain;x=1',
    ]) {
      // a spelling no route matches still needs a token before it is told so: 401 either way
      const res = await raw('POST', path, { 'content-type': 'application/json' }, '{}');
      expect(res.status, path).toBe(401);
    }
    for (const path of ['/%761/hosts', '/%761/cluster', '/v1/%68osts']) {
      const res = await raw('GET', path);
      expect(res.status, path).toBe(401);
    }
    expect(await hostState('kvm-04')).toBe('active');
    expect((await plans()).length).toBe(before);
  }, 120_000);

  it('keeps /metrics behind its token in every spelling', async () => {
    for (const path of ['/metrics', '/%6detrics', '/metric%73', '/metrics#x', '/metrics?x=1', '/METRICS']) {
      const res = await raw('GET', path);
      expect(res.status, path).toBe(401);
    }
    const ok = await raw('GET', '/metrics', { authorization: `Bearer ${READ_TOKEN}` });
    expect(ok.status).toBe(200);
    expect(ok.body.text).toMatch(/drover_build_info/);
  }, 120_000);

  it('refuses a change without application/json (415) and a read token on a change (403)', async () => {
    const before = (await plans()).length;
    const bare = await raw('POST', '/v1/hosts/kvm-04/drain', { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(bare.status).toBe(415);
    const form = await raw(
      'POST',
      '/v1/hosts/kvm-04/drain',
      { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/x-www-form-urlencoded' },
      'partial=true',
    );
    expect(form.status).toBe(415);
    const reader = await raw(
      'POST',
      '/v1/hosts/kvm-04/drain',
      { authorization: `Bearer ${READ_TOKEN}`, 'content-type': 'application/json' },
      '{}',
    );
    expect(reader.status).toBe(403);
    expect(await hostState('kvm-04')).toBe('active');
    expect((await plans()).length).toBe(before);
  }, 120_000);

  it('answers 404 for unknown ids up to 256 characters and 400 naming the parameter beyond', async () => {
    const mid = await admin('GET', `/v1/plans/${'p'.repeat(200)}`);
    expect(mid.status).toBe(404);
    const long = await admin('GET', `/v1/plans/${'p'.repeat(300)}`);
    expect(long.status).toBe(400);
    expect(JSON.stringify(long.body)).toMatch(/id/);
  }, 120_000);

  it('gives parallel rebalances distinct plan ids (no 409)', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => admin('POST', '/v1/plans', { reason: 'rebalance', dryRun: true })),
    );
    expect(answers.map((a) => a.status).filter((s) => s !== 200 && s !== 201)).toEqual([]);
    const stored = await Promise.all(
      Array.from({ length: 10 }, () => admin('POST', '/v1/plans', { reason: 'rebalance' })),
    );
    expect(stored.map((a) => a.status).filter((s) => s === 409)).toEqual([]);
    const ids = stored.map((a) => (a.body.plan as { id: string }).id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      const cancel = await admin('POST', `/v1/plans/${id}/cancel`);
      expect([200, 409]).toContain(cancel.status);
    }
  }, 120_000);

  it('runs one drain per host under parallel requests, refuses activate during it, and ends every plan', async () => {
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => admin('POST', '/v1/hosts/kvm-02/drain', {})),
    );
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 200, 200, 200, 201]);
    const ids = new Set(answers.map((a) => (a.body.plan as { id: string }).id));
    expect(ids.size).toBe(1);
    const [planId] = [...ids];

    const activate = await admin('POST', '/v1/hosts/kvm-02/activate', {});
    // the drain moves a 16 GiB working set, so it is surely still running: activate is refused, naming it
    expect(activate.status).toBe(409);
    expect(JSON.stringify(activate.body)).toContain(planId!);
    expect(await hostState('kvm-02')).toBe('maintenance');

    await until(
      'no plan left running',
      async () => (await plans()).every((p) => p.status !== 'running'),
      120_000,
      ctx,
      500,
    );
    const drain = await admin('GET', `/v1/plans/${planId!}`);
    expect(drain.body.status).toBe('completed');
    const snapshot = await admin('GET', '/v1/snapshots/latest');
    await until(
      'kvm-02 empty in a fresh snapshot',
      async () => {
        const s = await admin('GET', '/v1/snapshots/latest');
        return (s.body.vms as { host: string }[]).every((v) => v.host !== 'kvm-02');
      },
      60_000,
      ctx,
      500,
    );
    expect(snapshot.status).toBe(200);
  }, 240_000);

  it('answers 503 within its bound while its Redis is frozen, and recovers by itself', async () => {
    const pid = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8'));
    expect(running(pid)).toBe(true);
    process.kill(pid, 'SIGSTOP');
    try {
      const started = Date.now();
      const [ready, cluster, change] = await Promise.all([
        raw('GET', '/readyz'),
        admin('GET', '/v1/cluster'),
        admin('POST', '/v1/hosts/kvm-03/drain', {}),
      ]);
      const tookMs = Date.now() - started;
      expect(ready.status).toBe(503);
      expect(cluster.status).toBe(503);
      expect(change.status).toBe(503);
      // the documented bound is 5 s; the machine may be busy, so allow it a wide margin, never the outage
      expect(tookMs).toBeLessThan(20_000);
      const health = await raw('GET', '/healthz');
      expect(health.status).toBe(200);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await until('ready again', async () => (await raw('GET', '/readyz')).status === 200, 60_000, ctx, 500);
  }, 120_000);

  it('restarts its killed redis-server on the persisted data: the drained host stays in maintenance', async () => {
    const pid = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8'));
    await killAndWait(pid);
    await until(
      'a new redis-server and drover ready again',
      async () => {
        const now = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8').catch(() => '0'));
        return now > 0 && now !== pid && running(now) && (await raw('GET', '/readyz')).status === 200;
      },
      60_000,
      ctx,
      500,
    );
    expect(serve.alive()).toBe(true);
    expect(await hostState('kvm-02')).toBe('maintenance');
  }, 120_000);
});
