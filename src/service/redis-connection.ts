// Opens drover's Redis connection from the config: REDIS_URL, a URL, Sentinel, Cluster, or (none given) a
// private redis-server on a free loopback port. BullMQ needs maxRetriesPerRequest: null on its connections.
import { Cluster, Redis } from 'ioredis';
import type { RedisConfig } from './config.js';
import { startPrivateRedis, type PrivateRedis } from './private-redis.js';

export interface RedisConnection {
  redis: Redis;
  /** Where it points, without credentials (for logs and `drover doctor`). */
  description: string;
  /** Set when drover started its own redis-server. */
  privateRedis: PrivateRedis | null;
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
): Promise<RedisConnection> {
  const password = config.passwordEnv !== undefined ? env[config.passwordEnv] : undefined;
  const common = { maxRetriesPerRequest: null, ...(password !== undefined ? { password } : {}) };
  let redis: Redis;
  let description: string;
  let privateRedis: PrivateRedis | null = null;
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
    privateRedis = await startPrivateRedis();
    redis = new Redis(privateRedis.url, { maxRetriesPerRequest: null });
    description = `${privateRedis.url} (private redis-server, pid ${privateRedis.pid})`;
  }
  return {
    redis,
    description,
    privateRedis,
    async close() {
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
      await privateRedis?.stop();
    },
  };
}
