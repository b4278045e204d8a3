// Workloads, host accounting, trace replay, presets, cluster generation and reproducibility.
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/clock/clocks.js';
import {
  generateCluster,
  loadTrace,
  presetWorkload,
  Prng,
  SimHypervisor,
  WORKLOAD_PRESET_NAMES,
} from '../../src/hypervisor/sim/index.js';
import { constantVm, host, setup } from './sim-helpers.js';

describe('simulator workloads and accounting', () => {
  it('a trace-driven VM follows the trace, CPU and dirty rate', async () => {
    const trace = loadTrace('bitbrains-vm1');
    expect(trace.cpuPct.length).toBe(8260);
    const stepS = 60;
    const offset = 100;
    const { clock, sim } = setup(
      [host('a')],
      [
        {
          id: 'tr',
          name: 'tr',
          host: 'a',
          vcpus: 2,
          memMiB: 8192,
          workload: {
            kind: 'trace',
            trace: 'bitbrains-vm1',
            stepS,
            offsetSteps: offset,
            idleDirtyMiBps: 2,
            dirtyMiBpsAtFullCpu: 400,
            wwsMiB: 8192,
          },
        },
      ],
    );
    let checked = 0;
    for (let step = 0; step < 40; step++) {
      const before = (await sim.sampleVms('a'))[0];
      await clock.advance(stepS * 1000);
      const after = (await sim.sampleVms('a'))[0];
      const cpuPct = (((after?.cpuTimeNs ?? 0) - (before?.cpuTimeNs ?? 0)) / (2 * stepS * 1e9)) * 100;
      const expected = trace.cpuPct[offset + step] ?? NaN;
      expect(cpuPct).toBeCloseTo(expected, 6);
      checked++;
    }
    expect(checked).toBe(40);
    // Dirty rate over one trace step: idle floor + CPU share of the full-CPU rate.
    const stepNow = offset + 40;
    await sim.startDirtyRate('a', 'tr', 10);
    await clock.advance(10_000);
    const reading = (await sim.sampleVms('a'))[0]?.dirtyRate;
    expect(reading?.status).toBe('measured');
    expect(reading?.dirtyMiBps).toBeCloseTo(2 + ((trace.cpuPct[stepNow] ?? NaN) / 100) * 400, 6);
  });

  it('a bursty workload spikes periodically, like a JVM garbage collector', async () => {
    const { clock, sim } = setup(
      [host('a')],
      [
        {
          id: 'jvm',
          name: 'jvm',
          host: 'a',
          vcpus: 4,
          memMiB: 16384,
          workload: {
            kind: 'bursty',
            cpuPct: 40,
            dirtyMiBps: 600,
            burstCpuPct: 95,
            burstDirtyMiBps: 1400,
            periodS: 30,
            burstS: 5,
            phaseS: 10,
            wwsMiB: 16384,
          },
        },
      ],
    );
    const seen: number[] = [];
    for (let s = 0; s < 60; s += 5) {
      seen.push(sim.vmDemand('jvm').dirtyMiBps);
      await clock.advance(5000);
    }
    // Bursts at 10-15 s, 40-45 s, 70-75 s, ...
    expect(seen).toEqual([600, 600, 1400, 600, 600, 600, 600, 600, 1400, 600, 600, 600]);
    // Now at 60 s: a window without a burst, one half in a burst (70-75 s), then one long enough to
    // write more than the working set, which a measurement of distinct dirty pages cannot exceed.
    const measure = async (windowS: number) => {
      await sim.startDirtyRate('a', 'jvm', windowS);
      await clock.advance(windowS * 1000);
      return (await sim.sampleVms('a'))[0]?.dirtyRate.dirtyMiBps;
    };
    expect(await measure(5)).toBeCloseTo(600, 6);
    expect(await measure(10)).toBeCloseTo((5 * 1400 + 5 * 600) / 10, 6);
    expect(await measure(30)).toBeCloseTo(16384 / 30, 6);
  });

  it('presets land in their documented dirty-rate ranges', () => {
    const rng = new Prng(99);
    for (let i = 0; i < 200; i++) {
      const idle = presetWorkload('idle', rng);
      const web = presetWorkload('web', rng);
      const db = presetWorkload('database', rng);
      const jvm = presetWorkload('jvm', rng);
      if (idle.kind !== 'constant' || web.kind !== 'constant' || db.kind !== 'constant')
        throw new Error('kind');
      expect(idle.dirtyMiBps).toBeLessThan(5);
      expect(web.dirtyMiBps).toBeGreaterThanOrEqual(40);
      expect(web.dirtyMiBps).toBeLessThanOrEqual(60);
      expect(db.dirtyMiBps).toBeGreaterThanOrEqual(100);
      expect(db.dirtyMiBps).toBeLessThanOrEqual(500);
      if (jvm.kind !== 'bursty') throw new Error('jvm should be bursty');
      expect(jvm.dirtyMiBps).toBeGreaterThanOrEqual(500);
      expect(jvm.burstDirtyMiBps).toBeGreaterThan(jvm.dirtyMiBps);
      expect(jvm.burstDirtyMiBps).toBeLessThanOrEqual(1500);
    }
    expect(WORKLOAD_PRESET_NAMES).toEqual(['idle', 'web', 'database', 'jvm']);
  });

  it('host CPU and memory counters follow the VMs on the host and stay monotonic across a migration', async () => {
    const { clock, sim } = setup(
      [host('a'), host('b')],
      [
        constantVm('v1', 'a', 4096, 0, 0, {
          memUsedMiB: 3000,
          workload: { kind: 'constant', cpuPct: 50, dirtyMiBps: 0, wwsMiB: 0 },
        }),
        constantVm('v2', 'a', 4096, 0, 0, {
          memUsedMiB: 1000,
          vcpus: 4,
          workload: { kind: 'constant', cpuPct: 25, dirtyMiBps: 0, wwsMiB: 0 },
        }),
      ],
    );
    const s0 = await sim.sampleHost('a');
    expect(s0.memUsedMiB).toBe(4000);
    await clock.advance(60_000);
    const s1 = await sim.sampleHost('a');
    const pct = ((s1.cpuBusyNs - s0.cpuBusyNs) / (s1.cpuTotalNs - s0.cpuTotalNs)) * 100;
    expect(pct).toBeCloseTo(((0.5 * 2 + 0.25 * 4) / 32) * 100, 6);
    const handle = await sim.migrate({ vmId: 'v1', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.runUntil(handle.done);
    const s2 = await sim.sampleHost('a');
    expect(s2.cpuBusyNs).toBeGreaterThanOrEqual(s1.cpuBusyNs);
    expect(s2.memUsedMiB).toBe(1000);
    expect((await sim.sampleHost('b')).memUsedMiB).toBe(3000);
    // The VM's counter restarts on the destination (a new QEMU process there).
    const onB = (await sim.sampleVms('b')).find((s) => s.vmId === 'v1');
    expect(onB?.cpuTimeNs).toBeLessThan(5e9);
  });

  it('a paused VM uses no CPU; a shut-off VM reports no memory use', async () => {
    const { clock, sim } = setup(
      [host('a')],
      [constantVm('v', 'a', 2048, 5, 512), constantVm('off', 'a', 2048, 5, 512, { state: 'shutoff' })],
    );
    await sim.suspendVm('a', 'v');
    const before = (await sim.sampleVms('a')).find((s) => s.vmId === 'v');
    await clock.advance(30_000);
    const after = (await sim.sampleVms('a')).find((s) => s.vmId === 'v');
    expect(after?.cpuTimeNs).toBe(before?.cpuTimeNs);
    const off = (await sim.sampleVms('a')).find((s) => s.vmId === 'off');
    expect(off).toMatchObject({ state: 'shutoff', memUsedMiB: null, cpuTimeNs: 0 });
    await expect(sim.startDirtyRate('a', 'off', 1)).rejects.toMatchObject({ code: 'operation_invalid' });
  });

  it('an idle cluster has no timers, and sampling a host touches only its own VMs', async () => {
    const clock = new VirtualClock();
    const spec = generateCluster({ seed: 5, hosts: 200, vmsPerHost: 30, traceWeight: 1 });
    const sim = new SimHypervisor(spec, { clock });
    expect(clock.pendingTimers()).toBe(0);
    const hosts = await sim.listHosts();
    expect(hosts).toHaveLength(200);
    const vms = await sim.sampleVms(hosts[0]?.id ?? '');
    expect(vms).toHaveLength(30);
    expect(vms.every((v) => v.hostId === hosts[0]?.id)).toBe(true);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('the same seed gives the same cluster and the same migration, another seed does not', async () => {
    const a = generateCluster({ seed: 42, hosts: 20, vmsPerHost: [10, 30] });
    const b = generateCluster({ seed: 42, hosts: 20, vmsPerHost: [10, 30] });
    const c = generateCluster({ seed: 43, hosts: 20, vmsPerHost: [10, 30] });
    expect(b).toEqual(a);
    expect(c.vms.map((v) => v.id)).not.toEqual(a.vms.map((v) => v.id));

    const run = async (seed: number) => {
      const { clock, sim } = setup([host('a'), host('b')], [constantVm('vm', 'a', 8192, 300, 4096)], {
        seed,
        bandwidthNoisePct: 10,
      });
      const start = clock.now();
      const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 100 });
      const outcome = await clock.runUntil(handle.done);
      return { durationMs: clock.now() - start, stats: outcome.stats };
    };
    const first = await run(7);
    expect(await run(7)).toEqual(first);
    expect((await run(8)).durationMs).not.toBe(first.durationMs);
  });

  it('rejects a bad cluster spec naming the field', () => {
    const clock = new VirtualClock();
    const bad = () =>
      new SimHypervisor(
        {
          hosts: [{ id: 'a', cpus: 8, memMiB: -1, bandwidthMiBps: 1000 }],
          vms: [constantVm('vm', 'zz', 1024, 1, 1)],
        },
        { clock },
      );
    expect(bad).toThrow(/hosts\[0\]\.memMiB/);
    const unknownHost = () =>
      new SimHypervisor({ hosts: [host('a')], vms: [constantVm('vm', 'zz', 1024, 1, 1)] }, { clock });
    expect(unknownHost).toThrow(/vms\[0\]\.host/);
  });
});
