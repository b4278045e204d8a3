// When each strategy's last executed plan ran, kept in Redis (one hash, `<prefix>:last-executed`: field the
// strategy's name, value epoch ms) so that every drover process and every restart applies the same hold
// time. A plan counts as executed when it is handed to the executor with at least one migration, and again
// when it finishes with at least one completed: the hold runs from the later of the two.
import type { Redis } from 'ioredis';

export class HoldStore {
  readonly key: string;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.key = `${prefix}:last-executed`;
  }

  /** Epoch ms of the last executed plan of this strategy, null when none was. */
  async lastExecutedAt(strategy: string): Promise<number | null> {
    const value = await this.redis.hget(this.key, strategy);
    if (value === null) return null;
    const ms = Number(value);
    return Number.isFinite(ms) ? ms : null;
  }

  async recordExecuted(strategy: string, atMs: number): Promise<void> {
    await this.redis.hset(this.key, strategy, String(Math.round(atMs)));
  }

  /** Every strategy's last executed plan, epoch ms by name. */
  async all(): Promise<Record<string, number>> {
    const h = await this.redis.hgetall(this.key);
    const out: Record<string, number> = {};
    for (const [name, value] of Object.entries(h)) {
      const ms = Number(value);
      if (Number.isFinite(ms)) out[name] = ms;
    }
    return out;
  }
}
