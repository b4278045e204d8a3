// The composition root: config → logger → metrics → Redis → hypervisor → policy → stores → collector →
// executor → leader election → operations → HTTP API → schedules. The only place that says `new` for
// services; everything else receives what it needs.
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { Collector } from '../collector/collector.js';
import { HostStateStore } from '../collector/host-state-store.js';
import { RedisCollectorStore } from '../collector/redis-collector-store.js';
import { SnapshotStore } from '../collector/snapshot-store.js';
import type { Clock } from '../domain/clock.js';
import { errorMessage } from '../domain/errors.js';
import { Executor } from '../executor/executor.js';
import { HistoryStore } from '../executor/history-store.js';
import { Reconciler } from '../executor/reconciler.js';
import { ScaledClock, SystemClock } from '../clock/clocks.js';
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import { LibvirtHypervisor } from '../hypervisor/libvirt/libvirt-hypervisor.js';
import { SimHypervisor } from '../hypervisor/sim/sim-hypervisor.js';
import { generateCluster, parseClusterSpec, type ClusterSpec } from '../hypervisor/sim/cluster-spec.js';
import { createMetrics, type DroverMetrics } from '../metrics/metrics.js';
import { loadPolicy } from '../planner/load-policy.js';
import { buildApi, listen, type ApiApp } from './api-server.js';
import { AuditLog } from './audit-log.js';
import { AutomationStore } from './automation-store.js';
import { ConfigError, parseYaml, type Config, type HypervisorConfig, type LoadedConfig } from './config.js';
import { DroverService } from './drover-service.js';
import { HoldStore } from './hold-store.js';
import { LeaderElection } from './leader-election.js';
import { PlanStore } from './plan-store.js';
import { PLANNER_THREAD_MIN_VMS, PlannerThread } from './planner-thread.js';
import { PolicyReloader, type ReloadOutcome } from './policy-reloader.js';
import { FILE_LIMITS, FileTooLarge, readLimited } from './read-limited.js';
import { checkPersistence, openRedis, type RedisConnection } from './redis-connection.js';
import { resolveStateDir, type StateDir } from './state-dir.js';
import { Schedules } from './schedules.js';
import { SimPlacement } from './sim-placement.js';
import { securityWarnings } from './security-warnings.js';

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Default: pino JSON to stdout at the config's log level. */
  logger?: Logger;
  /**
   * The state directory of the private redis-server (`--state-dir`; wins over the config's stateDir). null: a
   * throwaway directory, nothing persists.
   */
  stateDir?: string | null;
  /**
   * Called when a part drover cannot run without is gone for good (the private redis-server died and could not
   * be started again). Default: log and exit the process with status 1.
   */
  onFatal?: (err: Error) => void;
}

/** True when no Redis is configured and drover starts its own redis-server. */
export function usesPrivateRedis(config: Config, env: NodeJS.ProcessEnv): boolean {
  const r = config.redis;
  return env.REDIS_URL === undefined && r.url === undefined && !r.sentinel && !r.cluster;
}

/** The state directory `drover serve` would use for this config (null when it is told to use none). */
export function stateDirOf(
  loaded: LoadedConfig,
  env: NodeJS.ProcessEnv,
  flag?: string | null,
): StateDir | null {
  if (flag === null) return null;
  const fromConfig = loaded.config.stateDir;
  return resolveStateDir({
    flag,
    config: fromConfig === undefined ? undefined : resolve(loaded.dir, fromConfig),
    env,
  });
}

export interface RunningService {
  readonly config: Config;
  readonly instance: string;
  readonly log: Logger;
  readonly metrics: DroverMetrics;
  readonly redis: RedisConnection;
  /** Where the private redis-server keeps its data; null with a configured Redis or a throwaway one. */
  readonly stateDir: StateDir | null;
  readonly hypervisor: Hypervisor;
  /** The simulator, when the hypervisor is one (tests inject faults through it). */
  readonly sim: SimHypervisor | null;
  readonly election: LeaderElection;
  readonly service: DroverService;
  readonly schedules: Schedules;
  readonly policy: PolicyReloader;
  /** The API's base URL, or null when the API is off. */
  readonly apiUrl: string | null;
  /** The API server itself (its routes), or null when the API is off. */
  readonly api: ApiApp | null;
  reloadPolicy(trigger: string): Promise<ReloadOutcome>;
  /** Stops taking work, hands running migrations over (they keep running; another process adopts them), and closes. */
  stop(reason: string): Promise<void>;
}

/** Drops undefined members (zod gives `x?: T | undefined`; exactOptionalPropertyTypes wants them absent). */
function compact<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

/**
 * Builds the configured hypervisor; the simulator's cluster comes from a spec file or is generated. With
 * `placement` (the daemon, when the config keeps the simulator's placement) VMs start where they last ran.
 */
export async function createHypervisor(
  config: HypervisorConfig,
  configDir: string,
  placement?: SimPlacement,
): Promise<{ hypervisor: Hypervisor; sim: SimHypervisor | null }> {
  if (config.kind === 'libvirt') {
    return { hypervisor: new LibvirtHypervisor(config.hosts, config.options), sim: null };
  }
  let spec: ClusterSpec;
  if (config.cluster !== undefined) {
    const path = isAbsolute(config.cluster) ? config.cluster : resolve(configDir, config.cluster);
    let text: string;
    try {
      text = await readLimited(path, FILE_LIMITS.clusterSpec, 'hypervisor.cluster', 'cluster spec');
    } catch (err) {
      if (err instanceof FileTooLarge) throw new ConfigError(path, [{ path: '', message: err.message }]);
      throw err;
    }
    spec = parseClusterSpec(parseYaml(text, path), path);
  } else {
    const g = config.generate;
    if (!g) throw new Error('unreachable: the config schema requires cluster or generate');
    spec = generateCluster({
      seed: config.seed,
      hosts: g.hosts,
      vmsPerHost: g.vmsPerHost,
      ...(g.host ? { host: compact(g.host) } : {}),
      ...(g.mix ? { mix: compact(g.mix) } : {}),
      ...(g.localStorageFraction !== undefined ? { localStorageFraction: g.localStorageFraction } : {}),
      ...(g.racks !== undefined ? { racks: g.racks } : {}),
    });
  }
  if (placement) spec = (await placement.apply(spec)).spec;
  const clock: Clock = config.speed === 1 ? new SystemClock() : new ScaledClock(config.speed);
  const sim = new SimHypervisor(spec, { clock, bandwidthNoisePct: config.bandwidthNoisePct });
  placement?.follow(sim);
  return { hypervisor: sim, sim };
}

export async function startService(
  loaded: LoadedConfig,
  options: StartOptions = {},
): Promise<RunningService> {
  const { config } = loaded;
  const env = options.env ?? process.env;
  const instance = config.instance ?? `${hostname()}:${process.pid}`;
  const log = (options.logger ?? pino({ level: config.log.level })).child({ instance });
  const metrics = createMetrics({
    perVmSeries: config.metrics.perVmSeries,
    processMetrics: config.metrics.processMetrics,
  });
  const prefix = config.redis.prefix;

  for (const w of await securityWarnings(loaded, env))
    log.warn({ module: 'security', field: w.field, warning: w.message }, 'security warning');

  const cleanups: (() => Promise<void>)[] = [];
  const undo = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  };
  try {
    const ownRedis = usesPrivateRedis(config, env);
    const stateDir = ownRedis ? stateDirOf(loaded, env, options.stateDir) : null;
    const onFatal =
      options.onFatal ??
      ((err: Error) => {
        log.fatal({ module: 'service', err: err.message }, 'exiting: a part drover needs is gone');
        process.exit(1);
      });
    const redis = await openRedis(config.redis, env, {
      stateDir: stateDir?.path ?? null,
      hostname: hostname(),
      supervise: {
        onExit: ({ pid, code, signal }) =>
          log.error(
            { module: 'redis', pid, code, signal },
            'the private redis-server exited: starting it again on its data',
          ),
        onRestart: ({ pid, restarts }) =>
          log.warn({ module: 'redis', pid, restarts }, 'the private redis-server runs again'),
        onGiveUp: (err) => {
          log.fatal({ module: 'redis', err: err.message }, 'the private redis-server cannot be kept running');
          onFatal(err);
        },
      },
    });
    cleanups.push(() => redis.close());
    log.info({ module: 'service', redis: redis.description }, 'redis connected');
    if (redis.stateLock?.tookOver)
      log.warn(
        { module: 'service', stateDir: stateDir?.path, pid: redis.stateLock.tookOver.pid },
        'the last drover on this state directory did not stop cleanly; its lock was taken over',
      );
    if (stateDir)
      log.info(
        { module: 'service', stateDir: stateDir.path, from: stateDir.source },
        'state: private redis-server with AOF (appendfsync everysec)',
      );
    else if (!ownRedis) {
      const persistence = await checkPersistence(redis.redis);
      if (persistence.persists === true)
        log.info({ module: 'redis', persistence: persistence.detail }, 'redis persists its data');
      else log.warn({ module: 'redis', persistence: persistence.detail }, 'redis may lose drover state');
    }

    const placement =
      config.hypervisor.kind === 'sim' && config.hypervisor.keepPlacement
        ? new SimPlacement(redis.redis, prefix, log)
        : undefined;
    const { hypervisor, sim } = await createHypervisor(config.hypervisor, loaded.dir, placement);
    cleanups.push(() => hypervisor.close());
    if (placement) cleanups.push(() => Promise.resolve(placement.stop()));

    const policy = await PolicyReloader.open({
      path: loaded.policyPath,
      load: loadPolicy,
      metrics,
      log,
    });
    cleanups.push(() => Promise.resolve(policy.close()));

    const snapshots = new SnapshotStore(redis.redis, prefix);
    const hostStates = new HostStateStore(redis.redis, prefix);
    const plans = new PlanStore(redis.redis, prefix);
    const history = new HistoryStore(redis.redis, prefix, config.executor.history, hypervisor.clock);

    const collectorStore = new RedisCollectorStore({
      redis: redis.redis,
      keyPrefix: prefix,
      snapshots,
      hostStates,
    });
    const collector = new Collector(
      { hypervisor, store: collectorStore, metrics, logger: log, memberId: instance },
      config.collector,
    );
    const executor = new Executor({
      redis: redis.redis,
      hypervisor,
      options: { ...config.executor, prefix },
      history,
      logger: log,
      metrics,
      isHostActive: async (hostId) => (await hostStates.get(hostId)) === 'active',
    });
    cleanups.push(() => executor.close());

    const election = new LeaderElection({
      redis: redis.redis,
      prefix,
      instance,
      leaseMs: config.leader.leaseMs,
      log: log.child({ module: 'leader' }),
    });
    metrics.leader.set(0);
    election.on('elected', () => metrics.leader.set(1));
    election.on('demoted', () => metrics.leader.set(0));

    const plannerThread = new PlannerThread({
      minVms: PLANNER_THREAD_MIN_VMS,
      log: log.child({ module: 'planner' }),
    });
    cleanups.push(() => plannerThread.close());

    const service = new DroverService({
      plannerThread,
      instance,
      redis: redis.redis,
      clock: hypervisor.clock,
      snapshots,
      hostStates,
      plans,
      executor,
      history,
      election,
      policy: () => policy.current(),
      automation: config.automation,
      automationState: new AutomationStore(redis.redis, prefix),
      holds: new HoldStore(redis.redis, prefix),
      audit: new AuditLog(redis.redis, prefix),
      metrics,
      log,
    });

    let draining = false;
    let app: ApiApp | null = null;
    let apiUrl: string | null = null;
    if (config.api.enabled) {
      app = buildApi({
        ops: service,
        tokens: loaded.tokens,
        metrics,
        log,
        bodyLimitBytes: config.api.bodyLimitBytes,
        metricsAuth: config.api.metricsAuth,
        redisUp: () => redis.redis.status === 'ready',
        draining: () => draining,
      });
      const bound = await listen(app, config.api.host, config.api.port);
      apiUrl = bound.url;
      const started = app;
      cleanups.push(() => started.close());
      log.info({ module: 'api', url: apiUrl }, 'api listening');
    }

    const schedules = new Schedules({
      metrics,
      log,
      isLeader: () => election.isLeader(),
    });
    // The rebalance (its strategy named by schedules.rebalance.strategy) and any further strategies' runs.
    const runs = [
      { name: 'rebalance', ...config.schedules.rebalance },
      ...config.schedules.strategies.map((r) => ({ name: `strategy:${r.strategy}`, ...r })),
    ];
    for (const run of runs) {
      if (!run.enabled) continue;
      schedules.add({
        name: run.name,
        trigger: { cron: run.cron, ...(run.timezone ? { timezone: run.timezone } : {}) },
        leaderOnly: true,
        run: async () => ({ strategy: run.strategy, ...(await service.scheduledRebalance(run.strategy)) }),
      });
    }
    schedules.add({
      name: 'plans',
      trigger: { everyMs: config.schedules.plans.intervalS * 1000 },
      leaderOnly: true,
      frequent: true,
      run: () => service.trackPlans(),
    });
    const reconciler = new Reconciler({
      hypervisor,
      callTimeoutMs: config.executor.callTimeoutMs,
      intervalMs: config.schedules.reconcile.intervalS * 1000,
      logger: log,
      metrics,
    });
    schedules.add({
      name: 'reconcile',
      trigger: { everyMs: config.schedules.reconcile.intervalS * 1000 },
      leaderOnly: true,
      frequent: true,
      run: async () => {
        const report = await reconciler.runOnce();
        return {
          hostsChecked: report.hostsChecked,
          unreachableHosts: report.unreachableHosts,
          onSeveralHosts: report.onSeveralHosts.length,
          definedOnSeveralHosts: report.definedOnSeveralHosts.length,
        };
      },
    });

    // Start the moving parts: every process collects its share and runs workers; one leads.
    collector.start();
    cleanups.push(() => collector.stop());
    executor.startWorkers(1);
    election.start();
    cleanups.push(() => election.stop());
    schedules.start();
    cleanups.push(() => schedules.stop());
    if (config.policy.watch) policy.watch();

    let stopping: Promise<void> | null = null;
    const running: RunningService = {
      config,
      instance,
      log,
      metrics,
      redis,
      stateDir,
      hypervisor,
      sim,
      election,
      service,
      schedules,
      policy,
      apiUrl,
      api: app,
      reloadPolicy: (trigger) => policy.reload(trigger),
      stop(reason: string) {
        stopping ??= (async () => {
          draining = true;
          log.info(
            { module: 'service', reason },
            'stopping: no new work; running migrations are handed over',
          );
          // In this order: no new runs, give up the lease (another process leads at once), stop the workers
          // (running migrations keep going in the hypervisor and are adopted elsewhere), stop sampling, close.
          await schedules.stop();
          await election.stop();
          metrics.leader.set(0);
          await executor.close();
          await collector.stop();
          await plannerThread.close();
          if (app) await app.close();
          policy.close();
          await hypervisor.close();
          placement?.stop();
          await redis.close();
          log.info({ module: 'service' }, 'stopped');
        })();
        return stopping;
      },
    };
    return running;
  } catch (err) {
    log.error({ module: 'service', err: errorMessage(err) }, 'start failed');
    await undo();
    throw err;
  }
}
