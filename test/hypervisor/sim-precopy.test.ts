// Pre-copy physics of the simulator against the closed-form model, on a virtual clock.
import { describe, expect, it } from 'vitest';
import { errorCode } from '../../src/domain/errors.js';
import { closedForm, constantVm, host, setup } from './sim-helpers.js';

describe('simulator pre-copy physics', () => {
  it('migrates an idle 8 GiB VM at 1,000 MiB/s in about 8 s with tiny downtime', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 1, 256)]);
    const start = clock.now();
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const outcome = await clock.runUntil(handle.done);
    const durationS = (clock.now() - start) / 1000;
    const model = closedForm({
      memMiB: 8192,
      dirtyMiBps: 1,
      wwsMiB: 256,
      bandwidthMiBps: 1000,
      maxDowntimeMs: 300,
    });

    expect(outcome.result).toBe('completed');
    expect(durationS).toBeGreaterThan(8);
    expect(durationS).toBeLessThan(8.5);
    expect(durationS).toBeCloseTo(model.durationS, 3);
    expect(outcome.stats?.downtimeMs).toBeLessThan(50);
    expect(outcome.stats?.downtimeMs).toBeCloseTo(model.downtimeMs, 0);
    expect(outcome.stats?.iteration).toBe(model.iterations);
    expect(outcome.stats?.memTotalMiB).toBe(8192);
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'b', state: 'running', persistent: true }]);
  });

  it('100 ms vs 500 ms max downtime changes the number of iterations as the geometric series says', async () => {
    const params = { memMiB: 8192, dirtyMiBps: 200, wwsMiB: 8192, bandwidthMiBps: 1000 };
    const results = [];
    for (const maxDowntimeMs of [100, 500]) {
      const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 200, 8192)]);
      const start = clock.now();
      const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs });
      const outcome = await clock.runUntil(handle.done);
      const model = closedForm({ ...params, maxDowntimeMs });
      expect(outcome.result).toBe('completed');
      expect(outcome.stats?.iteration).toBe(model.iterations);
      expect((clock.now() - start) / 1000).toBeCloseTo(model.durationS, 3);
      expect(outcome.stats?.downtimeMs).toBeCloseTo(model.downtimeMs, 0);
      expect(outcome.stats?.downtimeMs).toBeLessThanOrEqual(maxDowntimeMs);
      results.push(model.iterations);
    }
    // The tighter limit needs more rounds.
    expect(results[0]).toBeGreaterThan(results[1] ?? Infinity);
  });

  it('emits one migration-iteration event per resend round', async () => {
    const { clock, sim, events } = setup([host('a'), host('b')], [constantVm('vm', 'a', 4096, 300, 4096)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 50 });
    const outcome = await clock.runUntil(handle.done);
    const model = closedForm({
      memMiB: 4096,
      dirtyMiBps: 300,
      wwsMiB: 4096,
      bandwidthMiBps: 1000,
      maxDowntimeMs: 50,
    });
    const iterations = events.flatMap((e) => (e.kind === 'migration-iteration' ? [e.iteration] : []));
    expect(iterations).toEqual(Array.from({ length: model.iterations }, (_, i) => i + 1));
    expect(outcome.stats?.iteration).toBe(model.iterations);
  });

  it('never converges when the guest dirties its working set faster than the link', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 1500, 4096)]);
    expect(
      closedForm({ memMiB: 8192, dirtyMiBps: 1500, wwsMiB: 4096, bandwidthMiBps: 1000, maxDowntimeMs: 300 })
        .converges,
    ).toBe(false);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const tenMinutes = await clock.runUntil(handle.done, { maxMs: 600_000 }).then(
      () => 'settled',
      (e: unknown) => errorCode(e),
    );
    expect(tenMinutes).toBe('clock_limit');
    const stats = await sim.jobStats('a', 'vm');
    expect(stats.type).toBe('active');
    expect(stats.iteration).toBeGreaterThan(100);
    expect(stats.memRemainingMiB).toBeGreaterThan(300);
    expect(stats.autoConvergeThrottlePct).toBe(0);
    await sim.abortJob('a', 'vm');
    expect((await clock.runUntil(handle.done)).result).toBe('aborted');
  });

  it('converges with auto-converge, throttling from 20 % in steps of 10 %', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 1500, 4096)]);
    const handle = await sim.migrate({
      vmId: 'vm',
      from: 'a',
      to: 'b',
      kind: 'live',
      maxDowntimeMs: 300,
      autoConverge: true,
    });
    const throttles: number[] = [];
    let finished = false;
    void handle.done.then(() => (finished = true));
    const watch = (async () => {
      while (!finished) {
        const s = await sim.jobStats('a', 'vm');
        if (throttles[throttles.length - 1] !== s.autoConvergeThrottlePct)
          throttles.push(s.autoConvergeThrottlePct);
        await clock.sleep(500);
      }
    })();
    const outcome = await clock.runUntil(handle.done, { maxMs: 600_000 });
    await clock.runUntil(watch);
    expect(outcome.result).toBe('completed');
    const final = outcome.stats?.autoConvergeThrottlePct ?? 0;
    expect(final).toBeGreaterThanOrEqual(20);
    expect(final).toBeLessThanOrEqual(99);
    // Throttled dirty rate 1500 * (1 - p) must fit: pending <= 300 MiB needs 1500 (1 - p) T < 300.
    expect(throttles.filter((t) => t > 0)[0]).toBe(20);
    for (let i = 2; i < throttles.length; i++) expect((throttles[i] ?? 0) - (throttles[i - 1] ?? 0)).toBe(10);
    expect(outcome.stats?.downtimeMs).toBeLessThanOrEqual(300);
  });

  it('completes after a switch to post-copy, with a small downtime', async () => {
    const { clock, sim, events } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 1500, 4096)]);
    const handle = await sim.migrate({
      vmId: 'vm',
      from: 'a',
      to: 'b',
      kind: 'live',
      maxDowntimeMs: 300,
      postCopy: true,
    });
    await clock.runUntil(
      (async () => {
        while ((await sim.jobStats('a', 'vm')).iteration < 2) await clock.sleep(500);
      })(),
    );
    await sim.startPostCopy('a', 'vm');
    // The guest now runs on the destination, paused on the source.
    expect((await sim.locateVm('vm')).map((p) => [p.hostId, p.state])).toEqual([
      ['a', 'paused'],
      ['b', 'running'],
    ]);
    const duringPostcopy = await sim.jobStats('a', 'vm');
    expect(duringPostcopy.postCopy).toBe(true);
    await expect(sim.abortJob('a', 'vm')).rejects.toMatchObject({ code: 'operation_invalid' });
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('completed');
    expect(outcome.stats?.postCopy).toBe(true);
    expect(outcome.stats?.downtimeMs).toBeLessThan(100);
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'b', state: 'running', persistent: true }]);
    const details = events.flatMap((e) =>
      e.kind === 'lifecycle' ? [`${e.hostId}:${e.event}:${e.detail}`] : [],
    );
    expect(details).toContain('a:suspended:7');
    expect(details).toContain('b:resumed:3');
  });

  it('refuses post-copy when the migration was not started with it', async () => {
    const { sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 1500, 4096)]);
    await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await expect(sim.startPostCopy('a', 'vm')).rejects.toMatchObject({ code: 'operation_invalid' });
    await sim.close();
  });

  it('a larger max downtime set mid-migration lets a stuck migration switch over at once', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 4096, 1200, 2048)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(60_000);
    expect((await sim.jobStats('a', 'vm')).type).toBe('active');
    await sim.setMaxDowntime('a', 'vm', 3000);
    const outcome = await clock.runUntil(handle.done, { maxMs: 10_000 });
    expect(outcome.result).toBe('completed');
    expect(outcome.stats?.downtimeMs).toBeGreaterThan(300);
    expect(outcome.stats?.downtimeMs).toBeLessThanOrEqual(3000);
  });

  it('shares a link between concurrent migrations: two at once each run at half the rate', async () => {
    const single = setup([host('a'), host('b')], [constantVm('v1', 'a', 4096, 0, 0)]);
    const h0 = await single.sim.migrate({ vmId: 'v1', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const t0 = single.clock.now();
    await single.clock.runUntil(h0.done);
    const aloneS = (single.clock.now() - t0) / 1000;
    expect(aloneS).toBeCloseTo(4096 / 1000, 3);

    const pair = setup(
      [host('a'), host('b')],
      [constantVm('v1', 'a', 4096, 0, 0), constantVm('v2', 'a', 4096, 0, 0)],
    );
    const start = pair.clock.now();
    const h1 = await pair.sim.migrate({ vmId: 'v1', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const h2 = await pair.sim.migrate({ vmId: 'v2', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await pair.clock.advance(1000);
    const mid = await pair.sim.jobStats('a', 'v1');
    expect(mid.transferMiBps).toBeCloseTo(500, 3);
    const [o1, o2] = await pair.clock.runUntil(Promise.all([h1.done, h2.done]));
    expect(o1.result).toBe('completed');
    expect(o2.result).toBe('completed');
    expect((pair.clock.now() - start) / 1000).toBeCloseTo(2 * aloneS, 3);
  });

  it('shares a host link between incoming and outgoing migrations and caps by the slower end', async () => {
    const { clock, sim } = setup(
      [host('a', 1000), host('b', 1000), host('c', 400)],
      [constantVm('out', 'a', 2048, 0, 0), constantVm('in', 'c', 2048, 0, 0)],
    );
    await sim.migrate({ vmId: 'out', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await sim.migrate({ vmId: 'in', from: 'c', to: 'a', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(500);
    // a carries two migrations: 500 each; c's own link is 400.
    expect((await sim.jobStats('a', 'out')).transferMiBps).toBeCloseTo(500, 3);
    expect((await sim.jobStats('c', 'in')).transferMiBps).toBeCloseTo(400, 3);
    await sim.close();
  });

  it('a bandwidth cap set mid-migration slows it down', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 4096, 0, 0)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(1000);
    await sim.setMaxBandwidth('a', 'vm', 250);
    expect((await sim.jobStats('a', 'vm')).transferMiBps).toBe(250);
    const start = clock.now();
    await clock.runUntil(handle.done);
    // 1,000 MiB went in the first second; the other 3,096 MiB go at 250 MiB/s.
    expect((clock.now() - start) / 1000).toBeCloseTo(3096 / 250, 3);
  });

  it('bandwidth noise stays within its bound and changes from period to period', async () => {
    const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 65536, 0, 0)], {
      seed: 3,
      bandwidthNoisePct: 10,
    });
    await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const rates = new Set<number>();
    for (let i = 0; i < 20; i++) {
      await clock.advance(1000);
      const bps = (await sim.jobStats('a', 'vm')).transferMiBps;
      expect(bps).toBeGreaterThanOrEqual(900);
      expect(bps).toBeLessThanOrEqual(1100);
      rates.add(Math.round(bps));
    }
    expect(rates.size).toBeGreaterThan(10);
    await sim.close();
  });

  it('block migration copies the local disk first, then memory', async () => {
    const disk = {
      target: 'vda',
      source: '/var/lib/vm.qcow2',
      shared: false,
      capacityMiB: 20480,
      allocatedMiB: 6000,
      topLayerMiB: 1000,
    };
    const { clock, sim } = setup(
      [host('a'), host('b')],
      [constantVm('vm', 'a', 2048, 0, 0, { disks: [disk] })],
    );
    await expect(
      sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({ code: 'migrate_unsafe' });

    const start = clock.now();
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'block', maxDowntimeMs: 300 });
    await clock.advance(2000);
    const during = await sim.jobStats('a', 'vm');
    expect(during.diskTotalMiB).toBe(6000);
    expect(during.diskProcessedMiB).toBe(2000);
    expect(during.memProcessedMiB).toBe(0);
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('completed');
    expect(outcome.stats?.diskProcessedMiB).toBe(6000);
    expect(outcome.stats?.diskRemainingMiB).toBe(0);
    expect((clock.now() - start) / 1000).toBeCloseTo((6000 + 2048) / 1000, 3);

    // Incremental: only the top layer goes.
    const back = await sim.migrate({
      vmId: 'vm',
      from: 'b',
      to: 'a',
      kind: 'block',
      maxDowntimeMs: 300,
      incremental: true,
    });
    const inc = await clock.runUntil(back.done);
    expect(inc.stats?.diskTotalMiB).toBe(1000);
  });

  it('offline migration moves a shut-off VM definition', async () => {
    const { clock, sim, events } = setup(
      [host('a'), host('b')],
      [constantVm('off', 'a', 2048, 0, 0, { state: 'shutoff' }), constantVm('on', 'a', 2048, 0, 0)],
    );
    await expect(
      sim.migrate({ vmId: 'on', from: 'a', to: 'b', kind: 'offline', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({ code: 'operation_invalid' });
    await expect(
      sim.migrate({ vmId: 'off', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({ code: 'operation_invalid' });
    const handle = await sim.migrate({
      vmId: 'off',
      from: 'a',
      to: 'b',
      kind: 'offline',
      maxDowntimeMs: 300,
    });
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('completed');
    expect(await sim.locateVm('off')).toEqual([{ hostId: 'b', state: 'shutoff', persistent: true }]);
    const lifecycle = events.flatMap((e) =>
      e.kind === 'lifecycle' && e.vmId === 'off' ? [`${e.hostId}:${e.event}`] : [],
    );
    expect(lifecycle).toEqual(['b:defined', 'a:undefined']);
  });

  it('abort keeps the VM on the source, removes the destination domain and emits no job-completed', async () => {
    const { clock, sim, events } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 100, 1024)]);
    const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(3000);
    expect((await sim.locateVm('vm')).map((p) => `${p.hostId}:${p.state}:${p.persistent}`)).toEqual([
      'a:running:true',
      'b:paused:false',
    ]);
    await sim.abortJob('a', 'vm');
    const outcome = await clock.runUntil(handle.done);
    expect(outcome.result).toBe('aborted');
    expect(outcome.stats?.type).toBe('cancelled');
    expect(await sim.locateVm('vm')).toEqual([{ hostId: 'a', state: 'running', persistent: true }]);
    expect((await sim.completedJobStats('a', 'vm'))?.type).toBe('cancelled');
    await clock.advance(1000);
    expect(events.some((e) => e.kind === 'job-completed')).toBe(false);
    expect(
      events.some(
        (e) => e.kind === 'lifecycle' && e.hostId === 'b' && e.event === 'stopped' && e.detail === 5,
      ),
    ).toBe(true);
    // It can be migrated again afterwards.
    const again = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    expect((await clock.runUntil(again.done)).result).toBe('completed');
  });

  it('refuses a second migration of a VM that has one running, and one to an incompatible CPU', async () => {
    const { sim } = setup(
      [host('a'), host('b'), host('old', 1000, { cpuModel: 'Haswell' })],
      [constantVm('vm', 'a', 2048, 10, 512)],
    );
    expect(await sim.cpuCompatible('vm', 'a', 'old')).toBe(false);
    await expect(
      sim.migrate({ vmId: 'vm', from: 'a', to: 'old', kind: 'live', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({ code: 'cpu_incompatible' });
    await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await expect(
      sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({ code: 'operation_invalid' });
    await sim.close();
  });
});
