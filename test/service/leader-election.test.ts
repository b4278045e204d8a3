import { afterEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { LeaderElection } from '../../src/service/leader-election.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const LEASE_MS = 1000;

describe('LeaderElection on a real Redis', () => {
  const clients: Redis[] = [];
  const elections: LeaderElection[] = [];
  let prefix = '';

  function make(instance: string, redis = connectRedis()): LeaderElection {
    clients.push(redis);
    const e = new LeaderElection({ redis, prefix, instance, leaseMs: LEASE_MS });
    elections.push(e);
    return e;
  }

  async function until(cond: () => boolean, timeoutMs: number): Promise<number> {
    const start = Date.now();
    while (!cond()) {
      if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return Date.now() - start;
  }

  afterEach(async () => {
    for (const e of elections.splice(0)) await e.stop();
    const admin = connectRedis();
    await cleanPrefix(admin, prefix);
    admin.disconnect();
    for (const c of clients.splice(0)) c.disconnect();
  });

  it('elects exactly one of three and hands over at once on stop, with a larger fencing token', async () => {
    prefix = uniquePrefix('leader');
    const all = ['a', 'b', 'c'].map((n) => make(n));
    all.forEach((e) => e.start());
    await until(() => all.some((e) => e.isLeader()), 2000);
    await new Promise((r) => setTimeout(r, 600));
    expect(all.filter((e) => e.isLeader())).toHaveLength(1);
    const first = all.find((e) => e.isLeader())!;
    const firstToken = first.token()!;
    const info = await first.leader();
    expect(info).toMatchObject({ instance: first.instance, token: firstToken });

    await first.stop();
    const rest = all.filter((e) => e !== first);
    const waitedMs = await until(() => rest.some((e) => e.isLeader()), 2 * LEASE_MS);
    expect(waitedMs).toBeLessThan(LEASE_MS);
    const second = rest.find((e) => e.isLeader())!;
    expect(second.token()!).toBeGreaterThan(firstToken);
    expect(rest.filter((e) => e.isLeader())).toHaveLength(1);
  });

  it('replaces a leader that lost Redis within one lease period, never with two leaders at once', async () => {
    prefix = uniquePrefix('leader');
    const a = make('a');
    a.start();
    await until(() => a.isLeader(), 2000);
    const b = make('b');
    b.start();
    const tokenA = a.token()!;

    let overlap = 0;
    const sampler = setInterval(() => {
      if (a.isLeader() && b.isLeader()) overlap++;
    }, 5);
    const demoted = new Promise<string>((resolve) => a.once('demoted', resolve));
    const lostAt = Date.now();
    clients[0]!.disconnect(); // a can no longer renew: as if its process or network died
    const reason = await demoted;
    expect(reason).toMatch(/not renewed/);
    await until(() => b.isLeader(), 3 * LEASE_MS);
    const takeoverMs = Date.now() - lostAt;
    clearInterval(sampler);
    expect(overlap).toBe(0);
    expect(takeoverMs).toBeLessThan(LEASE_MS + 300);
    expect(b.token()!).toBeGreaterThan(tokenA);
    expect(b.fence()).toMatchObject({ token: b.token() });
    expect(a.fence()).toBeNull();
  });

  it('steps down when another process holds the key', async () => {
    prefix = uniquePrefix('leader');
    const a = make('a');
    a.start();
    await until(() => a.isLeader(), 2000);
    const admin = clients[0]!.duplicate();
    clients.push(admin);
    await admin.set(a.leaseKey, '999:intruder', 'PX', 5000);
    const reason = await new Promise<string>((resolve) => a.once('demoted', resolve));
    expect(reason).toContain('intruder');
    expect(a.isLeader()).toBe(false);
    expect((await a.leader())?.instance).toBe('intruder');
  });
});
