// Whether automation is paused, kept in Redis so every drover process and every restart sees the same answer.
// Paused: the scheduled runs plan nothing and no new plan starts without an operator's approval; plans already
// running (and their migrations) go on to the end.
import type { Redis } from 'ioredis';

export interface AutomationState {
  paused: boolean;
  /** Who paused or resumed last (`api:<token name>`), null when never changed. */
  by: string | null;
  /** When it was last changed (ISO time), null when never changed. */
  at: string | null;
  note: string | null;
}

export class AutomationStore {
  readonly key: string;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.key = `${prefix}:automation`;
  }

  async state(): Promise<AutomationState> {
    const h = await this.redis.hgetall(this.key);
    return {
      paused: h.paused === '1',
      by: h.by ?? null,
      at: h.at ?? null,
      note: h.note !== undefined && h.note !== '' ? h.note : null,
    };
  }

  async paused(): Promise<boolean> {
    return (await this.redis.hget(this.key, 'paused')) === '1';
  }

  async set(paused: boolean, by: string, atMs: number, note?: string): Promise<AutomationState> {
    const at = new Date(atMs).toISOString();
    await this.redis.hset(this.key, { paused: paused ? '1' : '0', by, at, note: note ?? '' });
    return { paused, by, at, note: note ?? null };
  }
}
