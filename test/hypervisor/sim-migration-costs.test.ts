// What a real migration costs beyond its bytes: never-written (zero) pages are scanned, not sent; set-up
// before data flows; one stream's own throughput limit; and a link left to the others while a migration sets up
// or is capped below its equal share.
import { describe, expect, it } from 'vitest';
import { QEMU_MIGRATION_COSTS, type MigrationCosts } from '../../src/hypervisor/sim/index.js';
import { constantVm, host, setup } from './sim-helpers.js';

async function migrateAlone(
  memMiB: number,
  memUsedMiB: number,
  bandwidthMiBps: number,
  costs: MigrationCosts = {},
): Promise<{ durationS: number; processedMiB: number; iterations: number }> {
  const { clock, sim } = setup(
    [host('a', bandwidthMiBps), host('b', bandwidthMiBps)],
    [constantVm('vm', 'a', memMiB, 0, 0, { memUsedMiB })],
    { migrationCosts: costs },
  );
  const start = clock.now();
  const handle = await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
  const outcome = await clock.runUntil(handle.done);
  expect(outcome.result).toBe('completed');
  return {
    durationS: (clock.now() - start) / 1000,
    processedMiB: outcome.stats?.memProcessedMiB ?? 0,
    iterations: outcome.stats?.iteration ?? -1,
  };
}

describe('simulator migration costs', () => {
  it('sends only the pages the guest wrote; zero pages cost scan time, not bandwidth', async () => {
    // 8 GiB guest that wrote 2 GiB, 100 MiB/s link: 2,048 MiB of data, 6,144 MiB of zero pages.
    const ideal = await migrateAlone(8192, 2048, 100);
    expect(ideal.processedMiB).toBeCloseTo(2048, 0);
    expect(ideal.durationS).toBeCloseTo(20.48, 2);
    const scanned = await migrateAlone(8192, 2048, 100, { zeroScanMiBps: 4096 });
    expect(scanned.processedMiB).toBeCloseTo(2048, 0);
    expect(scanned.durationS).toBeCloseTo(20.48 + 6144 / 4096, 2);
    // A fully written guest sends all of it.
    const full = await migrateAlone(8192, 8192, 100, { zeroScanMiBps: 4096 });
    expect(full.processedMiB).toBeCloseTo(8192, 0);
    expect(full.durationS).toBeCloseTo(81.92, 2);
  });

  it('waits its set-up time before sending, and one stream never exceeds its own limit', async () => {
    const setupOnly = await migrateAlone(4096, 4096, 1000, { setupMs: 1000 });
    expect(setupOnly.durationS).toBeCloseTo(1 + 4.096, 3);
    const capped = await migrateAlone(4096, 4096, 2000, { streamMaxMiBps: 1024 });
    expect(capped.durationS).toBeCloseTo(4, 3);
    // Below the stream limit the link decides.
    const uncapped = await migrateAlone(4096, 4096, 512, { streamMaxMiBps: 1024 });
    expect(uncapped.durationS).toBeCloseTo(8, 3);
  });

  it('reports no rate while setting up, then the stream rate', async () => {
    const { clock, sim } = setup([host('a', 2000), host('b', 2000)], [constantVm('vm', 'a', 8192, 0, 0)], {
      migrationCosts: { setupMs: 1000, streamMaxMiBps: 1024 },
    });
    await sim.migrate({ vmId: 'vm', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(500);
    const during = await sim.jobStats('a', 'vm');
    expect(during.transferMiBps).toBe(0);
    expect(during.memRemainingMiB).toBe(8192);
    await clock.advance(1500);
    const after = await sim.jobStats('a', 'vm');
    expect(after.transferMiBps).toBe(1024);
    expect(after.memProcessedMiB).toBeCloseTo(1024, 0);
    await sim.close();
  });

  it('a migration setting up leaves the link to the one already sending, then takes its share', async () => {
    const { clock, sim } = setup(
      [host('a', 1000), host('b', 1000)],
      [constantVm('v1', 'a', 4000, 0, 0), constantVm('v2', 'a', 4000, 0, 0)],
      { migrationCosts: { setupMs: 1000 } },
    );
    const start = clock.now();
    const h1 = await sim.migrate({ vmId: 'v1', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(2000); // v1: 1 s set-up, then 1 s alone at 1,000 MiB/s
    const h2 = await sim.migrate({ vmId: 'v2', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    await clock.advance(500); // v2 sets up: v1 still alone
    expect((await sim.jobStats('a', 'v1')).memProcessedMiB).toBeCloseTo(1500, 0);
    await clock.advance(1000); // v2 sends from t = 3 s: both at 500 MiB/s
    expect((await sim.jobStats('a', 'v1')).memProcessedMiB).toBeCloseTo(2000 + 250, 0);
    expect((await sim.jobStats('a', 'v2')).memProcessedMiB).toBeCloseTo(250, 0);
    await clock.runUntil(Promise.all([h1.done, h2.done]));
    // 8,000 MiB through a 1,000 MiB/s link that was idle only during v1's set-up: 9 s.
    expect((clock.now() - start) / 1000).toBeCloseTo(9, 2);
  });

  it('migrations started at the same moment set up together and then share the link', async () => {
    const { clock, sim } = setup(
      [host('a', 1000), host('b', 1000)],
      [
        constantVm('v1', 'a', 2000, 0, 0),
        constantVm('v2', 'a', 2000, 0, 0),
        constantVm('v3', 'a', 2000, 0, 0),
      ],
      { migrationCosts: { setupMs: 1000 } },
    );
    const start = clock.now();
    const handles = await Promise.all(
      ['v1', 'v2', 'v3'].map((vmId) =>
        sim.migrate({ vmId, from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 }),
      ),
    );
    await clock.runUntil(Promise.all(handles.map((h) => h.done)));
    expect((clock.now() - start) / 1000).toBeCloseTo(1 + 6, 2);
  });

  it('a migration capped below its equal share leaves the rest of the link to the others', async () => {
    const { clock, sim } = setup(
      [host('a', 1000), host('b', 1000)],
      [constantVm('v1', 'a', 4000, 0, 0), constantVm('v2', 'a', 4000, 0, 0)],
    );
    const h1 = await sim.migrate({ vmId: 'v1', from: 'a', to: 'b', kind: 'live', maxDowntimeMs: 300 });
    const h2 = await sim.migrate({
      vmId: 'v2',
      from: 'a',
      to: 'b',
      kind: 'live',
      maxDowntimeMs: 300,
      bandwidthMiBps: 10,
    });
    await clock.advance(1000); // v2 takes its 10 MiB/s, v1 the other 990
    expect((await sim.jobStats('a', 'v1')).memProcessedMiB).toBeCloseTo(990, 0);
    expect((await sim.jobStats('a', 'v2')).memProcessedMiB).toBeCloseTo(10, 0);
    // Its cap lifted, v2 takes half: v1 is brought up to then at its old rate, then both send at 500.
    await sim.setMaxBandwidth('a', 'v2', 1000);
    await clock.advance(1000);
    expect((await sim.jobStats('a', 'v1')).memProcessedMiB).toBeCloseTo(1490, 0);
    expect((await sim.jobStats('a', 'v2')).memProcessedMiB).toBeCloseTo(510, 0);
    await clock.runUntil(Promise.all([h1.done, h2.done]));
  });

  it('the QEMU cost preset is documented numbers, not zero', () => {
    expect(QEMU_MIGRATION_COSTS.setupMs).toBeGreaterThan(0);
    expect(QEMU_MIGRATION_COSTS.streamMaxMiBps).toBeGreaterThan(1000);
    expect(QEMU_MIGRATION_COSTS.zeroScanMiBps).toBeGreaterThan(QEMU_MIGRATION_COSTS.streamMaxMiBps);
  });
});
