// Per-test Redis access: the run's shared server, a unique key prefix, and clean-up of that prefix.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject } from 'vitest';

export function redisUrl(): string {
  return inject('redisUrl');
}

/** A unique key prefix for one test (hash-tagged so BullMQ also works on Redis Cluster). */
export function uniquePrefix(name = 'test'): string {
  return `{drover-${name}-${randomUUID().slice(0, 8)}}`;
}

export function connectRedis(): Redis {
  return new Redis(redisUrl(), { maxRetriesPerRequest: null, lazyConnect: false });
}

/** Deletes every key under the prefix. */
export async function cleanPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let removed = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) removed += await redis.del(...keys);
  } while (cursor !== '0');
  return removed;
}
