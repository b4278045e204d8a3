// The collector against real libvirt daemons and QEMU guests from the lab: dirty rates of an idle and a
// dirtying guest in the right order of magnitude, and a daemon that stops or hangs makes its host stale
// within the collector's timeout while the other host stays fresh.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector, type CycleResult } from '../../src/collector/collector.js';
import { InMemoryCollectorStore } from '../../src/collector/collector-store.js';
import { redisCollectorStore } from '../../src/collector/redis-collector-store.js';
import { SnapshotStore } from '../../src/collector/snapshot-store.js';
import { parseSnapshot, type Snapshot } from '../../src/domain/snapshot.js';
import type { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import {
  defineGuest,
  guestName,
  heartbeat,
  heartbeatAdvances,
  libvirtHypervisor,
  pauseDaemon,
  removeGuest,
  resumeDaemon,
  sleep,
  startDaemon,
  stopDaemon,
  waitFor,
  type LabGuest,
} from './lab-client.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const HOST = 'lab1';
const OTHER = 'lab2';
const TIMEOUT_MS = 3000;

describe('Collector on the libvirt lab', () => {
  let hv: LibvirtHypervisor;
  let idle: LabGuest;
  let busy: LabGuest;

  beforeAll(async () => {
    hv = libvirtHypervisor({ callTimeoutMs: 10_000 });
    idle = await defineGuest({ name: guestName('coll-idle'), host: HOST, memMiB: 128 });
    // 12800 pages/s = 50 MiB/s over a 200 MiB region: a 2 s window sees 100 MiB, below the region's size.
    busy = await defineGuest({
      name: guestName('coll-busy'),
      host: HOST,
      memMiB: 512,
      mb: 200,
      rate: 12_800,
    });
    await heartbeatAdvances(HOST, busy.name);
  });

  afterAll(async () => {
    await hv.close();
    await removeGuest(idle.name);
    await removeGuest(busy.name);
  });

  it('samples CPU and memory, and measures an idle guest near 0 and a dirtying one near its real write rate', async () => {
    const collector = new Collector(
      { hypervisor: hv, store: new InMemoryCollectorStore() },
      { hostTimeoutMs: 10_000, dirtyRate: { windowS: 2, maxPerHost: 8, remeasureS: 2 } },
    );
    const written0 = await heartbeat(HOST, busy.name);
    const t0 = Date.now();
    await collector.runCycle();
    const snap = await waitFor<Snapshot>(
      'dirty rates of both guests',
      async () => {
        await sleep(2_500);
        const s = (await collector.runCycle()).snapshot;
        const rated = [idle.id, busy.id].every((id) => s.vms.find((v) => v.id === id)?.dirtyMiBps != null);
        return rated ? s : undefined;
      },
      60_000,
      0,
    );
    // What the guest really wrote per second meanwhile (its page counter): TCG guests on a shared machine
    // can fall well behind their 50 MiB/s target.
    const written1 = await heartbeat(HOST, busy.name);
    const actualMiBps = (written1.pages - written0.pages) / 256 / ((Date.now() - t0) / 1000);
    expect(parseSnapshot(snap)).toEqual(snap);
    const host = snap.hosts.find((h) => h.id === HOST);
    expect(host).toMatchObject({ stale: false, state: 'active' });
    expect(host?.cpuPct).not.toBeNull();
    expect(host?.memUsedMiB).toBeGreaterThan(0);
    const idleVm = snap.vms.find((v) => v.id === idle.id);
    const busyVm = snap.vms.find((v) => v.id === busy.id);
    expect(idleVm).toMatchObject({ host: HOST, state: 'running', vcpus: 1, memMiB: 128 });
    expect(idleVm?.dirtyMiBps).toBeLessThan(2);
    // The order of magnitude is what counts: libvirt samples pages, and the guest's pace varies.
    expect(actualMiBps).toBeGreaterThan(2);
    expect(busyVm?.dirtyMiBps).toBeGreaterThan(actualMiBps / 3);
    expect(busyVm?.dirtyMiBps).toBeLessThan(actualMiBps * 3 + 5);
    expect(busyVm?.dirtyMiBps).toBeGreaterThan(5 * (idleVm?.dirtyMiBps ?? 0));
    expect(busyVm?.cpuPct).toBeGreaterThan(idleVm?.cpuPct ?? 100);
  });

  it.each([
    { fault: 'stopped', inject: () => stopDaemon(OTHER), restore: () => startDaemon(OTHER) },
    { fault: 'hung (SIGSTOP)', inject: () => pauseDaemon(OTHER), restore: () => resumeDaemon(OTHER) },
  ])(
    'a $fault daemon makes its host stale within the timeout; the other host stays fresh',
    async ({ inject, restore }) => {
      const collector = new Collector(
        { hypervisor: hv, store: new InMemoryCollectorStore() },
        { hostTimeoutMs: TIMEOUT_MS, dirtyRate: { enabled: false } },
      );
      await collector.runCycle();
      const before = (await collector.runCycle()).snapshot;
      expect(before.hosts.find((h) => h.id === OTHER)).toMatchObject({ stale: false, state: 'active' });
      await inject();
      let r: CycleResult;
      let tookMs: number;
      try {
        const t0 = Date.now();
        r = await collector.runCycle();
        tookMs = Date.now() - t0;
      } finally {
        await restore();
      }
      // listHosts and the host's sample each wait at most the timeout.
      expect(tookMs).toBeLessThan(2 * TIMEOUT_MS + 2_000);
      expect(r.snapshot.hosts.find((h) => h.id === OTHER)).toMatchObject({ stale: true, state: 'down' });
      expect(r.snapshot.hosts.find((h) => h.id === HOST)).toMatchObject({ stale: false, state: 'active' });
      expect(r.outcomes.find((o) => o.hostId === OTHER)?.ok).toBe(false);
      expect(() => parseSnapshot(r.snapshot)).not.toThrow();
    },
  );

  it('a collector that starts while a daemon is down samples the rest from the host list in Redis', async () => {
    const redis = connectRedis();
    const prefix = uniquePrefix('lab-collector');
    try {
      const options = { hostTimeoutMs: TIMEOUT_MS, dirtyRate: { enabled: false } };
      const first = new Collector(
        { hypervisor: hv, store: redisCollectorStore(redis, prefix), memberId: 'first' },
        options,
      );
      await first.runCycle();
      await first.stop();
      await stopDaemon(OTHER);
      let r: CycleResult;
      try {
        const second = new Collector(
          { hypervisor: hv, store: redisCollectorStore(redis, prefix), memberId: 'second' },
          options,
        );
        r = await second.runCycle();
        await second.stop();
      } finally {
        await startDaemon(OTHER);
      }
      expect(r.snapshot.hosts.map((h) => h.id).sort()).toEqual([HOST, OTHER]);
      expect(r.snapshot.hosts.find((h) => h.id === OTHER)).toMatchObject({ stale: true, state: 'down' });
      expect(r.snapshot.hosts.find((h) => h.id === HOST)).toMatchObject({ stale: false, state: 'active' });
      expect(await new SnapshotStore(redis, prefix).readLatest()).toEqual(r.snapshot);
    } finally {
      await cleanPrefix(redis, prefix);
      await redis.quit();
    }
  });
});
