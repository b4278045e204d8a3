// The audit trail: one entry for every change an operator asked the API for (who, what, on what, when, and how
// it ended), appended to a Redis list that keeps the newest AUDIT_MAX_ENTRIES. Nothing in drover edits or
// deletes an entry; the oldest fall off the end.
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { DroverError } from '../domain/errors.js';

/** Entries kept; older ones are dropped as new ones arrive (documented in docs/api.md and the README). */
export const AUDIT_MAX_ENTRIES = 10_000;

export const AuditEntrySchema = z.strictObject({
  at: z.string(),
  /** The API token's name. */
  who: z.string(),
  /** What was asked, e.g. `plan.approve`, `automation.pause`, `host.drain`. */
  action: z.string(),
  /** What it was asked of (plan id, host, VM), null when nothing in particular. */
  target: z.string().nullable(),
  /** `ok`, or the error code it was refused with (`conflict`, `invalid_input`, …). */
  outcome: z.string(),
  /** The HTTP status it was answered with. */
  status: z.number().int(),
  /** A short note: the operator's note, the error message, dry run. */
  detail: z.string().nullable(),
});
export type AuditEntry = z.output<typeof AuditEntrySchema>;

export class AuditLog {
  readonly key: string;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly maxEntries = AUDIT_MAX_ENTRIES,
  ) {
    this.key = `${prefix}:audit`;
  }

  async append(entry: AuditEntry): Promise<void> {
    await this.redis
      .multi()
      .lpush(this.key, JSON.stringify(entry))
      .ltrim(this.key, 0, this.maxEntries - 1)
      .exec();
  }

  /** The newest `limit` entries, newest first. */
  async list(limit: number): Promise<AuditEntry[]> {
    const texts = await this.redis.lrange(this.key, 0, Math.max(0, limit - 1));
    return texts.map((text) => {
      try {
        return AuditEntrySchema.parse(JSON.parse(text));
      } catch (err) {
        throw new DroverError('history_corrupt', `${this.key}: an entry is not a drover audit entry`, {
          cause: err,
        });
      }
    });
  }
}
