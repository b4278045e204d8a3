// The newest Snapshot in Redis, where any drover process reads it. Validated on read.
import type { Redis } from 'ioredis';
import { parseSnapshot, type Snapshot } from '../domain/snapshot.js';
import { DroverError } from '../domain/errors.js';

export const DEFAULT_KEY_PREFIX = '{drover}';

export class SnapshotStore {
  readonly key: string;
  constructor(
    private readonly redis: Redis,
    keyPrefix: string = DEFAULT_KEY_PREFIX,
  ) {
    this.key = `${keyPrefix}:snapshot:latest`;
  }

  async write(snapshot: Snapshot): Promise<void> {
    await this.redis.set(this.key, JSON.stringify(snapshot));
  }

  /** The last text read and what it parsed to: a snapshot read again unchanged is not parsed again. */
  private cached: { text: string; snapshot: Snapshot } | null = null;

  /**
   * The newest snapshot, or null when none was written yet. Throws ValidationError if what is stored is bad.
   * Callers share the returned object (it is the same while the stored snapshot is): do not change it.
   */
  async readLatest(): Promise<Snapshot | null> {
    const text = await this.redis.get(this.key);
    if (text === null) return null;
    if (this.cached?.text === text) return this.cached.snapshot;
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new DroverError('snapshot_unreadable', `redis key ${this.key}: not JSON`, { cause: err });
    }
    const snapshot = parseSnapshot(data, `redis key ${this.key}`);
    this.cached = { text, snapshot };
    return snapshot;
  }
}
