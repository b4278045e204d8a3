// The OpenAPI 3.1 document of drover's HTTP API (served at GET /v1/openapi.json), built from the route table
// itself: each route's method, path, role, and the zod schemas its handler validates parameters, query and body
// with and describes its answers with. Nothing here is written by hand per route, so the document cannot drift
// from what the server does.
import { z } from 'zod';
import { PlanSchema } from '../domain/plan.js';
import { SnapshotSchema } from '../domain/snapshot.js';
import { DROVER_VERSION } from '../domain/version.js';
import { AuditEntrySchema } from './audit-log.js';
import {
  AutomationViewSchema,
  ClusterViewSchema,
  CreatedPlanSchema,
  HealthViewSchema,
  HostViewSchema,
  MigrationViewSchema,
  QuarantineAddedSchema,
  QuarantineViewSchema,
  ReadyViewSchema,
} from './operations.js';
import { PlanRecordSchema } from './plan-store.js';

/** Every error answer: `{ error: { code, message, field?, issues? } }`. */
export const ApiErrorSchema = z.strictObject({
  error: z.strictObject({
    /** A drover error code (`invalid_input`, `not_found`, `conflict`, ...; see docs/api.md). */
    code: z.string(),
    message: z.string(),
    /** The offending field (`body.reason`, `params.id`, `authorization`), when there is one. */
    field: z.string().optional(),
    /** Every problem of a bad request, each with its path. */
    issues: z.array(z.strictObject({ path: z.string(), message: z.string() })).optional(),
  }),
});

/** The document itself, as far as a client relies on it. */
export const OpenApiDocumentSchema = z.looseObject({
  openapi: z.literal('3.1.0'),
  info: z.looseObject({ title: z.string(), version: z.string() }),
  paths: z.record(z.string(), z.unknown()),
});

/** Answers with a name: they become components/schemas and are referred to by it. */
export const API_SCHEMAS = {
  ApiError: ApiErrorSchema,
  Health: HealthViewSchema,
  Ready: ReadyViewSchema,
  Cluster: ClusterViewSchema,
  Snapshot: SnapshotSchema,
  Plan: PlanSchema,
  PlanRecord: PlanRecordSchema,
  PlanList: z.strictObject({ plans: z.array(PlanRecordSchema) }),
  CreatedPlan: CreatedPlanSchema,
  Host: HostViewSchema,
  HostList: z.strictObject({ hosts: z.array(HostViewSchema) }),
  Migration: MigrationViewSchema,
  MigrationList: z.strictObject({ migrations: z.array(MigrationViewSchema) }),
  Automation: AutomationViewSchema,
  Quarantine: QuarantineViewSchema,
  QuarantineAdded: QuarantineAddedSchema,
  QuarantineList: z.strictObject({ quarantines: z.array(QuarantineViewSchema) }),
  AuditEntry: AuditEntrySchema,
  AuditList: z.strictObject({ entries: z.array(AuditEntrySchema), maxEntries: z.number() }),
  OpenApiDocument: OpenApiDocumentSchema,
} as const;

/** One answer of a route: a named JSON schema, or another media type (the Prometheus text of /metrics). */
export type ResponseDoc =
  | { description: string; schema: (typeof API_SCHEMAS)[keyof typeof API_SCHEMAS] }
  | { description: string; contentType: string };

/** What the document needs of a route (the route table's entries carry this and their handler). */
export interface RouteDoc {
  method: 'GET' | 'POST';
  /** fastify's form: `/v1/plans/:id`. */
  url: string;
  role: 'public' | 'read' | 'admin';
  summary: string;
  params?: z.ZodType | undefined;
  query?: z.ZodType | undefined;
  body?: z.ZodType | undefined;
  /** Answers by HTTP status; every other status answers with ApiError. */
  responses: Readonly<Record<number, ResponseDoc>>;
}

type Json = Record<string, unknown>;
const COMPONENT = '#/components/schemas/';

/**
 * A zod schema as an inline JSON Schema of what a client may send. Parameters are described by the value the
 * handler gets (`limit` an integer from 1 to 500, not the string it is coerced from), bodies as sent.
 */
function inputSchema(schema: z.ZodType, io: 'input' | 'output' = 'input'): Json {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io,
    unrepresentable: 'any',
  });
  return rest;
}

/** The named answers as components/schemas, referring to each other by name. */
function componentSchemas(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(API_SCHEMAS)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    io: 'output',
    unrepresentable: 'any',
    uri: (id) => `${COMPONENT}${id}`,
  });
  const out: Record<string, Json> = {};
  for (const [id, schema] of Object.entries(schemas)) {
    const { $schema: _s, $id: _i, ...rest } = schema as Json;
    out[id] = rest;
  }
  return out;
}

function nameOf(schema: unknown): string {
  const entry = Object.entries(API_SCHEMAS).find(([, s]) => s === schema);
  if (!entry) throw new Error('an answer schema is missing from API_SCHEMAS');
  return entry[0];
}

/** Object schema -> one OpenAPI parameter per property. */
function parameters(schema: z.ZodType, where: 'path' | 'query'): Json[] {
  const json = inputSchema(schema, 'output');
  const properties = (json.properties ?? {}) as Record<string, Json>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(properties).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema: s,
  }));
}

function operation(route: RouteDoc): Json {
  const responses: Record<string, Json> = {};
  for (const [status, answer] of Object.entries(route.responses)) {
    responses[status] =
      'schema' in answer
        ? {
            description: answer.description,
            content: { 'application/json': { schema: { $ref: `${COMPONENT}${nameOf(answer.schema)}` } } },
          }
        : {
            description: answer.description,
            content: { [answer.contentType]: { schema: { type: 'string' } } },
          };
  }
  responses.default = {
    description: 'refused or failed: the error code and message, and the offending field when there is one',
    content: { 'application/json': { schema: { $ref: `${COMPONENT}ApiError` } } },
  };
  const params = [
    ...(route.params ? parameters(route.params, 'path') : []),
    ...(route.query ? parameters(route.query, 'query') : []),
  ];
  const op: Json = {
    operationId: operationId(route),
    summary: route.summary,
    'x-drover-role': route.role,
    security: route.role === 'public' ? [] : [{ bearer: [] }],
    ...(params.length > 0 ? { parameters: params } : {}),
    responses,
  };
  if (route.body) {
    // A body that may be empty (every field optional) need not be sent, but Content-Type still must be.
    op.requestBody = {
      required: !route.body.safeParse({}).success,
      content: { 'application/json': { schema: inputSchema(route.body) } },
    };
  }
  if (route.url === '/metrics')
    op.description = 'Public unless api.metricsAuth is true; then it needs a read token.';
  return op;
}

/** `GET /v1/plans/:id/approve` -> `getV1PlansIdApprove`. */
function operationId(route: RouteDoc): string {
  const words = route.url
    .split('/')
    .filter((w) => w !== '')
    .map((w) =>
      w
        .replace(/^:/, '')
        .replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase()),
    );
  return route.method.toLowerCase() + words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

/** `/v1/plans/:id` -> `/v1/plans/{id}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** The OpenAPI 3.1 document of these routes. */
export function openApiDocument(routes: readonly RouteDoc[]): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const route of routes) {
    const path = openApiPath(route.url);
    paths[path] ??= {};
    paths[path][route.method.toLowerCase()] = operation(route);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'drover',
      version: DROVER_VERSION,
      description:
        'Keeps libvirt/KVM clusters balanced and drains hosts. Routes under /v1 need `Authorization: Bearer ' +
        '<token>`; x-drover-role names the role each route needs (read: a read or admin token). Every POST ' +
        'must send Content-Type: application/json.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: componentSchemas(),
    },
    paths,
  };
}
