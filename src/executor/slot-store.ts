// Concurrency slots in Redis: a migration holds one outbound slot on its source, one inbound slot on its
// destination and one cluster slot, taken together atomically (one Lua script) or not at all. Slots are
// leases (sorted-set members scored by expiry): a worker that dies stops renewing and its slots lapse.
// Every key shares the executor's hash-tagged prefix, so the script runs on one Redis Cluster slot.
// The link share counts only the holders that send: a migration still in its set-up (QEMU starting the
// destination, connecting) moves no data, so while it sets up its peers keep the link between them.
// Handing over ahead (hand-over.ts): a holder whose worker marked it ready (predicted to end within a set-up)
// lets one step take its slots beyond the limits; that step is held (it sends a trickle and counts for no
// one's share) until the holder it follows has gone. The per-source `ahead` hash keeps r:<member> (ready),
// f:<member> (its follower) and h:<member> (the holder it is held behind).
import type { Redis } from 'ioredis';
import type { ConcurrencyLimits } from './executor-options.js';

// KEYS: out, in, cluster, out-limits (hash: member -> the outbound limit it runs under), ahead (see above).
// ARGV: member, nowMs, leaseUntilMs, limitOut, limitIn, limitCluster, force, stepLimitOut (0 = none),
// ahead ('1': the step may take over the slots of a ready holder).
// A step's own outbound limit (Step.concurrency) binds both ways: it starts only when the source then has at
// most that many migrations, and nothing else starts from that source that would make more while it runs.
// Returns {1, outCount, inCount, clusterCount, held} when taken, {0, which-is-full, count} when not.
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
-- nil when the member fits with holder 'gone' counted out (gone: false for none), else {which, count}.
local function full(gone)
  for i = 1, 3 do
    if not redis.call('ZSCORE', KEYS[i], member) then
      local n = redis.call('ZCARD', KEYS[i])
      if gone and redis.call('ZSCORE', KEYS[i], gone) then n = n - 1 end
      if n >= limits[i] then return { names[i], n } end
    end
  end
  if not redis.call('ZSCORE', KEYS[1], member) then
    local holders = redis.call('ZRANGE', KEYS[1], 0, -1)
    local n = #holders
    if gone then n = n - 1 end
    for _, h in ipairs(holders) do
      local hl = tonumber(redis.call('HGET', KEYS[4], h))
      if h ~= gone and hl and n + 1 > hl then return { 'outbound', n } end
    end
  end
  return nil
end
local held = 0
if not force then
  local why = full(false)
  if why then
    local leader = false
    if ARGV[9] == '1' then
      for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
        local f = redis.call('HGET', KEYS[5], 'f:' .. h)
        if f and not redis.call('ZSCORE', KEYS[1], f) then f = false end
        if redis.call('HGET', KEYS[5], 'r:' .. h) and not f and not redis.call('HGET', KEYS[5], 'h:' .. h)
          and not full(h) then
          leader = h
          break
        end
      end
    end
    if not leader then return { 0, why[1], why[2] } end
    held = 1
    redis.call('HSET', KEYS[5], 'f:' .. leader, member, 'h:' .. member, leader)
    redis.call('PEXPIRE', KEYS[5], math.max(1, untilMs - now) * 4)
  end
end
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], untilMs, member)
  redis.call('PEXPIRE', KEYS[i], math.max(1, untilMs - now) * 4)
end
redis.call('HSET', KEYS[4], member, limits[1])
redis.call('PEXPIRE', KEYS[4], math.max(1, untilMs - now) * 4)
return { 1, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), held }
`;

// KEYS: out, in, cluster, out-limits, sending, ahead. ARGV: member, nowMs, leaseUntilMs, sends ('1': this
// migration moves data now), ready ('1': it may hand its slots over). Re-adds lapsed members (the migration
// runs). Returns, for the source and the destination, 1 + the other holders there that send (what the link
// share divides by), and 1 while this migration is held behind a holder that has not gone yet.
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
local held = 0
local leader = redis.call('HGET', KEYS[6], 'h:' .. member)
if leader then
  if redis.call('ZSCORE', KEYS[1], leader) then held = 1 else redis.call('HDEL', KEYS[6], 'h:' .. member) end
end
if held == 0 and ARGV[5] == '1' then redis.call('HSET', KEYS[6], 'r:' .. member, '1') end
redis.call('PEXPIRE', KEYS[6], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
if ARGV[4] == '1' and held == 0 then
  redis.call('ZADD', KEYS[5], untilMs, member)
  redis.call('PEXPIRE', KEYS[5], ttl)
else
  redis.call('ZREM', KEYS[5], member)
end
local function sharers(key)
  local n = 1
  for _, h in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if h ~= member and redis.call('ZSCORE', KEYS[5], h) then n = n + 1 end
  end
  return n
end
return { sharers(KEYS[1]), sharers(KEYS[2]), held }
`;

export interface SlotClaim {
  vmId: string;
  from: string;
  to: string;
}

export type AcquireResult =
  | { ok: true; outbound: number; inbound: number; cluster: number; held: boolean }
  | { ok: false; full: 'outbound' | 'inbound' | 'cluster'; count: number };

export interface SlotCounts {
  outbound: number;
  inbound: number;
}

/** What a renewal says: the link share's divisors, and whether the migration is held (hand-over.ts). */
export interface SlotRenewal extends SlotCounts {
  held: boolean;
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
    redis.defineCommand('droverSlotAcquire', { numberOfKeys: 5, lua: ACQUIRE });
    redis.defineCommand('droverSlotRenew', { numberOfKeys: 6, lua: RENEW });
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

  /** Handing over ahead on the claim's source: r:, f: and h: fields by member (see above). */
  private aheadKey(claim: SlotClaim): string {
    return `${this.prefix}:slots:ahead:${claim.from}`;
  }

  /** Holders that move data (past their set-up), cluster-wide, scored by lease expiry. */
  private sendingKey(): string {
    return `${this.prefix}:slots:sending`;
  }

  /**
   * Takes all three slots or none. `force` takes them even over the limits: for adopting a migration that
   * already runs (it occupies the link whatever the counters say). `stepConcurrency` is the step's own
   * outbound limit (Step.concurrency), honoured within `limits`. `ahead`: over the limits, the step may take
   * the slots of a holder ready to hand over; it is then `held` until that holder has gone.
   */
  async acquire(
    claim: SlotClaim,
    limits: ConcurrencyLimits,
    force = false,
    stepConcurrency?: number,
    ahead = false,
  ): Promise<AcquireResult> {
    const now = Date.now();
    const reply = await this.redis.droverSlotAcquire(
      ...this.keys(claim),
      this.aheadKey(claim),
      claim.vmId,
      now,
      now + this.leaseMs,
      limits.perHostOutbound,
      limits.perHostInbound,
      limits.cluster,
      force ? '1' : '0',
      stepConcurrency ?? 0,
      ahead ? '1' : '0',
    );
    if (Number(reply[0]) === 1) {
      return {
        ok: true,
        outbound: Number(reply[1]),
        inbound: Number(reply[2]),
        cluster: Number(reply[3]),
        held: Number(reply[4]) === 1,
      };
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
   * over) and whether it may hand its slots over (`ready`). Returns what its link shares divide by, on the
   * source and on the destination: itself and the other holders there that send (a holder still setting up,
   * or held, takes no share); and whether it is held behind a holder that has not gone yet.
   */
  async renew(claim: SlotClaim, sending: boolean, ready = false): Promise<SlotRenewal> {
    const now = Date.now();
    const [outbound, inbound, held] = await this.redis.droverSlotRenew(
      ...this.keys(claim),
      this.sendingKey(),
      this.aheadKey(claim),
      claim.vmId,
      now,
      now + this.leaseMs,
      sending ? '1' : '0',
      ready ? '1' : '0',
    );
    return { outbound: Number(outbound ?? 1), inbound: Number(inbound ?? 1), held: Number(held ?? 0) === 1 };
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
      .hdel(this.aheadKey(claim), `r:${claim.vmId}`, `f:${claim.vmId}`, `h:${claim.vmId}`)
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
