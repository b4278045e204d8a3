// Every API route, enumerated from the fastify app itself, walked with no token, a bogus token, a read token
// and an admin token against the real service on a loopback listener: reads need read or admin, changes
// need admin, and only an explicit list of public routes answers without a token. Then: no token (valid or
// not) appears in anything the service logged, and /metrics shows no token or other secret from the config.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../src/service/api-server.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import {
  ADMIN_TOKEN,
  READ_TOKEN,
  routesOf,
  startHarness,
  type Harness,
  type RouteInfo,
} from './service-harness.js';

/** Routes anyone may call: liveness, readiness and (unless metricsAuth) the Prometheus endpoint. */
const PUBLIC_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);
const BOGUS_TOKEN = 'bogus-token-5e1f0a9b8c7d6e5f4a3b';

const prefix = uniquePrefix('security');
let h: Harness;
let routes: RouteInfo[] = [];
const ids = { host: '', vm: '', plan: '' };

async function call(
  method: string,
  path: string,
  token: string | null,
  body?: unknown,
): Promise<{ status: number; json: unknown; text: string }> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = token.includes(' ') ? token : `Bearer ${token}`;
  let payload: string | undefined;
  if (method === 'POST') {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body ?? {});
  }
  const res = await fetch(`${h.running.apiUrl}${path}`, {
    method,
    headers,
    ...(payload ? { body: payload } : {}),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // /metrics is text
  }
  return { status: res.status, json, text };
}

function fill(url: string): string {
  return url
    .replace('/v1/plans/:id', `/v1/plans/${ids.plan}`)
    .replace('/v1/hosts/:id', `/v1/hosts/${ids.host}`)
    .replace('/v1/migrations/:vm', `/v1/migrations/${ids.vm}`)
    .replace(/:[a-zA-Z]+/g, 'x');
}

/** A body an admin would send to each changing route (a dry run where the route has one). */
function bodyFor(url: string): unknown {
  if (url === '/v1/plans') return { reason: 'rebalance', dryRun: true };
  if (url.endsWith('/drain')) return { dryRun: true };
  if (url.endsWith('/approve') || url.endsWith('/cancel')) return { note: 'security walk' };
  if (url === '/v1/automation') return { paused: false };
  return {};
}

beforeAll(async () => {
  h = await startHarness(redisUrl(), prefix);
  const app = buildApi({
    ops: h.running.service,
    tokens: h.loaded.tokens,
    metrics: h.running.metrics,
    bodyLimitBytes: h.loaded.config.api.bodyLimitBytes,
    metricsAuth: false,
  });
  await app.ready();
  routes = routesOf(app);
  await app.close();
  // Wait for the first snapshot and a leader, so the admin walk reaches the routes' real work.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const snap = await call('GET', '/v1/snapshots/latest', READ_TOKEN);
    const cluster = await call('GET', '/v1/cluster', READ_TOKEN);
    const leader = (cluster.json as { leader?: unknown } | null)?.leader;
    if (snap.status === 200 && leader) {
      const s = snap.json as { hosts: { id: string }[]; vms: { id: string }[] };
      ids.host = s.hosts[0]?.id ?? '';
      ids.vm = s.vms[0]?.id ?? '';
      break;
    }
    if (Date.now() > deadline) throw new Error('the service produced no snapshot and no leader in 20 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  // A stored plan for the plan routes: a drain of another host (it runs on the simulator; that is fine).
  const s = (await call('GET', '/v1/snapshots/latest', READ_TOKEN)).json as { hosts: { id: string }[] };
  const created = await call('POST', `/v1/hosts/${s.hosts[1]?.id ?? ids.host}/drain`, ADMIN_TOKEN, {});
  ids.plan = (created.json as { record: { plan: { id: string } } }).record.plan.id;
  expect(created.status).toBe(201);
}, 60_000);

afterAll(async () => {
  await h?.stop();
  const redis = connectRedis();
  await cleanPrefix(redis, prefix);
  redis.disconnect();
});

describe('route enumeration', () => {
  it('reads every route from the app, including each changing route', () => {
    const keys = routes.map((r) => `${r.method} ${r.url}`);
    // Sanity of the enumeration itself: it sees nested parameter routes and every method.
    expect(keys).toContain('POST /v1/plans');
    expect(keys).toContain('POST /v1/plans/:id/approve');
    expect(keys).toContain('GET /v1/hosts/:id');
    expect(keys).toContain('HEAD /healthz');
    expect(routes.length).toBeGreaterThanOrEqual(20);
  });

  it('every route outside /v1 is on the public list (a new one must be added there knowingly)', () => {
    for (const r of routes) {
      if (r.url.startsWith('/v1/') || r.url === '/v1') continue;
      expect(PUBLIC_ROUTES, `${r.method} ${r.url} answers without a token`).toContain(r.url);
    }
  });
});

describe('tokens and roles on every route', () => {
  it('no token and a bogus token get 401 on every /v1 route; public routes answer', async () => {
    const rows: string[] = [];
    for (const r of routes) {
      const path = fill(r.url);
      for (const token of [
        null,
        BOGUS_TOKEN,
        `Basic ${ADMIN_TOKEN}`,
        `Bearer ${ADMIN_TOKEN}x`,
        `Bearer ${ADMIN_TOKEN.slice(0, -1)}`,
      ]) {
        const res = await call(r.method, path, token, bodyFor(r.url));
        if (PUBLIC_ROUTES.has(r.url)) expect([200, 503], `${r.method} ${path}`).toContain(res.status);
        else {
          expect(
            res.status,
            `${r.method} ${path} with ${token === null ? 'no token' : 'a wrong token'}`,
          ).toBe(401);
          if (r.method !== 'HEAD')
            expect((res.json as { error: { code: string } }).error.code).toBe('unauthorized');
        }
      }
      rows.push(`${r.method} ${r.url}`);
    }
    expect(rows.length).toBe(routes.length);
  });

  it('a read token reads (never 401/403) and is refused (403) on every changing route', async () => {
    for (const r of routes) {
      if (PUBLIC_ROUTES.has(r.url)) continue;
      const path = fill(r.url);
      const res = await call(r.method, path, READ_TOKEN, bodyFor(r.url));
      if (r.method === 'GET' || r.method === 'HEAD') {
        expect([401, 403], `${r.method} ${path} with a read token`).not.toContain(res.status);
        expect(res.status, `${r.method} ${path}: ${res.text}`).toBeLessThan(500);
      } else {
        expect(res.status, `${r.method} ${path} with a read token`).toBe(403);
        expect((res.json as { error: { code: string } }).error.code).toBe('forbidden');
      }
    }
  });

  it('an admin token passes on every route; list and dry-run routes answer 2xx', async () => {
    const table: string[] = [];
    for (const r of routes) {
      const path = fill(r.url);
      const res = await call(r.method, path, ADMIN_TOKEN, bodyFor(r.url));
      table.push(`${r.method.padEnd(5)} ${r.url.padEnd(28)} ${res.status}`);
      expect([401, 403], `${r.method} ${path} with the admin token`).not.toContain(res.status);
      expect(res.status, `${r.method} ${path}: ${res.text}`).toBeLessThan(500);
      if (!r.url.includes(':') || r.url.startsWith('/v1/hosts/:id') || r.url === '/v1/plans/:id') {
        if (r.url !== '/readyz') expect(res.status, `${r.method} ${path}: ${res.text}`).toBeLessThan(300);
      }
    }
    console.log(`admin walk:\n${table.join('\n')}`);
  });

  it('methods with no route under /v1 still need a token before anything else', async () => {
    for (const method of ['DELETE', 'PUT', 'PATCH']) {
      const res = await fetch(`${h.running.apiUrl}/v1/plans`, { method });
      expect(res.status).toBe(401);
    }
  });

  it('with metricsAuth on, /metrics needs a token too', async () => {
    const app = buildApi({
      ops: h.running.service,
      tokens: h.loaded.tokens,
      metrics: h.running.metrics,
      bodyLimitBytes: 4096,
      metricsAuth: true,
    });
    try {
      expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
      const ok = await app.inject({
        method: 'GET',
        url: '/metrics',
        headers: { authorization: `Bearer ${READ_TOKEN}` },
      });
      expect(ok.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe('secrets', () => {
  it('no token, valid or not, appears in the service logs', async () => {
    // Some refused requests on top of the walks above, so the refusal paths have logged.
    await call('POST', '/v1/plans', READ_TOKEN, { reason: 'rebalance' });
    await call('GET', '/v1/cluster', BOGUS_TOKEN);
    await call('POST', '/v1/plans', ADMIN_TOKEN, { reason: 'nonsense' });
    expect(h.logs.length).toBeGreaterThan(0);
    const all = h.logs.join('\n');
    for (const secret of [ADMIN_TOKEN, READ_TOKEN, BOGUS_TOKEN, ADMIN_TOKEN.slice(0, -1)])
      expect(all.includes(secret), 'a token was logged').toBe(false);
    // The refusals were logged, naming the caller by token name at most.
    expect(all).toMatch(/api request refused|forbidden|unauthorized/);
  });

  it('/metrics exposes no token and no Redis URL', async () => {
    const res = await call('GET', '/metrics', null);
    expect(res.status).toBe(200);
    expect(res.text).toContain('drover_');
    for (const secret of [ADMIN_TOKEN, READ_TOKEN, redisUrl()]) expect(res.text.includes(secret)).toBe(false);
  });
});
