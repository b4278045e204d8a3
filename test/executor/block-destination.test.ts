// Preparing a block migration's destination, on the simulator's virtual clock: the storage location is
// created, empty disks of the right size and format appear through the pool, incremental mode copies the
// missing backing file and verifies it, a destination without room skips the step before anything moves,
// and a copy that does not verify is removed again. The simulator fails block migrations into hosts that
// lack the disks the way libvirt does, so these tests also show the preparation is what makes them go.
import { describe, expect, it } from 'vitest';
import { StepSkipped } from '../../src/domain/errors.js';
import {
  BlockDestination,
  BlockDestinationError,
  poolNameFor,
} from '../../src/executor/block-destination.js';
import { MigrationRunner } from '../../src/executor/migration-runner.js';
import { VirtualClock } from '../../src/clock/clocks.js';
import { SimHypervisor } from '../../src/hypervisor/sim/index.js';
import { job, policy, step, testOptions } from './support/sim-cluster.js';

const MiB = 1024 * 1024;
const VM = 'vm-block';
const DISK = '/srv/instances/vm-block/disk.qcow2';
const BASE = '/srv/images/base-1.qcow2';

interface Setup {
  /** Room of the destination's pools (MiB). */
  destPoolMiB?: number;
  /** The destination already has a pool for the instance directory. */
  destHasInstancePool?: boolean;
  withBacking?: boolean;
}

function cluster(opts: Setup = {}) {
  const clock = new VirtualClock();
  const room = opts.destPoolMiB ?? 1024 * 1024;
  const hv = new SimHypervisor(
    {
      seed: 3,
      hosts: [
        { id: 'h1', cpus: 16, memMiB: 65536, bandwidthMiBps: 1000 },
        {
          id: 'h2',
          cpus: 16,
          memMiB: 65536,
          bandwidthMiBps: 1000,
          // Set up apart from h1: only libvirt's default pool (plus the instance directory if asked).
          pools: [
            { name: 'default', targetPath: '/var/lib/libvirt/images', capacityMiB: room },
            { name: 'images', targetPath: '/srv/images', capacityMiB: room },
            ...(opts.destHasInstancePool
              ? [{ name: 'instances', targetPath: '/srv/instances/vm-block', capacityMiB: room }]
              : []),
          ],
        },
      ],
      vms: [
        {
          id: VM,
          name: VM,
          host: 'h1',
          vcpus: 2,
          memMiB: 2048,
          workload: { kind: 'constant', cpuPct: 10, dirtyMiBps: 1, wwsMiB: 32 },
          disks: [
            {
              target: 'vda',
              source: DISK,
              shared: false,
              format: 'qcow2',
              capacityMiB: 10240,
              allocatedMiB: 3000,
              topLayerMiB: 200,
              ...(opts.withBacking === false
                ? {}
                : { backing: { path: BASE, format: 'qcow2', sizeMiB: 2800 } }),
            },
          ],
        },
      ],
    },
    { clock },
  );
  return { hv, clock };
}

const blockStep = step(VM, { kind: 'block' });

describe('block migration destination on the simulator', () => {
  it('without preparation the simulator refuses like libvirt: no pool for the disk, or incremental pre-creation', async () => {
    const { hv } = cluster();
    await expect(
      hv.migrate({ vmId: VM, from: 'h1', to: 'h2', kind: 'block', maxDowntimeMs: 300 }),
    ).rejects.toMatchObject({
      code: 'operation_failed',
      message: expect.stringMatching(/no storage pool/) as unknown,
    });
    const withPool = cluster({ destHasInstancePool: true });
    await expect(
      withPool.hv.migrate({
        vmId: VM,
        from: 'h1',
        to: 'h2',
        kind: 'block',
        maxDowntimeMs: 300,
        incremental: true,
      }),
    ).rejects.toMatchObject({ message: expect.stringMatching(/pre-creation of storage targets/) as unknown });
    expect(withPool.hv.activeMigrations()).toBe(0);
  });

  it('full mode: creates the storage location and an empty disk of the right size and format, then the migration completes', async () => {
    const { hv, clock } = cluster();
    const prepared = await clock.runUntil(
      new BlockDestination(hv, { callTimeoutMs: 2000 }).prepare({
        vm: (await hv.listVms('h1'))[0]!,
        from: 'h1',
        to: 'h2',
        mode: 'full',
      }),
    );
    expect(prepared.createdPools).toEqual([poolNameFor('/srv/instances/vm-block')]);
    expect(prepared.copiedBackingFiles).toEqual([]); // whole disks need no backing files
    expect(prepared.disks).toEqual([
      { target: 'vda', path: DISK, format: 'qcow2', capacityBytes: 10240 * MiB, state: 'created' },
    ]);
    const pools = await hv.listStoragePools('h2');
    expect(pools.find((p) => p.targetPath === '/srv/instances/vm-block')?.active).toBe(true);
    const empty = await hv.lookupVolume('h2', DISK);
    expect(empty).toMatchObject({ format: 'qcow2', capacityBytes: 10240 * MiB, backing: null });
    expect(empty?.allocationBytes).toBeLessThan(MiB); // empty: metadata only
    expect(await hv.lookupVolume('h2', BASE)).toBeNull();

    // Preparing again (a retried job) finds the disk and changes nothing.
    const again = await clock.runUntil(
      new BlockDestination(hv, { callTimeoutMs: 2000 }).prepare({
        vm: (await hv.listVms('h1'))[0]!,
        from: 'h1',
        to: 'h2',
        mode: 'full',
      }),
    );
    expect(again.disks[0]?.state).toBe('present');
    expect(again.createdVolumes).toEqual([]);
  });

  it('full mode through the runner: the VM ends on the destination only and its disk holds the source bytes', async () => {
    const { hv, clock } = cluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(runner.run(job(blockStep)));
    expect(report.outcome).toBe('completed');
    expect(report.problems).toEqual([]);
    expect(await hv.locateVm(VM)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
    expect(report.transferMiB).toBeGreaterThanOrEqual(2048 + 3000); // memory and every allocated block
    // The whole chain went into one image: no backing file, every allocated block of the chain.
    const copied = await hv.lookupVolume('h2', DISK);
    expect(copied).toMatchObject({ format: 'qcow2', capacityBytes: 10240 * MiB, backing: null });
    expect(copied?.allocationBytes).toBeGreaterThanOrEqual(3000 * MiB);
    expect(await hv.lookupVolume('h2', BASE)).toBeNull();
  });

  it('incremental mode: copies the missing backing file, verifies it, makes an overlay and copies only the top layer', async () => {
    const { hv, clock } = cluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(runner.run(job(blockStep, policy({ blockCopy: 'incremental' }))));
    expect(report.outcome).toBe('completed');
    expect(await hv.locateVm(VM)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
    expect(report.transferMiB).toBeLessThan(2048 + 1000); // memory and the 200 MiB top layer, not 3000
    const base = await hv.volumeDigest('h2', BASE);
    expect(base).toEqual(await hv.volumeDigest('h1', BASE));
    expect(base.sizeBytes).toBe(2800 * MiB);
    expect(await hv.lookupVolume('h2', DISK)).toMatchObject({
      format: 'qcow2',
      capacityBytes: 10240 * MiB,
      backing: { path: BASE, format: 'qcow2' },
    });
    expect(await hv.volumeDigest('h2', DISK)).toEqual(await hv.volumeDigest('h1', DISK));
  });

  it('incremental mode: a copy that does not verify is removed and the step fails for a retry, nothing migrated', async () => {
    const { hv, clock } = cluster();
    hv.storage.corruptNextCopyTo('h2');
    const prep = new BlockDestination(hv, { callTimeoutMs: 2000 }).prepare({
      vm: (await hv.listVms('h1'))[0]!,
      from: 'h1',
      to: 'h2',
      mode: 'incremental',
    });
    const failure = await clock.runUntil(prep.catch((err: unknown) => err));
    expect(failure).toBeInstanceOf(BlockDestinationError);
    expect(failure).toMatchObject({ code: 'migration_start_failed', transient: true });
    expect(String((failure as Error).message)).toMatch(/does not verify/);
    expect(await hv.lookupVolume('h2', BASE)).toBeNull();
    expect(await hv.lookupVolume('h2', DISK)).toBeNull();
    expect(hv.activeMigrations()).toBe(0);
  });

  it('skips the step with a reason when a destination pool has no room, before anything is copied or created', async () => {
    const { hv, clock } = cluster({ destPoolMiB: 1000, destHasInstancePool: true });
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    for (const blockCopy of ['full', 'incremental'] as const) {
      const run = clock.runUntil(runner.run(job(blockStep, policy({ blockCopy }))));
      await expect(run).rejects.toThrow(StepSkipped);
      await expect(run).rejects.toThrow(
        new RegExp(`has 1000 MiB available; the ${blockCopy} block migration of ${VM} writes \\d+ MiB there`),
      );
    }
    expect(await hv.lookupVolume('h2', DISK)).toBeNull();
    expect(await hv.lookupVolume('h2', BASE)).toBeNull();
    expect(hv.activeMigrations()).toBe(0);
    expect(await hv.locateVm(VM)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
  });

  it('skips when the destination already holds a different file at a backing path', async () => {
    const { hv, clock } = cluster();
    await hv.createVolume('h2', {
      pool: 'images',
      name: 'base-1.qcow2',
      format: 'qcow2',
      capacityBytes: 10240 * MiB,
    });
    const run = clock.runUntil(
      new BlockDestination(hv, { callTimeoutMs: 2000 }).prepare({
        vm: (await hv.listVms('h1'))[0]!,
        from: 'h1',
        to: 'h2',
        mode: 'incremental',
      }),
    );
    await expect(run).rejects.toThrow(/already has a different \/srv\/images\/base-1\.qcow2/);
    expect(await hv.lookupVolume('h2', DISK)).toBeNull();
  });

  it('a block migration aborted by the operator removes the disk made for it; the verified backing file stays', async () => {
    const { hv, clock } = cluster();
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    let migrateAt: number | null = null;
    const report = await clock.runUntil(
      runner.run(job(blockStep, policy({ blockCopy: 'incremental' })), {
        onMigrateCall: (at) => (migrateAt = at),
        // abort a little after the start: the disk copy is still running
        abortRequested: () => (migrateAt !== null && clock.now() - migrateAt > 100 ? 'operator' : null),
      }),
    );
    expect(report.outcome).toBe('aborted');
    expect(report.problems).toEqual([]);
    expect(await hv.locateVm(VM)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
    expect(await hv.lookupVolume('h2', DISK)).toBeNull();
    expect(await hv.volumeDigest('h2', BASE)).toEqual(await hv.volumeDigest('h1', BASE));
    // The next attempt finds the backing file and goes.
    const again = await clock.runUntil(runner.run(job(blockStep, policy({ blockCopy: 'incremental' }))));
    expect(again.outcome).toBe('completed');
    expect(await hv.locateVm(VM)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
  });

  it('a disk with no backing file needs nothing copied in incremental mode', async () => {
    const { hv, clock } = cluster({ withBacking: false });
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(runner.run(job(blockStep, policy({ blockCopy: 'incremental' }))));
    expect(report.outcome).toBe('completed');
    expect(await hv.lookupVolume('h2', BASE)).toBeNull();
  });
});
