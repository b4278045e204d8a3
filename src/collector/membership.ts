// Which collector process samples which host. Every process heartbeats into a Redis sorted set (score = its
// clock time); the live members are those seen within the TTL. Each host goes to the member with the highest
// rendezvous hash of (member, host), so every process computes the same owner without talking to the
// others, a joining process takes about 1/n of the hosts, and a dead one's hosts spread over the rest.
import type { Redis } from 'ioredis';
import type { Clock } from '../domain/clock.js';

/** FNV-1a over UTF-16 code units, then a final avalanche mix; 32-bit unsigned. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The member that owns the host (highest rendezvous weight; ties by member id). Null with no members. */
export function ownerOf(hostId: string, members: readonly string[]): string | null {
  let best: string | null = null;
  let bestWeight = -1;
  for (const m of members) {
    const w = hash32(`${m}\u0000${hostId}`);
    if (w > bestWeight || (w === bestWeight && best !== null && m < best)) {
      best = m;
      bestWeight = w;
    }
  }
  return best;
}

export class CollectorMembership {
  readonly key: string;
  constructor(
    private readonly redis: Redis,
    keyPrefix: string,
    readonly memberId: string,
    private readonly clock: Clock,
    private readonly ttlMs: number,
  ) {
    this.key = `${keyPrefix}:collector:members`;
  }

  /** Records this process as alive now and drops members whose last heartbeat is older than the TTL. */
  async heartbeat(): Promise<void> {
    const now = this.clock.now();
    await this.redis
      .multi()
      .zadd(this.key, now, this.memberId)
      .zremrangebyscore(this.key, '-inf', `(${now - this.ttlMs}`)
      .exec();
  }

  /** Live members (heartbeat less than the TTL ago), sorted. */
  async members(): Promise<string[]> {
    const ids = await this.redis.zrangebyscore(this.key, `(${this.clock.now() - this.ttlMs}`, '+inf');
    return ids.sort();
  }

  /** Leaves at once, so the others take this process's hosts over at their next cycle. */
  async leave(): Promise<void> {
    await this.redis.zrem(this.key, this.memberId);
  }
}
