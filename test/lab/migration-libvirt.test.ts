// Live migrations between two real lab hosts through LibvirtHypervisor: a converging one, one that cannot
// converge and is aborted, one rescued by raising max downtime, and a post-copy switch.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import type { HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import { heartbeatAdvances, libvirtHypervisor, waitFor, type LabGuest } from './lab-client.js';
import { LabGuests } from './lab-jobs.js';

const A = 'lab1';
const B = 'lab2';

describe('LibvirtHypervisor migrations on the lab', () => {
  let hv: LibvirtHypervisor;
  const events: HypervisorEvent[] = [];
  const guests = new LabGuests('mig');

  beforeAll(async () => {
    hv = libvirtHypervisor();
    hv.subscribe((e) => events.push(e));
    await hv.eventsReady();
  });

  afterEach(async () => {
    await guests.removeAll();
  });

  afterAll(async () => {
    await hv.close();
  });

  function guest(spec: { mb?: number; rate?: number; memMiB?: number }): Promise<LabGuest> {
    return guests.boot(spec, 5_000);
  }

  /** Waits until the migration has run at least `iterations` pre-copy rounds beyond the first. */
  async function waitForIterations(g: LabGuest, iterations: number) {
    return waitFor(
      `${iterations} pre-copy iterations`,
      async () => {
        const stats = await hv.jobStats(A, g.id);
        expect(stats.type).toBe('active');
        return stats.iteration >= iterations ? stats : undefined;
      },
      30_000,
      250,
    );
  }

  it('migrates an idle guest: running and defined only on the destination afterwards', async () => {
    const g = await guest({});
    const handle = await hv.migrate({ vmId: g.id, from: A, to: B, kind: 'live', maxDowntimeMs: 300 });
    const outcome = await handle.done;
    expect(outcome.result).toBe('completed');
    expect(outcome.error).toBeNull();
    expect(outcome.stats?.type).toBe('completed');
    expect(outcome.stats?.memTotalMiB).toBeGreaterThanOrEqual(64);

    const where = await hv.locateVm(g.id);
    expect(where).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
    // the destination reports the incoming guest started/resumed; the source reports it stopped
    await waitFor('lifecycle events of the migration', () =>
      events.some(
        (e) =>
          e.vmId === g.id &&
          e.hostId === B &&
          e.kind === 'lifecycle' &&
          (e.event === 'started' || e.event === 'resumed'),
      ) &&
      events.some((e) => e.vmId === g.id && e.hostId === A && e.kind === 'lifecycle' && e.event === 'stopped')
        ? true
        : undefined,
    );
  });

  it('aborts a migration that cannot converge: the guest keeps running on the source only', async () => {
    // 16 MiB rewritten at 50 MiB/s against a 10 MiB/s link and 10 ms downtime: no round can finish in time
    const g = await guest({ mb: 16, rate: 12_800 });
    const handle = await hv.migrate({
      vmId: g.id,
      from: A,
      to: B,
      kind: 'live',
      maxDowntimeMs: 10,
      bandwidthMiBps: 10,
    });
    const stats = await waitForIterations(g, 2);
    expect(stats.dirtyMiBps).toBeGreaterThan(0);
    expect(stats.transferMiBps).toBeGreaterThan(0);
    expect(stats.transferMiBps).toBeLessThan(40);
    const before = Date.now();
    await hv.abortJob(A, g.id);
    const outcome = await handle.done;
    expect(outcome.result).toBe('aborted');
    expect(Date.now() - before).toBeLessThan(20_000);

    expect(await hv.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
    await heartbeatAdvances(A, g.name);
    expect((await hv.jobStats(A, g.id)).type).toBe('none');
  });

  it('lets a stuck migration converge when max downtime is raised mid-migration', async () => {
    const g = await guest({ mb: 16, rate: 12_800 });
    const handle = await hv.migrate({
      vmId: g.id,
      from: A,
      to: B,
      kind: 'live',
      maxDowntimeMs: 10,
      bandwidthMiBps: 10,
    });
    await waitForIterations(g, 2);
    await hv.setMaxDowntime(A, g.id, 5_000);
    const outcome = await handle.done;
    expect(outcome.result).toBe('completed');
    expect(outcome.stats?.downtimeMs ?? 0).toBeGreaterThan(10);
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
  });

  it('completes a migration after switching it to post-copy', async () => {
    const g = await guest({ mb: 16, rate: 12_800 });
    const handle = await hv.migrate({
      vmId: g.id,
      from: A,
      to: B,
      kind: 'live',
      maxDowntimeMs: 10,
      bandwidthMiBps: 10,
      postCopy: true,
    });
    await waitForIterations(g, 1);
    await hv.startPostCopy(A, g.id);
    const outcome = await handle.done;
    expect(outcome.result).toBe('completed');
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
  });

  it('moves a shut-off guest offline: defined on the destination only', async () => {
    const g = await guests.boot({ start: false });
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: A, state: 'shutoff', persistent: true }]);
    // A shut-off domain has no job (libvirt itself refuses the question; drover answers `none`).
    expect((await hv.jobStats(A, g.id)).type).toBe('none');
    const handle = await hv.migrate({ vmId: g.id, from: A, to: B, kind: 'offline', maxDowntimeMs: 0 });
    const outcome = await handle.done;
    expect(outcome.result).toBe('completed');
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'shutoff', persistent: true }]);
  });

  it('refuses a migration to the same host, or of an unknown VM, without touching anything', async () => {
    const g = await guest({});
    await expect(
      hv.migrate({ vmId: g.id, from: A, to: A, kind: 'live', maxDowntimeMs: 100 }),
    ).rejects.toMatchObject({
      code: 'invalid_argument',
    });
    await expect(
      hv.migrate({
        vmId: '00000000-0000-4000-8000-000000000001',
        from: A,
        to: B,
        kind: 'live',
        maxDowntimeMs: 100,
      }),
    ).rejects.toMatchObject({ code: 'no_domain' });
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
  });
});
