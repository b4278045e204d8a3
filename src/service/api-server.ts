// The HTTP API (fastify): JSON under /v1, plus /healthz, /readyz and /metrics.
//
// Auth: every route declares its role (public, read, admin) in one table next to its handler (routeTable);
// a route registered without one stops the server from starting. The role is looked up on the route the
// router matched, after it decoded the path, so no spelling of a URL reaches a route past its check; a URL
// that matches no route needs a read token (GET/HEAD) or an admin token (anything else) before it gets its
// 404. Changes must come as application/json (415 otherwise). `Authorization: Bearer <token>`; a presented token is compared with every configured one in constant time (SHA-256 digests through
// timingSafeEqual, no early exit), so response time does not reveal how much of a token matched.
// Errors are JSON: { "error": { "code", "message", "field"?, "issues"? } } with a fitting status.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  DroverError,
  ValidationError,
  errorCode,
  errorMessage,
  type DroverErrorCode,
  type InputIssue,
} from '../domain/errors.js';
import { SystemClock } from '../clock/clocks.js';
import { withDeadline } from '../clock/deadline.js';
import { nonEmptyString, oneOf, parseWith, positiveInt } from '../domain/validation.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import type { ApiRole, ApiToken } from './config.js';
import { AUDIT_MAX_ENTRIES, type AuditEntry } from './audit-log.js';
import {
  ActivateBodySchema,
  AutomationBodySchema,
  CreatePlanBodySchema,
  DrainBodySchema,
  NoteBodySchema,
  QuarantineBodySchema,
  type CreatedPlan,
  type Operations,
} from './operations.js';
import { API_SCHEMAS, openApiDocument, type ResponseDoc, type RouteDoc } from './openapi.js';
import { PLAN_STATUSES } from './plan-store.js';

/** Who may call a route: anyone, a read (or admin) token, an admin token. */
export const ROUTE_ROLES = ['public', 'read', 'admin'] as const;
export type RouteRole = (typeof ROUTE_ROLES)[number];

declare module 'fastify' {
  interface FastifyContextConfig {
    role?: RouteRole;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * How long a route that needs Redis waits for its answer (a Redis that accepts connections but does not
 * answer) before it gives up with 503 redis_unavailable.
 */
export const REDIS_WAIT_MS = 5000;

/** Rejects with redis_unavailable when `work` has not settled within `ms`. */
function withinDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return withDeadline(
    REAL_TIME,
    ms,
    work,
    () => new HttpError('redis_unavailable', `no answer from drover's Redis within ${ms} ms (${what})`),
  );
}

const REAL_TIME = new SystemClock();

/** Longest id in a path (plans, hosts, VMs); a longer one is refused with 400 naming the parameter. */
export const MAX_ID_LENGTH = 256;

export interface ApiServerOptions {
  ops: Operations;
  tokens: readonly ApiToken[];
  metrics: Pick<DroverMetrics, 'registry'>;
  log?: Logger;
  bodyLimitBytes: number;
  metricsAuth: boolean;
  /**
   * Whether drover's Redis connection is up right now (no I/O). While it is not, every route that needs
   * Redis answers 503 redis_unavailable at once, and /healthz reports it.
   */
  redisUp?: () => boolean;
  /** Longest wait for a route's answer before 503 redis_unavailable (default REDIS_WAIT_MS). */
  redisWaitMs?: number;
  /** Whether the process is shutting down (readyz then answers 503). */
  draining?: () => boolean;
}

export interface ApiError {
  code: string;
  message: string;
  field?: string;
  issues?: InputIssue[];
}

/** The HTTP status of each error code; the compiler insists every code has one (500: a failure of drover). */
const STATUS_BY_CODE: Record<DroverErrorCode, number> = {
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
  invalid_argument: 500,
  file_too_large: 500,
  policy_too_large: 500,
  policy_unreadable: 500,
  plan_unreadable: 500,
  snapshot_unreadable: 500,
  trace_invalid: 500,
  trace_not_found: 500,
  trace_too_large: 500,
  history_corrupt: 500,
  unknown_strategy: 500,
  bad_instance: 500,
  planner_closed: 500,
  planner_failed: 500,
  redis_missing: 500,
  redis_start_failed: 500,
  redis_timeout: 500,
  redis_lost: 500,
  redis_unavailable: 503,
  state_dir_unusable: 500,
  state_locked: 500,
  aborted: 500,
  clock_busy: 500,
  clock_limit: 500,
  clock_stalled: 500,
  no_host: 500,
  no_domain: 500,
  host_unreachable: 500,
  operation_invalid: 500,
  migrate_unsafe: 500,
  cpu_incompatible: 500,
  operation_failed: 500,
  host_timeout: 500,
  host_sample_invalid: 500,
  call_timeout: 500,
  step_skipped: 500,
  runner_detached: 500,
  migration_start_failed: 500,
  migration_refused: 500,
  block_destination_failed: 500,
  watchdog_profile: 500,
  storage_not_shared: 500,
  storage_shared: 500,
};

class HttpError extends DroverError {
  constructor(
    code: DroverErrorCode,
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

const IdParam = z.strictObject({ id: nonEmptyString().max(MAX_ID_LENGTH) });
const VmParam = z.strictObject({ vm: nonEmptyString().max(MAX_ID_LENGTH) });
const AuditQuery = z.strictObject({
  limit: z.coerce
    .number({ error: (i) => `expected a positive integer, got ${JSON.stringify(i.input)}` })
    .pipe(positiveInt().max(AUDIT_MAX_ENTRIES, { error: `expected at most ${AUDIT_MAX_ENTRIES}` }))
    .optional(),
});
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
      status: STATUS_BY_CODE[err.code] ?? 500,
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

const REGISTERED_ROUTES = new WeakMap<object, readonly { method: string; url: string }[]>();

/** Every route fastify registered on an app built by buildApi (HEAD ones included), method and URL. */
export function registeredRoutes(app: object): readonly { method: string; url: string }[] {
  return REGISTERED_ROUTES.get(app) ?? [];
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
    // Parameters up to well past MAX_ID_LENGTH reach the route, whose auth runs first and whose schema then
    // refuses an over-long id with 400 naming it.
    routerOptions: { maxParamLength: 4 * MAX_ID_LENGTH },
    // URLs the router refuses before any hook (a parameter longer still, bad encoding) get drover's error
    // shape and 400 too, instead of fastify's own.
    frameworkErrors: (err, _request, reply) => {
      void (reply as FastifyReply)
        .code(400)
        .send({ error: { code: 'invalid_input', message: err.message, field: 'url' } });
    },
  });
  // JSON only: other bodies get 415 rather than reaching a route as a string.
  app.removeContentTypeParser('text/plain');

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
    const caller = request as FastifyRequest & { droverCaller?: string; droverToken?: string };
    caller.droverCaller = `api:${token.name}`;
    caller.droverToken = token.name;
  }

  /** The role a request needs: its matched route's, or (no route matched) read for GET/HEAD, admin otherwise. */
  function roleOf(request: FastifyRequest): RouteRole {
    const declared = request.is404 ? undefined : request.routeOptions.config.role;
    if (declared !== undefined) return declared;
    return request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'admin';
  }

  // Every route must say who may call it; one that does not stops the server from starting.
  // (A change must also name its audit action: see routeTable.)
  const registered: { method: string; url: string }[] = [];
  app.addHook('onRoute', (route) => {
    const role: unknown = (route.config as { role?: unknown } | undefined)?.role;
    if (!ROUTE_ROLES.includes(role as RouteRole))
      throw new Error(`route ${String(route.method)} ${route.url} declares no role (public, read or admin)`);
    for (const method of [route.method].flat()) registered.push({ method, url: route.url });
  });
  REGISTERED_ROUTES.set(app, registered);

  // Decided on the route the router matched (after it decoded the path), never on the raw URL.
  app.addHook('onRequest', (request, _reply, done) => {
    try {
      const role = roleOf(request);
      if (role !== 'public') {
        authorize(request, role);
        if (options.redisUp && !options.redisUp())
          throw new HttpError('redis_unavailable', "drover's Redis is not reachable; try again shortly");
      }
      if (!SAFE_METHODS.has(request.method)) {
        if (options.draining?.())
          throw new HttpError(
            'shutting_down',
            'this drover process is shutting down; send changes to another',
          );
        // A change must say it is JSON: a browser form or a bare POST cannot send this without CORS consent.
        if (mediaType(request.headers['content-type']) !== 'application/json')
          throw new HttpError(
            'unsupported_media_type',
            'send the request body as application/json',
            'content-type',
          );
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

  const waitMs = options.redisWaitMs ?? REDIS_WAIT_MS;
  for (const route of routeTable(options)) {
    if (route.method !== 'GET' && route.action === undefined)
      throw new Error(`route ${route.method} ${route.url} changes something but names no audit action`);
    const inner = route.action === undefined ? route.handler : audited(route.action, route.handler);
    // Every route but the public ones reads or writes Redis: none waits longer than waitMs for it.
    const handler: Handler =
      route.role === 'public'
        ? inner
        : (request, reply) =>
            withinDeadline(
              inner(request, reply),
              waitMs,
              route.method === 'GET' ? 'nothing was read' : 'the change may or may not have been made',
            );
    app.route({ method: route.method, url: route.url, config: { role: route.role }, handler });
  }
  return app;

  /**
   * Runs a change and appends what came of it to the audit trail: who (the token's name), what, on what, when,
   * and the outcome (ok or the error code). Only requests that passed the token and content checks get here.
   */
  function audited(action: string, handler: Handler): Handler {
    return async (request, reply) => {
      const at = new Date().toISOString();
      const entry = (outcome: string, status: number, detail: string | null): AuditEntry => ({
        at,
        who: (request as FastifyRequest & { droverToken?: string }).droverToken ?? 'unknown',
        action,
        target: targetOf(request.params),
        outcome,
        status,
        detail,
      });
      const record = async (e: AuditEntry) => {
        try {
          await options.ops.audit(e);
        } catch (err) {
          // The change itself stands (or failed on its own); the missing entry is logged loudly instead.
          request.log.error({ err: errorMessage(err), audit: e }, 'could not append to the audit trail');
        }
      };
      try {
        const result = await handler(request, reply);
        await record(entry('ok', reply.statusCode, detailOf(request.body)));
        return result;
      } catch (err) {
        const { status, body } = errorBody(err);
        await record(entry(body.error.code, status, body.error.message.slice(0, 500)));
        throw err;
      }
    };
  }
}

/** The plan, host or VM a change was asked of (its path parameter), for the audit trail. */
function targetOf(params: unknown): string | null {
  if (typeof params !== 'object' || params === null) return null;
  const p = params as Record<string, unknown>;
  const value = p.id ?? p.vm;
  return typeof value === 'string' ? value.slice(0, MAX_ID_LENGTH) : null;
}

/** The parts of a change's body worth keeping in the audit trail: the operator's note and the switches. */
function detailOf(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return null;
  const b = body as Record<string, unknown>;
  const parts: string[] = [];
  for (const key of ['reason', 'host', 'dryRun', 'partial', 'cancelDrain', 'paused'] as const)
    if (typeof b[key] === 'string' || typeof b[key] === 'boolean') parts.push(`${key}=${String(b[key])}`);
  if (typeof b.forS === 'number') parts.push(`forS=${b.forS}`);
  if (typeof b.note === 'string' && b.note !== '') parts.push(`note: ${b.note.slice(0, 500)}`);
  return parts.length > 0 ? parts.join(' ') : null;
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** A route: what the OpenAPI document says of it (role, schemas, answers), its audit action and its handler. */
export interface RouteSpec extends RouteDoc {
  /** What a change is called in the audit trail (`plan.approve`); every POST names one. */
  action?: string;
  handler: Handler;
}

type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;
interface Input<P, Q, B> {
  params: Parsed<P>;
  query: Parsed<Q>;
  body: Parsed<B>;
}
type RouteDef<P, Q, B> = Omit<RouteSpec, 'handler' | 'params' | 'query' | 'body'> & {
  params?: P;
  query?: Q;
  body?: B;
  handler: (input: Input<P, Q, B>, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
};

/**
 * A route whose handler gets its path parameters, query and body already validated with the schemas it
 * declares: the same schemas the OpenAPI document is made of.
 */
function route<
  P extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(def: RouteDef<P, Q, B>): RouteSpec {
  const { handler, ...doc } = def;
  return {
    ...doc,
    handler: async (request, reply) => {
      const input = {
        params: def.params ? parse(def.params, request.params, 'params') : undefined,
        query: def.query ? parse(def.query, request.query, 'query') : undefined,
        body: def.body ? parse(def.body, request.body, 'body') : undefined,
      } as Input<P, Q, B>;
      return handler(input, request, reply);
    },
  };
}

const ok = (description: string, schema: (typeof API_SCHEMAS)[keyof typeof API_SCHEMAS]): ResponseDoc => ({
  description,
  schema,
});

/** Every route with its role, next to its handler: the one place that says who may call what. */
function routeTable(options: ApiServerOptions): RouteSpec[] {
  const { ops } = options;
  const waitMs = options.redisWaitMs ?? REDIS_WAIT_MS;
  const callerOf = (request: FastifyRequest): string =>
    (request as FastifyRequest & { droverCaller?: string }).droverCaller ?? 'anonymous';
  let document: Record<string, unknown> | undefined;
  const routes: RouteSpec[] = [
    route({
      method: 'GET',
      url: '/healthz',
      role: 'public',
      summary: 'liveness: 200 while the process serves; a lost Redis is reported, not fatal',
      responses: { 200: ok('the process serves', API_SCHEMAS.Health) },
      // Liveness: 200 while the process serves; the dependency is reported, not fatal (restarting drover
      // does not bring Redis back).
      handler: () => {
        const redisOk = options.redisUp?.() ?? true;
        return Promise.resolve({
          status: redisOk ? 'ok' : 'degraded',
          checks: { redis: { ok: redisOk, detail: redisOk ? 'connected' : 'not connected' } },
        });
      },
    }),
    route({
      method: 'GET',
      url: '/readyz',
      role: 'public',
      summary: 'readiness: Redis answers and a snapshot is fresh',
      responses: {
        200: ok('ready', API_SCHEMAS.Ready),
        503: ok('not ready (or shutting down), with the failing check', API_SCHEMAS.Ready),
      },
      handler: async (_input, _request, reply) => {
        if (options.draining?.()) {
          return reply
            .code(503)
            .send({ ready: false, checks: { shutdown: { ok: false, detail: 'shutting down' } } });
        }
        if (options.redisUp && !options.redisUp())
          return reply
            .code(503)
            .send({ ready: false, checks: { redis: { ok: false, detail: 'not connected' } } });
        const view = await withinDeadline(ops.ready(), waitMs, 'readiness').catch(() => ({
          ready: false,
          checks: { redis: { ok: false, detail: `no answer within ${waitMs} ms` } },
        }));
        return reply.code(view.ready ? 200 : 503).send(view);
      },
    }),
    route({
      method: 'GET',
      url: '/metrics',
      role: options.metricsAuth ? 'read' : 'public',
      summary: 'Prometheus metrics',
      responses: {
        200: { description: 'Prometheus text format', contentType: options.metrics.registry.contentType },
      },
      handler: async (_input, _request, reply) => {
        const text = await options.metrics.registry.metrics();
        return reply.type(options.metrics.registry.contentType).send(text);
      },
    }),
    route({
      method: 'GET',
      url: '/v1/openapi.json',
      // Under /v1 like every route that describes drover: a token of any role reads it (the same document ships
      // in the package for anyone, so this guards nothing secret; it keeps "/v1 needs a token" without exception).
      role: 'read',
      summary: 'this document',
      responses: { 200: ok('the OpenAPI 3.1 document of this API', API_SCHEMAS.OpenApiDocument) },
      handler: () => Promise.resolve((document ??= openApiDocument(routes))),
    }),
    route({
      method: 'GET',
      url: '/v1/cluster',
      role: 'read',
      summary: 'hosts, spread, leader, automation, running migrations',
      responses: { 200: ok('the cluster as this process sees it', API_SCHEMAS.Cluster) },
      handler: async () => ops.cluster(),
    }),
    route({
      method: 'GET',
      url: '/v1/snapshots/latest',
      role: 'read',
      summary: 'the newest snapshot',
      responses: { 200: ok('the snapshot', API_SCHEMAS.Snapshot) },
      handler: async () => {
        const snapshot = await ops.latestSnapshot();
        if (!snapshot) throw new HttpError('no_snapshot', 'no snapshot has been taken yet');
        return snapshot;
      },
    }),
    route({
      method: 'GET',
      url: '/v1/plans',
      role: 'read',
      summary: 'plans, newest first',
      query: PlanListQuery,
      responses: { 200: ok('the plans', API_SCHEMAS.PlanList) },
      handler: async ({ query }) => ({ plans: await ops.listPlans(query) }),
    }),
    route({
      method: 'POST',
      url: '/v1/plans',
      role: 'admin',
      action: 'plan.create',
      summary: 'make a rebalance or drain plan (dryRun: compute and return it only)',
      body: CreatePlanBodySchema,
      responses: {
        200: ok(
          'a dry run (record null), or the drain already under way (existing: true)',
          API_SCHEMAS.CreatedPlan,
        ),
        201: ok('the new plan and its record', API_SCHEMAS.CreatedPlan),
      },
      handler: async ({ body }, request, reply) => {
        if (body.reason === 'drain' && body.host === undefined)
          throw new ValidationError('', [{ path: 'body.host', message: 'expected the host to drain' }]);
        if (body.reason === 'rebalance' && body.host !== undefined)
          throw new ValidationError('', [{ path: 'body.host', message: 'a rebalance plan takes no host' }]);
        if (body.reason === 'drain' && body.strategy !== undefined)
          throw new ValidationError('', [
            { path: 'body.strategy', message: 'a drain plans with the drain strategy; leave strategy out' },
          ]);
        const created = await ops.createPlan(
          {
            reason: body.reason,
            dryRun: body.dryRun,
            ...(body.host !== undefined ? { host: body.host } : {}),
            ...(body.strategy !== undefined ? { strategy: body.strategy } : {}),
          },
          callerOf(request),
        );
        return reply.code(createdStatus(body.dryRun, created)).send(created);
      },
    }),
    route({
      method: 'GET',
      url: '/v1/plans/:id',
      role: 'read',
      summary: 'one plan',
      params: IdParam,
      responses: { 200: ok('the plan record', API_SCHEMAS.PlanRecord) },
      handler: async ({ params }) => ops.getPlan(params.id),
    }),
    route({
      method: 'POST',
      url: '/v1/plans/:id/approve',
      role: 'admin',
      action: 'plan.approve',
      summary: 'approve a pending plan (it runs)',
      params: IdParam,
      body: NoteBodySchema,
      responses: { 200: ok('the plan record, now running', API_SCHEMAS.PlanRecord) },
      handler: async ({ params, body }, request) => ops.approvePlan(params.id, callerOf(request), body.note),
    }),
    route({
      method: 'POST',
      url: '/v1/plans/:id/cancel',
      role: 'admin',
      action: 'plan.cancel',
      summary: 'cancel a plan; steps not started are withdrawn',
      params: IdParam,
      body: NoteBodySchema,
      responses: { 200: ok('the plan record, now cancelled', API_SCHEMAS.PlanRecord) },
      handler: async ({ params, body }, request) => ops.cancelPlan(params.id, callerOf(request), body.note),
    }),
    route({
      method: 'GET',
      url: '/v1/hosts',
      role: 'read',
      summary: 'hosts with state and load',
      responses: { 200: ok('the hosts', API_SCHEMAS.HostList) },
      handler: async () => ({ hosts: await ops.listHosts() }),
    }),
    route({
      method: 'GET',
      url: '/v1/hosts/:id',
      role: 'read',
      summary: 'one host',
      params: IdParam,
      responses: { 200: ok('the host', API_SCHEMAS.Host) },
      handler: async ({ params }) => ops.getHost(params.id),
    }),
    route({
      method: 'POST',
      url: '/v1/hosts/:id/drain',
      role: 'admin',
      action: 'host.drain',
      summary: 'put a host in maintenance and move its VMs away',
      params: IdParam,
      body: DrainBodySchema,
      responses: {
        200: ok('a dry run, or the drain already under way (existing: true)', API_SCHEMAS.CreatedPlan),
        201: ok('the drain plan and its record', API_SCHEMAS.CreatedPlan),
      },
      handler: async ({ params, body }, request, reply) => {
        const created = await ops.drainHost(params.id, body.dryRun, callerOf(request), body.partial);
        return reply.code(createdStatus(body.dryRun, created)).send(created);
      },
    }),
    route({
      method: 'POST',
      url: '/v1/hosts/:id/activate',
      role: 'admin',
      action: 'host.activate',
      summary: 'take a host out of maintenance',
      params: IdParam,
      body: ActivateBodySchema,
      responses: { 200: ok('the host, now active', API_SCHEMAS.Host) },
      handler: async ({ params, body }, request) =>
        ops.activateHost(params.id, callerOf(request), body.cancelDrain),
    }),
    route({
      method: 'GET',
      url: '/v1/migrations',
      role: 'read',
      summary: 'migrations, running first',
      responses: { 200: ok('the migrations', API_SCHEMAS.MigrationList) },
      handler: async () => ({ migrations: await ops.listMigrations() }),
    }),
    route({
      method: 'GET',
      url: '/v1/migrations/:vm',
      role: 'read',
      summary: "a VM's migration (VM id or name)",
      params: VmParam,
      responses: { 200: ok('the migration', API_SCHEMAS.Migration) },
      handler: async ({ params }) => ops.getMigration(params.vm),
    }),
    route({
      method: 'POST',
      url: '/v1/migrations/:vm/abort',
      role: 'admin',
      action: 'migration.abort',
      summary: "abort a VM's migration",
      params: VmParam,
      body: NoteBodySchema,
      responses: { 200: ok('the migration, removed or aborting', API_SCHEMAS.Migration) },
      handler: async ({ params }, request) => ops.abortMigration(params.vm, callerOf(request)),
    }),
    route({
      method: 'GET',
      url: '/v1/automation',
      role: 'read',
      summary: 'automation level and whether an operator paused it',
      responses: { 200: ok('the automation state', API_SCHEMAS.Automation) },
      handler: async () => ops.automation(),
    }),
    route({
      method: 'POST',
      url: '/v1/automation',
      role: 'admin',
      action: 'automation.set',
      summary: 'pause or resume automation',
      body: AutomationBodySchema,
      responses: { 200: ok('the automation state', API_SCHEMAS.Automation) },
      handler: async ({ body }, request) => ops.setPaused(body.paused, callerOf(request), body.note),
    }),
    route({
      method: 'GET',
      url: '/v1/quarantines',
      role: 'read',
      summary: 'VMs the planner and the executor leave alone for now',
      responses: { 200: ok('the quarantined VMs', API_SCHEMAS.QuarantineList) },
      handler: async () => ({ quarantines: await ops.listQuarantines() }),
    }),
    route({
      method: 'POST',
      url: '/v1/quarantines/:vm',
      role: 'admin',
      action: 'quarantine.add',
      summary: 'quarantine a VM by hand for at least forS seconds (VM id or name); a longer one is kept',
      params: VmParam,
      body: QuarantineBodySchema,
      responses: {
        200: ok('the quarantine in force, and whether a longer one was kept', API_SCHEMAS.QuarantineAdded),
      },
      handler: async ({ params, body }, request) =>
        ops.addQuarantine(params.vm, body.forS, callerOf(request)),
    }),
    route({
      method: 'POST',
      url: '/v1/quarantines/:vm/lift',
      role: 'admin',
      action: 'quarantine.lift',
      summary: "lift a VM's quarantine",
      params: VmParam,
      body: NoteBodySchema,
      responses: { 200: ok('the quarantine, lifted', API_SCHEMAS.Quarantine) },
      handler: async ({ params }, request) => ops.liftQuarantine(params.vm, callerOf(request)),
    }),
    route({
      method: 'GET',
      url: '/v1/audit',
      role: 'read',
      summary: 'the audit trail of changes asked of the API, newest first',
      query: AuditQuery,
      responses: { 200: ok('audit entries', API_SCHEMAS.AuditList) },
      handler: async ({ query }) => ({
        entries: await ops.listAudit(query.limit ?? 100),
        maxEntries: AUDIT_MAX_ENTRIES,
      }),
    }),
  ];
  return routes;
}

/** 200 for a dry run or a drain already under way (its plan is returned), 201 for a new plan. */
function createdStatus(dryRun: boolean, created: CreatedPlan): number {
  return dryRun || created.existing === true ? 200 : 201;
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
