// The Hypervisor conformance suite: what every implementation (the simulator, libvirt) must do, kept to
// what real libvirt does, with generous time bounds. Run it with describeConformance(name, makeTarget).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DroverError, errorCode } from '../../src/domain/errors.js';
import {
  HYPERVISOR_ERROR_CODES,
  type Hypervisor,
  type HypervisorEvent,
  type MigrationJob,
  type MigrationRequest,
} from '../../src/hypervisor/hypervisor.js';

/** What an implementation provides for one test; makeTarget is called before every test. */
export interface ConformanceTarget {
  hypervisor: Hypervisor;
  /** Two hosts with the same CPU model and a migration link between them: [source, destination]. */
  hosts: [string, string];
  /**
   * A small (<= 1 GiB RAM), idle VM with all disks on shared storage, running and persistently defined
   * on hosts[0] only, with no job active. makeTarget must establish this (e.g. migrate it back).
   */
  idleVmId: string;
  /**
   * Waits for `promise` while `maxMs` of the hypervisor's clock time may pass; rejects when it does not
   * settle in time. A virtual clock is driven here; real clocks just race a timer (see helpers below).
   */
  run<T>(promise: Promise<T>, maxMs: number): Promise<T>;
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** vitest time-out per test (real ms). Default 180 s. */
  testTimeoutMs?: number;
  /** Clock time a migration of the idle VM may take. Default 120 s. */
  migrationMaxMs?: number;
}

/** `run` for implementations on a real clock: races the promise against a real timer. */
export function realTimeRun<T>(promise: Promise<T>, maxMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${maxMs} ms`)), maxMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const UNKNOWN_VM = '00000000-0000-4000-8000-00000000dead';
const UNKNOWN_HOST = 'no-such-host.invalid';

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a rejection with code ${code}`).toBeInstanceOf(DroverError);
  expect(errorCode(error)).toBe(code);
}

export function describeConformance(
  name: string,
  makeTarget: () => Promise<ConformanceTarget>,
  options: ConformanceOptions = {},
): void {
  const testTimeoutMs = options.testTimeoutMs ?? 180_000;
  const migrationMaxMs = options.migrationMaxMs ?? 120_000;

  describe(`Hypervisor conformance: ${name}`, { timeout: testTimeoutMs }, () => {
    let t: ConformanceTarget;
    let made: ConformanceTarget | undefined;
    let hv: Hypervisor;
    let src: string;
    let dst: string;
    let vm: string;

    beforeEach(async () => {
      t = await makeTarget();
      made = t;
      hv = t.hypervisor;
      [src, dst] = t.hosts;
      vm = t.idleVmId;
    });

    afterEach(async () => {
      // Only when makeTarget succeeded for this test.
      const target = made;
      made = undefined;
      if (target) await target.cleanup();
    });

    /** Polls `check` every `pollMs` of clock time until it returns a value other than undefined. */
    async function waitFor<T>(check: () => Promise<T | undefined>, maxMs: number, pollMs = 200): Promise<T> {
      return t.run(
        (async () => {
          for (;;) {
            const value = await check();
            if (value !== undefined) return value;
            await hv.clock.sleep(pollMs);
          }
        })(),
        maxMs,
      );
    }

    function request(extra: Partial<MigrationRequest> = {}): MigrationRequest {
      return { vmId: vm, from: src, to: dst, kind: 'live', maxDowntimeMs: 500, ...extra };
    }

    /** Starts a migration held slow by a bandwidth cap and waits until its job shows as active. */
    async function startSlowMigration(): Promise<{ done: Promise<unknown>; stats: MigrationJob }> {
      const handle = await hv.migrate(request({ bandwidthMiBps: 1 }));
      const stats = await waitFor(async () => {
        const s = await hv.jobStats(src, vm);
        return s.type === 'active' ? s : undefined;
      }, 30_000);
      return { done: handle.done, stats };
    }

    it('lists both hosts with their capacity', async () => {
      const hosts = await hv.listHosts();
      for (const id of [src, dst]) {
        const host = hosts.find((h) => h.id === id);
        expect(host, `host ${id} listed`).toBeDefined();
        expect(host?.cpus).toBeGreaterThan(0);
        expect(host?.memMiB).toBeGreaterThan(0);
      }
    });

    it('host samples are cumulative, monotonic counters', async () => {
      const a = await hv.sampleHost(src);
      await t.run(hv.clock.sleep(2000), 10_000);
      const b = await hv.sampleHost(src);
      expect(a.hostId).toBe(src);
      expect(b.at).toBeGreaterThan(a.at);
      expect(b.cpuTotalNs).toBeGreaterThan(a.cpuTotalNs);
      expect(b.cpuBusyNs).toBeGreaterThanOrEqual(a.cpuBusyNs);
      expect(b.cpuBusyNs - a.cpuBusyNs).toBeLessThanOrEqual(b.cpuTotalNs - a.cpuTotalNs);
      expect(b.memTotalMiB).toBeGreaterThan(0);
      expect(b.memUsedMiB).toBeGreaterThanOrEqual(0);
      expect(b.memUsedMiB).toBeLessThanOrEqual(b.memTotalMiB);
    });

    it('lists and samples the VM on the source only', async () => {
      const onSrc = (await hv.listVms(src)).find((v) => v.id === vm);
      expect(onSrc).toMatchObject({
        id: vm,
        hostId: src,
        state: 'running',
        persistent: true,
        storage: 'shared',
      });
      expect(onSrc?.vcpus).toBeGreaterThan(0);
      expect(onSrc?.memMiB).toBeGreaterThan(0);
      expect((await hv.listVms(dst)).some((v) => v.id === vm)).toBe(false);

      const first = (await hv.sampleVms(src)).find((s) => s.vmId === vm);
      expect(first).toMatchObject({ vmId: vm, hostId: src, state: 'running', migrating: false });
      await t.run(hv.clock.sleep(1000), 10_000);
      const second = (await hv.sampleVms(src)).find((s) => s.vmId === vm);
      expect(second?.at).toBeGreaterThan(first?.at ?? Infinity);
      expect(second?.cpuTimeNs).toBeGreaterThanOrEqual(first?.cpuTimeNs ?? Infinity);
      expect((await hv.sampleVms(dst)).some((s) => s.vmId === vm)).toBe(false);
    });

    it('locateVm finds the VM on the source only, and nothing for an unknown VM', async () => {
      expect(await hv.locateVm(vm)).toEqual([{ hostId: src, state: 'running', persistent: true }]);
      expect(await hv.locateVm(UNKNOWN_VM)).toEqual([]);
    });

    it('cpuCompatible says the VM can run on the other host', async () => {
      expect(await hv.cpuCompatible(vm, src, dst)).toBe(true);
    });

    it('dirty-rate measurement goes measuring -> measured', async () => {
      const sample = async () => (await hv.sampleVms(src)).find((s) => s.vmId === vm)?.dirtyRate;
      const before = await sample();
      // A fresh domain has none; one measured earlier (a reused lab) may show its last result.
      expect(['none', 'measured']).toContain(before?.status);
      await hv.startDirtyRate(src, vm, 1);
      // On a loaded machine the no-wait stats call may skip the domain's dirty-rate group for a moment
      // (its job busy), which reads as 'none': what must hold is that the measurement is seen running or done.
      const running = await waitFor(async () => {
        const r = await sample();
        return r?.status === 'measuring' || r?.status === 'measured' ? r : undefined;
      }, 30_000);
      expect(['measuring', 'measured']).toContain(running.status);
      const measured = await waitFor(async () => {
        const r = await sample();
        return r?.status === 'measured' ? r : undefined;
      }, 30_000);
      expect(measured.windowS).toBe(1);
      expect(measured.dirtyMiBps).not.toBeNull();
      expect(measured.dirtyMiBps).toBeGreaterThanOrEqual(0);
      expect(measured.startedAt).not.toBeNull();
    });

    it('a live migration completes; the VM then runs and is defined on the destination only', async () => {
      const events: HypervisorEvent[] = [];
      const unsubscribe = hv.subscribe((e) => {
        if (e.vmId === vm) events.push(e);
      });
      try {
        const handle = await hv.migrate(request());
        expect(handle.request.vmId).toBe(vm);
        const outcome = await t.run(handle.done, migrationMaxMs);
        expect(outcome.result).toBe('completed');
        expect(outcome.error).toBeNull();

        expect(await hv.locateVm(vm)).toEqual([{ hostId: dst, state: 'running', persistent: true }]);
        expect((await hv.listVms(src)).some((v) => v.id === vm)).toBe(false);
        expect((await hv.listVms(dst)).find((v) => v.id === vm)).toMatchObject({
          state: 'running',
          persistent: true,
        });

        const completed = await hv.completedJobStats(dst, vm);
        expect(completed).not.toBeNull();
        expect(completed?.type).toBe('completed');
        expect(completed?.memTotalMiB).toBeGreaterThan(0);
        expect(completed?.memProcessedMiB).toBeGreaterThan(0);
        expect(completed?.memRemainingMiB).toBe(0);
        expect(completed?.downtimeMs).toBeGreaterThanOrEqual(0);
        expect((await hv.jobStats(dst, vm)).type).toBe('none');

        // Events arrive asynchronously; give them a little time.
        await waitFor(async () => {
          await Promise.resolve();
          return events.some((e) => e.kind === 'job-completed') ? true : undefined;
        }, 30_000);
        expect(events.some((e) => e.kind === 'lifecycle' && e.hostId === dst)).toBe(true);
        expect(events.some((e) => e.kind === 'lifecycle' && e.hostId === src && e.event === 'stopped')).toBe(
          true,
        );
        const jobCompleted = events.find((e) => e.kind === 'job-completed');
        expect(jobCompleted?.kind === 'job-completed' && jobCompleted.stats.type).toBe('completed');
      } finally {
        unsubscribe();
      }
    });

    it('reports job stats while a migration runs, and accepts downtime/bandwidth changes', async () => {
      const { done, stats } = await startSlowMigration();
      expect(stats.memTotalMiB).toBeGreaterThan(0);
      expect(stats.elapsedMs).toBeGreaterThanOrEqual(0);
      expect(stats.memRemainingMiB).toBeLessThanOrEqual(stats.memTotalMiB);
      expect(stats.postCopy).toBe(false);
      const listed = (await hv.sampleVms(src)).find((s) => s.vmId === vm);
      expect(listed?.migrating).toBe(true);

      await hv.setMaxDowntime(src, vm, 1000);
      await hv.setMaxBandwidth(src, vm, 10_000);
      const outcome = await t.run(done, migrationMaxMs);
      expect(outcome).toMatchObject({ result: 'completed' });
      expect((await hv.locateVm(vm)).map((p) => p.hostId)).toEqual([dst]);
    });

    it('abort leaves the VM running on the source only, without job-completed', async () => {
      const events: HypervisorEvent[] = [];
      const unsubscribe = hv.subscribe((e) => {
        if (e.vmId === vm) events.push(e);
      });
      try {
        const { done } = await startSlowMigration();
        await hv.abortJob(src, vm);
        const outcome = await t.run(done, 60_000);
        expect(outcome).toMatchObject({ result: 'aborted' });
        expect(await hv.locateVm(vm)).toEqual([{ hostId: src, state: 'running', persistent: true }]);
        expect((await hv.listVms(dst)).some((v) => v.id === vm)).toBe(false);
        expect((await hv.jobStats(src, vm)).type).toBe('none');
        await t.run(hv.clock.sleep(1000), 10_000);
        expect(events.some((e) => e.kind === 'job-completed')).toBe(false);
      } finally {
        unsubscribe();
      }
    });

    it('suspends and resumes the VM, with lifecycle events', async () => {
      const events: HypervisorEvent[] = [];
      const unsubscribe = hv.subscribe((e) => {
        if (e.vmId === vm && e.kind === 'lifecycle') events.push(e);
      });
      try {
        await hv.suspendVm(src, vm);
        expect(await hv.locateVm(vm)).toEqual([{ hostId: src, state: 'paused', persistent: true }]);
        expect((await hv.sampleVms(src)).find((s) => s.vmId === vm)?.state).toBe('paused');
        await hv.resumeVm(src, vm);
        expect(await hv.locateVm(vm)).toEqual([{ hostId: src, state: 'running', persistent: true }]);
        const seen = await waitFor(async () => {
          await Promise.resolve();
          const kinds = events.map((e) => (e.kind === 'lifecycle' ? e.event : ''));
          return kinds.includes('suspended') && kinds.includes('resumed') ? kinds : undefined;
        }, 30_000);
        expect(seen.indexOf('suspended')).toBeLessThan(seen.lastIndexOf('resumed'));
      } finally {
        unsubscribe();
      }
    });

    it('storage: a directory pool, an empty volume and an overlay, a copy to the other host with the same bytes', async () => {
      const MiB = 1024 * 1024;
      const tag = Math.random().toString(36).slice(2, 8);
      const dir = `/var/lib/libvirt/images/drover-conformance-${tag}`;
      const pool = await hv.createStoragePool(src, { name: `drover-conformance-${tag}`, targetPath: dir });
      expect(pool).toMatchObject({ name: `drover-conformance-${tag}`, targetPath: dir, active: true });
      expect(pool.availableBytes).toBeGreaterThan(64 * MiB);
      expect((await hv.listStoragePools(src)).map((p) => p.name)).toContain(pool.name);
      const base = await hv.createVolume(src, {
        pool: pool.name,
        name: 'base.qcow2',
        format: 'qcow2',
        capacityBytes: 64 * MiB,
      });
      expect(base).toMatchObject({
        path: `${dir}/base.qcow2`,
        format: 'qcow2',
        capacityBytes: 64 * MiB,
        backing: null,
      });
      const top = await hv.createVolume(src, {
        pool: pool.name,
        name: 'top.qcow2',
        format: 'qcow2',
        capacityBytes: 64 * MiB,
        backing: { path: base.path, format: 'qcow2' },
      });
      expect(top.backing).toEqual({ path: base.path, format: 'qcow2' });
      expect(await hv.lookupVolume(src, top.path)).toMatchObject({
        path: top.path,
        format: 'qcow2',
        capacityBytes: 64 * MiB,
        backing: { path: base.path },
      });
      expect(await hv.lookupVolume(dst, base.path)).toBeNull();

      const dstPool = await hv.createStoragePool(dst, { name: `drover-conformance-${tag}`, targetPath: dir });
      const sent = await t.run(
        hv.copyVolume({ from: src, to: dst, path: base.path, pool: dstPool.name }),
        60_000,
      );
      expect(sent.sizeBytes).toBe(base.sizeBytes);
      expect(sent.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(await t.run(hv.volumeDigest(dst, base.path), 60_000)).toEqual(sent);
      expect(await t.run(hv.volumeDigest(src, base.path), 60_000)).toEqual(sent);
      expect(await hv.lookupVolume(dst, base.path)).toMatchObject({
        format: 'qcow2',
        capacityBytes: 64 * MiB,
      });

      await hv.deleteVolume(src, top.path);
      await hv.deleteVolume(src, base.path);
      await hv.deleteVolume(dst, base.path);
      expect(await hv.lookupVolume(src, top.path)).toBeNull();
      expect(await hv.lookupVolume(dst, base.path)).toBeNull();
      await expectCode(hv.listStoragePools(UNKNOWN_HOST), HYPERVISOR_ERROR_CODES.noHost);
    });

    it('fails with typed errors and stable codes for unknown hosts and VMs', async () => {
      const codes = HYPERVISOR_ERROR_CODES;
      await expectCode(hv.sampleHost(UNKNOWN_HOST), codes.noHost);
      await expectCode(hv.listVms(UNKNOWN_HOST), codes.noHost);
      await expectCode(hv.jobStats(src, UNKNOWN_VM), codes.noDomain);
      await expectCode(hv.suspendVm(src, UNKNOWN_VM), codes.noDomain);
      await expectCode(hv.abortJob(src, UNKNOWN_VM), codes.noDomain);
      await expectCode(hv.migrate(request({ vmId: UNKNOWN_VM })), codes.noDomain);
      await expectCode(hv.migrate(request({ to: UNKNOWN_HOST })), codes.noHost);
      await expectCode(hv.abortJob(src, vm), codes.operationInvalid);
      // Nothing changed.
      expect(await hv.locateVm(vm)).toEqual([{ hostId: src, state: 'running', persistent: true }]);
    });
  });
}
