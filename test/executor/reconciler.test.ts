// The reconciler on the simulator: a VM left active on two hosts is reported, one mid-migration is not.
import { describe, expect, it } from 'vitest';
import { Reconciler } from '../../src/executor/reconciler.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { VMS, simCluster } from './support/sim-cluster.js';

describe('Reconciler', () => {
  it('reports VMs paused on two hosts, ignores migrations in flight, and sets the metric', async () => {
    const { hv, clock } = simCluster();
    const metrics = createMetrics();
    const reconciler = new Reconciler({ hypervisor: hv, callTimeoutMs: 2000, intervalMs: 60_000, metrics });
    const clean = await clock.runUntil(reconciler.runOnce());
    expect(clean.onSeveralHosts).toEqual([]);
    expect(clean.hostsChecked).toBe(3);

    // A migration in flight (the destination's paused copy is expected): not reported.
    const inFlight = await hv.migrate({
      vmId: VMS.hot,
      from: 'h1',
      to: 'h2',
      kind: 'live',
      maxDowntimeMs: 50,
    });
    await clock.advance(1000);
    expect((await clock.runUntil(reconciler.runOnce())).onSeveralHosts).toEqual([]);
    await hv.abortJob('h1', VMS.hot);
    await clock.runUntil(inFlight.done);

    // A switch-over that broke and left the VM paused on both ends: reported with its evidence.
    hv.faults.pausedOnBothEnds(VMS.idle);
    const broken = await hv.migrate({
      vmId: VMS.idle,
      from: 'h1',
      to: 'h3',
      kind: 'live',
      maxDowntimeMs: 300,
    });
    await clock.runUntil(broken.done);
    const report = await clock.runUntil(reconciler.runOnce());
    expect(report.onSeveralHosts.map((e) => e.vmId)).toEqual([VMS.idle]);
    expect(report.onSeveralHosts[0]?.diagnosis).toBe('paused-on-several-hosts');
    expect(
      (await metrics.registry.getSingleMetric('drover_vms_on_multiple_hosts')?.get())?.values[0]?.value,
    ).toBe(1);
  });

  it('lists hosts that do not answer instead of failing', async () => {
    const { hv, clock } = simCluster();
    hv.faults.hostDown('h3');
    const reconciler = new Reconciler({ hypervisor: hv, callTimeoutMs: 2000, intervalMs: 60_000 });
    const report = await clock.runUntil(reconciler.runOnce());
    expect(report.unreachableHosts).toEqual(['h3']);
  });
});
