// The HTTP API (fastify): JSON under /v1, plus /healthz, /readyz and /metrics.
//
// Auth: `Authorization: Bearer <token>`. Reads (GET) need a read or admin token, changes (POST) an admin
// token. A presented token is compared with every configured one in constant time (SHA-256 digests through
// timingSafeEqual, no early exit), so response time does not reveal how much of a token matched.
// Errors are JSON: { "error": { "code", "message", "field"?, "issues"? } } with a fitting status.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import { DroverError, ValidationError, errorCode, errorMessage, type InputIssue } from '../domain/errors.js';
import { nonEmptyString, oneOf, parseWith, positiveInt } from '../domain/validation.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import type { ApiRole, ApiToken } from './config.js';
import { CreatePlanBodySchema, DrainBodySchema, NoteBodySchema, type Operations } from './operations.js';
import { PLAN_STATUSES } from './plan-store.js';

export interface ApiServerOptions {
  ops: Operations;
  tokens: readonly ApiToken[];
  metrics: Pick<DroverMetrics, 'registry'>;
  log?: Logger;
  bodyLimitBytes: number;
  metricsAuth: boolean;
  /** Whether the process is shutting down (readyz then answers 503). */
  draining?: () => boolean;
}

export interface ApiError {
  code: string;
  message: string;
  field?: string;
  issues?: InputIssue[];
}

const STATUS_BY_CODE: Record<string, number> = {
  invalid_input: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  plan_expired: 409,
  not_leader: 503,
  no_snapshot: 503,
  body_too_large: 413,
  unsupported_media_type: 415,
  shutting_down: 503,
  snapshot_stale: 409,
};

class HttpError extends DroverError {
  constructor(
    code: string,
    message: string,
    readonly field?: string,
  ) {
    super(code, message);
    this.name = 'HttpError';
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Finds the token matching `presented`, comparing against all of them in constant time. */
export function matchToken(tokens: readonly ApiToken[], presented: string): ApiToken | null {
  const given = digest(presented);
  let found: ApiToken | null = null;
  for (const token of tokens) {
    if (timingSafeEqual(given, digest(token.secret)) && found === null) found = token;
  }
  return found;
}

const IdParam = z.strictObject({ id: nonEmptyString().max(256) });
const VmParam = z.strictObject({ vm: nonEmptyString().max(256) });
const PlanListQuery = z.strictObject({
  status: oneOf(PLAN_STATUSES).optional(),
  limit: z.coerce
    .number({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` })
    .pipe(positiveInt().max(500, { error: 'expected at most 500' }))
    .optional(),
});

function parse<S extends z.ZodType>(schema: S, data: unknown, where: string): z.output<S> {
  try {
    return parseWith(schema, data ?? {}, '');
  } catch (err) {
    if (err instanceof ValidationError) {
      throw new ValidationError(
        '',
        err.issues.map((i) => ({ path: i.path ? `${where}.${i.path}` : where, message: i.message })),
      );
    }
    throw err;
  }
}

function errorBody(err: unknown): { status: number; body: { error: ApiError } } {
  if (err instanceof ValidationError) {
    const first = err.issues[0];
    return {
      status: 400,
      body: {
        error: {
          code: 'invalid_input',
          message: err.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; '),
          ...(first?.path ? { field: first.path } : {}),
          issues: [...err.issues],
        },
      },
    };
  }
  const code = errorCode(err);
  if (err instanceof DroverError && code !== undefined) {
    const field = err instanceof HttpError ? err.field : undefined;
    return {
      status: STATUS_BY_CODE[code] ?? 500,
      body: { error: { code, message: err.message, ...(field !== undefined ? { field } : {}) } },
    };
  }
  // fastify's own errors (body parser, routing) carry a statusCode and an FST_ code.
  const statusCode =
    typeof err === 'object' && err !== null && 'statusCode' in err && typeof err.statusCode === 'number'
      ? err.statusCode
      : 500;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return {
      status: 413,
      body: { error: { code: 'body_too_large', message: errorMessage(err), field: 'body' } },
    };
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return {
      status: 415,
      body: {
        error: { code: 'unsupported_media_type', message: 'send application/json', field: 'content-type' },
      },
    };
  if (statusCode >= 400 && statusCode < 500)
    return {
      status: statusCode,
      body: { error: { code: 'invalid_input', message: errorMessage(err), field: 'body' } },
    };
  return { status: 500, body: { error: { code: code ?? 'internal', message: errorMessage(err) } } };
}

/** Builds the fastify app (not listening yet). */
export function buildApi(options: ApiServerOptions) {
  const app = Fastify({
    bodyLimit: options.bodyLimitBytes,
    // Per-request lines only at warn and above: refusals and failures are logged below, not every GET.
    ...(options.log
      ? { loggerInstance: options.log.child({ module: 'api' }, { level: 'warn' }) }
      : { logger: false }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // URLs the router refuses before any hook (a parameter over maxParamLength, bad encoding) get drover's
    // error shape too, instead of fastify's own.
    frameworkErrors: (err, _request, reply) => {
      const status = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
      void (reply as FastifyReply)
        .code(status)
        .send({ error: { code: 'invalid_input', message: err.message, field: 'url' } });
    },
  });
  const { ops } = options;
  // JSON only: other bodies get 415 rather than reaching a route as a string.
  app.removeContentTypeParser('text/plain');

  function callerOf(request: FastifyRequest): string {
    return (request as FastifyRequest & { droverCaller?: string }).droverCaller ?? 'anonymous';
  }

  function authorize(request: FastifyRequest, need: ApiRole): void {
    const header = request.headers.authorization;
    if (header === undefined)
      throw new HttpError('unauthorized', 'send Authorization: Bearer <token>', 'authorization');
    const match = /^Bearer ([^\s]+)$/i.exec(header);
    if (!match?.[1])
      throw new HttpError('unauthorized', 'expected Authorization: Bearer <token>', 'authorization');
    const token = matchToken(options.tokens, match[1]);
    if (!token) throw new HttpError('unauthorized', 'unknown token', 'authorization');
    if (need === 'admin' && token.role !== 'admin')
      throw new HttpError(
        'forbidden',
        `token ${token.name} has role ${token.role}; this needs admin`,
        'authorization',
      );
    (request as FastifyRequest & { droverCaller?: string }).droverCaller = `api:${token.name}`;
  }

  app.addHook('onRequest', (request, _reply, done) => {
    const path = request.url.split('?')[0] ?? '';
    try {
      if (options.draining?.() && request.method !== 'GET' && request.method !== 'HEAD')
        throw new HttpError('shutting_down', 'this drover process is shutting down; send changes to another');
      if (path.startsWith('/v1/') || path === '/v1') {
        authorize(request, request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'admin');
      } else if (path === '/metrics' && options.metricsAuth) {
        authorize(request, 'read');
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  });

  app.setErrorHandler(async (err, request, reply: FastifyReply) => {
    const { status, body } = errorBody(err);
    if (status >= 500) request.log.error({ err: errorMessage(err), url: request.url }, 'api request failed');
    else request.log.warn({ code: body.error.code, url: request.url, status }, 'api request refused');
    return reply.code(status).send(body);
  });

  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).send({
      error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` },
    }),
  );

  app.get('/healthz', () => Promise.resolve({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (options.draining?.()) {
      return reply
        .code(503)
        .send({ ready: false, checks: { shutdown: { ok: false, detail: 'shutting down' } } });
    }
    const view = await ops.ready();
    return reply.code(view.ready ? 200 : 503).send(view);
  });
  app.get('/metrics', async (_request, reply) => {
    const text = await options.metrics.registry.metrics();
    return reply.type(options.metrics.registry.contentType).send(text);
  });

  app.get('/v1/cluster', async () => ops.cluster());
  app.get('/v1/snapshots/latest', async () => {
    const snapshot = await ops.latestSnapshot();
    if (!snapshot) throw new HttpError('no_snapshot', 'no snapshot has been taken yet');
    return snapshot;
  });

  app.get('/v1/plans', async (request) => {
    const query = parse(PlanListQuery, request.query, 'query');
    return { plans: await ops.listPlans(query) };
  });
  app.post('/v1/plans', async (request, reply) => {
    const body = parse(CreatePlanBodySchema, request.body, 'body');
    if (body.reason === 'drain' && body.host === undefined)
      throw new ValidationError('', [{ path: 'body.host', message: 'expected the host to drain' }]);
    if (body.reason === 'rebalance' && body.host !== undefined)
      throw new ValidationError('', [{ path: 'body.host', message: 'a rebalance plan takes no host' }]);
    const created = await ops.createPlan(
      { reason: body.reason, dryRun: body.dryRun, ...(body.host !== undefined ? { host: body.host } : {}) },
      callerOf(request),
    );
    return reply.code(body.dryRun ? 200 : 201).send(created);
  });
  app.get('/v1/plans/:id', async (request) => ops.getPlan(parse(IdParam, request.params, 'params').id));
  app.post('/v1/plans/:id/approve', async (request) => {
    const { id } = parse(IdParam, request.params, 'params');
    const { note } = parse(NoteBodySchema, request.body, 'body');
    return ops.approvePlan(id, callerOf(request), note);
  });
  app.post('/v1/plans/:id/cancel', async (request) => {
    const { id } = parse(IdParam, request.params, 'params');
    const { note } = parse(NoteBodySchema, request.body, 'body');
    return ops.cancelPlan(id, callerOf(request), note);
  });

  app.get('/v1/hosts', async () => ({ hosts: await ops.listHosts() }));
  app.get('/v1/hosts/:id', async (request) => ops.getHost(parse(IdParam, request.params, 'params').id));
  app.post('/v1/hosts/:id/drain', async (request, reply) => {
    const { id } = parse(IdParam, request.params, 'params');
    const { dryRun, partial } = parse(DrainBodySchema, request.body, 'body');
    const created = await ops.drainHost(id, dryRun, callerOf(request), partial);
    return reply.code(dryRun ? 200 : 201).send(created);
  });
  app.post('/v1/hosts/:id/activate', async (request) => {
    const { id } = parse(IdParam, request.params, 'params');
    return ops.activateHost(id, callerOf(request));
  });

  app.get('/v1/migrations', async () => ({ migrations: await ops.listMigrations() }));
  app.get('/v1/migrations/:vm', async (request) =>
    ops.getMigration(parse(VmParam, request.params, 'params').vm),
  );
  app.post('/v1/migrations/:vm/abort', async (request) => {
    const { vm } = parse(VmParam, request.params, 'params');
    parse(NoteBodySchema, request.body, 'body');
    return ops.abortMigration(vm, callerOf(request));
  });

  return app;
}

/** Starts listening; resolves with the bound address (port 0 picks a free one). */
export async function listen(
  app: ApiApp,
  host: string,
  port: number,
): Promise<{ url: string; port: number }> {
  await app.listen({ host, port });
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return { url: `http://${shown}:${bound}`, port: bound };
}

export type ApiApp = ReturnType<typeof buildApi>;
