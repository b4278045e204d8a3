import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HostStateStore } from '../../src/collector/host-state-store.js';
import { SnapshotStore } from '../../src/collector/snapshot-store.js';
import { ValidationError } from '../../src/domain/errors.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

let redis: Redis;
let prefix: string;
beforeAll(() => {
  redis = connectRedis();
});
afterAll(async () => {
  await redis.quit();
});
beforeEach((ctx) => {
  prefix = uniquePrefix('stores');
  ctx.onTestFinished(async () => {
    await cleanPrefix(redis, prefix);
  });
});

const snapshot: Snapshot = {
  version: 1,
  takenAt: '2026-11-25T12:00:00.000Z',
  hosts: [
    { id: 'kvm-01', cpus: 4, memMiB: 8192, state: 'active', cpuPct: 12.5, memUsedMiB: 4000, stale: false },
  ],
  vms: [
    {
      id: 'v1',
      name: 'db-1',
      host: 'kvm-01',
      state: 'running',
      vcpus: 2,
      memMiB: 2048,
      cpuPct: null,
      memUsedMiB: null,
      dirtyMiBps: 3.5,
      dirtyPeakMiBps: 9,
      storage: 'shared',
    },
  ],
};

describe('SnapshotStore', () => {
  it('returns null before the first write, then the newest snapshot', async () => {
    const store = new SnapshotStore(redis, prefix);
    expect(store.key).toBe(`${prefix}:snapshot:latest`);
    expect(await store.readLatest()).toBeNull();
    await store.write(snapshot);
    await store.write({ ...snapshot, takenAt: '2026-11-25T12:00:30.000Z' });
    expect(await store.readLatest()).toEqual({ ...snapshot, takenAt: '2026-11-25T12:00:30.000Z' });
  });

  it('rejects what is stored when it is not a valid snapshot, naming the field', async () => {
    const store = new SnapshotStore(redis, prefix);
    await redis.set(
      store.key,
      JSON.stringify({ ...snapshot, vms: [{ ...snapshot.vms[0], host: 'nowhere' }] }),
    );
    await expect(store.readLatest()).rejects.toThrow(ValidationError);
    await expect(store.readLatest()).rejects.toThrow(/vms\[0\]\.host/);
    await redis.set(store.key, '{not json');
    await expect(store.readLatest()).rejects.toMatchObject({ code: 'snapshot_unreadable' });
  });

  it('uses the hash-tagged {drover} prefix by default', () => {
    expect(new SnapshotStore(redis).key).toBe('{drover}:snapshot:latest');
  });
});

describe('HostStateStore', () => {
  it('treats unknown hosts as active and remembers maintenance and disabled', async () => {
    const store = new HostStateStore(redis, prefix);
    expect(await store.get('kvm-01')).toBe('active');
    await store.set('kvm-01', 'maintenance');
    await store.set('kvm-02', 'disabled');
    await store.set('kvm-03', 'maintenance');
    await store.set('kvm-03', 'active');
    expect(await store.get('kvm-01')).toBe('maintenance');
    expect(await store.all()).toEqual({ 'kvm-01': 'maintenance', 'kvm-02': 'disabled' });
    expect(await store.get('kvm-03')).toBe('active');
  });

  it('refuses states drover does not set and reports odd stored values', async () => {
    const store = new HostStateStore(redis, prefix);
    // @ts-expect-error: `down` is measured, never set
    await expect(store.set('kvm-01', 'down')).rejects.toThrow(
      /state: expected one of active \| maintenance \| disabled/,
    );
    await expect(store.set('', 'active')).rejects.toThrow(ValidationError);
    await redis.hset(store.key, 'kvm-09', 'sleeping');
    await expect(store.all()).rejects.toThrow(/kvm-09/);
    expect(await redis.hget(store.key, 'kvm-01')).toBeNull();
  });
});
