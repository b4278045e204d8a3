// Opens drover's Redis connection from the config: REDIS_URL, a URL, Sentinel, Cluster, or (none given) a
// private redis-server on a free loopback port. BullMQ needs maxRetriesPerRequest: null on its connections.
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { errorMessage } from '../domain/errors.js';
import type { RedisConfig } from './config.js';
import { startPrivateRedis, type PrivateRedis, type SuperviseOptions } from './private-redis.js';
import { acquireStateLock, type StateLock } from './state-dir.js';

export interface PrivateRedisPlan {
  /**
   * The state directory: the redis-server keeps its AOF in <dir>/redis, under a lock that refuses a second
   * drover on it. null: a throwaway directory, nothing persists (tests, one-off runs).
   */
  stateDir: string | null;
  /** Name written into the lock file. */
  hostname: string;
  /** Watch the redis-server: restart it on its data when it dies; onGiveUp when that fails. */
  supervise?: SuperviseOptions;
}

export interface RedisConnection {
  redis: Redis;
  /** Where it points, without credentials (for logs and `drover doctor`). */
  description: string;
  /** Set when drover started its own redis-server. */
  privateRedis: PrivateRedis | null;
  /** The state directory's lock, held while the private redis-server runs on it. */
  stateLock: StateLock | null;
  close(): Promise<void>;
}

function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

export async function openRedis(
  config: RedisConfig,
  env: NodeJS.ProcessEnv = process.env,
  plan: PrivateRedisPlan = { stateDir: null, hostname: 'drover' },
): Promise<RedisConnection> {
  const password = config.passwordEnv !== undefined ? env[config.passwordEnv] : undefined;
  const common = { maxRetriesPerRequest: null, ...(password !== undefined ? { password } : {}) };
  let redis: Redis;
  let description: string;
  let privateRedis: PrivateRedis | null = null;
  let stateLock: StateLock | null = null;
  const url = env.REDIS_URL ?? config.url;
  if (url !== undefined) {
    redis = new Redis(url, { maxRetriesPerRequest: null });
    description = withoutCredentials(url);
  } else if (config.sentinel) {
    redis = new Redis({ ...common, sentinels: config.sentinel.sentinels, name: config.sentinel.name });
    description = `sentinel ${config.sentinel.name} via ${config.sentinel.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  } else if (config.cluster) {
    // ioredis's Cluster speaks the same commands as Redis for the single-slot keys drover uses (every key
    // carries the hash-tagged prefix); drover's stores and BullMQ accept it where they take a Redis.
    const cluster = new Cluster(config.cluster.nodes, { redisOptions: common });
    redis = cluster as unknown as Redis;
    description = `cluster via ${config.cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
  } else {
    if (plan.stateDir !== null) {
      stateLock = await acquireStateLock(plan.stateDir, plan.hostname);
      try {
        privateRedis = await startPrivateRedis({
          dir: join(plan.stateDir, 'redis'),
          appendOnly: true,
          reclaim: true,
          // A large AOF takes a while to load; Redis answers LOADING until then.
          startTimeoutMs: 120_000,
          ...(plan.supervise ? { supervise: plan.supervise } : {}),
        });
      } catch (err) {
        await stateLock.release();
        throw err;
      }
    } else {
      privateRedis = await startPrivateRedis(plan.supervise ? { supervise: plan.supervise } : {});
    }
    redis = new Redis(privateRedis.url, { maxRetriesPerRequest: null });
    description = `${privateRedis.url} (private redis-server, pid ${privateRedis.pid}, ${
      plan.stateDir !== null ? `state in ${plan.stateDir}` : 'nothing persists'
    })`;
  }
  return {
    redis,
    description,
    privateRedis,
    stateLock,
    async close() {
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
      await privateRedis?.stop();
      await stateLock?.release();
    },
  };
}

export interface Persistence {
  /** true: AOF or RDB snapshots on; false: neither; null: could not tell (CONFIG disabled or renamed). */
  persists: boolean | null;
  detail: string;
}

/** Whether a Redis keeps its data over a restart, from CONFIG GET appendonly/appendfsync/save. */
export async function checkPersistence(redis: Redis): Promise<Persistence> {
  let flat: string[];
  try {
    flat = (await redis.call('CONFIG', 'GET', 'appendonly', 'appendfsync', 'save')) as string[];
  } catch (err) {
    return {
      persists: null,
      detail: `cannot tell whether Redis persists its data (CONFIG GET refused: ${errorMessage(err)})`,
    };
  }
  const cfg = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) cfg.set(String(flat[i]), String(flat[i + 1]));
  const aof = cfg.get('appendonly') === 'yes';
  const save = (cfg.get('save') ?? '').trim();
  if (aof) return { persists: true, detail: `AOF on (appendfsync ${cfg.get('appendfsync') ?? '?'})` };
  if (save !== '')
    return {
      persists: true,
      detail: `RDB snapshots only (save "${save}"): writes since the last snapshot are lost when Redis stops`,
    };
  return {
    persists: false,
    detail:
      'Redis keeps nothing on disk (appendonly no, save ""): a restart of Redis forgets maintenance states, ' +
      'cooldowns, quarantines, pending approvals and queued jobs; turn on appendonly',
  };
}
