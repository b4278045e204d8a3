// Two collector processes on one real Redis: they split the hosts, each snapshot has them all, and when one
// dies the other takes its hosts over within one interval, continuing their history.
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { Collector } from '../../src/collector/collector.js';
import { HostStateStore } from '../../src/collector/host-state-store.js';
import { redisCollectorStore } from '../../src/collector/redis-collector-store.js';
import { SnapshotStore } from '../../src/collector/snapshot-store.js';
import { SystemClock } from '../../src/clock/clocks.js';
import { SimHypervisor, VirtualClock, generateCluster } from '../../src/hypervisor/sim/index.js';
import type { Clock } from '../../src/domain/clock.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function world(clock: Clock, hosts = 20) {
  const prefix = uniquePrefix('collect');
  const sim = new SimHypervisor(generateCluster({ seed: 11, hosts, vmsPerHost: 3 }), { clock });
  const admin = connectRedis();
  cleanups.push(async () => {
    await cleanPrefix(admin, prefix);
    await admin.quit();
  });
  const make = (memberId: string, options = {}) => {
    const redis: Redis = connectRedis();
    cleanups.push(() => redis.quit().catch(() => 'closed'));
    const collector = new Collector(
      { hypervisor: sim, store: redisCollectorStore(redis, prefix), memberId },
      { intervalS: 30, dirtyRate: { enabled: false }, smoothing: { holdS: 0 }, ...options },
    );
    return { collector, redis };
  };
  return { prefix, sim, admin, make, snapshots: new SnapshotStore(admin, prefix) };
}

describe('collectors sharing a Redis', () => {
  it('split the hosts without overlap, and each writes a snapshot with every host and drover states', async () => {
    const clock = new VirtualClock();
    const w = world(clock);
    const a = w.make('A').collector;
    const b = w.make('B').collector;
    await new HostStateStore(w.admin, w.prefix).set('kvm-003', 'maintenance');
    for (let i = 0; i < 3; i++) {
      // Mid-interval heartbeats, as the running loop sends them.
      await clock.advance(15_000);
      await Promise.all([a.heartbeat(), b.heartbeat()]);
      await clock.advance(15_000);
      const ra = await a.runCycle();
      const rb = await b.runCycle();
      if (i === 0) continue; // A's first cycle ran before B had joined
      expect(ra.members).toEqual(['A', 'B']);
      const owned = [...ra.owned, ...rb.owned].sort();
      expect(owned).toEqual((await w.sim.listHosts()).map((h) => h.id).sort());
      expect(ra.owned.length).toBeGreaterThan(2);
      expect(rb.owned.length).toBeGreaterThan(2);
    }
    const snap = await w.snapshots.readLatest();
    expect(snap?.hosts).toHaveLength(20);
    expect(snap?.hosts.every((h) => !h.stale && h.cpuPct !== null)).toBe(true);
    expect(snap?.hosts.find((h) => h.id === 'kvm-003')?.state).toBe('maintenance');
    expect(snap?.vms).toHaveLength(60);
  });

  it('loses no host for longer than one interval when a process dies, and continues its history', async () => {
    const clock = new VirtualClock();
    const w = world(clock);
    const a = w.make('A');
    const b = w.make('B').collector;
    const lastSampled = new Map<string, number>();
    const maxGap = new Map<string, number>();
    const note = async () => {
      const snap = await w.snapshots.readLatest();
      for (const h of snap?.hosts ?? []) {
        if (h.measuredAt === null || h.measuredAt === undefined) continue;
        const at = Date.parse(h.measuredAt);
        const prev = lastSampled.get(h.id);
        if (prev !== undefined && at !== prev) maxGap.set(h.id, Math.max(maxGap.get(h.id) ?? 0, at - prev));
        lastSampled.set(h.id, at);
      }
    };
    let aHosts: string[] = [];
    for (let i = 0; i < 3; i++) {
      await clock.advance(15_000);
      await Promise.all([a.collector.heartbeat(), b.heartbeat()]);
      await clock.advance(15_000);
      aHosts = (await a.collector.runCycle()).owned;
      await b.runCycle();
      await note();
    }
    expect(aHosts.length).toBeGreaterThan(2);
    expect(aHosts.length).toBeLessThan(18);
    // A heartbeats once more 25 s into the interval (its loop does so between cycles), then dies.
    await clock.advance(15_000);
    await b.heartbeat();
    await clock.advance(10_000);
    await a.collector.heartbeat();
    a.redis.disconnect();
    await clock.advance(5_000);
    const stillAlive = await b.runCycle();
    await note();
    expect(stillAlive.members).toEqual(['A', 'B']); // A's heartbeat is 5 s old: its hosts miss this cycle
    await clock.advance(15_000);
    await b.heartbeat();
    await clock.advance(15_000);
    const takeover = await b.runCycle();
    await note();
    expect(takeover.members).toEqual(['B']);
    expect(takeover.owned).toHaveLength(20);
    // The taken-over hosts continue from A's history: CPU deltas at once, not null for a cycle.
    const snap = takeover.snapshot;
    for (const id of aHosts) {
      const h = snap.hosts.find((x) => x.id === id);
      expect(h).toMatchObject({ stale: false, state: 'active' });
      expect(h?.cpuPct).not.toBeNull();
    }
    // No host went unsampled for more than one interval beyond its own.
    expect(aHosts.length).toBeGreaterThan(0);
    for (const [, gap] of maxGap) expect(gap).toBeLessThanOrEqual(60_000);
    expect(Math.max(...aHosts.map((id) => maxGap.get(id) ?? 0))).toBe(60_000);
    for (let i = 0; i < 2; i++) {
      await clock.advance(30_000);
      await b.runCycle();
      await note();
    }
    const final = await w.snapshots.readLatest();
    expect(final?.hosts.every((h) => !h.stale)).toBe(true);
  });

  it('a VM that migrates to a host another process samples keeps its dirty-rate history', async () => {
    const clock = new VirtualClock();
    const w = world(clock, 6);
    const rate = { dirtyRate: { enabled: true, windowS: 5, maxPerHost: 3, remeasureS: 3600 } };
    const a = w.make('A', rate).collector;
    const b = w.make('B', rate).collector;
    let ra = await a.runCycle();
    let rb = await b.runCycle();
    for (let i = 0; i < 2; i++) {
      await clock.advance(15_000);
      await Promise.all([a.heartbeat(), b.heartbeat()]);
      await clock.advance(15_000);
      ra = await a.runCycle();
      rb = await b.runCycle();
    }
    const fromHost = ra.owned[0];
    const toHost = rb.owned[0];
    if (!fromHost || !toHost) throw new Error('each process should own a host');
    const vm = ra.snapshot.vms.find((v) => v.host === fromHost && v.dirtyPeakMiBps != null);
    if (!vm) throw new Error(`no measured VM on ${fromHost}`);
    const handle = await w.sim.migrate({
      vmId: vm.id,
      from: fromHost,
      to: toHost,
      kind: vm.storage === 'shared' ? 'live' : 'block',
      maxDowntimeMs: 5000,
      postCopy: true,
    });
    const done = handle.done.then((o) => o);
    await clock.runUntil(
      (async () => {
        // Switch to post-copy so even a fast-dirtying VM lands on the destination.
        await clock.sleep(2000);
        await w.sim.startPostCopy(fromHost, vm.id).catch(() => 'finished already');
        return done;
      })(),
    );
    expect((await done).result).toBe('completed');
    await clock.advance(30_000);
    rb = await b.runCycle();
    const moved = rb.snapshot.vms.find((v) => v.id === vm.id);
    expect(moved?.host).toBe(toHost);
    expect(moved?.dirtyPeakMiBps).toBe(vm.dirtyPeakMiBps);
    expect(moved?.dirtyMiBps).toBe(vm.dirtyMiBps);
  });

  it('running loops: a second process takes its share, and all hosts stay fresh after one stops', async () => {
    const clock = new SystemClock();
    const w = world(clock, 8);
    const options = { intervalS: 0.4, hostTimeoutMs: 1000 };
    const a = w.make('A', options).collector;
    const b = w.make('B', options).collector;
    a.start();
    b.start();
    cleanups.push(
      () => a.stop(),
      () => b.stop(),
    );
    const store = redisCollectorStore(w.admin, w.prefix);
    const members = { members: () => store.members(clock.now(), 400) };
    const waitFor = async (what: string, ok: () => Promise<boolean>): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while (!(await ok())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await waitFor('both members', async () => (await members.members()).length === 2);
    await waitFor('a snapshot with every host fresh', async () => {
      const snap = await w.snapshots.readLatest();
      return (
        snap !== null && snap.hosts.length === 8 && snap.hosts.every((h) => !h.stale && h.cpuPct !== null)
      );
    });
    await a.stop();
    expect(await members.members()).toEqual(['B']);
    const stoppedAt = Date.now();
    await waitFor('every host sampled after A stopped', async () => {
      const snap = await w.snapshots.readLatest();
      return (
        snap !== null &&
        snap.hosts.every(
          (h) => !h.stale && h.measuredAt !== null && Date.parse(h.measuredAt ?? '') > stoppedAt,
        )
      );
    });
  });
});
