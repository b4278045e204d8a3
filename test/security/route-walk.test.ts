// Every route the server has (read from the app, so a new route is walked without editing this file), asked
// for under many spellings of its path — percent-encoded letters and slashes, doubled slashes, `/./` and
// `/../` segments, a trailing slash, changed case, `;` parameters, fragments, query tricks, absolute-form
// request targets — sent byte for byte as written (no client-side normalisation, like `curl --path-as-is`).
// Without a token each answers 401, with a read token each change answers 403, and afterwards Redis holds
// exactly the plans, host states and jobs it held before.
import { request as httpRequest } from 'node:http';
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

const prefix = uniquePrefix('walk');
let h: Harness;
let routes: RouteInfo[] = [];
const ids = { host: '', vm: '', plan: '' };

interface Answer {
  status: number;
  body: string;
}

/** One request with the target exactly as given (node's http client sends `path` unchanged). */
function raw(
  method: string,
  target: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  const url = new URL(h.running.apiUrl ?? '');
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, method, path: target, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/**
 * Node's HTTP parser itself refuses some request targets (a backslash) with 400 before any drover code runs:
 * nothing reached a route, so nothing is to check there.
 */
function refusedByHttpParser(target: string, res: Answer): boolean {
  return target.includes('\\') && res.status === 400 && res.body.includes('"Client Error"');
}

function encodeChar(c: string): string {
  return `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
}

/** Spellings of `path` a router or a proxy might take for it (or for a neighbour). */
export function variants(path: string): string[] {
  const segments = path.split('/').slice(1);
  const out = new Set<string>([path]);
  const letters = [...path].flatMap((c, i) => (/[a-z0-9-]/i.test(c) ? [i] : []));
  // Each single letter percent-encoded (lower- and upper-case hex), and every letter at once.
  for (const i of letters) {
    const e = encodeChar(path[i] ?? '');
    out.add(path.slice(0, i) + e + path.slice(i + 1));
    out.add(path.slice(0, i) + e.toUpperCase() + path.slice(i + 1));
  }
  out.add([...path].map((c) => (/[a-z0-9]/i.test(c) ? encodeChar(c) : c)).join(''));
  // Slashes encoded, doubled, dot segments, trailing slash.
  for (let i = 1; i < segments.length; i++) {
    const head = `/${segments.slice(0, i).join('/')}`;
    const tail = segments.slice(i).join('/');
    out.add(`${head}%2f${tail}`);
    out.add(`${head}%2F${tail}`);
    out.add(`${head}//${tail}`);
    out.add(`${head}/./${tail}`);
    out.add(`${head}/%2e/${tail}`);
    out.add(`${head}/x/../${tail}`);
    out.add(`${head}/x/%2e%2e/${tail}`);
    out.add(`${head}/x%2f..%2f${tail}`);
    out.add(`${head};x=1/${tail}`);
    out.add(`${head}%3b/${tail}`);
  }
  out.add(`/${path}`);
  out.add(`//${path.slice(1)}`);
  out.add(`/.${path}`);
  out.add(`/./${path.slice(1)}`);
  out.add(`/x/..${path}`);
  out.add(`/healthz/..${path}`);
  out.add(`/readyz/%2e%2e${path}`);
  out.add(`/metrics/../${path.slice(1)}`);
  out.add(`${path}/`);
  out.add(`${path}/.`);
  out.add(`${path}//`);
  out.add(path.toUpperCase());
  out.add(path.replace(/\/([a-z])/g, (_m, c: string) => `/${c.toUpperCase()}`));
  out.add(`${path};`);
  out.add(`${path};jsessionid=1`);
  out.add(`${path}#x`);
  out.add(`${path}%23x`);
  out.add(`${path}?`);
  out.add(`${path}??x=1`);
  out.add(`${path}?/healthz`);
  out.add(`${path}?x=/../healthz`);
  out.add(`${path}%3fx=1`);
  out.add(`${path}%00`);
  out.add(`${path}%20`);
  out.add(`${path}%09`);
  out.add(path.replace(/\//g, '\\'));
  out.add(`http://127.0.0.1${path}`);
  out.add(`http://example.invalid${path}`);
  out.add(`HTTP://127.0.0.1//${path.slice(1)}`);
  return [...out];
}

function fill(url: string): string {
  return url
    .replace('/v1/plans/:id', `/v1/plans/${ids.plan}`)
    .replace('/v1/hosts/:id', `/v1/hosts/${ids.host}`)
    .replace('/v1/migrations/:vm', `/v1/migrations/${ids.vm}`)
    .replace(/:[a-zA-Z]+/g, 'x');
}

/** What a request that slipped past the gate could change: plans (and their status), host states, jobs. */
async function stateOf(): Promise<string> {
  const redis = connectRedis();
  try {
    const plans = await redis.zrange(`${prefix}:plans`, 0, -1);
    const statuses: string[] = [];
    for (const id of plans) {
      const text = await redis.get(`${prefix}:plan:${id}`);
      const rec = text ? (JSON.parse(text) as { status: string; events: unknown[] }) : null;
      statuses.push(`${id}=${rec?.status}/${rec?.events.length}`);
    }
    const hostStates = await redis.hgetall(`${prefix}:host-state`);
    const jobKeys: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      jobKeys.push(...keys.filter((k) => /:vm-[^:]+$/.test(k) || /:plan:|:drain:|:audit/.test(k)));
    } while (cursor !== '0');
    return JSON.stringify({ statuses, hostStates, jobKeys: jobKeys.sort() }, null, 1);
  } finally {
    redis.disconnect();
  }
}

beforeAll(async () => {
  // metricsAuth on: then only /healthz and /readyz are public, and /metrics is walked like the rest.
  h = await startHarness(redisUrl(), prefix, {
    api: { metricsAuth: true },
    automation: { level: 'manual' },
  });
  const app = buildApi({
    ops: h.running.service,
    tokens: h.loaded.tokens,
    metrics: h.running.metrics,
    bodyLimitBytes: h.loaded.config.api.bodyLimitBytes,
    metricsAuth: true,
  });
  await app.ready();
  routes = routesOf(app);
  await app.close();
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const deadline = Date.now() + 30_000;
  for (;;) {
    const snap = await raw('GET', '/v1/snapshots/latest', auth);
    if (snap.status === 200) {
      const s = JSON.parse(snap.body) as { hosts: { id: string }[]; vms: { id: string }[] };
      ids.host = s.hosts[0]?.id ?? '';
      ids.vm = s.vms[0]?.id ?? '';
      break;
    }
    if (Date.now() > deadline) throw new Error('no snapshot in 30 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  // A pending plan (manual automation) that a slipped approve or cancel would change.
  const created = await raw(
    'POST',
    '/v1/plans',
    { ...auth, 'content-type': 'application/json' },
    JSON.stringify({ reason: 'rebalance' }),
  );
  expect(created.status, created.body).toBe(201);
  ids.plan = (JSON.parse(created.body) as { record: { plan: { id: string } } }).record.plan.id;
}, 60_000);

afterAll(async () => {
  await h?.stop();
  const redis = connectRedis();
  await cleanPrefix(redis, prefix);
  redis.disconnect();
});

describe('every route under every spelling of its path', () => {
  it('finds the routes from the server itself', () => {
    const keys = routes.map((r) => `${r.method} ${r.url}`);
    expect(keys).toContain('POST /v1/hosts/:id/drain');
    expect(keys).toContain('GET /metrics');
    expect(routes.length).toBeGreaterThanOrEqual(20);
  });

  it('without a token: 401 on each, and nothing changes', async () => {
    const before = await stateOf();
    const wrong: string[] = [];
    let sent = 0;
    for (const r of routes) {
      if (r.url === '/healthz' || r.url === '/readyz') continue;
      for (const target of variants(fill(r.url))) {
        // Node's parser answers a backslash target with a 400 that carries a body, which a HEAD client
        // cannot read; the GET of the same target covers it.
        if (r.method === 'HEAD' && target.includes('\\')) continue;
        const headers: Record<string, string> = {};
        let body: string | undefined;
        if (r.method === 'POST') {
          headers['content-type'] = 'application/json';
          body = '{}';
        }
        const res = await raw(r.method, target, headers, body);
        sent++;
        if (res.status !== 401 && !refusedByHttpParser(target, res))
          wrong.push(`${r.method} ${target} without a token: ${res.status} ${res.body}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(await stateOf()).toBe(before);
    console.log(`path variants without a token: ${sent} requests over ${routes.length} routes, all 401`);
  }, 240_000);

  it('with a read token: 403 on each variant of every change, and nothing changes', async () => {
    const before = await stateOf();
    const wrong: string[] = [];
    for (const r of routes) {
      if (r.method !== 'POST') continue;
      for (const target of variants(fill(r.url))) {
        for (const contentType of ['application/json', 'text/plain', null]) {
          const headers: Record<string, string> = { authorization: `Bearer ${READ_TOKEN}` };
          if (contentType) headers['content-type'] = contentType;
          const res = await raw('POST', target, headers, contentType ? '{}' : undefined);
          if (res.status !== 403 && !refusedByHttpParser(target, res))
            wrong.push(`POST ${target} with a read token: ${res.status} ${res.body}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(await stateOf()).toBe(before);
  }, 240_000);

  it('an admin change without application/json gets 415 and changes nothing', async () => {
    const before = await stateOf();
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    for (const r of routes) {
      if (r.method !== 'POST') continue;
      const target = fill(r.url);
      for (const [type, body] of [
        [null, undefined],
        ['text/plain', '{}'],
        ['application/x-www-form-urlencoded', 'dryRun=false'],
        ['multipart/form-data; boundary=x', '--x--'],
        ['application/jsonx', '{}'],
      ] as const) {
        const res = await raw('POST', target, type ? { ...auth, 'content-type': type } : auth, body);
        expect(res.status, `POST ${target} as ${type ?? 'nothing'}: ${res.body}`).toBe(415);
      }
    }
    expect(await stateOf()).toBe(before);
  });

  it('the admin token on the plain path still works (the walk is not refusing everything)', async () => {
    const res = await raw('GET', fill('/v1/plans/:id'), { authorization: `Bearer ${ADMIN_TOKEN}` });
    expect(res.status).toBe(200);
    const metrics = await raw('GET', '/metrics', { authorization: `Bearer ${READ_TOKEN}` });
    expect(metrics.status).toBe(200);
    // A percent-encoded spelling of an admin route reaches the same route, with the same rule.
    const encoded = await raw('GET', `/%761/plans/${ids.plan}`, { authorization: `Bearer ${READ_TOKEN}` });
    expect(encoded.status).toBe(200);
  });

  it('ids over the documented length get 400 naming the parameter (after the token check)', async () => {
    const auth = { authorization: `Bearer ${READ_TOKEN}` };
    for (const n of [257, 300, 1000]) {
      const res = await raw('GET', `/v1/hosts/${'h'.repeat(n)}`, auth);
      expect(res.status, `id of ${n} characters`).toBe(400);
      expect(res.body).toMatch(/invalid_input/);
    }
    expect((await raw('GET', `/v1/hosts/${'h'.repeat(256)}`, auth)).status).toBe(404);
    expect((await raw('GET', `/v1/hosts/${'h'.repeat(300)}`, {})).status).toBe(401);
  });
});

describe('a route without a role', () => {
  it('stops the server from starting', () => {
    const app = buildApi({
      ops: h.running.service,
      tokens: h.loaded.tokens,
      metrics: h.running.metrics,
      bodyLimitBytes: 4096,
      metricsAuth: false,
    });
    expect(() => app.get('/v1/unguarded', () => Promise.resolve({ ok: true }))).toThrow(/declares no role/);
    void app.close();
  });
});
