// The HTTP API of a running drover (in this process, on the simulator, the run's real Redis).
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes } from '../../src/service/api-server.js';
import { openApiPath } from '../../src/service/openapi.js';
import { startService, type RunningService } from '../../src/service/main.js';
import { cleanPrefix, connectRedis, serviceEnv, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, READ_TOKEN, writeFixture, type Fixture } from '../service/service-fixture.js';

let fixture: Fixture;
let svc: RunningService;
let base = '';

async function call(
  method: string,
  path: string,
  opts: { token?: string | null; body?: unknown; raw?: string; contentType?: string } = {},
): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.raw !== undefined || opts.body !== undefined) {
    headers['content-type'] = opts.contentType ?? 'application/json';
    body = opts.raw ?? JSON.stringify(opts.body);
  }
  const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = {};
  }
  answers.push({ method, path, status: res.status, contentType: res.headers.get('content-type'), text });
  return { status: res.status, json, text };
}

/** Every answer `call` got, checked against the OpenAPI document at the end. */
const answers: { method: string; path: string; status: number; contentType: string | null; text: string }[] =
  [];

async function until<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  fixture = await writeFixture(uniquePrefix('api'));
  svc = await startService(await fixture.load(), { env: serviceEnv() });
  base = svc.apiUrl!;
  await until(async () => (await call('GET', '/readyz', { token: null })).status === 200, 15_000);
});

afterAll(async () => {
  await svc?.stop('test done');
  const redis = connectRedis();
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
});

describe('health, readiness and metrics', () => {
  it('answers /healthz and /readyz without a token, with the checks', async () => {
    expect(await call('GET', '/healthz', { token: null })).toMatchObject({
      status: 200,
      json: { status: 'ok' },
    });
    const ready = await call('GET', '/readyz', { token: null });
    expect(ready.json).toMatchObject({
      ready: true,
      checks: { redis: { ok: true }, snapshot: { ok: true } },
    });
  });

  it('serves Prometheus metrics from drover’s registry', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    // Host CPU needs two samples: wait for the collector's second cycle.
    const text = await until(async () => {
      const t = await (await fetch(`${base}/metrics`)).text();
      return /^drover_host_cpu_percent\{host="kvm-01"\} \d/m.test(t) ? t : null;
    }, 10_000);
    expect(text).toContain('# TYPE drover_leader gauge');
    expect(text).toMatch(/^drover_leader 1$/m);
    expect(text).toMatch(/^drover_host_cpu_percent\{host="kvm-01"\} \d/m);
  });
});

describe('authentication and roles', () => {
  it('refuses /v1 without a token, with a malformed header, and with an unknown token', async () => {
    for (const [token, message] of [
      [null, 'send Authorization'],
      ['not a bearer', 'expected Authorization'],
      ['x'.repeat(40), 'unknown token'],
    ] as const) {
      const res =
        token === 'not a bearer'
          ? await fetch(`${base}/v1/cluster`, { headers: { authorization: 'Basic abc' } }).then(
              async (r) => ({
                status: r.status,
                json: (await r.json()) as Record<string, unknown>,
              }),
            )
          : await call('GET', '/v1/cluster', { token });
      expect(res.status).toBe(401);
      expect(res.json.error).toMatchObject({ code: 'unauthorized', field: 'authorization' });
      expect(JSON.stringify(res.json)).toContain(message);
    }
  });

  it('lets a read token read but not change anything', async () => {
    expect((await call('GET', '/v1/hosts', { token: READ_TOKEN })).status).toBe(200);
    const res = await call('POST', '/v1/hosts/kvm-02/activate', { token: READ_TOKEN, body: {} });
    expect(res.status).toBe(403);
    expect(res.json.error).toMatchObject({ code: 'forbidden' });
  });
});

describe('input validation', () => {
  it('names the offending field of a bad body', async () => {
    const res = await call('POST', '/v1/plans', { body: { reason: 'shuffle', dryRun: 'yes', extra: 1 } });
    expect(res.status).toBe(400);
    const error = res.json.error as { code: string; field: string; issues: { path: string }[] };
    expect(error.code).toBe('invalid_input');
    expect(error.issues.map((i) => i.path).sort()).toEqual(['body.dryRun', 'body.extra', 'body.reason']);
  });

  it('requires the host of a drain and rejects one for a rebalance', async () => {
    const a = await call('POST', '/v1/plans', { body: { reason: 'drain' } });
    expect(a.json.error).toMatchObject({ code: 'invalid_input', field: 'body.host' });
    const b = await call('POST', '/v1/plans', { body: { reason: 'rebalance', host: 'kvm-01' } });
    expect(b.json.error).toMatchObject({ code: 'invalid_input', field: 'body.host' });
  });

  it('rejects bodies over the limit, malformed JSON, and other media types', async () => {
    const big = await call('POST', '/v1/plans', {
      raw: JSON.stringify({ reason: 'rebalance', pad: 'x'.repeat(8000) }),
    });
    expect(big.status).toBe(413);
    expect(big.json.error).toMatchObject({ code: 'body_too_large' });
    const bad = await call('POST', '/v1/plans', { raw: '{"reason": ' });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'invalid_input', field: 'body' });
    const form = await call('POST', '/v1/plans', { raw: 'reason=rebalance', contentType: 'text/plain' });
    expect(form.status).toBe(415);
    expect(form.json.error).toMatchObject({ code: 'unsupported_media_type' });
  });

  it('answers unknown routes and objects with not_found', async () => {
    expect((await call('GET', '/v1/nope')).json.error).toMatchObject({ code: 'not_found' });
    expect((await call('GET', '/v1/plans/does-not-exist')).status).toBe(404);
    expect((await call('GET', '/v1/hosts/kvm-99')).status).toBe(404);
    expect((await call('GET', '/v1/plans?status=weird')).json.error).toMatchObject({ field: 'query.status' });
  });
});

describe('cluster, plans, drain and activate', () => {
  it('shows the cluster with hosts, load and the leader', async () => {
    const res = await call('GET', '/v1/cluster', { token: READ_TOKEN });
    expect(res.status).toBe(200);
    const view = res.json as {
      hosts: { id: string; vms: number; cpuPct: number | null }[];
      leader: { instance: string };
    };
    expect(view.hosts.map((h) => h.id)).toEqual(['kvm-01', 'kvm-02', 'kvm-03', 'kvm-04']);
    expect(view.hosts.find((h) => h.id === 'kvm-01')?.vms).toBe(6);
    expect(view.leader.instance).toBe(svc.instance);
    const snap = await call('GET', '/v1/snapshots/latest');
    expect((snap.json as { version: number }).version).toBe(1);
  });

  it('makes a dry-run plan without storing it', async () => {
    const res = await call('POST', '/v1/plans', { body: { reason: 'rebalance', dryRun: true } });
    expect(res.status).toBe(200);
    const { record, plan } = res.json as { record: null; plan: { id: string; reason: string } };
    expect(record).toBeNull();
    expect(plan.reason).toBe('rebalance');
    expect((await call('GET', `/v1/plans/${plan.id}`)).status).toBe(404);
  });

  it('keeps a rebalance pending under partial automation, until approved or cancelled', async () => {
    const res = await call('POST', '/v1/plans', { body: { reason: 'rebalance' } });
    expect(res.status).toBe(201);
    const { record } = res.json as { record: { status: string; plan: { id: string }; createdBy: string } };
    expect(record).toMatchObject({ status: 'pending', createdBy: 'api:ops' });
    const cancelled = await call('POST', `/v1/plans/${record.plan.id}/cancel`, { body: { note: 'not now' } });
    expect(cancelled.json).toMatchObject({ status: 'cancelled' });
    const again = await call('POST', `/v1/plans/${record.plan.id}/approve`, { body: {} });
    expect(again.status).toBe(409);
    expect(again.json.error).toMatchObject({ code: 'conflict' });
  });

  it('drains a host: the drain runs at once under partial automation and empties the host', async () => {
    // The planner moves only VMs whose dirty rate was measured: wait for the collector to have done so.
    await until(async () => {
      const snap = (await call('GET', '/v1/snapshots/latest')).json as {
        vms?: { host: string; state: string; dirtyMiBps: number | null }[];
      };
      const onHost = (snap.vms ?? []).filter((v) => v.host === 'kvm-04' && v.state === 'running');
      return onHost.length > 0 && onHost.every((v) => v.dirtyMiBps !== null);
    }, 30_000);
    const askedAtMs = Date.now();
    const res = await call('POST', '/v1/hosts/kvm-04/drain', { body: {} });
    expect(res.status).toBe(201);
    const { record, plan } = res.json as {
      record: { status: string };
      plan: { id: string; steps: { vm: string; to: string }[] };
    };
    // Started at once (not pending); on the sped-up simulator it may even have finished already.
    expect(['running', 'completed']).toContain(record.status);
    expect(plan.steps).toHaveLength(1);
    expect(plan.steps[0]!.to).not.toBe('kvm-04');
    expect((await call('GET', '/v1/hosts/kvm-04')).json).toMatchObject({ state: 'maintenance' });
    const done = await until(async () => {
      const r = await call('GET', `/v1/plans/${plan.id}`);
      const status = (r.json as { status: string }).status;
      return status === 'completed' || status === 'failed' ? status : null;
    }, 20_000);
    expect(done).toBe('completed');
    const located = await svc.hypervisor.locateVm(plan.steps[0]!.vm);
    expect(located.map((l) => l.hostId)).toEqual([plan.steps[0]!.to]);
    const migrations = (await call('GET', '/v1/migrations')).json as {
      migrations: { vm: string; state: string; startedAt: string | null }[];
    };
    const drained = migrations.migrations.find((m) => m.vm === plan.steps[0]!.vm);
    expect(drained?.state).toBe('completed');
    // when a worker took the job: after the drain was asked for, not in the future
    const startedMs = Date.parse(drained?.startedAt ?? '');
    expect(startedMs).toBeGreaterThanOrEqual(askedAtMs);
    expect(startedMs).toBeLessThanOrEqual(Date.now());
    const activated = await call('POST', '/v1/hosts/kvm-04/activate', { body: {} });
    expect(activated.json).toMatchObject({ id: 'kvm-04', state: 'active' });
  }, 30_000);

  it('says there is nothing to abort for a VM with no migration', async () => {
    const res = await call('POST', '/v1/migrations/no-such-vm/abort', { body: {} });
    expect(res.status).toBe(404);
  });
});

describe('the OpenAPI document (GET /v1/openapi.json)', () => {
  interface Operation {
    'x-drover-role': string;
    responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
  }
  let doc: { openapi: string; paths: Record<string, Record<string, Operation>> };

  beforeAll(async () => {
    expect((await call('GET', '/v1/openapi.json', { token: null })).status).toBe(401);
    const res = await call('GET', '/v1/openapi.json', { token: READ_TOKEN });
    expect(res.status).toBe(200);
    doc = res.json as typeof doc;
  });

  it('lists every registered route with its method and role', () => {
    const routes = registeredRoutes(svc.api!).filter((r) => r.method !== 'HEAD');
    expect(routes.length).toBeGreaterThan(20);
    for (const r of routes) {
      const op = doc.paths[openApiPath(r.url)]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.url}`).toBeDefined();
    }
    const documented = Object.values(doc.paths).flatMap((ops) => Object.keys(ops));
    expect(documented).toHaveLength(routes.length);
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.paths['/v1/plans/{id}/approve']?.post?.['x-drover-role']).toBe('admin');
    expect(doc.paths['/v1/cluster']?.get?.['x-drover-role']).toBe('read');
    expect(doc.paths['/healthz']?.get?.['x-drover-role']).toBe('public');
  });

  it('describes every answer a real request got, for every route', async () => {
    // Routes no earlier case called, and a few more answers, so each operation has at least one real answer.
    const vm = (
      (await call('GET', '/v1/migrations', { token: READ_TOKEN })).json as { migrations: { vm: string }[] }
    ).migrations[0]?.vm;
    expect(vm).toBeDefined();
    for (const path of [
      '/healthz',
      '/readyz',
      '/metrics',
      '/v1/plans?limit=5',
      '/v1/hosts',
      '/v1/hosts/kvm-01',
      `/v1/migrations/${vm}`,
      '/v1/automation',
      '/v1/quarantines',
      '/v1/audit?limit=3',
    ])
      await call('GET', path, { token: READ_TOKEN });
    await call('POST', '/v1/automation', { body: { paused: true, note: 'openapi' } });
    await call('POST', '/v1/automation', { body: { paused: false } });
    await call('POST', '/v1/quarantines/no-such-vm/lift', { body: {} });
    await call('POST', '/v1/quarantines/no-such-vm', { body: { forS: 60 } });
    await call('POST', '/v1/hosts/kvm-03/drain', { body: { dryRun: true } });
    const pending = await call('POST', '/v1/plans', { body: { reason: 'rebalance' } });
    const id = (pending.json as { record?: { plan: { id: string } } }).record?.plan.id;
    if (id) await call('POST', `/v1/plans/${id}/approve`, { body: {} });

    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema(doc, 'openapi');
    const pointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');
    const templates = Object.keys(doc.paths).map((t) => ({
      t,
      re: new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`),
    }));
    const seen = new Set<string>();
    let checked = 0;
    for (const a of answers) {
      const path = a.path.split('?')[0]!;
      const template = templates.find((x) => x.re.test(path))?.t;
      if (!template) continue; // an unknown route: no operation to describe it
      const method = a.method.toLowerCase();
      const op = doc.paths[template]?.[method];
      if (!op) continue;
      seen.add(`${method} ${template}`);
      const key = op.responses[String(a.status)] ? String(a.status) : 'default';
      const what = `${a.method} ${a.path} -> ${a.status}`;
      const media = (a.contentType ?? '').split(';')[0]!;
      const content = op.responses[key]?.content ?? {};
      const mediaKey = Object.keys(content).find((k) => k.split(';')[0] === media);
      expect(mediaKey, `${what}: ${media} not documented`).toBeDefined();
      if (media !== 'application/json') continue;
      const ref = `openapi#/paths/${pointer(template)}/${method}/responses/${key}/content/${pointer(mediaKey!)}/schema`;
      const validate = ajv.getSchema(ref) ?? ajv.compile({ $ref: ref });
      expect(validate(JSON.parse(a.text)) ? [] : validate.errors, what).toEqual([]);
      checked++;
    }
    const operations = Object.entries(doc.paths).flatMap(([t, ops]) =>
      Object.keys(ops).map((m) => `${m} ${t}`),
    );
    expect(operations.filter((o) => !seen.has(o))).toEqual([]);
    expect(checked).toBeGreaterThan(40);
  });
});
