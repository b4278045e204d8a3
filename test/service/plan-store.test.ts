import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Plan } from '../../src/domain/plan.js';
import { LeaderElection } from '../../src/service/leader-election.js';
import { PlanConflict, PlanStore, initialStatus, planExpired } from '../../src/service/plan-store.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

function plan(id: string, extra: Partial<Plan> = {}): Plan {
  return {
    id,
    reason: 'rebalance',
    createdAt: new Date().toISOString(),
    steps: [
      {
        vm: 'vm-1',
        from: 'h1',
        to: 'h2',
        kind: 'live',
        why: 'h1 cpu 91% > 80% / h2 has room',
        predicted: { converges: true, durationS: 21.4, downtimeMs: 180, transferMiB: 19500 },
      },
    ],
    skipped: [],
    before: { cpuSpreadPct: 38, memSpreadPct: 22.1 },
    after: { cpuSpreadPct: 9.6, memSpreadPct: 11 },
    ...extra,
  };
}

describe('PlanStore on a real Redis', () => {
  let redis: Redis;
  let prefix: string;
  let store: PlanStore;
  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('plans');
    store = new PlanStore(redis, prefix, { keep: 3 });
  });
  afterEach(async () => {
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  it('round-trips a plan exactly, including empty lists, and walks the lifecycle', async () => {
    const p = plan('p1');
    await store.create(p, { status: 'pending', createdBy: 'schedule', automation: 'manual' });
    const approved = await store.transition('p1', 'approved', 'api:ops');
    expect(approved.plan).toEqual(p);
    expect(approved.status).toBe('approved');
    const running = await store.transition('p1', 'running', 'executor');
    expect(running.events.map((e) => [e.status, e.by])).toEqual([
      ['pending', 'schedule'],
      ['approved', 'api:ops'],
      ['running', 'executor'],
    ]);
    await expect(store.transition('p1', 'approved', 'api:ops')).rejects.toBeInstanceOf(PlanConflict);
    const done = await store.transition('p1', 'completed', 'executor', '1 moved');
    expect(done.events.at(-1)).toMatchObject({ status: 'completed', note: '1 moved' });
    expect((await store.get('p1'))?.status).toBe('completed');
    await expect(store.transition('nope', 'approved', 'x')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('lets exactly one of many concurrent approvals win', async () => {
    await store.create(plan('p2'), { status: 'pending', createdBy: 'schedule', automation: 'manual' });
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.transition('p2', 'approved', `op${i}`)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const record = await store.require('p2');
    expect(record.events.filter((e) => e.status === 'approved')).toHaveLength(1);
  });

  it('keeps only the newest plans and lists newest first', async () => {
    for (let i = 0; i < 5; i++) {
      await store.create(plan(`k${i}`, { createdAt: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString() }), {
        status: 'pending',
        createdBy: 'schedule',
        automation: 'manual',
      });
    }
    expect((await store.list()).map((r) => r.plan.id)).toEqual(['k4', 'k3', 'k2']);
    expect(await store.get('k0')).toBeNull();
  });

  it('refuses a fenced write from a process that lost the lease', async () => {
    const election = new LeaderElection({ redis, prefix, instance: 'a', leaseMs: 1000 });
    election.start();
    while (!election.isLeader()) await new Promise((r) => setTimeout(r, 10));
    const fence = election.fence()!;
    await store.create(plan('f1'), { status: 'approved', createdBy: 'schedule', automation: 'full' }, fence);
    await redis.set(election.leaseKey, `${fence.token + 1}:b`, 'PX', 5000);
    await expect(
      store.create(plan('f2'), { status: 'approved', createdBy: 'schedule', automation: 'full' }, fence),
    ).rejects.toMatchObject({ code: 'not_leader' });
    expect(await store.get('f2')).toBeNull();
    await election.stop();
  });
});

describe('automation levels', () => {
  it.each([
    ['manual', 'rebalance', 'pending'],
    ['manual', 'drain', 'pending'],
    ['partial', 'rebalance', 'pending'],
    ['partial', 'drain', 'approved'],
    ['full', 'rebalance', 'approved'],
    ['full', 'drain', 'approved'],
  ] as const)('%s: a %s plan starts %s', (level, reason, status) => {
    expect(initialStatus(reason, level)).toBe(status);
  });

  it('expires a plan by the age of its snapshot, not of the plan', () => {
    const now = Date.parse('2026-11-25T12:00:00Z');
    const fresh = plan('x', { createdAt: '2026-11-25T11:59:00Z', snapshotTakenAt: '2026-11-25T11:58:00Z' });
    const old = plan('y', { createdAt: '2026-11-25T11:59:59Z', snapshotTakenAt: '2026-11-25T11:40:00Z' });
    expect(planExpired(fresh, now, 600)).toBe(false);
    expect(planExpired(old, now, 600)).toBe(true);
    expect(planExpired(plan('z', { createdAt: '2026-11-25T11:00:00Z' }), now, 600)).toBe(true);
  });
});
