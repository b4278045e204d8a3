// The storage check on the simulator, whose hosts each have storage of their own: a file-backed disk that
// the configuration calls shared is refused for a live migration before anything moves (the marker written
// on the source is not seen on the destination, and is removed again); the same check is what lets a block
// migration of a host-local disk go; disks that are not files (network storage) are left to the configuration.
import { describe, expect, it } from 'vitest';
import { MigrationRunner } from '../../src/executor/migration-runner.js';
import { StorageCheck, StorageCheckError, isFileSource } from '../../src/executor/storage-check.js';
import { VirtualClock } from '../../src/clock/clocks.js';
import { SimHypervisor } from '../../src/hypervisor/sim/index.js';
import { job, step, testOptions } from './support/sim-cluster.js';

const DISK = '/srv/instances/vm-a/disk.qcow2';

function cluster(disk: { source: string; shared: boolean }) {
  const clock = new VirtualClock();
  const hv = new SimHypervisor(
    {
      seed: 5,
      hosts: [
        { id: 'h1', cpus: 16, memMiB: 65536, bandwidthMiBps: 1000 },
        { id: 'h2', cpus: 16, memMiB: 65536, bandwidthMiBps: 1000 },
      ],
      vms: [
        {
          id: 'vm-a',
          name: 'vm-a',
          host: 'h1',
          vcpus: 2,
          memMiB: 2048,
          workload: { kind: 'constant', cpuPct: 10, dirtyMiBps: 1, wwsMiB: 32 },
          disks: [{ target: 'vda', format: 'qcow2', capacityMiB: 1024, allocatedMiB: 100, ...disk }],
        },
      ],
    },
    { clock },
  );
  return { hv, clock };
}

async function vmOf(hv: SimHypervisor) {
  const vm = (await hv.listVms('h1')).find((v) => v.id === 'vm-a');
  if (!vm) throw new Error('vm-a not listed');
  return vm;
}

describe('storage check', () => {
  it('refuses a live migration of a file disk the destination does not see, naming disk, directory and hosts', async () => {
    const { hv } = cluster({ source: DISK, shared: true });
    const check = new StorageCheck(hv, { callTimeoutMs: 1000 });
    const used = async () =>
      (await hv.listStoragePools('h1')).find((p) => p.targetPath === '/srv/instances/vm-a')?.allocationBytes;
    expect(await used()).toBeUndefined(); // no pool there yet
    const err = await check
      .verify({ vm: await vmOf(hv), from: 'h1', to: 'h2', kind: 'live' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageCheckError);
    expect(err).toMatchObject({ code: 'storage_not_shared', directory: '/srv/instances/vm-a' });
    expect((err as Error).message).toMatch(
      /vda \(\/srv\/instances\/vm-a\/disk\.qcow2\).*\/srv\/instances\/vm-a is not shared between h1 and h2.*sharedStoragePaths/,
    );
    // the check made the pool to write its marker, and the marker went again
    expect(await used()).toBe(0);
  });

  it('the runner stops at the check: the VM stays on its source, no migration ran, the error is not retried', async () => {
    const { hv } = cluster({ source: DISK, shared: true });
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    await expect(runner.run(job(step('vm-a')))).rejects.toMatchObject({ code: 'storage_not_shared' });
    expect(await hv.locateVm('vm-a')).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
    expect(hv.activeMigrations()).toBe(0);
  });

  it('a host-local disk passes the inverse check of a block migration', async () => {
    const { hv } = cluster({ source: DISK, shared: false });
    const proof = await new StorageCheck(hv, { callTimeoutMs: 1000 }).verify({
      vm: await vmOf(hv),
      from: 'h1',
      to: 'h2',
      kind: 'block',
    });
    expect(proof).toEqual({ shared: [], local: ['/srv/instances/vm-a'] });
  });

  it('leaves network disks and block devices to the configuration', async () => {
    expect(isFileSource('ceph:vms/vm-a')).toBe(false);
    expect(isFileSource('/dev/mapper/mpatha')).toBe(false);
    expect(isFileSource(null)).toBe(false);
    expect(isFileSource(DISK)).toBe(true);
    const { hv } = cluster({ source: 'ceph:vms/vm-a', shared: true });
    const proof = await new StorageCheck(hv, { callTimeoutMs: 1000 }).verify({
      vm: await vmOf(hv),
      from: 'h1',
      to: 'h2',
      kind: 'live',
    });
    expect(proof).toEqual({ shared: [], local: [] });
  });
});
