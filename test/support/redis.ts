// Per-test Redis access: the run's shared Redis, a unique key prefix, and clean-up of that prefix. The run's
// Redis is one redis-server (project `unit`) or a 3-primary Redis Cluster (project `cluster`, which runs the
// Redis-heavy service tests again); tests reach it only through these functions, so the same test runs on both.
import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { inject } from 'vitest';

export interface HostPort {
  host: string;
  port: number;
}

/** The Cluster's nodes when this run's Redis is a Cluster, else null. */
export function clusterNodes(): HostPort[] | null {
  return inject('redisCluster') ?? null;
}

/** The single server's URL (not defined on a Cluster run: use connectRedis, serviceRedis, serviceEnv). */
export function redisUrl(): string {
  const url = inject('redisUrl');
  if (url === undefined) throw new Error('this run uses a Redis Cluster: it has no single redis URL');
  return url;
}

/** A unique key prefix for one test (hash-tagged so BullMQ also works on Redis Cluster). */
export function uniquePrefix(name = 'test'): string {
  return `{drover-${name}-${randomUUID().slice(0, 8)}}`;
}

/** A client of the run's Redis. On a Cluster run, an ioredis Cluster (drover's keys share one slot). */
export function connectRedis(): Redis {
  const nodes = clusterNodes();
  if (nodes) return new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: null } }) as unknown as Redis;
  return new Redis(redisUrl(), { maxRetriesPerRequest: null, lazyConnect: false });
}

/** drover's `redis` config section for the run's Redis (with `prefix`). */
export function serviceRedis(prefix: string): Record<string, unknown> {
  const nodes = clusterNodes();
  return nodes ? { prefix, cluster: { nodes } } : { prefix };
}

/** The environment a service started by a test gets: REDIS_URL on a single server, none on a Cluster. */
export function serviceEnv(): NodeJS.ProcessEnv {
  return clusterNodes() ? {} : { REDIS_URL: redisUrl() };
}

/** Deletes every key under the prefix (on every primary of a Cluster). */
export async function cleanPrefix(redis: Redis | Cluster, prefix: string): Promise<number> {
  const client: unknown = redis;
  const servers: Redis[] = client instanceof Cluster ? client.nodes('master') : [redis as Redis];
  let removed = 0;
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, keys] = await server.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) removed += await server.del(...keys);
    } while (cursor !== '0');
  }
  return removed;
}
