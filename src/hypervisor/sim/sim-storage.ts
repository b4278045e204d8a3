// Storage of the simulated cluster: per-host storage pools (room) and the volumes in them (format, sizes,
// backing file, and a content token standing for the bytes). A block migration needs the destination to
// hold the disks as libvirt does: in full mode libvirt pre-creates a missing disk through the pool whose
// target is the disk's directory (and fails when there is none); in incremental mode it cannot pre-create
// anything, and QEMU cannot open an overlay whose backing file is missing.
import { createHash } from 'node:crypto';
import { dirname, basename } from 'node:path';
import {
  HypervisorError,
  type CopyVolumeRequest,
  type StoragePoolInfo,
  type VolumeDigest,
  type VolumeInfo,
  type VolumeSpec,
} from '../hypervisor.js';

const MiB = 1024 * 1024;

/** Where libvirt keeps disk images unless told otherwise; every simulated host has a pool there. */
export const DEFAULT_IMAGES_DIR = '/var/lib/libvirt/images';
export const DEFAULT_POOL_CAPACITY_MIB = 4 * 1024 * 1024;

export interface SimPoolSpec {
  name: string;
  targetPath: string;
  capacityMiB: number;
}

interface SimVolume {
  path: string;
  pool: string;
  format: string | null;
  capacityBytes: number;
  allocationBytes: number;
  sizeBytes: number;
  backing: { path: string; format: string | null } | null;
  /** Stands for the bytes: equal tokens, equal bytes. */
  content: string;
}

interface SimPool {
  name: string;
  targetPath: string;
  capacityBytes: number;
  volumes: Map<string, SimVolume>;
}

/** A disk of a VM as the block-migration checks see it. */
export interface SimBlockDisk {
  path: string;
  format: string | null;
  capacityMiB: number;
  /** Bytes the copy writes on the destination (full: allocated blocks; incremental: the top layer). */
  copiedMiB: number;
}

const normalizeDir = (p: string): string => (p.length > 1 ? p.replace(/\/+$/, '') : p);

function fail(code: ConstructorParameters<typeof HypervisorError>[0], message: string): never {
  throw new HypervisorError(code, message);
}

export class SimStorage {
  private readonly hosts = new Map<string, Map<string, SimPool>>();
  private readonly corruptCopiesTo = new Set<string>();
  /** Hosts whose spec lists their pools: they have exactly those. */
  private readonly explicit = new Set<string>();
  /** Directories of VM disks given in specs: hosts set up alike (no explicit pools) all have a pool there. */
  private readonly layoutDirs = new Set<string>();

  addHost(hostId: string, pools: readonly SimPoolSpec[] | undefined): void {
    const map = new Map<string, SimPool>();
    this.hosts.set(hostId, map);
    if (pools) {
      this.explicit.add(hostId);
      for (const p of pools)
        map.set(p.name, {
          name: p.name,
          targetPath: normalizeDir(p.targetPath),
          capacityBytes: p.capacityMiB * MiB,
          volumes: new Map(),
        });
      return;
    }
    this.addLayoutPool(map, DEFAULT_IMAGES_DIR, 'default');
    for (const dir of this.layoutDirs) this.addLayoutPool(map, dir);
  }

  private addLayoutPool(map: Map<string, SimPool>, dir: string, name?: string): SimPool {
    const targetPath = normalizeDir(dir);
    for (const p of map.values()) if (p.targetPath === targetPath) return p;
    const pool: SimPool = {
      name: name ?? `images-${basename(targetPath) || 'root'}`,
      targetPath,
      capacityBytes: DEFAULT_POOL_CAPACITY_MIB * MiB,
      volumes: new Map(),
    };
    map.set(pool.name, pool);
    return pool;
  }

  private pools(hostId: string): Map<string, SimPool> {
    const pools = this.hosts.get(hostId);
    if (!pools) fail('no_host', `unknown host ${hostId}`);
    return pools;
  }

  private poolForDir(hostId: string, dir: string): SimPool | null {
    const d = normalizeDir(dir);
    for (const p of this.pools(hostId).values()) if (p.targetPath === d) return p;
    return null;
  }

  private volume(hostId: string, path: string): SimVolume | null {
    return this.poolForDir(hostId, dirname(path))?.volumes.get(path) ?? null;
  }

  private used(pool: SimPool): number {
    let sum = 0;
    for (const v of pool.volumes.values()) sum += v.allocationBytes;
    return sum;
  }

  private poolInfo(pool: SimPool): StoragePoolInfo {
    const allocationBytes = this.used(pool);
    return {
      name: pool.name,
      type: 'dir',
      targetPath: pool.targetPath,
      active: true,
      capacityBytes: pool.capacityBytes,
      allocationBytes,
      availableBytes: Math.max(0, pool.capacityBytes - allocationBytes),
    };
  }

  private volumeInfo(v: SimVolume): VolumeInfo {
    return {
      path: v.path,
      pool: v.pool,
      name: basename(v.path),
      format: v.format,
      capacityBytes: v.capacityBytes,
      allocationBytes: v.allocationBytes,
      sizeBytes: v.sizeBytes,
      backing: v.backing ? { ...v.backing } : null,
    };
  }

  /** Puts a volume on a host as it exists at the start (a VM's disk, its backing file). */
  seed(hostId: string, v: Omit<SimVolume, 'pool' | 'content'> & { content?: string }): void {
    const dir = normalizeDir(dirname(v.path));
    let pool = this.poolForDir(hostId, dir);
    if (!pool) {
      pool = this.addLayoutPool(this.pools(hostId), dir);
      if (!this.explicit.has(hostId)) {
        this.layoutDirs.add(dir);
        for (const [id, map] of this.hosts) if (!this.explicit.has(id)) this.addLayoutPool(map, dir);
      }
    }
    if (pool.volumes.has(v.path)) return;
    pool.volumes.set(v.path, { ...v, pool: pool.name, content: v.content ?? `${hostId}:${v.path}` });
  }

  // ------------------------------------------------------------------------------ Hypervisor calls

  listPools(hostId: string): StoragePoolInfo[] {
    return [...this.pools(hostId).values()].map((p) => this.poolInfo(p));
  }

  createPool(hostId: string, spec: { name: string; targetPath: string }): StoragePoolInfo {
    const pools = this.pools(hostId);
    if (pools.has(spec.name)) fail('operation_failed', `pool '${spec.name}' already exists on ${hostId}`);
    if (this.poolForDir(hostId, spec.targetPath))
      fail('operation_failed', `a pool on ${hostId} already uses target path '${spec.targetPath}'`);
    const pool: SimPool = {
      name: spec.name,
      targetPath: normalizeDir(spec.targetPath),
      capacityBytes: DEFAULT_POOL_CAPACITY_MIB * MiB,
      volumes: new Map(),
    };
    pools.set(spec.name, pool);
    return this.poolInfo(pool);
  }

  lookupVolume(hostId: string, path: string): VolumeInfo | null {
    const v = this.volume(hostId, path);
    return v ? this.volumeInfo(v) : null;
  }

  createVolume(hostId: string, spec: VolumeSpec): VolumeInfo {
    const pool = this.pools(hostId).get(spec.pool);
    if (!pool)
      fail('operation_failed', `Storage pool not found: no storage pool with matching name '${spec.pool}'`);
    const path = `${pool.targetPath}/${spec.name}`;
    if (pool.volumes.has(path)) fail('operation_failed', `storage volume '${spec.name}' exists already`);
    if (spec.backing && !this.volume(hostId, spec.backing.path))
      fail('operation_failed', `Cannot access backing file '${spec.backing.path}'`);
    // An empty image: qcow2 metadata only, raw sparse.
    const metaBytes = spec.format === 'qcow2' ? 196_616 : 0;
    const v: SimVolume = {
      path,
      pool: pool.name,
      format: spec.format,
      capacityBytes: spec.capacityBytes,
      allocationBytes: metaBytes,
      sizeBytes: spec.format === 'raw' ? spec.capacityBytes : metaBytes,
      backing: spec.backing ? { ...spec.backing } : null,
      content: `empty:${spec.format}:${spec.capacityBytes}`,
    };
    pool.volumes.set(path, v);
    return this.volumeInfo(v);
  }

  deleteVolume(hostId: string, path: string): void {
    const pool = this.poolForDir(hostId, dirname(path));
    if (!pool?.volumes.delete(path))
      fail('operation_failed', `Storage volume not found: no storage vol with matching path '${path}'`);
  }

  digest(hostId: string, path: string): VolumeDigest {
    const v = this.volume(hostId, path);
    if (!v) fail('operation_failed', `Storage volume not found: no storage vol with matching path '${path}'`);
    return { sizeBytes: v.sizeBytes, sha256: createHash('sha256').update(v.content).digest('hex') };
  }

  /** Checks a copy can go; returns how many bytes it moves. */
  copyCheck(request: CopyVolumeRequest): number {
    const v = this.volume(request.from, request.path);
    if (!v)
      fail(
        'operation_failed',
        `Storage volume not found: no storage vol with matching path '${request.path}'`,
      );
    const pool = this.pools(request.to).get(request.pool);
    if (!pool)
      fail(
        'operation_failed',
        `Storage pool not found: no storage pool with matching name '${request.pool}'`,
      );
    if (pool.targetPath !== normalizeDir(dirname(request.path)))
      fail(
        'invalid_argument',
        `pool ${request.pool} on ${request.to} puts volumes in ${pool.targetPath}, not ${dirname(request.path)}`,
      );
    if (pool.volumes.has(request.path))
      fail('operation_failed', `storage volume '${basename(request.path)}' exists already`);
    if (this.poolInfo(pool).availableBytes < v.sizeBytes)
      fail(
        'operation_failed',
        `not enough space in pool ${request.pool} on ${request.to} for ${v.sizeBytes} bytes`,
      );
    return v.sizeBytes;
  }

  /** Ends a copy: the destination gets the same bytes (unless a corruption fault is armed for it). */
  copyCommit(request: CopyVolumeRequest): VolumeDigest {
    this.copyCheck(request);
    const v = this.volume(request.from, request.path);
    const pool = this.pools(request.to).get(request.pool);
    if (!v || !pool) fail('operation_failed', `copy of ${request.path}: the volume or pool went away`);
    const corrupt = this.corruptCopiesTo.delete(request.to);
    pool.volumes.set(request.path, {
      ...v,
      backing: v.backing ? { ...v.backing } : null,
      pool: pool.name,
      content: corrupt ? `${v.content}:corrupted-in-transit` : v.content,
    });
    return this.digest(request.from, request.path);
  }

  /** Fault: the next volume copied to this host arrives with different bytes. */
  corruptNextCopyTo(hostId: string): void {
    this.pools(hostId);
    this.corruptCopiesTo.add(hostId);
  }

  // ------------------------------------------------------------------------------ block migration

  /**
   * The destination side of a block migration's start, as libvirt does it: disks already there are used
   * (their size must match); missing ones are pre-created in full mode through the pool of their directory;
   * incremental mode cannot pre-create, and an overlay whose backing file is missing cannot be opened.
   */
  prepareIncoming(dstHostId: string, disks: readonly SimBlockDisk[], incremental: boolean): void {
    const toCreate: { pool: SimPool; disk: SimBlockDisk }[] = [];
    for (const d of disks) {
      const existing = this.volume(dstHostId, d.path);
      if (existing) {
        if (existing.capacityBytes !== d.capacityMiB * MiB)
          fail(
            'operation_failed',
            `Source and target image have different sizes (${d.path}: ${d.capacityMiB * MiB} vs ${existing.capacityBytes} bytes)`,
          );
        if (existing.backing && !this.volume(dstHostId, existing.backing.path))
          fail(
            'operation_failed',
            `Could not open backing file '${existing.backing.path}' of ${d.path} on ${dstHostId}`,
          );
        continue;
      }
      if (incremental)
        fail(
          'operation_failed',
          'pre-creation of storage targets for incremental storage migration is not supported',
        );
      const pool = this.poolForDir(dstHostId, dirname(d.path));
      if (!pool)
        fail(
          'operation_failed',
          `Storage pool not found: no storage pool with matching target path '${dirname(d.path)}'`,
        );
      toCreate.push({ pool, disk: d });
    }
    for (const { pool, disk } of toCreate)
      this.createVolume(dstHostId, {
        pool: pool.name,
        name: basename(disk.path),
        format: disk.format ?? 'raw',
        capacityBytes: disk.capacityMiB * MiB,
      });
  }

  /** After the switch-over: the destination disks hold what the source disks hold. */
  completeIncoming(
    srcHostId: string,
    dstHostId: string,
    disks: readonly SimBlockDisk[],
    incremental: boolean,
  ): void {
    for (const d of disks) {
      const s = this.volume(srcHostId, d.path);
      const t = this.volume(dstHostId, d.path);
      if (!s || !t) continue;
      t.content = s.content;
      t.allocationBytes = Math.max(t.allocationBytes, d.copiedMiB * MiB);
      t.sizeBytes = t.format === 'raw' ? t.capacityBytes : Math.max(t.sizeBytes, t.allocationBytes);
      if (!incremental) t.backing = null; // a full copy flattens the chain into the destination image
    }
  }
}
