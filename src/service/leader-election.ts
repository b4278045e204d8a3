// Leader election over one Redis key: a lease with a fencing token.
//
// The lease key holds `<token>:<instance>` and expires after leaseMs unless renewed. A new holder takes a
// fresh token from a counter, so tokens only grow and any write fenced with an older token can be refused.
// The holder renews every leaseMs/4 and counts itself leader only until the time its last successful renewal
// was sent plus leaseMs minus a safety margin — so it steps down before the key can expire in Redis and
// another process can take it. Followers wake up when the key's remaining TTL runs out, so a dead leader is
// replaced within one lease period of its last renewal.
import { EventEmitter } from 'node:events';
import type { Redis, Cluster } from 'ioredis';
import { SystemClock } from '../clock/clocks.js';
import { withDeadline } from '../clock/deadline.js';
import type { Clock } from '../domain/clock.js';
import { DroverError, errorMessage } from '../domain/errors.js';

export type RedisClient = Redis | Cluster;

export interface LeaderInfo {
  instance: string;
  token: number;
  /** Remaining lease (ms) as Redis sees it. */
  ttlMs: number;
}

export interface LeaseLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface LeaderElectionOptions {
  redis: RedisClient;
  /** Key prefix (hash-tagged); the lease is `<prefix>:leader`, the token counter `<prefix>:leader:fence`. */
  prefix: string;
  instance: string;
  leaseMs: number;
  log?: LeaseLogger;
  /** Times Redis's answers (default: real time). */
  clock?: Clock;
}

export interface LeaderElectionEvents {
  elected: [token: number];
  demoted: [reason: string];
}

const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  if cur == ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, cur}
  end
  return {0, cur, redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
local value = token .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`;

function parseValue(value: string): { token: number; instance: string } {
  const at = value.indexOf(':');
  return { token: Number(value.slice(0, at)), instance: value.slice(at + 1) };
}

/** What a fenced write must present: the lease key and the holder's exact value. */
export interface Fence {
  key: string;
  value: string;
  token: number;
}

export class LeaderElection extends EventEmitter<LeaderElectionEvents> {
  readonly leaseKey: string;
  private readonly fenceKey: string;
  private readonly stepMs: number;
  private readonly marginMs: number;
  private readonly clock: Clock;
  private held: { value: string; token: number } | null = null;
  private validUntil = 0;
  private timer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  private running = false;
  private ticking: Promise<void> | null = null;

  constructor(private readonly options: LeaderElectionOptions) {
    super();
    if (options.instance.includes('\n'))
      throw new DroverError('bad_instance', 'instance names must be one line');
    this.leaseKey = `${options.prefix}:leader`;
    this.fenceKey = `${options.prefix}:leader:fence`;
    this.stepMs = Math.max(50, Math.floor(options.leaseMs / 4));
    this.marginMs = Math.max(20, Math.floor(options.leaseMs / 10));
    this.clock = options.clock ?? new SystemClock();
  }

  get instance(): string {
    return this.options.instance;
  }

  /** True while this process holds an unexpired lease (checked against the local clock). */
  isLeader(): boolean {
    return this.held !== null && Date.now() < this.validUntil;
  }

  /** The fencing token while leader, else null. */
  token(): number | null {
    return this.isLeader() ? (this.held?.token ?? null) : null;
  }

  /** The fence to present with writes only the leader may make, or null when not leader. */
  fence(): Fence | null {
    if (!this.isLeader() || !this.held) return null;
    return { key: this.leaseKey, value: this.held.value, token: this.held.token };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops campaigning and gives the lease up (so another process takes over at once). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.ticking;
    const held = this.held;
    if (held) {
      this.demote('stopped');
      try {
        await this.options.redis.eval(RELEASE, 1, this.leaseKey, held.value);
      } catch (err) {
        // The lease then simply expires; nothing else to undo.
        this.options.log?.warn({ err: errorMessage(err) }, 'could not release the leader lease');
      }
    }
  }

  /** Who leads now, as Redis sees it. */
  async leader(): Promise<LeaderInfo | null> {
    const [value, ttlMs] = await Promise.all([
      this.options.redis.get(this.leaseKey),
      this.options.redis.pttl(this.leaseKey),
    ]);
    if (value === null) return null;
    return { ...parseValue(value), ttlMs };
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = null;
      });
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const sentAt = Date.now();
    let next = this.stepMs;
    try {
      const holderValue = this.held?.value ?? '';
      const reply = (await withDeadline(
        this.clock,
        this.stepMs,
        this.options.redis.eval(
          ACQUIRE,
          2,
          this.leaseKey,
          this.fenceKey,
          this.instance,
          String(this.options.leaseMs),
          holderValue,
        ),
        () => new DroverError('redis_timeout', `no answer from Redis within ${this.stepMs} ms`),
      )) as [number, string, number?];
      const [ok, value, ttlMs] = reply;
      if (ok === 1) {
        const { token } = parseValue(value);
        const wasLeader = this.isLeader();
        this.held = { value, token };
        this.validUntil = sentAt + this.options.leaseMs - this.marginMs;
        this.armExpiry();
        if (!wasLeader) {
          this.options.log?.info({ token }, 'elected leader');
          this.emit('elected', token);
        }
      } else {
        if (this.held) this.demote(`lease taken by ${parseValue(value).instance}`);
        // Wake up right when the current lease runs out.
        if (typeof ttlMs === 'number' && ttlMs > 0) next = Math.min(this.stepMs, ttlMs + 5);
      }
    } catch (err) {
      // Redis unreachable or slow: keep the lease only until it runs out locally (the expiry timer).
      this.options.log?.warn({ err: errorMessage(err) }, 'leader lease call failed');
    }
    this.schedule(next);
  }

  private armExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(
      () => {
        if (!this.held) return;
        // Timers and the wall clock may disagree by a millisecond: a timer that fires early looks again.
        if (Date.now() >= this.validUntil) this.demote('lease not renewed in time');
        else this.armExpiry();
      },
      Math.max(0, this.validUntil - Date.now()),
    );
    this.expiryTimer.unref();
  }

  private demote(reason: string): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (!this.held) return;
    this.held = null;
    this.validUntil = 0;
    this.options.log?.warn({ reason }, 'no longer leader');
    this.emit('demoted', reason);
  }
}
