// Storage checked, not assumed, on the libvirt lab. Every lab host mounts one directory
// (/var/lib/libvirt/shared, lab.sh binds $LAB_DIR/shared there) and has its own /var/lib/libvirt/images.
// Before a migration drover writes a marker volume through the source's storage pool and looks for it through
// the destination's: a disk in the shared directory migrates live; a disk in a host-local directory that a
// wrong `sharedStoragePaths` entry calls shared is refused with an error naming the directory before anything
// moves (and goes with a block migration); a block migration of a disk both hosts see is refused too.
// After each: the guest runs and is defined on exactly one host, its heartbeat advancing.
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MigrationKind } from '../../src/domain/plan.js';
import { Executor, type MigrationStatus } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { heartbeatAdvances, labExec, labHostConfigs, type LabGuest } from './lab-client.js';
import { LabGuests, jobFinished, labPlan, labStep, removeStorageUnder } from './lab-jobs.js';
import { addRow, checkInvariant, writeTable } from '../faults/fault-table.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const A = 'lab1';
const B = 'lab2';
const SHARED = '/var/lib/libvirt/shared';
const IMAGES = '/var/lib/libvirt/images';

/** A hypervisor over the lab whose hosts list `shared` as their shared storage paths. */
function hypervisor(shared: string[]): LibvirtHypervisor {
  return new LibvirtHypervisor(
    labHostConfigs(50).map((h) => ({ ...h, sharedStoragePaths: shared })),
    { callTimeoutMs: 15_000 },
  );
}

const plan = (id: string, vm: string, kind: MigrationKind) => labPlan(id, [labStep(vm, { kind })]);

describe('Storage checked before migrating, on the libvirt lab', () => {
  const hvs: LibvirtHypervisor[] = [];
  let redis: Redis;
  const prefixes: string[] = [];
  const guests = new LabGuests('stor');
  const executors: Executor[] = [];
  const dirs: string[] = [];
  /** Lists nothing shared / the shared directory / wrongly the host-local images directory. */
  let plain: LibvirtHypervisor;
  let right: LibvirtHypervisor;
  let wrong: LibvirtHypervisor;

  beforeAll(() => {
    plain = hypervisor([]);
    right = hypervisor([SHARED]);
    wrong = hypervisor([IMAGES]);
    hvs.push(plain, right, wrong);
  });
  afterAll(async () => {
    await Promise.all(hvs.map((h) => h.close()));
    const rows = writeTable('lab-storage');
    expect(rows.reduce((n, r) => n + r.violations, 0)).toBe(0);
  });
  beforeEach(() => {
    redis = connectRedis();
  });
  afterEach(async () => {
    await Promise.all(executors.splice(0).map((e) => e.close()));
    await guests.removeAll();
    for (const dir of dirs.splice(0)) for (const h of [A, B]) await removeStorageUnder(h, dir);
    for (const p of prefixes.splice(0)) await cleanPrefix(redis, p);
    redis.disconnect();
  });

  /** A fresh directory under `parent` with a pool on the source only, and a 16 MiB qcow2 disk with data. */
  async function diskIn(parent: string): Promise<{ dir: string; disk: string }> {
    const dir = `${parent}/drover-st-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
    dirs.push(dir);
    await plain.createStoragePool(A, { name: `st-${dir.split('/').at(-1) ?? 'x'}`, targetPath: dir });
    const disk = `${dir}/disk.qcow2`;
    await labExec(A, ['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '16M']);
    await labExec(A, ['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x3c 0 1M', disk]);
    return { dir, disk };
  }

  function guestWithDisk(disk: string): Promise<LabGuest> {
    return guests.boot({ memMiB: 32, disks: [{ path: disk }] }, 5_000);
  }

  async function migrateWith(
    hv: LibvirtHypervisor,
    g: LabGuest,
    kind: MigrationKind,
  ): Promise<MigrationStatus> {
    // an executor of its own (own prefix) for each migration, the one before closed
    await Promise.all(executors.splice(0).map((e) => e.close()));
    const prefix = uniquePrefix('lab-storage');
    prefixes.push(prefix);
    const ex = new Executor({ redis, hypervisor: hv, options: parseExecutorOptions({ prefix }) });
    executors.push(ex);
    await ex.enqueuePlan(plan(`storage-${kind}-${g.name}`, g.id, kind), parseExecutionPolicy({}));
    ex.startWorkers();
    return jobFinished(ex, g.id, 150_000);
  }

  /** A fault-table row for the test's guest, whose invariant must hold. */
  async function row(fault: string, started: number, g: LabGuest, outcome: string): Promise<void> {
    const violations = await checkInvariant(plain, [g.id]);
    addRow({
      suite: 'lab-storage',
      fault,
      outcome,
      vmsChecked: 1,
      violations: violations.length,
      details: violations.map((v) => `  ${fault}: ${v}`),
      durationS: Math.round((Date.now() - started) / 100) / 10,
    });
    expect(violations).toEqual([]);
  }

  /** No marker of the check is left in `dir` on either host. */
  async function noMarkers(dir: string): Promise<void> {
    for (const h of [A, B]) {
      const listing = await labExec(h, ['sh', '-c', `ls -a ${dir} 2>/dev/null || true`]);
      expect(listing, `${h}:${dir}`).not.toMatch(/drover-storage-check/);
    }
  }

  it('a disk in the directory both hosts mount migrates live; the marker is gone afterwards', async () => {
    const started = Date.now();
    const { dir, disk } = await diskIn(SHARED);
    const g = await guestWithDisk(disk);
    const vm = (await right.listVms(A)).find((v) => v.id === g.id);
    expect(vm?.disks).toMatchObject([{ target: 'vda', source: disk, shared: true }]);

    const done = await migrateWith(right, g, 'live');
    expect(done.result?.status, JSON.stringify(done)).toBe('completed');
    expect(done.attemptsMade).toBe(1);
    expect(await right.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
    // the same file on both ends: nothing was copied, the destination reads the data the source wrote
    const out = await labExec(B, ['qemu-io', '-r', '-U', '-f', 'qcow2', '-c', 'read -P 0x3c 0 1M', disk]);
    expect(out).toMatch(/read 1048576\/1048576 bytes/);
    await noMarkers(dir);
    await row(
      'disk on storage both hosts share, live',
      started,
      g,
      'job completed (proven shared); guest on lab2',
    );
  }, 240_000);

  it('a wrong sharedStoragePaths entry is refused before anything moves; the host-local disk goes by block migration', async () => {
    const started = Date.now();
    const { dir, disk } = await diskIn(IMAGES);
    const g = await guestWithDisk(disk);
    const vm = (await wrong.listVms(A)).find((v) => v.id === g.id);
    expect(vm?.disks).toMatchObject([{ target: 'vda', source: disk, shared: true }]);

    const refused = await migrateWith(wrong, g, 'live');
    expect(refused.state).toBe('failed');
    expect(refused.failedReason).toContain('storage_not_shared');
    expect(refused.failedReason).toContain(`${dir} is not shared between ${A} and ${B}`);
    expect(refused.failedReason).toContain('sharedStoragePaths');
    // a configuration error is not retried, and nothing moved
    expect(refused.attemptsMade).toBe(1);
    expect(await wrong.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
    expect(await wrong.completedJobStats(A, g.id)).toBeNull();
    expect(await plain.lookupVolume(B, disk)).toBeNull();
    await heartbeatAdvances(A, g.name);
    await noMarkers(dir);

    // Told the truth (nothing shared), the same VM moves with its disk copied.
    const moved = await migrateWith(plain, g, 'block');
    expect(moved.result?.status, JSON.stringify(moved)).toBe('completed');
    expect(await plain.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
    const out = await labExec(B, ['qemu-io', '-r', '-U', '-f', 'qcow2', '-c', 'read -P 0x3c 0 1M', disk]);
    expect(out).toMatch(/read 1048576\/1048576 bytes/);
    await row(
      'wrong sharedStoragePaths entry (host-local disk), live',
      started,
      g,
      'refused storage_not_shared, guest stayed; block migration then completed; guest on lab2',
    );
  }, 300_000);

  it('a block migration of a disk both hosts see is refused (it would copy the disk onto itself)', async () => {
    const started = Date.now();
    const { dir, disk } = await diskIn(SHARED);
    const g = await guestWithDisk(disk);
    const digest = () => labExec(A, ['sha256sum', disk]);
    const before = await digest();

    const refused = await migrateWith(plain, g, 'block');
    expect(refused.state).toBe('failed');
    expect(refused.failedReason).toContain('storage_shared');
    expect(refused.failedReason).toContain(`add ${dir} to sharedStoragePaths`);
    expect(refused.attemptsMade).toBe(1);
    expect(await plain.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
    await heartbeatAdvances(A, g.name);
    expect(await digest()).toBe(before);
    await noMarkers(dir);
    await row(
      'block migration of a disk on shared storage',
      started,
      g,
      'refused storage_shared; guest on lab1, disk unchanged',
    );
  }, 240_000);
});
