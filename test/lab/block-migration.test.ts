// Block migration against the real libvirt lab (each lab host has its own /var, so its own
// /var/lib/libvirt/images): storage-volume streams against a real libvirtd; a block migration through the
// executor onto a host that has neither the storage location nor the disk (drover creates both through the
// pool, then libvirt copies the whole disk); an incremental one whose backing file exists only on the source
// (drover copies it through streams and verifies size and SHA-256 first); an aborted one, after which the
// disk made on the destination is gone again; and a destination pool without room, which skips the step
// before anything moves.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Step } from '../../src/domain/plan.js';
import { BlockDestination, poolNameFor } from '../../src/executor/block-destination.js';
import { Executor } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import {
  heartbeatAdvances,
  labClient,
  labExec,
  labHostConfigs,
  waitFor,
  type LabGuest,
} from './lab-client.js';
import { LabGuests, jobFinished, labPlan, labStep, removeStorageUnder } from './lab-jobs.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const A = 'lab1';
const B = 'lab2';
const LINK_MIBPS = 50;
const MiB = 1024 * 1024;
const IMAGES = '/var/lib/libvirt/images';

const step = (vm: string): Step =>
  labStep(vm, {
    kind: 'block',
    predicted: { converges: true, durationS: 10, downtimeMs: 50, transferMiB: 128 },
  });
const plan = (id: string, steps: Step[]) => labPlan(id, steps);

describe('Block migration on the libvirt lab', () => {
  let hv: LibvirtHypervisor;
  let redis: Redis;
  let prefix: string;
  const guests = new LabGuests('block');
  const executors: Executor[] = [];
  const dirs: string[] = [];

  beforeAll(() => {
    hv = new LibvirtHypervisor(labHostConfigs(LINK_MIBPS), { callTimeoutMs: 15_000 });
  });
  afterAll(async () => {
    await hv.close();
  });
  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('lab-block');
  });
  afterEach(async () => {
    await Promise.all(executors.splice(0).map((e) => e.close()));
    await guests.removeAll();
    for (const dir of dirs.splice(0)) for (const h of [A, B]) await removeStorageUnder(h, dir);
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  /** A fresh directory under the images directory, with a pool on the source only. */
  async function sourceLocation(): Promise<{ dir: string; pool: string }> {
    const dir = `${IMAGES}/drover-block-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
    dirs.push(dir);
    const pool = await hv.createStoragePool(A, {
      name: `src-${dir.split('/').at(-1) ?? 'x'}`,
      targetPath: dir,
    });
    return { dir, pool: pool.name };
  }

  /** qemu-img / qemu-io on the source host, then the pool re-read so libvirt sees the files. */
  async function onSource(...commands: string[][]): Promise<void> {
    for (const argv of commands) await labExec(A, argv);
  }

  function guestWithDisk(diskPath: string): Promise<LabGuest> {
    return guests.boot({ disks: [{ path: diskPath }] }, 5_000);
  }

  function executor(): Executor {
    const ex = new Executor({ redis, hypervisor: hv, options: parseExecutorOptions({ prefix }) });
    executors.push(ex);
    return ex;
  }

  const finished = (ex: Executor, vmId: string) => jobFinished(ex, vmId, 150_000);

  /** Reads guest-visible data of an image on a host and checks it holds `pattern` over [offset, offset+len). */
  async function expectPattern(hostId: string, path: string, pattern: number, offset: string, len: string) {
    const out = await labExec(hostId, [
      'qemu-io',
      '-r',
      '-U',
      '-f',
      'qcow2',
      '-c',
      `read -P 0x${pattern.toString(16)} ${offset} ${len}`,
      path,
    ]);
    expect(out, `${hostId}:${path} at ${offset}`).not.toMatch(/verification failed|error/i);
    expect(out).toMatch(/read \d+\/\d+ bytes/);
  }

  it('streams a volume up to and down from a real libvirtd, whole and by range', async () => {
    const { dir, pool } = await sourceLocation();
    const vol = await hv.createVolume(A, {
      pool,
      name: 'raw.img',
      format: 'raw',
      capacityBytes: 3 * MiB + 123,
    });
    const client = await labClient(A);
    try {
      const ref = await client.lookupStorageVolByPath(vol.path);
      const data = randomBytes(3 * MiB + 123);
      const up = await client.storageVolUpload(ref);
      await up.write(data);
      await up.finish();
      expect(up.bytesSent).toBe(data.length);

      const down = await client.storageVolDownload(ref);
      const chunks: Buffer[] = [];
      for await (const c of down) chunks.push(c);
      await down.finish();
      expect(Buffer.concat(chunks).equals(data)).toBe(true);

      const part = await client.storageVolDownload(ref, { offsetBytes: 1_000_000n, lengthBytes: 70_000n });
      const got: Buffer[] = [];
      for await (const c of part) got.push(c);
      await part.finish();
      expect(Buffer.concat(got).equals(data.subarray(1_000_000, 1_070_000))).toBe(true);
    } finally {
      await client.close();
    }
    const digest = await hv.volumeDigest(A, `${dir}/raw.img`);
    expect(digest.sizeBytes).toBe(3 * MiB + 123);
  }, 120_000);

  it('full copy: creates the storage location and an empty disk of the right size and format, then migrates', async () => {
    const { dir } = await sourceLocation();
    const disk = `${dir}/disk.qcow2`;
    await onSource(
      ['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'],
      ['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 4M', disk],
    );
    const g = await guestWithDisk(disk);
    expect(await hv.lookupVolume(B, disk)).toBeNull();

    // The preparation the executor runs, on its own first, to look at the empty disk it makes.
    const vm = (await hv.listVms(A)).find((v) => v.id === g.id);
    if (!vm) throw new Error('guest not listed');
    expect(vm.disks).toMatchObject([{ target: 'vda', source: disk, shared: false, format: 'qcow2' }]);
    const prepared = await new BlockDestination(hv, { callTimeoutMs: 15_000 }).prepare({
      vm,
      from: A,
      to: B,
      mode: 'full',
    });
    expect(prepared.createdPools).toEqual([poolNameFor(dir)]);
    expect(prepared.copiedBackingFiles).toEqual([]);
    const pools = await hv.listStoragePools(B);
    expect(pools.find((p) => p.targetPath === dir)).toMatchObject({
      name: poolNameFor(dir),
      active: true,
      type: 'dir',
    });
    const empty = await hv.lookupVolume(B, disk);
    expect(empty).toMatchObject({ path: disk, format: 'qcow2', capacityBytes: 64 * MiB, backing: null });
    expect(empty?.allocationBytes).toBeLessThan(MiB);

    const ex = executor();
    await ex.enqueuePlan(plan('block-full', [step(g.id)]), parseExecutionPolicy({}));
    ex.startWorkers();
    const done = await finished(ex, g.id);
    expect(done.result?.status, JSON.stringify(done.result)).toBe('completed');
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);
    // The guest's data arrived: what was written on the source reads back on the destination.
    await expectPattern(B, disk, 0x5a, '0', '4M');
    await expectPattern(B, disk, 0x00, '4M', '4M');
    expect((await hv.lookupVolume(B, disk))?.backing).toBeNull();
  }, 240_000);

  it('incremental: copies the backing file the destination lacks, verified by size and checksum, then migrates the top layer', async () => {
    const { dir } = await sourceLocation();
    const base = `${dir}/base.qcow2`;
    const top = `${dir}/top.qcow2`;
    await onSource(
      ['qemu-img', 'create', '-q', '-f', 'qcow2', base, '64M'],
      ['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 0 4M', base],
      ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top],
      ['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x22 8M 2M', top],
    );
    const g = await guestWithDisk(top);
    expect(await hv.lookupVolume(B, base)).toBeNull();
    const sourceBase = await hv.lookupVolume(A, base);
    expect(sourceBase).toMatchObject({ format: 'qcow2', backing: null });

    const ex = executor();
    await ex.enqueuePlan(plan('block-inc', [step(g.id)]), parseExecutionPolicy({ blockCopy: 'incremental' }));
    ex.startWorkers();
    const done = await finished(ex, g.id);
    expect(done.result?.status, JSON.stringify(done.result)).toBe('completed');
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await heartbeatAdvances(B, g.name);

    // The backing file is on the destination, byte for byte.
    const there = await hv.volumeDigest(B, base);
    const here = await hv.volumeDigest(A, base);
    expect(there).toEqual(here);
    expect(there.sizeBytes).toBe(sourceBase?.sizeBytes);
    expect(await hv.lookupVolume(B, base)).toMatchObject({ format: 'qcow2', capacityBytes: 64 * MiB });
    // The destination disk is an overlay of it, and the guest sees both layers.
    expect(await hv.lookupVolume(B, top)).toMatchObject({
      format: 'qcow2',
      capacityBytes: 64 * MiB,
      backing: { path: base },
    });
    await expectPattern(B, top, 0x11, '0', '4M');
    await expectPattern(B, top, 0x22, '8M', '2M');
    // Only the top layer travelled (NON_SHARED_INC): the destination overlay holds its 2 MiB, not the 4 MiB
    // of the backing file a whole-disk copy would have written into it as well.
    const topThere = await hv.lookupVolume(B, top);
    expect(topThere?.allocationBytes).toBeGreaterThanOrEqual(2 * MiB);
    expect(topThere?.allocationBytes).toBeLessThan(4 * MiB);
  }, 240_000);

  it('an aborted block migration leaves the guest on the source and removes the disk made on the destination', async () => {
    const { dir } = await sourceLocation();
    const disk = `${dir}/disk.qcow2`;
    await onSource(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M']);
    // 200 MiB of written RAM over a 10 MiB/s link: about 20 s of migration to abort in.
    const g = await guests.boot({ memMiB: 256, fillMiB: 200, disks: [{ path: disk }] }, 5_000);
    const slow = new LibvirtHypervisor(labHostConfigs(10), { callTimeoutMs: 15_000 });
    try {
      const ex = new Executor({ redis, hypervisor: slow, options: parseExecutorOptions({ prefix }) });
      executors.push(ex);
      await ex.enqueuePlan(plan('block-abort', [step(g.id)]), parseExecutionPolicy({}));
      ex.startWorkers();
      await waitFor(
        'the block migration to run',
        async () => ((await hv.jobStats(A, g.id)).type === 'active' ? true : undefined),
        60_000,
        200,
      );
      expect(await hv.lookupVolume(B, disk)).toMatchObject({ format: 'qcow2', capacityBytes: 64 * MiB });
      await new Promise((r) => setTimeout(r, 1_000));
      expect(await ex.abortVm(g.id)).toBe('abort-requested');
      const done = await jobFinished(ex, g.id, 90_000);
      expect(done.result?.status, JSON.stringify(done.result)).toBe('aborted');
      expect(await hv.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
      await heartbeatAdvances(A, g.name);
      expect(await hv.lookupVolume(B, disk)).toBeNull();
      expect(await hv.lookupVolume(A, disk)).toMatchObject({ format: 'qcow2' });
    } finally {
      await Promise.all(executors.splice(0).map((e) => e.close()));
      await slow.close();
    }
  }, 240_000);

  it('a destination pool without room skips the step with a reason before anything moves', async () => {
    const { dir } = await sourceLocation();
    const disk = `${dir}/disk.qcow2`;
    await onSource(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M']);
    const g = await guestWithDisk(disk);
    // On the destination the instance directory is a 4 MiB file system.
    await labExec(B, ['mkdir', '-p', dir]);
    await labExec(B, ['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir]);

    const ex = executor();
    await ex.enqueuePlan(plan('block-full-room', [step(g.id)]), parseExecutionPolicy({}));
    ex.startWorkers();
    const done = await jobFinished(ex, g.id, 90_000);
    expect(done.result?.status, JSON.stringify(done.result)).toBe('skipped');
    const reason = done.result && 'reason' in done.result ? done.result.reason : '';
    expect(reason).toMatch(
      /storage pool .* on lab2 has [0-4] MiB available; the full block migration .* writes 64 MiB there/,
    );
    expect(await hv.lookupVolume(B, disk)).toBeNull();
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: A, state: 'running', persistent: true }]);
    expect((await hv.jobStats(A, g.id)).type).toBe('none');
    await heartbeatAdvances(A, g.name);
  }, 180_000);
});
