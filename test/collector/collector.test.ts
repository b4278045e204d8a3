// The collector against the simulator: real Hypervisor semantics (counters, dirty-rate windows, faults).
import { describe, expect, it } from 'vitest';
import { Collector } from '../../src/collector/collector.js';
import { InMemoryCollectorStore } from '../../src/collector/collector-store.js';
import type { CollectorOptionsInput } from '../../src/collector/collector-options.js';
import { parseSnapshot, type Snapshot, type Vm } from '../../src/domain/snapshot.js';
import {
  SimHypervisor,
  VirtualClock,
  generateCluster,
  type ClusterSpec,
} from '../../src/hypervisor/sim/index.js';
import { createMetrics } from '../../src/metrics/metrics.js';

const constant = (cpuPct: number, dirtyMiBps: number, wwsMiB: number) =>
  ({ kind: 'constant', cpuPct, dirtyMiBps, wwsMiB }) as const;

function smallCluster(): ClusterSpec {
  const host = (id: string) => ({ id, cpus: 8, memMiB: 65536, bandwidthMiBps: 1000 });
  return {
    seed: 7,
    hosts: [host('h1'), host('h2')],
    vms: [
      { id: 'idle', name: 'idle', host: 'h1', vcpus: 2, memMiB: 2048, workload: constant(2, 1, 256) },
      { id: 'busy', name: 'busy', host: 'h1', vcpus: 4, memMiB: 8192, workload: constant(50, 200, 4096) },
      // Rewrites a 64 MiB buffer at 100 MiB/s: a 5 s window sees at most 64 MiB, i.e. 12.8 MiB/s.
      {
        id: 'small-wws',
        name: 'small-wws',
        host: 'h1',
        vcpus: 1,
        memMiB: 1024,
        workload: constant(10, 100, 64),
      },
      { id: 'other', name: 'other', host: 'h2', vcpus: 2, memMiB: 4096, workload: constant(25, 10, 512) },
    ],
  };
}

function setup(options: CollectorOptionsInput = {}, spec: ClusterSpec = smallCluster(), perVmSeries = false) {
  const clock = new VirtualClock();
  const sim = new SimHypervisor(spec, { clock });
  const metrics = createMetrics({ perVmSeries });
  const store = new InMemoryCollectorStore(() => clock.now());
  const collector = new Collector({ hypervisor: sim, store, metrics }, { hostTimeoutMs: 2000, ...options });
  /** Moves the clock one interval on, then runs a cycle. */
  const cycle = async () => {
    await clock.advance(collector.options.intervalS * 1000);
    return clock.runUntil(collector.runCycle());
  };
  return { clock, sim, collector, metrics, cycle };
}

const vmOf = (s: Snapshot, id: string): Vm => {
  const vm = s.vms.find((v) => v.id === id);
  if (!vm) throw new Error(`no VM ${id} in the snapshot`);
  return vm;
};

describe('Collector on the simulator', () => {
  it('derives host and VM CPU from counter deltas: null on the first cycle, then the real utilisation', async () => {
    const { cycle } = setup({ smoothing: { holdS: 0 }, dirtyRate: { enabled: false } });
    const first = await cycle();
    expect(first.snapshot.hosts.every((h) => h.cpuPct === null)).toBe(true);
    expect(first.snapshot.vms.every((v) => v.cpuPct === null)).toBe(true);
    const second = (await cycle()).snapshot;
    expect(() => parseSnapshot(second)).not.toThrow();
    // VM CPU is a share of its own vCPUs.
    expect(vmOf(second, 'busy').cpuPct).toBeCloseTo(50, 0);
    expect(vmOf(second, 'idle').cpuPct).toBeCloseTo(2, 0);
    // h1: 2x2% + 4x50% + 1x10% of 8 CPUs = (0.04 + 2 + 0.1) / 8 = 26.75 %.
    const h1 = second.hosts.find((h) => h.id === 'h1');
    expect(h1?.cpuPct).toBeCloseTo(26.75, 0);
    expect(h1?.state).toBe('active');
    expect(h1?.stale).toBe(false);
    expect(h1?.memUsedMiB).toBeGreaterThan(0);
    expect(h1?.measuredAt).toBe(second.takenAt);
    expect(vmOf(second, 'busy')).toMatchObject({ storage: 'shared', vcpus: 4, memMiB: 8192, host: 'h1' });
  });

  it('reports a load rise only after it has held for holdS, and a drop at once', async () => {
    const { sim, collector, cycle } = setup({
      smoothing: { holdS: 90, cpuTauS: 5 },
      dirtyRate: { enabled: false },
    });
    sim.faults.setHostLoad('h2', { cpuPct: 20 });
    for (let i = 0; i < 5; i++) await cycle();
    expect(collector.hostRecord('h2')?.cpuPct).toBeCloseTo(20, 0);
    sim.faults.setHostLoad('h2', { cpuPct: 95 });
    const held: (number | null)[] = [];
    for (let i = 0; i < 5; i++)
      held.push((await cycle()).snapshot.hosts.find((h) => h.id === 'h2')?.cpuPct ?? null);
    // Smoothed value is up at once (tau 5 s), the reported one only once 90 s of samples agree.
    expect(collector.hostRecord('h2')?.cpuEwmaPct).toBeCloseTo(95, 0);
    expect(held[0]).toBeCloseTo(20, 0);
    expect(held[2]).toBeCloseTo(20, 0);
    expect(held[4]).toBeCloseTo(95, 0);
    sim.faults.setHostLoad('h2', { cpuPct: 10 });
    const after = (await cycle()).snapshot.hosts.find((h) => h.id === 'h2');
    expect(after?.cpuPct).toBeCloseTo(10, 0);
  });

  it('measures dirty rates with the configured window: idle, busy and a saturating small working set', async () => {
    const { cycle } = setup({ dirtyRate: { windowS: 5, maxPerHost: 4 } });
    await cycle();
    const snap = (await cycle()).snapshot;
    expect(vmOf(snap, 'idle').dirtyMiBps).toBeCloseTo(1, 0);
    expect(vmOf(snap, 'busy').dirtyMiBps).toBeCloseTo(200, 0);
    expect(vmOf(snap, 'small-wws').dirtyMiBps).toBeCloseTo(64 / 5, 1);
    expect(vmOf(snap, 'other').dirtyMiBps).toBeCloseTo(10, 0);
    expect(vmOf(snap, 'busy').dirtyPeakMiBps).toBeCloseTo(200, 0);
  });

  it('keeps a VM’s peak dirty rate beside its typical one', async () => {
    const { sim, cycle } = setup({
      intervalS: 30,
      dirtyRate: { windowS: 5, maxPerHost: 4, remeasureS: 30 },
      smoothing: { dirtyTauS: 1800 },
    });
    await cycle();
    await cycle();
    // Below the 512 MiB working set over the 5 s window, so the measurement sees all of it.
    sim.faults.dirtySpike('other', { dirtyMiBps: 90, durationMs: 40_000 });
    await cycle(); // the measurement that starts now sees the spike
    let snap: Snapshot | null = null;
    for (let i = 0; i < 4; i++) snap = (await cycle()).snapshot;
    if (!snap) throw new Error('no snapshot');
    const other = vmOf(snap, 'other');
    expect(other.dirtyPeakMiBps).toBeCloseTo(90, 0);
    // Three readings so far (10, 10, then the spike's 90): the typical rate is their even mean, where an
    // EWMA alone would still read close to the first 10 for hours.
    expect(other.dirtyMiBps).toBeCloseTo((10 + 10 + 90) / 3, 1);
  });

  it('carries a VM’s dirty-rate history to the host it migrates to', async () => {
    const { sim, clock, cycle } = setup({ dirtyRate: { windowS: 5, maxPerHost: 4, remeasureS: 3600 } });
    await cycle();
    const before = vmOf((await cycle()).snapshot, 'other');
    expect(before.dirtyPeakMiBps).toBeCloseTo(10, 0);
    const handle = await sim.migrate({
      vmId: 'other',
      from: 'h2',
      to: 'h1',
      kind: 'live',
      maxDowntimeMs: 300,
    });
    expect((await clock.runUntil(handle.done)).result).toBe('completed');
    const after = vmOf((await cycle()).snapshot, 'other');
    expect(after.host).toBe('h1');
    // Not measured again (remeasureS is an hour), yet its typical and peak rate are known on h1.
    expect(after.dirtyMiBps).toBe(before.dirtyMiBps);
    expect(after.dirtyPeakMiBps).toBe(before.dirtyPeakMiBps);
  });

  it('never runs more than maxPerHost measurements on a host at once, and reaches every VM', async () => {
    const spec = generateCluster({ seed: 3, hosts: 3, vmsPerHost: 12 });
    // Window longer than the interval, so measurements overlap cycles.
    const { sim, cycle } = setup(
      { intervalS: 10, dirtyRate: { windowS: 25, maxPerHost: 3, remeasureS: 60 } },
      spec,
    );
    const probed = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = await cycle();
      for (const o of r.outcomes) o.probesStarted.forEach((id) => probed.add(id));
      for (const h of await sim.listHosts()) {
        const measuring = (await sim.sampleVms(h.id)).filter(
          (v) => v.dirtyRate.status === 'measuring',
        ).length;
        expect(measuring).toBeLessThanOrEqual(3);
      }
    }
    const running = (await Promise.all((await sim.listHosts()).map((h) => sim.sampleVms(h.id))))
      .flat()
      .filter((v) => v.state === 'running');
    expect(running.length).toBeGreaterThan(0);
    for (const v of running) expect(probed.has(v.vmId)).toBe(true);
  });

  it('does not probe a VM while it migrates', async () => {
    const spec = smallCluster();
    spec.hosts = spec.hosts.map((h) => ({ ...h, bandwidthMiBps: 20 })); // a slow link: the migration lasts
    const { sim, clock, cycle } = setup(
      { intervalS: 10, dirtyRate: { windowS: 1, maxPerHost: 4, remeasureS: 10 } },
      spec,
    );
    await cycle();
    await cycle();
    const handle = await sim.migrate({
      vmId: 'busy',
      from: 'h1',
      to: 'h2',
      kind: 'live',
      maxDowntimeMs: 300,
    });
    const probedDuring: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await cycle();
      const migrating = (await sim.sampleVms('h1')).find((v) => v.vmId === 'busy')?.migrating;
      expect(migrating).toBe(true);
      for (const o of r.outcomes) probedDuring.push(...o.probesStarted);
    }
    expect(probedDuring).toContain('idle');
    expect(probedDuring).not.toContain('busy');
    await sim.abortJob('h1', 'busy');
    await clock.runUntil(handle.done);
  });

  it('marks a host that hangs stale (state down) within the timeout, keeps the others fresh, and recovers', async () => {
    const { sim, clock, collector, metrics, cycle } = setup({ hostTimeoutMs: 3000 });
    await cycle();
    const good = await cycle();
    const lastGood = good.snapshot.hosts.find((h) => h.id === 'h2')?.measuredAt;
    sim.faults.hostDown('h2', { mode: 'hang' });
    const t0 = clock.now();
    const r = await clock.runUntil(collector.runCycle());
    expect(clock.now() - t0).toBeLessThanOrEqual(3000);
    const h2 = r.snapshot.hosts.find((h) => h.id === 'h2');
    expect(h2).toMatchObject({ stale: true, state: 'down', measuredAt: lastGood });
    expect(h2?.cpuPct).not.toBeNull();
    expect(r.snapshot.hosts.find((h) => h.id === 'h1')).toMatchObject({ stale: false, state: 'active' });
    expect(r.outcomes.find((o) => o.hostId === 'h2')?.error).toBe('host_timeout');
    expect(await metrics.registry.getSingleMetricAsString('drover_host_stale')).toContain('host="h2"} 1');
    expect(await metrics.registry.getSingleMetricAsString('drover_collector_errors_total')).toMatch(
      /host="h2",kind="timeout"} 1/,
    );
    // Next cycle: the earlier call still hangs, so the host is not asked again and stays stale.
    await clock.advance(30_000);
    const again = await clock.runUntil(collector.runCycle());
    expect(again.snapshot.hosts.find((h) => h.id === 'h2')?.stale).toBe(true);
    sim.faults.hostUp('h2');
    await clock.advance(30_000);
    const back = await clock.runUntil(collector.runCycle());
    expect(back.snapshot.hosts.find((h) => h.id === 'h2')).toMatchObject({ stale: false, state: 'active' });
    expect(() => parseSnapshot(back.snapshot)).not.toThrow();
  });

  it('marks a host that refuses connections stale at once', async () => {
    const { sim, cycle } = setup();
    sim.faults.hostDown('h1', { mode: 'error' });
    const r = await cycle();
    expect(r.snapshot.hosts.find((h) => h.id === 'h1')).toMatchObject({
      stale: true,
      state: 'down',
      cpuPct: null,
      measuredAt: null,
    });
    expect(r.outcomes.find((o) => o.hostId === 'h1')?.error).toBe('host_unreachable');
    expect(r.snapshot.vms.every((v) => v.host === 'h2')).toBe(true);
  });

  it('exports host series and the cluster spread, and per-VM dirty-rate series only when metrics.perVmSeries is on', async () => {
    for (const perVmSeries of [false, true]) {
      const { metrics, cycle } = setup({ dirtyRate: { maxPerHost: 4 } }, smallCluster(), perVmSeries);
      await cycle();
      await cycle();
      const cpu = await metrics.registry.getSingleMetricAsString('drover_host_cpu_percent');
      expect(cpu).toContain('host="h1"');
      expect(await metrics.registry.getSingleMetricAsString('drover_host_memory_percent')).toContain(
        'host="h2"',
      );
      const dirty = await metrics.registry.getSingleMetricAsString('drover_vm_dirty_mebibytes_per_second');
      expect(dirty.includes('vm="busy"')).toBe(perVmSeries);
      const spread = await metrics.registry.getSingleMetricAsString('drover_cluster_spread_percent');
      // h1 runs busy VMs, h2 one quieter VM: the CPU spread is well above zero.
      const cpuSpread = Number(/resource="cpu"} (\S+)/.exec(spread)?.[1]);
      expect(cpuSpread).toBeGreaterThan(5);
      expect(spread).toMatch(/resource="memory"} \d/);
      expect(
        await metrics.registry.getSingleMetricAsString('drover_collector_sample_duration_seconds'),
      ).toContain('drover_collector_sample_duration_seconds_count{host="h1"} 2');
      expect(await metrics.registry.getSingleMetricAsString('drover_snapshot_age_seconds')).toMatch(/ 0$/m);
    }
  });

  it('collectOnce gives CPU and the first dirty rates in one call', async () => {
    const clock = new VirtualClock();
    const sim = new SimHypervisor(smallCluster(), { clock });
    const collector = new Collector(
      { hypervisor: sim, store: new InMemoryCollectorStore(() => clock.now()) },
      { dirtyRate: { maxPerHost: 4 } },
    );
    const snap = await clock.runUntil(collector.collectOnce());
    expect(parseSnapshot(snap)).toEqual(snap);
    expect(snap.hosts.every((h) => h.cpuPct !== null && !h.stale)).toBe(true);
    expect(snap.vms.every((v) => v.dirtyMiBps !== null)).toBe(true);
  });
});
