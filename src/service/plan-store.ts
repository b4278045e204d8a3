// Plans and their lifecycle in Redis, where every drover process (and the API on any of them) sees them.
//
// pending ──approve──► approved ──► running ──► completed | failed
//    │                    │            │
//    ├──cancel──► cancelled ◄──────────┘ (cancel stops what has not started)
//    └──expire──► expired   (its snapshot got too old before it ran)
//
// Status changes are compare-and-set in one Lua script, so two processes (or two operators) cannot both
// approve or cancel the same plan. Writes the leader makes carry its lease as a fence: a process that lost
// the lease cannot store plans any more.
import type { Cluster, Redis } from 'ioredis';
import { z } from 'zod';
import { DroverError, ValidationError } from '../domain/errors.js';
import { PlanSchema, type Plan } from '../domain/plan.js';
import { isoTime, nonEmptyString, oneOf, parseWith } from '../domain/validation.js';
import { AUTOMATION_LEVELS, type AutomationLevel } from './config.js';
import type { Fence } from './leader-election.js';

export const PLAN_STATUSES = [
  'pending',
  'approved',
  'running',
  'completed',
  'failed',
  'cancelled',
  'expired',
] as const;
export type PlanStatus = (typeof PLAN_STATUSES)[number];
export const FINAL_PLAN_STATUSES: readonly PlanStatus[] = ['completed', 'failed', 'cancelled', 'expired'];

const PlanEventSchema = z.strictObject({
  at: isoTime(),
  status: oneOf(PLAN_STATUSES),
  by: z.string(),
  note: z.string().optional(),
});

export const PlanRecordSchema = z.strictObject({
  plan: PlanSchema,
  status: oneOf(PLAN_STATUSES),
  /** Who asked for it: `schedule`, `api:<token name>`. */
  createdBy: nonEmptyString(),
  /** The automation level in force when it was made. */
  automation: oneOf(AUTOMATION_LEVELS),
  /** The drained host, for drain plans. */
  host: z.string().optional(),
  updatedAt: isoTime(),
  events: z.array(PlanEventSchema),
});

export type PlanEvent = z.output<typeof PlanEventSchema>;
export type PlanRecord = z.output<typeof PlanRecordSchema>;

export class PlanNotFound extends DroverError {
  constructor(id: string) {
    super('not_found', `no plan with id ${id}`);
    this.name = 'PlanNotFound';
  }
}

/** A status change that the plan's current status does not allow. */
export class PlanConflict extends DroverError {
  readonly status: PlanStatus;
  constructor(id: string, status: PlanStatus, wanted: PlanStatus) {
    super('conflict', `plan ${id} is ${status}; it cannot become ${wanted}`);
    this.name = 'PlanConflict';
    this.status = status;
  }
}

export class NotLeader extends DroverError {
  constructor(what: string) {
    super('not_leader', `${what}: this process does not hold the leader lease`);
    this.name = 'NotLeader';
  }
}

/** The status a new plan starts in under an automation level. */
export function initialStatus(reason: Plan['reason'], level: AutomationLevel): 'pending' | 'approved' {
  if (level === 'full') return 'approved';
  if (level === 'partial' && reason === 'drain') return 'approved';
  return 'pending';
}

/** A plan is too old to run when the snapshot it was made from is older than maxAgeS. */
export function planExpired(plan: Plan, nowMs: number, maxAgeS: number): boolean {
  const basis = Date.parse(plan.snapshotTakenAt ?? plan.createdAt);
  return nowMs - basis > maxAgeS * 1000;
}

/** The plans still able to move VMs. */
const OPEN_PLAN_STATUSES: readonly PlanStatus[] = ['pending', 'approved', 'running'];

// Lua shared by the scripts below: whether the drain plan `id` (a drain key's value, '' = none), stored at
// `planKey`, is still open (one of OPEN_PLAN_STATUSES).
const DRAIN_OPEN = `
local function drainOpen(id, planKey)
  if id == '' then return false end
  local text = redis.call('GET', planKey)
  if not text then return false end
  local status = cjson.decode(text).status
  return ${OPEN_PLAN_STATUSES.map((status) => `status == '${status}'`).join(' or ')}
end
`;

// One drain per host: `<prefix>:drain:<host>` holds the id of the host's latest drain plan. A new drain is
// stored only when that plan is final (or gone); otherwise the script answers with the running one. The
// caller reads the drain key first and names the plan key it saw (KEYS[5]); if the drain key changed
// meanwhile the script answers RETRY, so every key the script touches is declared.
//
// KEYS: plan key, index key, lease key (or the index key), drain key (or the index key), the current drain's
// plan key (or the index key). ARGV: record JSON, createdAt ms, plan id, keep, fence value ('' = unfenced),
// '1' for a drain, the drain key's value the caller saw ('' = none).
const SAVE = `${DRAIN_OPEN}
if ARGV[5] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[5] then
  return redis.error_reply('NOT_LEADER')
end
if ARGV[6] == '1' then
  local current = redis.call('GET', KEYS[4]) or ''
  if current ~= ARGV[7] then return {'RETRY'} end
  if drainOpen(current, KEYS[5]) then return {'DRAINING', current} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('EXISTS')
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if ARGV[6] == '1' then redis.call('SET', KEYS[4], ARGV[3]) end
local out = {'OK'}
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do table.insert(out, id) end
end
return out
`;

// Activates a host unless a drain of it is under way. KEYS: drain key, the current drain's plan key (or the
// drain key), host-state hash. ARGV: host id, the drain key's value the caller saw ('' = none).
const ACTIVATE = `${DRAIN_OPEN}
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[2] then return {'RETRY'} end
if drainOpen(current, KEYS[2]) then return {'DRAINING', current} end
redis.call('HDEL', KEYS[3], ARGV[1])
return {'OK'}
`;

/** A drain asked for a host that another, still open, drain plan is emptying. */
export class DrainUnderWay extends DroverError {
  constructor(
    readonly host: string,
    readonly planId: string,
  ) {
    super('conflict', `host ${host} is being drained by plan ${planId}`);
    this.name = 'DrainUnderWay';
  }
}

// KEYS: plan key. ARGV: allowed current statuses (comma list), new status, event JSON, updatedAt.
const TRANSITION = `
local text = redis.call('GET', KEYS[1])
if not text then return redis.error_reply('NOT_FOUND') end
local rec = cjson.decode(text)
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == rec.status then ok = true end
end
if not ok then return {0, rec.status} end
rec.status = ARGV[2]
rec.updatedAt = ARGV[4]
table.insert(rec.events, cjson.decode(ARGV[3]))
local out = cjson.encode(rec)
redis.call('SET', KEYS[1], out)
return {1, out}
`;

export interface PlanStoreOptions {
  /** Plans kept (the oldest beyond this are dropped). */
  keep?: number;
}

const ALLOWED_FROM: Record<PlanStatus, readonly PlanStatus[]> = {
  pending: [],
  approved: ['pending'],
  running: ['approved'],
  completed: ['running'],
  failed: ['approved', 'running'],
  cancelled: ['pending', 'approved', 'running'],
  expired: ['pending', 'approved'],
};

export class PlanStore {
  readonly indexKey: string;
  private readonly keep: number;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly prefix: string,
    options: PlanStoreOptions = {},
  ) {
    this.indexKey = `${prefix}:plans`;
    this.keep = options.keep ?? 500;
  }

  private key(id: string): string {
    return `${this.prefix}:plan:${id}`;
  }

  private drainKey(host: string): string {
    return `${this.prefix}:drain:${host}`;
  }

  /** The open (pending, approved or running) drain plan of a host, if any. */
  async openDrain(host: string): Promise<PlanRecord | null> {
    const id = await this.redis.get(this.drainKey(host));
    if (id === null) return null;
    const record = await this.get(id);
    return record && OPEN_PLAN_STATUSES.includes(record.status) ? record : null;
  }

  /**
   * Removes the host's drover state (it is active again) in one step with checking that no drain of it is
   * open; throws DrainUnderWay naming the plan otherwise.
   */
  async activateUnlessDraining(host: string, hostStateKey: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const seen = (await this.redis.get(this.drainKey(host))) ?? '';
      const reply = (await this.redis.eval(
        ACTIVATE,
        3,
        this.drainKey(host),
        seen === '' ? this.drainKey(host) : this.key(seen),
        hostStateKey,
        host,
        seen,
      )) as string[];
      if (reply[0] === 'OK') return;
      if (reply[0] === 'DRAINING') throw new DrainUnderWay(host, reply[1] ?? seen);
      if (attempt >= 20) throw new DroverError('conflict', `host ${host}: drains keep changing; try again`);
    }
  }

  /**
   * Stores a new plan. With a fence, only while that fence still holds the leader lease. A drain plan (with
   * `init.host`) is stored only while no other drain of that host is open: otherwise DrainUnderWay names it.
   */
  async create(
    plan: Plan,
    init: { status: 'pending' | 'approved'; createdBy: string; automation: AutomationLevel; host?: string },
    fence?: Fence | null,
  ): Promise<PlanRecord> {
    const now = new Date().toISOString();
    const record: PlanRecord = parseWith(
      PlanRecordSchema,
      {
        plan,
        status: init.status,
        createdBy: init.createdBy,
        automation: init.automation,
        ...(init.host !== undefined ? { host: init.host } : {}),
        updatedAt: now,
        events: [{ at: now, status: init.status, by: init.createdBy }],
      },
      'plan record',
    );
    const drain = plan.reason === 'drain' && init.host !== undefined ? init.host : null;
    let dropped: string[];
    for (let attempt = 0; ; attempt++) {
      const seen = drain === null ? '' : ((await this.redis.get(this.drainKey(drain))) ?? '');
      const keys = [
        this.key(plan.id),
        this.indexKey,
        fence ? fence.key : this.indexKey,
        drain === null ? this.indexKey : this.drainKey(drain),
        seen === '' ? this.indexKey : this.key(seen),
      ];
      const args = [
        JSON.stringify(record),
        String(Date.parse(plan.createdAt)),
        plan.id,
        String(this.keep),
        fence ? fence.value : '',
        drain === null ? '' : '1',
        seen,
      ];
      let reply: string[];
      try {
        reply = (await this.redis.eval(SAVE, keys.length, ...keys, ...args)) as string[];
      } catch (err) {
        const message = err instanceof Error ? err.message : '';
        if (message.includes('NOT_LEADER')) throw new NotLeader(`storing plan ${plan.id}`);
        if (message.includes('EXISTS')) throw new DroverError('conflict', `plan ${plan.id} exists already`);
        throw err;
      }
      if (reply[0] === 'DRAINING') throw new DrainUnderWay(drain ?? '', reply[1] ?? seen);
      if (reply[0] === 'OK') {
        dropped = reply.slice(1);
        break;
      }
      if (attempt >= 20) throw new DroverError('conflict', `host ${drain}: drains keep changing; try again`);
    }
    if (dropped.length > 0) {
      await this.redis.zrem(this.indexKey, ...dropped);
      for (const id of dropped) await this.redis.del(this.key(id));
    }
    return record;
  }

  async get(id: string): Promise<PlanRecord | null> {
    const text = await this.redis.get(this.key(id));
    if (text === null) return null;
    return this.decode(text, id);
  }

  async require(id: string): Promise<PlanRecord> {
    const record = await this.get(id);
    if (!record) throw new PlanNotFound(id);
    return record;
  }

  /** Newest first. */
  async list(options: { status?: PlanStatus; limit?: number } = {}): Promise<PlanRecord[]> {
    const ids = await this.redis.zrevrange(this.indexKey, 0, -1);
    const out: PlanRecord[] = [];
    for (const id of ids) {
      const record = await this.get(id);
      if (!record) continue;
      if (options.status && record.status !== options.status) continue;
      out.push(record);
      if (options.limit !== undefined && out.length >= options.limit) break;
    }
    return out;
  }

  /** Moves a plan to `status` if its current status allows it; throws PlanConflict otherwise. */
  async transition(id: string, status: PlanStatus, by: string, note?: string): Promise<PlanRecord> {
    const at = new Date().toISOString();
    const event: PlanEvent = { at, status, by, ...(note !== undefined ? { note } : {}) };
    let reply: [number, string];
    try {
      reply = (await this.redis.eval(
        TRANSITION,
        1,
        this.key(id),
        ALLOWED_FROM[status].join(','),
        status,
        JSON.stringify(event),
        at,
      )) as [number, string];
    } catch (err) {
      if (err instanceof Error && err.message.includes('NOT_FOUND')) throw new PlanNotFound(id);
      throw err;
    }
    const [ok, value] = reply;
    if (ok !== 1) throw new PlanConflict(id, parseWith(oneOf(PLAN_STATUSES), value, 'status'), status);
    return this.decode(value, id);
  }

  private decode(text: string, id: string): PlanRecord {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new DroverError('plan_unreadable', `redis key ${this.key(id)}: not JSON`, { cause: err });
    }
    // Lua's cjson writes empty arrays as {}: put them back before validating.
    if (typeof data === 'object' && data !== null && 'plan' in data) {
      const plan = (data as { plan: Record<string, unknown> }).plan;
      for (const field of ['steps', 'skipped'] as const) {
        const v = plan[field];
        if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0)
          plan[field] = [];
      }
    }
    try {
      return parseWith(PlanRecordSchema, data, `redis key ${this.key(id)}`);
    } catch (err) {
      if (err instanceof ValidationError)
        throw new DroverError('plan_unreadable', err.message, { cause: err });
      throw err;
    }
  }
}
