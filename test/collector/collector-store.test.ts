// The CollectorStore contract, run against both implementations: Redis (the test run's real server) and the
// in-memory one. Then two collectors sharing one store, of each kind, split the hosts between them.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector } from '../../src/collector/collector.js';
import { InMemoryCollectorStore, type CollectorStore } from '../../src/collector/collector-store.js';
import { HostStateStore } from '../../src/collector/host-state-store.js';
import { RedisCollectorStore } from '../../src/collector/redis-collector-store.js';
import type { DroverHostState } from '../../src/collector/snapshot-builder.js';
import { SnapshotStore } from '../../src/collector/snapshot-store.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { SimHypervisor, VirtualClock, generateCluster } from '../../src/hypervisor/sim/index.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

/** A store under test, and what the rest of drover does to it (read the snapshot, drain a host). */
interface Harness {
  store: CollectorStore;
  /** A second handle on the same data (another process's connection, for Redis). */
  other: CollectorStore;
  readSnapshot(): Promise<Snapshot | null>;
  setHostState(hostId: string, state: DroverHostState): Promise<void>;
}

let redis: Redis;
let redis2: Redis;
const prefixes: string[] = [];
beforeAll(() => {
  redis = connectRedis();
  redis2 = connectRedis();
});
afterAll(async () => {
  for (const p of prefixes) await cleanPrefix(redis, p);
  await redis.quit();
  await redis2.quit();
});

const kinds: { name: string; make: (now?: () => number) => Harness }[] = [
  {
    name: 'RedisCollectorStore',
    make: () => {
      const keyPrefix = uniquePrefix('collector-store');
      prefixes.push(keyPrefix);
      const on = (r: Redis) =>
        new RedisCollectorStore({
          redis: r,
          keyPrefix,
          snapshots: new SnapshotStore(r, keyPrefix),
          hostStates: new HostStateStore(r, keyPrefix),
        });
      const snapshots = new SnapshotStore(redis, keyPrefix);
      const states = new HostStateStore(redis, keyPrefix);
      return {
        store: on(redis),
        other: on(redis2),
        readSnapshot: () => snapshots.readLatest(),
        setHostState: (id, s) => states.set(id, s),
      };
    },
  },
  {
    name: 'InMemoryCollectorStore',
    make: (now) => {
      const store = new InMemoryCollectorStore(now);
      return {
        store,
        other: store,
        readSnapshot: () => Promise.resolve(store.latestSnapshot()),
        setHostState: (id, s) => Promise.resolve(store.setHostState(id, s)),
      };
    },
  },
];

const snapshot: Snapshot = {
  version: 1,
  takenAt: '2026-11-25T12:00:00.000Z',
  hosts: [{ id: 'kvm-01', cpus: 4, memMiB: 8192, state: 'active', cpuPct: 12.5, memUsedMiB: 4000 }],
  vms: [],
};

async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(kinds)('$name', ({ make }) => {
  it('lists members heartbeating within the TTL, drops the silent ones, and forgets one that leaves', async () => {
    const { store, other } = make();
    const ttl = 30_000;
    await store.heartbeat('a', 1_000, ttl);
    await other.heartbeat('b', 1_000, ttl);
    await store.heartbeat('c', 1_000, ttl);
    expect(await other.members(1_000, ttl)).toEqual(['a', 'b', 'c']);
    await store.heartbeat('a', 21_000, ttl);
    await store.leave('c');
    expect(await store.members(21_000, ttl)).toEqual(['a', 'b']);
    // b's last heartbeat is now exactly the TTL old: no longer live.
    expect(await other.members(31_000, ttl)).toEqual(['a']);
    await other.heartbeat('b', 31_000, ttl);
    expect(await store.members(31_000, ttl)).toEqual(['a', 'b']);
  });

  it('keeps host histories and records by host, a record only once there is one', async () => {
    const { store, other } = make();
    expect(await store.loadHistories([])).toEqual([]);
    expect(await store.loadHistories(['h1', 'h2'])).toEqual([null, null]);
    await store.saveHosts([
      { hostId: 'h1', history: '{"hostId":"h1"}', record: null },
      { hostId: 'h2', history: '{"hostId":"h2"}', record: '{"r":2}' },
    ]);
    expect(await other.loadHistories(['h2', 'h1', 'h3'])).toEqual([
      '{"hostId":"h2"}',
      '{"hostId":"h1"}',
      null,
    ]);
    expect(await other.loadRecords(['h1', 'h2'])).toEqual([null, '{"r":2}']);
    await store.saveHosts([{ hostId: 'h1', history: '{"hostId":"h1","n":2}', record: '{"r":1}' }]);
    expect(await other.loadRecords(['h1', 'h2'])).toEqual(['{"r":1}', '{"r":2}']);
  });

  it('keeps the host list, and a VM dirty-rate history until its TTL', async () => {
    const { store, other } = make();
    expect(await store.loadHostList()).toBeNull();
    await store.saveHostList('[{"id":"h1"}]');
    expect(await other.loadHostList()).toBe('[{"id":"h1"}]');
    await store.saveVmDirty(
      [
        { vmId: 'v1', text: '{"d":1}' },
        { vmId: 'v2', text: '{"d":2}' },
      ],
      2_000,
    );
    expect(await other.loadVmDirty(['v2', 'v1', 'v3'])).toEqual(['{"d":2}', '{"d":1}', null]);
    await until('the dirty-rate histories to expire', async () =>
      (await other.loadVmDirty(['v1', 'v2'])).every((t) => t === null),
    );
  });

  it('reports host states set elsewhere and publishes the snapshot', async () => {
    const h = make();
    expect(await h.store.hostStates()).toEqual({});
    await h.setHostState('kvm-01', 'maintenance');
    await h.setHostState('kvm-02', 'disabled');
    await h.setHostState('kvm-02', 'active');
    expect(await h.store.hostStates()).toEqual({ 'kvm-01': 'maintenance' });
    expect(await h.readSnapshot()).toBeNull();
    await h.store.writeSnapshot(snapshot);
    expect(await h.readSnapshot()).toEqual(snapshot);
  });

  it('lets two collectors sharing it split the hosts, each snapshot holding every host and drover state', async () => {
    const clock = new VirtualClock();
    const h = make(() => clock.now());
    const sim = new SimHypervisor(generateCluster({ seed: 3, hosts: 12, vmsPerHost: 2 }), { clock });
    const options = { intervalS: 30, dirtyRate: { enabled: false } };
    const a = new Collector({ hypervisor: sim, store: h.store, memberId: 'A' }, options);
    const b = new Collector({ hypervisor: sim, store: h.other, memberId: 'B' }, options);
    await h.setHostState('kvm-002', 'maintenance');
    try {
      await clock.advance(30_000);
      await a.heartbeat();
      await b.heartbeat();
      const ra = await a.runCycle();
      const rb = await b.runCycle();
      expect(ra.members).toEqual(['A', 'B']);
      expect(ra.owned.filter((id) => rb.owned.includes(id))).toEqual([]);
      expect([...ra.owned, ...rb.owned].sort()).toEqual((await sim.listHosts()).map((x) => x.id).sort());
      expect(ra.owned.length).toBeGreaterThan(0);
      expect(rb.owned.length).toBeGreaterThan(0);
      // B wrote last: its snapshot has A's hosts (from the store) as well as its own.
      const snap = await h.readSnapshot();
      expect(snap?.hosts).toHaveLength(12);
      expect(snap?.hosts.filter((x) => x.memUsedMiB === null)).toEqual([]);
      expect(snap?.hosts.find((x) => x.id === 'kvm-002')?.state).toBe('maintenance');
      expect(snap?.vms).toHaveLength(24);
    } finally {
      await a.stop();
      await b.stop();
      await sim.close();
    }
  });
});
