// drover's own host states (active, maintenance, disabled) in one Redis hash. The service API sets them
// (drain, activate); the collector puts them in every snapshot. A host with no entry is active.
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { oneOf, parseWith } from '../domain/validation.js';
import type { DroverHostState } from './snapshot-builder.js';
import { DEFAULT_KEY_PREFIX } from './snapshot-store.js';

export const DROVER_HOST_STATES = ['active', 'maintenance', 'disabled'] as const;
const StateSchema = oneOf(DROVER_HOST_STATES);
const HostIdSchema = z.string().min(1, { error: 'expected a non-empty host id' });

export class HostStateStore {
  readonly key: string;
  constructor(
    private readonly redis: Redis,
    keyPrefix: string = DEFAULT_KEY_PREFIX,
  ) {
    this.key = `${keyPrefix}:host-state`;
  }

  async get(hostId: string): Promise<DroverHostState> {
    const value = await this.redis.hget(this.key, hostId);
    return value === null ? 'active' : parseWith(StateSchema, value, `redis key ${this.key} field ${hostId}`);
  }

  async set(hostId: string, state: DroverHostState): Promise<void> {
    parseWith(HostIdSchema, hostId, 'hostId');
    const checked = parseWith(StateSchema, state, 'state');
    if (checked === 'active') await this.redis.hdel(this.key, hostId);
    else await this.redis.hset(this.key, hostId, checked);
  }

  /** Every host that is not active, by id (hosts missing here are active). */
  async all(): Promise<Record<string, DroverHostState>> {
    const raw = await this.redis.hgetall(this.key);
    const out: Record<string, DroverHostState> = {};
    for (const [hostId, value] of Object.entries(raw)) {
      out[hostId] = parseWith(StateSchema, value, `redis key ${this.key} field ${hostId}`);
    }
    return out;
  }
}
