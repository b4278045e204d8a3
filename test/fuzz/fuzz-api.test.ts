// Fuzzing of the HTTP API through the real fastify app over the real service (simulator, the run's Redis):
// random and near-valid JSON bodies, raw bytes, odd content types and hostile path parameters on every
// changing route (enumerated from the app). Every answer must be a JSON error with a code (4xx) or a success;
// never a 500, and a refused request creates no plan. Oversized bodies get 413 before they are parsed.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi, type ApiApp } from '../../src/service/api-server.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import {
  ADMIN_TOKEN,
  routesOf,
  startHarness,
  type Harness,
  type RouteInfo,
} from '../security/service-harness.js';
import { mutated, printSummary, record, runs, tally } from './fuzz-support.js';

const prefix = uniquePrefix('fuzz-api');
let h: Harness;
let app: ApiApp;
let posts: RouteInfo[] = [];
let hostId = '';
const BODY_LIMIT = 4096;
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

beforeAll(async () => {
  h = await startHarness(redisUrl(), prefix, { api: { bodyLimitBytes: BODY_LIMIT } });
  app = buildApi({
    ops: h.running.service,
    tokens: h.loaded.tokens,
    metrics: h.running.metrics,
    bodyLimitBytes: BODY_LIMIT,
    metricsAuth: false,
  });
  await app.ready();
  posts = routesOf(app).filter((r) => r.method === 'POST');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const snap = await h.running.service.latestSnapshot();
    if (snap) {
      hostId = snap.hosts[0]?.id ?? '';
      break;
    }
    if (Date.now() > deadline) throw new Error('no snapshot in 20 s');
    await new Promise((r) => setTimeout(r, 200));
  }
}, 60_000);

afterAll(async () => {
  await app?.close();
  await h?.stop();
  const redis = connectRedis();
  await cleanPrefix(redis, prefix);
  redis.disconnect();
  const { crashed } = printSummary('api');
  expect(crashed).toBe(0);
});

const hostileParam = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom(
    '..',
    '../../etc/passwd',
    '%00',
    '%2e%2e',
    'x'.repeat(300),
    '%E0%A4%A',
    '{drover}:*',
    '*',
    '\u0000',
  ),
);

const body = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  mutated({ reason: 'drain', host: 'kvm-01', dryRun: true }, 3),
  mutated({ dryRun: true }, 2),
  mutated({ note: 'ok' }, 2),
);

function pathFor(route: RouteInfo, param: string): string {
  return route.url.replace(/:[a-zA-Z]+/g, encodeURIComponent(param) || 'x');
}

/** A response is sound: success, or an error object with a code; never a server error. */
function checkResponse(t: ReturnType<typeof tally>, status: number, payload: string, what: string): void {
  if (status >= 500 && status !== 503) {
    t.crashed += 1;
    throw new Error(`${what}: ${status} ${payload}`);
  }
  if (status >= 400) {
    const parsed = JSON.parse(payload) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code !== 'string' || typeof parsed.error.message !== 'string') {
      t.crashed += 1;
      throw new Error(`${what}: error without a code: ${payload}`);
    }
    record(t, 'refused', parsed.error.code);
  } else record(t, 'accepted');
}

describe('API bodies and parameters', () => {
  it('any JSON body on any changing route: a success or a coded 4xx, and refusals change nothing', async () => {
    const t = tally('api JSON bodies');
    const plansBefore = (await h.running.service.listPlans({ limit: 500 })).length;
    let created = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...posts), body, fc.boolean(), async (route, payload, realParam) => {
        const url = pathFor(route, realParam ? hostId : 'nope');
        const res = await app.inject({
          method: 'POST',
          url,
          headers: { ...auth, 'content-type': 'application/json' },
          payload: JSON.stringify(payload),
        });
        if (res.statusCode === 201) created += 1;
        checkResponse(t, res.statusCode, res.payload, `POST ${url} ${JSON.stringify(payload).slice(0, 200)}`);
      }),
      { numRuns: runs(600) },
    );
    const plansAfter = (await h.running.service.listPlans({ limit: 500 })).length;
    // Only the requests answered 201 stored a plan.
    expect(plansAfter - plansBefore).toBe(created);
    expect(t.refused).toBeGreaterThan(0);
  });

  it('raw bytes, odd content types and hostile path parameters: a success or a coded 4xx', async () => {
    const t = tally('api raw bodies and params');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...posts),
        hostileParam,
        fc.string({ maxLength: 200, unit: 'binary' }),
        fc.constantFrom(
          'application/json',
          'text/plain',
          'application/x-www-form-urlencoded',
          'application/json; charset=utf-16',
          '',
        ),
        async (route, param, raw, type) => {
          const url = pathFor(route, param);
          const headers: Record<string, string> = { ...auth };
          if (type) headers['content-type'] = type;
          const res = await app.inject({ method: 'POST', url, headers, payload: raw });
          checkResponse(
            t,
            res.statusCode,
            res.payload,
            `POST ${url} (${type}) ${JSON.stringify(raw).slice(0, 100)}`,
          );
        },
      ),
      { numRuns: runs(600) },
    );
    expect(t.refused).toBeGreaterThan(0);
  });

  it('hostile query strings and parameters on read routes: a success or a coded 4xx', async () => {
    const t = tally('api read params');
    const gets = routesOf(app).filter((r) => r.method === 'GET');
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...gets),
        hostileParam,
        fc.string({ maxLength: 60 }),
        async (route, param, query) => {
          const url = `${pathFor(route, param)}?${encodeURIComponent(query)}=${encodeURIComponent(param)}&limit=${encodeURIComponent(query)}`;
          const res = await app.inject({ method: 'GET', url, headers: auth });
          checkResponse(t, res.statusCode, res.payload, `GET ${url}`);
        },
      ),
      { numRuns: runs(400) },
    );
  });

  it('deeply nested and oversized bodies are refused (413 over the limit) and the server keeps serving', async () => {
    const t = tally('api hostile bodies');
    const nested = `${'['.repeat(BODY_LIMIT / 2 - 10)}${']'.repeat(BODY_LIMIT / 2 - 10)}`;
    const cases: [string, string, number[]][] = [
      ['nested arrays', nested, [400]],
      ['just over the limit', JSON.stringify({ note: 'x'.repeat(BODY_LIMIT) }), [413]],
      ['ten megabytes', `{"note":"${'x'.repeat(10 * 1024 * 1024)}"}`, [413]],
      ['prototype pollution', '{"__proto__":{"admin":true},"dryRun":true}', [400]],
      ['constructor pollution', '{"constructor":{"prototype":{"admin":true}}}', [400]],
    ];
    for (const [name, payload, expected] of cases) {
      const res = await app.inject({
        method: 'POST',
        url: `/v1/hosts/${hostId}/drain`,
        headers: { ...auth, 'content-type': 'application/json' },
        payload,
      });
      checkResponse(t, res.statusCode, res.payload, name);
      expect(expected, `${name}: ${res.statusCode} ${res.payload.slice(0, 200)}`).toContain(res.statusCode);
    }
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
    // Over a real socket too: a 10 MiB upload is cut off with 413 and the listener still answers.
    const big = await fetch(`${h.running.apiUrl}/v1/plans`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: `{"reason":"${'r'.repeat(10 * 1024 * 1024)}"}`,
    }).catch((err: unknown) => ({ status: -1, err }));
    expect([413, -1]).toContain(big.status);
    const health = await fetch(`${h.running.apiUrl}/healthz`);
    expect(health.status).toBe(200);
  });
});
