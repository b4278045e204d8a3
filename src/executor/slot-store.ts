// Concurrency slots in Redis: a migration holds one outbound slot on its source, one inbound slot on its
// destination and one cluster slot, taken together atomically (one Lua script) or not at all. Slots are
// leases (sorted-set members scored by expiry): a worker that dies stops renewing and its slots lapse.
// Every key shares the executor's hash-tagged prefix, so the script runs on one Redis Cluster slot.
// The link share counts only the holders that send: a migration still in its set-up (QEMU starting the
// destination, connecting) moves no data, so while it sets up its peers keep the link between them.
import type { Redis } from 'ioredis';
import type { ConcurrencyLimits } from './executor-options.js';

// KEYS: out, in, cluster, out-limits (hash: member -> the outbound limit it runs under).
// ARGV: member, nowMs, leaseUntilMs, limitOut, limitIn, limitCluster, force, stepLimitOut (0 = none).
// A step's own outbound limit (Step.concurrency) binds both ways: it starts only when the source then has at
// most that many migrations, and nothing else starts from that source that would make more while it runs.
// Returns {1, outCount, inCount, clusterCount} when taken, {0, which-is-full, count} when not.
const ACQUIRE = `
local member = ARGV[1]
local now = tonumber(ARGV[2])
local untilMs = tonumber(ARGV[3])
local limits = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]) }
local force = ARGV[7] == '1'
local stepOut = tonumber(ARGV[8])
if stepOut > 0 and stepOut < limits[1] then limits[1] = stepOut end
local names = { 'outbound', 'inbound', 'cluster' }
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
end
if not force then
  for i = 1, 3 do
    if not redis.call('ZSCORE', KEYS[i], member) then
      local n = redis.call('ZCARD', KEYS[i])
      if n >= limits[i] then return { 0, names[i], n } end
    end
  end
  if not redis.call('ZSCORE', KEYS[1], member) then
    local holders = redis.call('ZRANGE', KEYS[1], 0, -1)
    for _, h in ipairs(holders) do
      local hl = tonumber(redis.call('HGET', KEYS[4], h))
      if hl and #holders + 1 > hl then return { 0, 'outbound', #holders } end
    end
  end
end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], untilMs, member)
  redis.call('PEXPIRE', KEYS[i], math.max(1, untilMs - now) * 4)
end
redis.call('HSET', KEYS[4], member, limits[1])
redis.call('PEXPIRE', KEYS[4], math.max(1, untilMs - now) * 4)
return { 1, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]) }
`;

// KEYS: out, in, cluster, out-limits, sending. ARGV: member, nowMs, leaseUntilMs, sends ('1': this migration
// moves data now). Re-adds lapsed members (the migration runs). Returns, for the source and the destination,
// 1 + the other holders there that send: what the link share divides by.
const RENEW = `
local member = ARGV[1]
local now = tonumber(ARGV[2])
local untilMs = tonumber(ARGV[3])
local ttl = math.max(1, untilMs - now) * 4
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], untilMs, member)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[5], untilMs, member)
  redis.call('PEXPIRE', KEYS[5], ttl)
end
local function sharers(key)
  local n = 1
  for _, h in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if h ~= member and redis.call('ZSCORE', KEYS[5], h) then n = n + 1 end
  end
  return n
end
return { sharers(KEYS[1]), sharers(KEYS[2]) }
`;

export interface SlotClaim {
  vmId: string;
  from: string;
  to: string;
}

export type AcquireResult =
  | { ok: true; outbound: number; inbound: number; cluster: number }
  | { ok: false; full: 'outbound' | 'inbound' | 'cluster'; count: number };

export interface SlotCounts {
  outbound: number;
  inbound: number;
}

type ScriptRedis = Redis & {
  droverSlotAcquire(...args: (string | number)[]): Promise<(string | number)[]>;
  droverSlotRenew(...args: (string | number)[]): Promise<number[]>;
};

export class SlotStore {
  private readonly redis: ScriptRedis;
  private readonly prefix: string;
  private readonly leaseMs: number;

  /** `prefix` must be hash-tagged (e.g. `{drover}`); `leaseMs` is real time. */
  constructor(redis: Redis, prefix: string, leaseMs: number) {
    redis.defineCommand('droverSlotAcquire', { numberOfKeys: 4, lua: ACQUIRE });
    redis.defineCommand('droverSlotRenew', { numberOfKeys: 5, lua: RENEW });
    this.redis = redis as ScriptRedis;
    this.prefix = prefix;
    this.leaseMs = leaseMs;
  }

  private keys(claim: SlotClaim): [string, string, string, string] {
    return [
      `${this.prefix}:slots:out:${claim.from}`,
      `${this.prefix}:slots:in:${claim.to}`,
      `${this.prefix}:slots:cluster`,
      `${this.prefix}:slots:outlim:${claim.from}`,
    ];
  }

  /** Holders that move data (past their set-up), cluster-wide, scored by lease expiry. */
  private sendingKey(): string {
    return `${this.prefix}:slots:sending`;
  }

  /**
   * Takes all three slots or none. `force` takes them even over the limits: for adopting a migration that
   * already runs (it occupies the link whatever the counters say). `stepConcurrency` is the step's own
   * outbound limit (Step.concurrency), honoured within `limits`.
   */
  async acquire(
    claim: SlotClaim,
    limits: ConcurrencyLimits,
    force = false,
    stepConcurrency?: number,
  ): Promise<AcquireResult> {
    const now = Date.now();
    const reply = await this.redis.droverSlotAcquire(
      ...this.keys(claim),
      claim.vmId,
      now,
      now + this.leaseMs,
      limits.perHostOutbound,
      limits.perHostInbound,
      limits.cluster,
      force ? '1' : '0',
      stepConcurrency ?? 0,
    );
    if (Number(reply[0]) === 1) {
      return { ok: true, outbound: Number(reply[1]), inbound: Number(reply[2]), cluster: Number(reply[3]) };
    }
    const full = String(reply[1]);
    return {
      ok: false,
      full: full === 'outbound' || full === 'inbound' ? full : 'cluster',
      count: Number(reply[2]),
    };
  }

  /**
   * Extends the lease and records whether this migration sends (`sending`: its job moves data, its set-up is
   * over). Returns what its link shares divide by, on the source and on the destination: itself and the other
   * holders there that send (a holder still setting up takes no share).
   */
  async renew(claim: SlotClaim, sending: boolean): Promise<SlotCounts> {
    const now = Date.now();
    const [outbound, inbound] = await this.redis.droverSlotRenew(
      ...this.keys(claim),
      this.sendingKey(),
      claim.vmId,
      now,
      now + this.leaseMs,
      sending ? '1' : '0',
    );
    return { outbound: Number(outbound ?? 1), inbound: Number(inbound ?? 1) };
  }

  async release(claim: SlotClaim): Promise<void> {
    const [out, inbound, cluster, outLimits] = this.keys(claim);
    await this.redis
      .multi()
      .zrem(out, claim.vmId)
      .zrem(inbound, claim.vmId)
      .zrem(cluster, claim.vmId)
      .hdel(outLimits, claim.vmId)
      .zrem(this.sendingKey(), claim.vmId)
      .exec();
  }

  /** Current holders (live leases) per key: for tests and `list`. */
  async holders(kind: 'out' | 'in', hostId: string): Promise<string[]> {
    const key = `${this.prefix}:slots:${kind}:${hostId}`;
    return this.redis.zrangebyscore(key, Date.now(), '+inf');
  }

  async clusterHolders(): Promise<string[]> {
    return this.redis.zrangebyscore(`${this.prefix}:slots:cluster`, Date.now(), '+inf');
  }
}

/**
 * A host's link shared equally by the migrations that send over it (`counts`: this one and its sending peers,
 * as SlotStore.renew returns them); a migration gets the smaller of its two shares.
 */
export function bandwidthShareMiBps(
  fromLinkMiBps: number | null,
  toLinkMiBps: number | null,
  counts: SlotCounts,
): number | null {
  const shares: number[] = [];
  if (fromLinkMiBps !== null) shares.push(fromLinkMiBps / Math.max(1, counts.outbound));
  if (toLinkMiBps !== null) shares.push(toLinkMiBps / Math.max(1, counts.inbound));
  if (shares.length === 0) return null;
  return Math.floor(Math.min(...shares));
}
