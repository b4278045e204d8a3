// Domain lifecycle around migrations in the simulator: what each end shows when things go sideways.
import { describe, expect, it } from 'vitest';
import { constantVm, host, setup } from './sim-helpers.js';

describe('simulator lifecycle around migrations', () => {
  it('abort during the switch-over resumes the VM on the source', async () => {
    // Pending stays at the 4 GiB working set; a 5 s limit lets it switch over with a 4 s downtime.
    const { clock, sim, events } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 1500, 4096)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 5000 });
    await clock.advance(8192 + 1000); // round 0 ends at 8.192 s, then 1 s into the 4.096 s switch-over
    expect(await sim.locateVm('vm')).toEqual([
      { hostId: 'a', state: 'paused', persistent: true },
      { hostId: 'b', state: 'paused', persistent: false },
    ]);
    const during = await sim.jobStats('a', 'vm');
    expect(during.type).toBe('active');
    expect(during.downtimeMs).toBe(4096);
    expect(during.memRemainingMiB).toBeCloseTo(3096, 0);
    await sim.abortJob('a', 'vm');
    expect((await clock.runUntil(handle.done)).result).toBe('aborted');
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'a', state: 'running', persistent: true }]);
    await clock.advance(10);
    const onA = events.flatMap((e) =>
      e.kind === 'lifecycle' && e.hostId === 'a' ? [`${e.event}:${e.detail}`] : [],
    );
    expect(onA).toEqual(['suspended:1', 'resumed:1']);
  });

  it('a user-paused VM migrates and stays paused on the destination', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 4096, 500, 2048)]);
    await sim.suspendVm('a', 'vm');
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const outcome = await clock.runUntil(handle.done);
    // A paused guest dirties nothing: one round and no downtime to speak of.
    expect(outcome.stats?.iteration).toBe(0);
    expect(outcome.stats?.downtimeMs).toBe(0);
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'b', state: 'paused', persistent: true }]);
  });

  it('destroying the incoming domain fails the migration and leaves the VM on the source', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 10, 512)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(1000);
    expect((await sim.sampleVms('b')).find((s) => s.vmId === 'vm')).toMatchObject({
      state: 'paused',
      migrating: true,
    });
    await sim.destroyVm('b', 'vm');
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('failed');
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'a', state: 'running', persistent: true }]);
  });

  it('losing a host during post-copy leaves the VM paused on the destination: the migration fails', async () => {
    const { clock, sim, events } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 1500, 4096)]);
    const handle = await sim.migrate({
      vmId: 'vm',
      from: 'a',
      to: 'b',
      kind: 'live',
      maxDowntimeMs: 300,
      postCopy: true,
    });
    await clock.advance(3000);
    await sim.startPostCopy('a', 'vm');
    await clock.advance(1000);
    sim.faults.hostDown('a');
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('failed');
    expect(outcome.error).toMatch(/post-copy/);
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'b', state: 'paused', persistent: false }]);
    expect(
      events.some(
        (e) => e.kind === 'lifecycle' && e.hostId === 'b' && e.event === 'suspended' && e.detail === 8,
      ),
    ).toBe(true);
  });

  it('a bandwidth limit set with no job applies to the next migration', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 2048, 0, 0)]);
    await sim.setMaxBandwidth('a', 'vm', 100);
    const start = clock.now();
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.runUntil(handle.done);
    expect((clock.now() - start) / 1000).toBeCloseTo(2048 / 100, 3);
  });

  it('addVm defines and starts a VM at run time, with events', async () => {
    const { clock, sim, events } = setup([host('a')], []);
    sim.addVm(constantVm('new', 'a', 1024, 1, 64));
    await clock.advance(1);
    expect(await sim.locateVm('new')).toEqual([{ hostId: 'a', state: 'running', persistent: true }]);
    expect(events.map((e) => (e.kind === 'lifecycle' ? e.event : e.kind))).toEqual(['defined', 'started']);
    expect(() => sim.addVm(constantVm('new', 'a', 1024, 1, 64))).toThrow(/already exists/);
    expect(() => sim.addVm(constantVm('x', 'nowhere', 1024, 1, 64))).toThrow(/unknown host/);
  });

  it('validates arguments of control calls', async () => {
    const { sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 2048, 10, 512)]);
    await expect(
      sim.migrate({ vmId: 'vm', from: 'a', to: 'a', kind: 'live', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(
      sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: -1 }),
    ).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(sim.setMaxDowntime('a', 'vm', Number.NaN)).rejects.toMatchObject({
      code: 'invalid_argument',
    });
    await expect(sim.startDirtyRate('a', 'vm', 0)).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(sim.resumeVm('a', 'vm')).resolves.toBeUndefined(); // already running: nothing to do
  });
});
