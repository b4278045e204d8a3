// The daemon's configuration file (`drover serve --config drover.yaml`): schema, loader and secrets.
// Every problem is reported at once with the path of its field; unknown keys are errors.
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ValidationError, errorMessage, type InputIssue } from '../domain/errors.js';
import {
  nonEmptyString,
  nonNegativeInt,
  nonNegativeNumber,
  oneOf,
  parseWith,
  positiveInt,
  positiveNumber,
  show,
} from '../domain/validation.js';
import { validateDetailed } from 'node-cron';
import { CollectorOptionsSchema } from '../collector/collector-options.js';
import { ExecutorOptionsSchema } from '../executor/executor-options.js';
import { LibvirtHostListSchema, LibvirtHypervisorOptionsSchema } from '../hypervisor/libvirt/host-config.js';
import { FILE_LIMITS, FileTooLarge, readLimited } from './read-limited.js';
import { STRATEGIES } from '../planner/strategies/registry.js';

/** Largest config file drover reads; a bigger one is refused before it is read. */
export const MAX_CONFIG_FILE_BYTES = FILE_LIMITS.config;
/** Largest token file (`api.tokens[].file`). */
export const MAX_TOKEN_FILE_BYTES = FILE_LIMITS.token;
/** Largest request body `api.bodyLimitBytes` may allow. */
export const MAX_API_BODY_LIMIT_BYTES = 16 * 1024 * 1024;

/** A config file (or its secrets) that failed validation; lists every issue with its path. */
export class ConfigError extends ValidationError {
  constructor(source: string, issues: readonly InputIssue[]) {
    super(source, issues);
    this.name = 'ConfigError';
  }
}

export const AUTOMATION_LEVELS = ['manual', 'partial', 'full'] as const;
export type AutomationLevel = (typeof AUTOMATION_LEVELS)[number];
export const API_ROLES = ['read', 'admin'] as const;
export type ApiRole = (typeof API_ROLES)[number];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const expecting = (what: string) => (issue: { input?: unknown }) =>
  `expected ${what}, got ${show(issue.input)}`;

const port = () =>
  z
    .number({ error: expecting('a TCP port from 0 to 65535') })
    .int({ error: expecting('a TCP port from 0 to 65535') })
    .min(0, { error: expecting('a TCP port from 0 to 65535') })
    .max(65535, { error: expecting('a TCP port from 0 to 65535') });

const cronExpression = () =>
  nonEmptyString().superRefine((value, ctx) => {
    const result = validateDetailed(value);
    if (!result.valid) {
      const why = result.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
      ctx.addIssue({ code: 'custom', message: `expected a cron expression, got ${show(value)} (${why})` });
    }
  });

const hostPort = z.strictObject({ host: nonEmptyString(), port: port() });

const workloadMix = z.strictObject({
  idle: nonNegativeNumber().optional(),
  web: nonNegativeNumber().optional(),
  database: nonNegativeNumber().optional(),
  jvm: nonNegativeNumber().optional(),
});

/** A generated simulated cluster (the simulator's generateCluster options). */
export const SimGenerateConfigSchema = z.strictObject({
  hosts: positiveInt(),
  /** VMs per host: a number or [min, max]. */
  vmsPerHost: z.union([nonNegativeInt(), z.tuple([nonNegativeInt(), nonNegativeInt()])]),
  host: z
    .strictObject({
      cpus: positiveInt().optional(),
      memMiB: positiveNumber().optional(),
      bandwidthMiBps: positiveNumber().optional(),
      cpuModel: nonEmptyString().optional(),
    })
    .optional(),
  /** Relative weights of the workload presets. */
  mix: workloadMix.optional(),
  localStorageFraction: z.number().min(0).max(1).optional(),
  racks: positiveInt().optional(),
});

export const SimHypervisorConfigSchema = z
  .strictObject({
    kind: z.literal('sim', { error: expecting('sim | libvirt') }),
    /** A cluster spec file (YAML or JSON: hosts and VMs with workloads), relative to the config file. */
    cluster: nonEmptyString().optional(),
    /** Or a generated cluster. */
    generate: SimGenerateConfigSchema.optional(),
    /** Seed for generated clusters and bandwidth noise: same seed, same run. */
    seed: z
      .number({ error: expecting('an integer') })
      .int({ error: expecting('an integer') })
      .default(1),
    /** Simulated seconds per real second (1 = real time). */
    speed: positiveNumber().default(1),
    /** Migration bandwidth noise, percent. */
    bandwidthNoisePct: nonNegativeNumber().default(0),
    /**
     * Keep where each VM runs in drover's Redis and start from there, so the simulated cluster outlives a
     * restart of drover as a real one does. Off: every start places the VMs as the spec says. One drover
     * process per Redis prefix only (each process has its own simulator).
     */
    keepPlacement: z
      .boolean({ error: (i) => `expected true or false, got ${JSON.stringify(i.input)}` })
      .default(false),
  })
  .superRefine((value, ctx) => {
    if ((value.cluster === undefined) === (value.generate === undefined))
      ctx.addIssue({ code: 'custom', message: 'expected exactly one of cluster, generate' });
  });

export const LibvirtHypervisorConfigSchema = z.strictObject({
  kind: z.literal('libvirt', { error: expecting('sim | libvirt') }),
  /** Each host: id, uri, peerUri?, migrateUri?, bandwidthMiBps?, labels?, sharedStoragePaths?. */
  hosts: LibvirtHostListSchema,
  /** Connection tunables: callTimeoutMs, migrationTimeoutMs, connectTimeoutMs, keepaliveIntervalMs, reconnect*. */
  options: LibvirtHypervisorOptionsSchema.prefault({}),
});

export const HypervisorConfigSchema = z.discriminatedUnion(
  'kind',
  [SimHypervisorConfigSchema, LibvirtHypervisorConfigSchema],
  { error: (i) => `expected kind to be sim | libvirt, got ${show((i.input as { kind?: unknown })?.kind)}` },
);

export const RedisConfigSchema = z
  .strictObject({
    /** redis:// or rediss:// URL of a single server. REDIS_URL in the environment wins over it. */
    url: nonEmptyString().optional(),
    sentinel: z
      .strictObject({
        sentinels: z.array(hostPort).min(1, { error: 'expected at least one sentinel' }),
        /** The monitored master's name. */
        name: nonEmptyString(),
      })
      .optional(),
    cluster: z
      .strictObject({ nodes: z.array(hostPort).min(1, { error: 'expected at least one node' }) })
      .optional(),
    /** Environment variable holding the Redis password (for sentinel/cluster; a URL carries its own). */
    passwordEnv: nonEmptyString().optional(),
    /** Key prefix of everything drover stores; a hash tag `{…}` so queues work on Redis Cluster. */
    prefix: nonEmptyString()
      .regex(/^\{[^{}]+\}/, { error: expecting('a hash-tagged prefix such as {drover}') })
      .default('{drover}'),
  })
  .superRefine((value, ctx) => {
    const modes = [value.url, value.sentinel, value.cluster].filter((m) => m !== undefined).length;
    if (modes > 1)
      ctx.addIssue({ code: 'custom', message: 'expected at most one of url, sentinel, cluster', path: [] });
  });

export const PolicyConfigSchema = z.strictObject({
  /** Policy file (YAML), relative to the config file. */
  file: nonEmptyString(),
  /** Reload the policy when the file changes (SIGHUP always reloads). */
  watch: z.boolean({ error: expecting('true or false') }).default(true),
});

/** Strategies the daemon may run on a schedule: every registered one but drains (those start per host). */
export const SCHEDULABLE_STRATEGIES = STRATEGIES.all()
  .filter((s) => s.reason !== 'drain')
  .map((s) => s.name);

const scheduledStrategy = () =>
  z
    .string({ error: expecting(`a strategy name (${SCHEDULABLE_STRATEGIES.join(' | ')})`) })
    .superRefine((value, ctx) => {
      if (SCHEDULABLE_STRATEGIES.includes(value)) return;
      const drain = STRATEGIES.get(value)?.reason === 'drain';
      ctx.addIssue({
        code: 'custom',
        message: drain
          ? `expected one of ${SCHEDULABLE_STRATEGIES.join(' | ')}, got ${show(value)} (a drain starts per host: drover drain HOST)`
          : `expected one of ${SCHEDULABLE_STRATEGIES.join(' | ')}, got ${show(value)} (no such strategy)`,
      });
    });

const ScheduledRunSchema = z.strictObject({
  /** The registered strategy the run plans with. */
  strategy: scheduledStrategy(),
  /** Cron expression (5 or 6 fields, seconds first when 6). */
  cron: cronExpression(),
  enabled: z.boolean({ error: expecting('true or false') }).default(true),
  /** IANA time zone of the cron expression; default: the process's. */
  timezone: nonEmptyString().optional(),
});

export const SchedulesConfigSchema = z
  .strictObject({
    rebalance: z
      .strictObject({
        /** Cron expression (5 or 6 fields, seconds first when 6). */
        cron: cronExpression().default('*/10 * * * *'),
        enabled: z.boolean({ error: expecting('true or false') }).default(true),
        /** IANA time zone of the cron expression; default: the process's. */
        timezone: nonEmptyString().optional(),
        /** The registered strategy the scheduled rebalance plans with. */
        strategy: scheduledStrategy().default('balance'),
      })
      .prefault({}),
    /**
     * More scheduled runs, each of one strategy on its own cron (say consolidate at night beside the rebalance);
     * a strategy appears at most once among these and schedules.rebalance.
     */
    strategies: z.array(ScheduledRunSchema).default([]),
    /** The reconciler (VMs active on two hosts) runs this often, on the leader. */
    reconcile: z.strictObject({ intervalS: positiveNumber().default(60) }).prefault({}),
    /** Plan upkeep (expire stale pending plans, close finished ones, drain gauges) runs this often, on the leader. */
    plans: z.strictObject({ intervalS: positiveNumber().default(5) }).prefault({}),
  })
  .superRefine((value, ctx) => {
    const seen = new Set([value.rebalance.strategy]);
    value.strategies.forEach((run, i) => {
      if (seen.has(run.strategy))
        ctx.addIssue({
          code: 'custom',
          path: ['strategies', i, 'strategy'],
          message: `${show(run.strategy)} is already scheduled (each strategy at most once, schedules.rebalance included)`,
        });
      seen.add(run.strategy);
    });
  });

export const AutomationConfigSchema = z.strictObject({
  /** manual: every plan waits for approval; partial: drains run, rebalancing waits; full: everything runs. */
  level: oneOf(AUTOMATION_LEVELS).default('partial'),
  /** A plan expires when the snapshot it was made from is older than this. */
  planMaxAgeS: positiveNumber().default(600),
});

export const LeaderConfigSchema = z.strictObject({
  /** Lease length: a dead leader is replaced within this time. */
  leaseMs: z
    .number({ error: expecting('an integer >= 1000') })
    .int({ error: expecting('an integer >= 1000') })
    .min(1000, { error: expecting('an integer >= 1000') })
    .default(10_000),
});

export const ApiTokenConfigSchema = z
  .strictObject({
    /** Who holds the token (appears in logs, never the token). */
    name: nonEmptyString(),
    role: oneOf(API_ROLES),
    /** Exactly one of: the token itself, an environment variable, a file (first line). */
    value: z.string().min(16, { error: 'expected a token of at least 16 characters' }).optional(),
    env: nonEmptyString().optional(),
    file: nonEmptyString().optional(),
  })
  .superRefine((value, ctx) => {
    const sources = [value.value, value.env, value.file].filter((s) => s !== undefined).length;
    if (sources !== 1)
      ctx.addIssue({ code: 'custom', message: `expected exactly one of value, env, file, got ${sources}` });
  });

export const ApiConfigSchema = z.strictObject({
  enabled: z.boolean({ error: expecting('true or false') }).default(true),
  host: nonEmptyString().default('127.0.0.1'),
  /** 0 picks a free port (tests). */
  port: port().default(8080),
  tokens: z.array(ApiTokenConfigSchema).default([]),
  /** Largest accepted request body (at most 16 MiB). */
  bodyLimitBytes: positiveInt()
    .max(MAX_API_BODY_LIMIT_BYTES, {
      error: (i) => `expected at most ${MAX_API_BODY_LIMIT_BYTES} bytes, got ${show(i.input)}`,
    })
    .default(64 * 1024),
  /** Require a token on /metrics too (Prometheus then needs `authorization` in its scrape config). */
  metricsAuth: z.boolean({ error: expecting('true or false') }).default(false),
});

export const MetricsConfigSchema = z.strictObject({
  /** Per-VM series (dirty rate, migrations per VM): their count grows with the fleet. */
  perVmSeries: z.boolean({ error: expecting('true or false') }).default(false),
  /** Node process metrics (CPU, memory, event-loop lag). */
  processMetrics: z.boolean({ error: expecting('true or false') }).default(true),
});

export const ConfigSchema = z.strictObject({
  /** Name of this drover process in logs and leases; default: hostname and pid. */
  instance: nonEmptyString().optional(),
  /**
   * Where the private redis-server keeps its data when no Redis is configured (relative to the config file);
   * default: $STATE_DIRECTORY (systemd), $XDG_STATE_HOME/drover, ~/.local/state/drover. --state-dir wins.
   */
  stateDir: nonEmptyString().optional(),
  hypervisor: HypervisorConfigSchema,
  redis: RedisConfigSchema.prefault({}),
  policy: PolicyConfigSchema,
  schedules: SchedulesConfigSchema.prefault({}),
  automation: AutomationConfigSchema.prefault({}),
  leader: LeaderConfigSchema.prefault({}),
  api: ApiConfigSchema.prefault({}),
  metrics: MetricsConfigSchema.prefault({}),
  log: z.strictObject({ level: oneOf(LOG_LEVELS).default('info') }).prefault({}),
  /** The collector's options (sampling interval, timeouts, dirty-rate measurement, smoothing). */
  collector: CollectorOptionsSchema.prefault({}),
  /** The executor's options (queue, watchdog poll, timeouts, retries, slots); its key prefix is redis.prefix. */
  executor: ExecutorOptionsSchema.omit({ prefix: true }).prefault({}),
  shutdown: z
    .strictObject({
      /** How long SIGTERM waits for in-flight work to hand over before exiting anyway. */
      graceMs: positiveInt().default(30_000),
    })
    .prefault({}),
});

export type Config = z.output<typeof ConfigSchema>;
export type HypervisorConfig = z.output<typeof HypervisorConfigSchema>;
export type RedisConfig = z.output<typeof RedisConfigSchema>;

export interface ApiToken {
  name: string;
  role: ApiRole;
  secret: string;
}

/** A loaded config with paths made absolute and token secrets read. */
export interface LoadedConfig {
  config: Config;
  /** The config file's path (absolute). */
  path: string;
  /** Its directory: relative paths in the config are resolved against it. */
  dir: string;
  policyPath: string;
  tokens: ApiToken[];
}

/**
 * Fields earlier versions accepted but never acted on, and what does their job. A config that still sets one
 * is refused with this text, so nobody keeps tuning a knob that does nothing.
 */
export const REMOVED_CONFIG_FIELDS: Readonly<Record<string, string>> = {
  'schedules.collect':
    'removed: it was never read; the collector samples every `collector.intervalS` seconds (delete this section)',
  'executor.reconcileIntervalMs':
    'removed: it was never read; the reconciler runs every `schedules.reconcile.intervalS` seconds (delete this field)',
};

/** Validates an already-parsed config document. */
export function parseConfig(data: unknown, source = 'config'): Config {
  try {
    return parseWith(ConfigSchema, data, source);
  } catch (err) {
    if (err instanceof ValidationError)
      throw new ConfigError(
        source,
        err.issues.map((i) => {
          // Own keys only: a field named like an Object method (toString) is just an unknown field.
          const removed = Object.hasOwn(REMOVED_CONFIG_FIELDS, i.path)
            ? REMOVED_CONFIG_FIELDS[i.path]
            : undefined;
          return removed === undefined ? i : { path: i.path, message: removed };
        }),
      );
    throw err;
  }
}

/** Parses YAML text into a document, reporting syntax errors with line and column. */
export function parseYaml(text: string, source: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => {
        const at = e.linePos?.[0];
        return {
          path: at ? `line ${at.line}, column ${at.col}` : '',
          message: (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, ''),
        };
      }),
    );
  }
  try {
    return doc.toJS() as unknown;
  } catch (err) {
    // The yaml library refuses alias bombs (and similar resource exhaustion) here, with a plain error.
    throw new ConfigError(source, [{ path: '', message: `cannot load the YAML: ${errorMessage(err)}` }]);
  }
}

async function readTokens(
  config: Config,
  baseDir: string,
  env: NodeJS.ProcessEnv,
): Promise<{ tokens: ApiToken[]; issues: InputIssue[] }> {
  const tokens: ApiToken[] = [];
  const issues: InputIssue[] = [];
  const names = new Set<string>();
  for (const [i, t] of config.api.tokens.entries()) {
    const path = `api.tokens[${i}]`;
    if (names.has(t.name))
      issues.push({ path: `${path}.name`, message: `duplicate token name ${show(t.name)}` });
    names.add(t.name);
    let secret: string | undefined;
    let field = 'value';
    if (t.value !== undefined) secret = t.value;
    else if (t.env !== undefined) {
      field = 'env';
      secret = env[t.env];
      if (secret === undefined) {
        issues.push({ path: `${path}.env`, message: `environment variable ${t.env} is not set` });
        continue;
      }
    } else if (t.file !== undefined) {
      field = 'file';
      const file = isAbsolute(t.file) ? t.file : resolve(baseDir, t.file);
      try {
        const text = await readLimited(file, MAX_TOKEN_FILE_BYTES, `${path}.file`, 'token file');
        secret = text.split('\n')[0]?.trim();
      } catch (err) {
        if (err instanceof FileTooLarge) {
          issues.push({ path: `${path}.file`, message: err.detail });
          continue;
        }
        issues.push({ path: `${path}.file`, message: `cannot read ${file}: ${errorMessage(err)}` });
        continue;
      }
    }
    if (secret === undefined || secret.length < 16) {
      issues.push({ path: `${path}.${field}`, message: 'expected a token of at least 16 characters' });
      continue;
    }
    if (tokens.some((other) => other.secret === secret))
      issues.push({ path: `${path}.${field}`, message: 'the same token is given twice' });
    tokens.push({ name: t.name, role: t.role, secret });
  }
  return { tokens, issues };
}

/**
 * Reads, parses and validates a config file, resolves relative paths against its directory and reads token
 * secrets. Throws ConfigError listing every problem.
 */
export async function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readLimited(absolute, MAX_CONFIG_FILE_BYTES, path, 'config file');
  } catch (err) {
    if (err instanceof FileTooLarge) throw new ConfigError(path, [{ path: '', message: err.detail }]);
    throw new ConfigError(path, [{ path: '', message: `cannot read the config file: ${errorMessage(err)}` }]);
  }
  const config = parseConfig(parseYaml(text, path), path);
  const baseDir = dirname(absolute);
  const { tokens, issues } = await readTokens(config, baseDir, env);
  if (config.api.enabled && !config.api.tokens.some((t) => t.role === 'admin')) {
    issues.push({
      path: 'api.tokens',
      message: 'expected at least one admin token while the API is enabled',
    });
  }
  if (issues.length > 0) throw new ConfigError(path, issues);
  const policyPath = isAbsolute(config.policy.file)
    ? config.policy.file
    : resolve(baseDir, config.policy.file);
  return { config, path: absolute, dir: baseDir, policyPath, tokens };
}
