// Faults injected into the simulator: hung progress calls, paused on both ends, host down, slow link,
// dirty-rate spike.
import { describe, expect, it } from 'vitest';
import { errorCode } from '../../src/domain/errors.js';
import { closedForm, constantVm, host, setup } from './sim-helpers.js';

function settledFlag(promise: Promise<unknown>): { settled: () => boolean } {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { settled: () => settled };
}

describe('simulator faults', () => {
  it('hung progress calls never answer until released, while the migration goes on', async () => {
    // A migration that never converges keeps timers running, so the clock can move.
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 4096, 1500, 2048)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const release = sim.faults.hangProgress('vm');
    const stats = sim.jobStats('a', 'vm');
    // Queued calls run in the order they were made once the monitor answers.
    const downtime = sim.setMaxDowntime('a', 'vm', 500);
    const abort = sim.abortJob('a', 'vm');
    const flags = [stats, downtime, abort].map(settledFlag);
    await clock.advance(120_000);
    expect(flags.map((f) => f.settled())).toEqual([false, false, false]);
    // Other calls still answer.
    expect((await sim.locateVm('vm')).length).toBe(2);
    release();
    const answered = await clock.runUntil(stats);
    expect(answered.type).toBe('active');
    expect(answered.elapsedMs).toBeGreaterThanOrEqual(120_000);
    await clock.runUntil(Promise.all([downtime, abort]));
    expect((await clock.runUntil(handle.done)).result).toBe('aborted');
  });

  it('leaves a VM paused on both ends when armed, and it can be recovered', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 2048, 10, 512)]);
    sim.faults.pausedOnBothEnds('vm');
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('failed');
    expect(outcome.error).toMatch(/paused on both/);
    expect(await sim.locateVm('vm')).toEqual([
      { hostId: 'a', state: 'paused', persistent: true },
      { hostId: 'b', state: 'paused', persistent: false },
    ]);
    expect((await sim.jobStats('a', 'vm')).type).toBe('none');
    expect((await sim.jobStats('b', 'vm')).type).toBe('none');
    expect((await sim.completedJobStats('a', 'vm'))?.type).toBe('failed');
    // Recovery: drop the destination copy, resume the source.
    await sim.destroyVm('b', 'vm');
    await sim.resumeVm('a', 'vm');
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'a', state: 'running', persistent: true }]);
    // The fault fires once.
    const again = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    expect((await clock.runUntil(again.done)).result).toBe('completed');
  });

  it('a host that goes down fails calls with host_unreachable and fails its migrations', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 50, 1024)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(2000);
    sim.faults.hostDown('b');
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('failed');
    expect(outcome.error).toMatch(/b/);
    for (const call of [sim.sampleHost('b'), sim.listVms('b'), sim.jobStats('b', 'vm')]) {
      expect(errorCode(await call.catch((e: unknown) => e))).toBe('host_unreachable');
    }
    await expect(
      sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({ code: 'host_unreachable' });
    // The VM kept running on the source; the down host is not asked.
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'a', state: 'running', persistent: true }]);
    sim.faults.hostUp('b');
    expect((await sim.listVms('b')).some((v) => v.id === 'vm')).toBe(false);
    const again = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    expect((await clock.runUntil(again.done)).result).toBe('completed');
  });

  it('a host down in hang mode leaves calls unanswered until it is back', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 2048, 10, 512)]);
    sim.faults.hostDown('a', { mode: 'hang' });
    const sample = sim.sampleHost('a');
    const flag = settledFlag(sample);
    await clock.advance(600_000);
    expect(flag.settled()).toBe(false);
    sim.faults.hostUp('a');
    expect((await sample).hostId).toBe('a');
  });

  it('a crashed host comes back with its VMs shut off', async () => {
    const { sim } = setup(
      [host('a'), host('b')],
      [constantVm('keep', 'a', 2048, 10, 512), constantVm('gone', 'a', 2048, 10, 512, { persistent: false })],
    );
    sim.faults.hostDown('a', { crash: true });
    expect(await sim.locateVm('keep')).toEqual([]);
    sim.faults.hostUp('a');
    expect(await sim.locateVm('keep')).toEqual([{ hostId: 'a', state: 'shutoff', persistent: true }]);
    expect(await sim.locateVm('gone')).toEqual([]);
  });

  it('a link slowed mid-migration slows the migration accordingly', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 0, 0)]);
    const start = clock.now();
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(2000);
    sim.faults.slowLink('b', 0.25);
    expect(sim.linkBandwidthMiBps('b')).toBe(250);
    expect((await sim.jobStats('a', 'vm')).transferMiBps).toBe(250);
    await clock.runUntil(handle.done);
    // 2,000 MiB at 1,000 MiB/s, the remaining 6,192 MiB at 250 MiB/s.
    expect((clock.now() - start) / 1000).toBeCloseTo(2 + 6192 / 250, 3);
    expect(() => sim.faults.slowLink('b', 0)).toThrow();
  });

  it('a dirty-rate spike mid-migration costs extra rounds and shows in a dirty-rate measurement', async () => {
    const params = { memMiB: 8192, dirtyMiBps: 100, wwsMiB: 4096, bandwidthMiBps: 1000, maxDowntimeMs: 300 };
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 100, 4096)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(4000);
    sim.faults.dirtySpike('vm', { dirtyMiBps: 900, durationMs: 20_000 });
    expect(sim.vmDemand('vm').dirtyMiBps).toBe(900);
    await sim.startDirtyRate('a', 'vm', 2);
    await clock.advance(2500);
    const sample = (await sim.sampleVms('a')).find((s) => s.vmId === 'vm');
    expect(sample?.dirtyRate.status).toBe('measured');
    expect(sample?.dirtyRate.dirtyMiBps).toBeCloseTo(900, 6);
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('completed');
    expect(outcome.stats?.iteration).toBeGreaterThan(closedForm(params).iterations);
  });

  it('test-only host load overrides what the host reports', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 2048, 10, 512)]);
    sim.faults.setHostLoad('a', { cpuPct: 75, memUsedMiB: 1000 });
    const s0 = await sim.sampleHost('a');
    await clock.advance(10_000);
    const s1 = await sim.sampleHost('a');
    expect(((s1.cpuBusyNs - s0.cpuBusyNs) / (s1.cpuTotalNs - s0.cpuTotalNs)) * 100).toBeCloseTo(75, 6);
    expect(s1.memUsedMiB).toBe(1000);
    sim.faults.setHostLoad('a', null);
    const s2 = await sim.sampleHost('a');
    await clock.advance(10_000);
    const s3 = await sim.sampleHost('a');
    expect(s3.cpuBusyNs).toBeGreaterThanOrEqual(s2.cpuBusyNs);
    // Back to the VM's own demand: 10 % of 2 vCPUs on a 32-CPU host.
    expect(((s3.cpuBusyNs - s2.cpuBusyNs) / (s3.cpuTotalNs - s2.cpuTotalNs)) * 100).toBeCloseTo(
      (10 * 2) / 32,
      6,
    );
    expect(s3.memUsedMiB).toBe(2048);
  });

  it('fault methods reject unknown hosts and VMs', () => {
    const { sim } = setup([host('a')], [constantVm('vm', 'a', 2048, 10, 512)]);
    expect(() => sim.faults.hostDown('nope')).toThrow(expect.objectContaining({ code: 'no_host' }));
    expect(() => sim.faults.hangProgress('nope')).toThrow(expect.objectContaining({ code: 'no_domain' }));
  });
});
