// Per-VM migration history in Redis: the executor appends a record after each migration; the planner reads
// it (cooldown, daily budget, quarantine, the predictor's correction). A VM that failed to converge is
// quarantined with exponential back-off; a completed migration lifts the quarantine, and so can an operator.
// `<prefix>:quarantined` indexes the VMs with a quarantine record, so they can be listed without a key scan.
import type { Redis } from 'ioredis';
import type { Clock } from '../domain/clock.js';
import { DroverError } from '../domain/errors.js';
import type { MigrationRecord, VmHistory } from '../domain/history.js';

export interface HistoryStoreOptions {
  maxRecords: number;
  quarantineBaseS: number;
  quarantineMaxS: number;
}

export interface QuarantineState {
  failures: number;
  until: string | null;
}

/** A VM's quarantine as an operator sees it. */
export interface QuarantineRecord extends QuarantineState {
  vmId: string;
}

/** An operator's hold: the quarantine in force after it, and the end it asked for. */
export interface HeldQuarantine extends QuarantineRecord {
  until: string;
  requestedUntil: string;
  /** True when the VM's quarantine already ended later than asked: that one was kept, unshortened. */
  keptLonger: boolean;
}

// KEYS: the VM's quarantine hash, the quarantined index. ARGV: the asked-for until (ISO 8601 UTC, which
// orders as text), the VM id. Sets until unless the stored one is later; returns the until in force.
const EXTEND_UNTIL = `
local cur = redis.call('HGET', KEYS[1], 'until')
redis.call('SADD', KEYS[2], ARGV[2])
if cur and cur > ARGV[1] then return cur end
redis.call('HSET', KEYS[1], 'until', ARGV[1])
return ARGV[1]
`;

export class HistoryStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly options: HistoryStoreOptions;
  private readonly clock: Clock;

  constructor(redis: Redis, prefix: string, options: HistoryStoreOptions, clock: Clock) {
    this.redis = redis;
    this.prefix = prefix;
    this.options = options;
    this.clock = clock;
  }

  private recordsKey(vmId: string): string {
    return `${this.prefix}:history:${vmId}`;
  }

  private quarantineKey(vmId: string): string {
    return `${this.prefix}:quarantine:${vmId}`;
  }

  private get indexKey(): string {
    return `${this.prefix}:quarantined`;
  }

  /**
   * Appends a record. `failedToConverge` (an abort for a stall or a deadline) extends the quarantine:
   * base x 2^(failures - 1) from now, at most max, unless a quarantine in force (an operator's) ends later.
   * A completed migration clears it. Returns the quarantine state.
   */
  async record(rec: MigrationRecord, failedToConverge: boolean): Promise<QuarantineState> {
    const key = this.recordsKey(rec.vmId);
    const qKey = this.quarantineKey(rec.vmId);
    await this.redis.multi().rpush(key, JSON.stringify(rec)).ltrim(key, -this.options.maxRecords, -1).exec();
    if (rec.result === 'completed') {
      await this.redis.multi().del(qKey).srem(this.indexKey, rec.vmId).exec();
      return { failures: 0, until: null };
    }
    if (!failedToConverge) return this.quarantine(rec.vmId);
    const failures = await this.redis.hincrby(qKey, 'failures', 1);
    const backoffS = Math.min(
      this.options.quarantineMaxS,
      this.options.quarantineBaseS * 2 ** Math.max(0, failures - 1),
    );
    const { until } = await this.extendUntil(rec.vmId, backoffS);
    return { failures, until };
  }

  /**
   * The VMs quarantined now (their until still ahead), soonest released first. Records whose time has passed
   * stay (their failure count sets the next back-off) but are not listed.
   */
  async quarantined(): Promise<QuarantineRecord[]> {
    const ids = await this.redis.smembers(this.indexKey);
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.quarantineKey(id));
    const replies = (await pipe.exec()) ?? [];
    const now = this.clock.now();
    const out: QuarantineRecord[] = [];
    ids.forEach((vmId, i) => {
      const h = (replies[i]?.[1] ?? {}) as Record<string, string>;
      const until = h.until ?? null;
      if (until !== null && Date.parse(until) > now)
        out.push({ vmId, failures: Number(h.failures ?? 0), until });
    });
    return out.sort((a, b) => Date.parse(a.until ?? '') - Date.parse(b.until ?? ''));
  }

  /**
   * Lifts a VM's quarantine at once and forgets its failures (the next failure starts the back-off again).
   * Returns what was lifted; null (and nothing changed) when the VM is not quarantined now.
   */
  async lift(vmId: string): Promise<QuarantineRecord | null> {
    const q = await this.quarantine(vmId);
    if (q.until === null || Date.parse(q.until) <= this.clock.now()) return null;
    await this.redis.multi().del(this.quarantineKey(vmId)).srem(this.indexKey, vmId).exec();
    return { vmId, ...q };
  }

  /**
   * An operator's quarantine: the VM is left alone for at least `forS` seconds from now (its failure count
   * kept). A quarantine already in force that ends later is kept as it is (`keptLonger`); `requestedUntil`
   * is the end asked for. Stored as a failure's quarantine is, so it is listed and lifted the same way.
   */
  async hold(vmId: string, forS: number): Promise<HeldQuarantine> {
    const { until, requestedUntil, keptLonger } = await this.extendUntil(vmId, forS);
    const q = await this.quarantine(vmId);
    return { vmId, failures: q.failures, until, requestedUntil, keptLonger };
  }

  /**
   * Quarantines a VM until `forS` seconds from now unless its quarantine already ends later, in one step
   * (a back-off and an operator's hold racing each other never shorten one another).
   */
  private async extendUntil(
    vmId: string,
    forS: number,
  ): Promise<{ until: string; requestedUntil: string; keptLonger: boolean }> {
    const requestedUntil = new Date(this.clock.now() + forS * 1000).toISOString();
    const until = (await this.redis.eval(
      EXTEND_UNTIL,
      2,
      this.quarantineKey(vmId),
      this.indexKey,
      requestedUntil,
      vmId,
    )) as string;
    return { until, requestedUntil, keptLonger: until !== requestedUntil };
  }

  async quarantine(vmId: string): Promise<QuarantineState> {
    const h = await this.redis.hgetall(this.quarantineKey(vmId));
    return { failures: Number(h.failures ?? 0), until: h.until ?? null };
  }

  /** True while the VM must not be migrated (planner and executor both check). */
  async isQuarantined(vmId: string): Promise<boolean> {
    const q = await this.quarantine(vmId);
    return q.until !== null && Date.parse(q.until) > this.clock.now();
  }

  async get(vmId: string): Promise<VmHistory> {
    const [records, q] = await Promise.all([
      this.redis.lrange(this.recordsKey(vmId), 0, -1),
      this.quarantine(vmId),
    ]);
    return { vmId, records: records.map((r) => parseRecord(r, vmId)), quarantinedUntil: q.until };
  }

  /** Histories of many VMs in one round trip (the planner reads the whole fleet). */
  async getMany(vmIds: readonly string[]): Promise<Map<string, VmHistory>> {
    const out = new Map<string, VmHistory>();
    if (vmIds.length === 0) return out;
    const pipe = this.redis.pipeline();
    for (const id of vmIds) {
      pipe.lrange(this.recordsKey(id), 0, -1);
      pipe.hget(this.quarantineKey(id), 'until');
    }
    const replies = (await pipe.exec()) ?? [];
    vmIds.forEach((id, i) => {
      const recs = replies[2 * i]?.[1];
      const until = replies[2 * i + 1]?.[1];
      out.set(id, {
        vmId: id,
        records: Array.isArray(recs) ? recs.map((r) => parseRecord(String(r), id)) : [],
        quarantinedUntil: typeof until === 'string' ? until : null,
      });
    });
    return out;
  }
}

function parseRecord(text: string, vmId: string): MigrationRecord {
  try {
    return JSON.parse(text) as MigrationRecord;
  } catch (err) {
    throw new DroverError('history_corrupt', `history of ${vmId}: a record is not JSON`, { cause: err });
  }
}
