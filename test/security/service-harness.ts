// Starts the real drover service (composition root, simulator hypervisor, the run's Redis) from a config file
// written to a temp dir, with its pino output captured line by line. Shared by the security, API-fuzz and
// fault suites.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { loadConfig, type LoadedConfig } from '../../src/service/config.js';
import { startService, type RunningService } from '../../src/service/main.js';

export const ADMIN_TOKEN = 'sec-admin-7f3a9c2e5b1d4f60a8c3';
export const READ_TOKEN = 'sec-read-2b8e6d0f4a1c3e5b7d9f';

export interface Harness {
  dir: string;
  loaded: LoadedConfig;
  running: RunningService;
  /** Every log line the service wrote (raw JSON text). */
  logs: string[];
  stop(): Promise<void>;
}

/** Deep-merges plain objects (arrays and scalars in `b` win). */
function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const old = out[k];
    out[k] =
      v !== null && typeof v === 'object' && !Array.isArray(v) && old !== null && typeof old === 'object'
        ? merge(old as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export function baseConfig(redisUrl: string, prefix: string): Record<string, unknown> {
  return {
    instance: `sec-${prefix}`,
    hypervisor: { kind: 'sim', generate: { hosts: 4, vmsPerHost: 2 }, seed: 3 },
    redis: { url: redisUrl, prefix },
    policy: { file: 'policy.yaml', watch: false },
    schedules: { rebalance: { enabled: false }, reconcile: { intervalS: 1 } },
    leader: { leaseMs: 1000 },
    api: {
      port: 0,
      tokens: [
        { name: 'ops', role: 'admin', value: ADMIN_TOKEN },
        { name: 'viewer', role: 'read', value: READ_TOKEN },
      ],
      bodyLimitBytes: 4096,
    },
    metrics: { processMetrics: false },
    log: { level: 'debug' },
    collector: { intervalS: 0.5 },
  };
}

/**
 * Writes the config (base merged with `overrides`; a `hypervisor` override replaces the base's whole) and any
 * extra `files` (name -> text, e.g. cluster.yaml, policy.yaml) to a temp dir and starts the service.
 */
export async function startHarness(
  redisUrl: string,
  prefix: string,
  overrides: Record<string, unknown> = {},
  files: Record<string, string> = {},
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-sec-'));
  await writeFile(join(dir, 'policy.yaml'), '{}\n');
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  const base = baseConfig(redisUrl, prefix);
  if (overrides.hypervisor !== undefined) delete base.hypervisor;
  await writeFile(join(dir, 'drover.yaml'), stringify(merge(base, overrides)));
  const loaded = await loadConfig(join(dir, 'drover.yaml'), {});
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') logs.push(line);
      done();
    },
  });
  const logger = pino({ level: loaded.config.log.level }, sink);
  const running = await startService(loaded, { env: {}, logger });
  return {
    dir,
    loaded,
    running,
    logs,
    async stop() {
      await running.stop('test done');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface RouteInfo {
  method: string;
  /** fastify's pattern, e.g. /v1/plans/:id/approve */
  url: string;
}

/**
 * Every route of a fastify app, read from its own route tree (`printRoutes({ commonPrefix: false })`), so a
 * route added later is walked without anyone editing a list.
 */
export function routesOf(app: { printRoutes(opts: { commonPrefix: boolean }): string }): RouteInfo[] {
  const text = app.printRoutes({ commonPrefix: false });
  const stack: string[] = [];
  const routes: RouteInfo[] = [];
  for (const line of text.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([^)]*)\))?$/.exec(line.replace(/\u00a0/g, ' '));
    if (!m) continue;
    const depth = (m[1] ?? '').length / 4;
    stack.length = depth;
    const fragment = m[2] ?? '';
    const full = (stack[depth - 1] ?? '') + fragment;
    stack[depth] = full;
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim())) {
      if (method) routes.push({ method, url: full });
    }
  }
  return routes;
}
