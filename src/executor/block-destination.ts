// Prepares the destination of a block migration before anything moves, as OpenStack Nova does before a
// block live migration:
//   1. the instance's storage location exists: a storage pool whose target is each disk's directory (a
//      directory pool is created when the destination has none);
//   2. there is room: each destination pool must hold what the copy will write there (full mode: the
//      disks' whole virtual size, as Nova checks without disk over-commit; incremental mode: the top layers
//      and any backing file that has to be copied);
//   3. incremental mode only: every backing file of the disks' chains that the destination lacks is copied
//      there through storage-volume streams, then read back and verified by size and SHA-256;
//   4. an empty disk of the right format and virtual size is created through the pool for each disk (in
//      incremental mode an overlay of the same backing file), unless an identical one is already there.
// A world that does not fit (no room, a disk outside any pool, a different file already at a path) skips the
// step with the reason; a failure half-way removes what this preparation created and is worth a retry.
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import { DroverError, StepSkipped, errorCode, errorMessage } from '../domain/errors.js';
import type { BlockCopyMode } from '../domain/policy.js';
import type {
  StoragePoolInfo,
  VmInfo,
  VolumeDigest,
  VolumeInfo,
  VolumeStorage,
} from '../hypervisor/hypervisor.js';
import { callWithTimeout } from './call-timeout.js';

const MiB = 1024 * 1024;

/** Preparing the destination failed (not because the world changed); `transient` failures are worth a retry. */
export class BlockDestinationError extends DroverError {
  readonly transient: boolean;
  constructor(message: string, transient: boolean, options?: { cause?: unknown }) {
    super(transient ? 'migration_start_failed' : 'block_destination_failed', message, options);
    this.name = 'BlockDestinationError';
    this.transient = transient;
  }
}

export interface BlockDestinationRequest {
  vm: VmInfo;
  from: string;
  to: string;
  mode: BlockCopyMode;
}

export interface BlockDestinationOptions {
  /** Each storage call (lookups, pool and volume creation) is given up after this long, at least 30 s (ms). */
  callTimeoutMs: number;
  /** Copying and verifying one backing file is given up after this long (ms); default 6 hours. */
  copyTimeoutMs?: number;
  logger?: Logger;
}

/** Storage calls list and re-read pools: slower than a domain lookup, so never given less than this. */
export const MIN_STORAGE_CALL_TIMEOUT_MS = 30_000;

export interface PreparedDisk {
  target: string;
  path: string;
  format: string;
  capacityBytes: number;
  /** `created` by this preparation, or already `present` (an earlier attempt made it). */
  state: 'created' | 'present';
}

export interface CopiedBackingFile {
  path: string;
  sizeBytes: number;
  sha256: string;
}

export interface BlockPreparation {
  mode: BlockCopyMode;
  disks: PreparedDisk[];
  /** Backing files copied to the destination and verified (incremental mode). */
  copiedBackingFiles: CopiedBackingFile[];
  /** Pools created on the destination for the instance's storage location. */
  createdPools: string[];
  /** Volumes this preparation created on the destination (what a roll-back removes). */
  createdVolumes: string[];
}

interface SourceDisk {
  target: string;
  volume: VolumeInfo;
  /** Backing chain, nearest first. */
  chain: VolumeInfo[];
}

const normalizeDir = (p: string): string => (p.length > 1 ? p.replace(/\/+$/, '') : p);
const mib = (bytes: number): string => `${Math.ceil(bytes / MiB)} MiB`;

/** A pool name for a directory: `drover-` and the path's words (`/srv/vm images` -> `drover-srv-vm-images`). */
export function poolNameFor(dir: string): string {
  const words = normalizeDir(dir)
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== '');
  return `drover-${words.join('-') || 'root'}`;
}

export class BlockDestination {
  private readonly log: Logger | undefined;
  private readonly callTimeoutMs: number;
  private readonly copyTimeoutMs: number;

  constructor(
    private readonly hv: VolumeStorage,
    options: BlockDestinationOptions,
  ) {
    this.log = options.logger?.child({ module: 'block-destination' });
    this.callTimeoutMs = Math.max(options.callTimeoutMs, MIN_STORAGE_CALL_TIMEOUT_MS);
    this.copyTimeoutMs = options.copyTimeoutMs ?? 6 * 3_600_000;
  }

  private call<T>(name: string, promise: Promise<T>, timeoutMs = this.callTimeoutMs): Promise<T> {
    return callWithTimeout(this.hv.clock, name, timeoutMs, promise);
  }

  /** Prepares the destination; throws StepSkipped when the world does not fit, BlockDestinationError on failure. */
  async prepare(request: BlockDestinationRequest): Promise<BlockPreparation> {
    const done: BlockPreparation = {
      mode: request.mode,
      disks: [],
      copiedBackingFiles: [],
      createdPools: [],
      createdVolumes: [],
    };
    try {
      await this.run(request, done);
      return done;
    } catch (err) {
      await this.rollback(request.to, done);
      if (err instanceof StepSkipped || err instanceof BlockDestinationError) throw err;
      const code = errorCode(err);
      // Hypervisor errors keep their code (host_unreachable, call_timeout, ... are retried by the worker).
      if (code !== undefined && code !== 'operation_failed' && code !== 'invalid_argument') throw err;
      throw new BlockDestinationError(
        `preparing ${request.to} for the block migration of ${request.vm.id} failed: ${errorMessage(err)}`,
        true,
        { cause: err },
      );
    }
  }

  /**
   * Removes the disks a preparation created, once the migration did not go and the VM runs on its source only.
   * Copied backing files stay: they were verified and the next attempt uses them. Never throws.
   */
  async releaseDisks(hostId: string, prepared: BlockPreparation): Promise<void> {
    for (const disk of prepared.disks) {
      if (disk.state !== 'created') continue;
      try {
        await this.call('deleteVolume', this.hv.deleteVolume(hostId, disk.path));
        this.log?.info(
          { host: hostId, path: disk.path },
          'removed a disk prepared for a migration that did not go',
        );
      } catch (err) {
        this.log?.warn(
          { host: hostId, path: disk.path, err: errorMessage(err) },
          'could not remove a prepared disk',
        );
      }
    }
  }

  /** Removes the volumes a preparation created (after it failed half-way). */
  async rollback(hostId: string, prepared: BlockPreparation): Promise<void> {
    // Overlays before the files they are overlays of.
    for (const path of [...prepared.createdVolumes].reverse()) {
      try {
        await this.call('deleteVolume', this.hv.deleteVolume(hostId, path));
      } catch (err) {
        this.log?.warn({ path, err: errorMessage(err) }, 'could not remove a volume the preparation created');
      }
    }
  }

  private async run(request: BlockDestinationRequest, done: BlockPreparation): Promise<void> {
    const { vm, from, to, mode } = request;
    const disks = await this.sourceDisks(vm, from);

    // 1. The storage location: a pool for every directory a disk (or a backing file to copy) goes to.
    const pools = await this.call('listStoragePools', this.hv.listStoragePools(to));
    const poolFor = new Map<string, StoragePoolInfo>();
    const needDir = async (dir: string): Promise<StoragePoolInfo> => {
      const d = normalizeDir(dir);
      const known = poolFor.get(d);
      if (known) return known;
      const found = pools.find((p) => p.targetPath !== null && normalizeDir(p.targetPath) === d);
      if (found && !found.active)
        throw new StepSkipped(`storage pool ${found.name} for ${d} on ${to} is not active`);
      const pool =
        found ??
        (await this.call(
          'createStoragePool',
          this.hv.createStoragePool(to, { name: poolNameFor(d), targetPath: d }),
        ));
      if (!found) {
        done.createdPools.push(pool.name);
        this.log?.info({ pool: pool.name, targetPath: d, host: to }, 'created the storage location');
      }
      poolFor.set(d, pool);
      return pool;
    };

    // 2. What exists on the destination already, and what has to be written there.
    const writes = new Map<string, number>(); // pool name -> bytes
    const addWrite = (pool: StoragePoolInfo, bytes: number) =>
      writes.set(pool.name, (writes.get(pool.name) ?? 0) + bytes);
    const toCopy = new Map<string, VolumeInfo>(); // backing path -> source volume
    const toCreate: { disk: SourceDisk; pool: StoragePoolInfo }[] = [];
    for (const disk of disks) {
      const pool = await needDir(dirname(disk.volume.path));
      const existing = await this.call('lookupVolume', this.hv.lookupVolume(to, disk.volume.path));
      if (existing) {
        this.checkExistingDisk(existing, disk, mode, to);
        done.disks.push(this.preparedDisk(disk, 'present'));
      } else {
        toCreate.push({ disk, pool });
        addWrite(pool, mode === 'full' ? disk.volume.capacityBytes : disk.volume.allocationBytes);
      }
      if (mode === 'incremental') {
        for (const backing of disk.chain) {
          if (toCopy.has(backing.path)) continue;
          const there = await this.call('lookupVolume', this.hv.lookupVolume(to, backing.path));
          if (there) {
            if (there.sizeBytes !== backing.sizeBytes)
              throw new StepSkipped(
                `${to} already has a different ${backing.path} (${there.sizeBytes} bytes, ${from} has ${backing.sizeBytes})`,
              );
            continue;
          }
          const backingPool = await needDir(dirname(backing.path));
          toCopy.set(backing.path, backing);
          addWrite(backingPool, backing.sizeBytes);
        }
      }
    }

    // 3. Room, before anything is copied or created.
    for (const [name, bytes] of writes) {
      const pool = [...poolFor.values()].find((p) => p.name === name);
      if (pool && bytes > pool.availableBytes)
        throw new StepSkipped(
          `storage pool ${name} on ${to} has ${mib(pool.availableBytes)} available; the ${mode} block migration of ${vm.name} writes ${mib(bytes)} there`,
        );
    }

    // 4. Backing files first (deepest first: an overlay's backing file must exist before it does).
    const order = [...toCopy.values()].reverse();
    for (const backing of order) {
      const pool = poolFor.get(normalizeDir(dirname(backing.path)));
      if (!pool) throw new BlockDestinationError(`no pool chosen for ${backing.path}`, false);
      done.copiedBackingFiles.push(await this.copyVerified(from, to, backing, pool, done));
    }

    // 5. The disks themselves: empty, of the right format and virtual size.
    for (const { disk, pool } of toCreate) {
      const format = disk.volume.format ?? 'raw';
      const top = disk.chain[0];
      const created = await this.call(
        'createVolume',
        this.hv.createVolume(to, {
          pool: pool.name,
          name: basename(disk.volume.path),
          format,
          capacityBytes: disk.volume.capacityBytes,
          ...(mode === 'incremental' && top ? { backing: { path: top.path, format: top.format } } : {}),
        }),
      );
      done.createdVolumes.push(created.path);
      if (created.path !== disk.volume.path)
        throw new BlockDestinationError(
          `pool ${pool.name} on ${to} created ${created.path}, not ${disk.volume.path}`,
          false,
        );
      if (created.capacityBytes !== disk.volume.capacityBytes || (created.format ?? 'raw') !== format)
        throw new BlockDestinationError(
          `${to} created ${created.path} as ${created.format ?? '?'} of ${created.capacityBytes} bytes, not ${format} of ${disk.volume.capacityBytes}`,
          false,
        );
      done.disks.push(this.preparedDisk(disk, 'created'));
    }
    this.log?.info(
      {
        host: to,
        mode,
        disks: done.disks.map((d) => `${d.target}:${d.state}`),
        copied: done.copiedBackingFiles.map((c) => c.path),
      },
      'block migration destination prepared',
    );
  }

  private preparedDisk(disk: SourceDisk, state: PreparedDisk['state']): PreparedDisk {
    return {
      target: disk.target,
      path: disk.volume.path,
      format: disk.volume.format ?? 'raw',
      capacityBytes: disk.volume.capacityBytes,
      state,
    };
  }

  /** A disk already at the path on the destination is used only if it is what this migration would create. */
  private checkExistingDisk(existing: VolumeInfo, disk: SourceDisk, mode: BlockCopyMode, to: string): void {
    const wantBacking = mode === 'incremental' ? (disk.chain[0]?.path ?? null) : null;
    if (
      existing.capacityBytes !== disk.volume.capacityBytes ||
      (existing.format ?? 'raw') !== (disk.volume.format ?? 'raw') ||
      (existing.backing?.path ?? null) !== wantBacking
    ) {
      throw new StepSkipped(
        `${to} already has ${existing.path} (${existing.format ?? '?'}, ${existing.capacityBytes} bytes` +
          `${existing.backing ? `, over ${existing.backing.path}` : ''}), not the disk ${disk.target} this migration needs`,
      );
    }
  }

  /** The VM's local disks on the source as volumes, with their backing chains. */
  private async sourceDisks(vm: VmInfo, from: string): Promise<SourceDisk[]> {
    const out: SourceDisk[] = [];
    for (const d of vm.disks) {
      if (d.shared) continue;
      if (d.source === null || !d.source.startsWith('/'))
        throw new StepSkipped(`disk ${d.target} of ${vm.name} has no file on ${from}; it cannot be prepared`);
      const volume = await this.call('lookupVolume', this.hv.lookupVolume(from, d.source));
      if (!volume)
        throw new StepSkipped(
          `disk ${d.target} (${d.source}) of ${vm.name} is in no storage pool on ${from}`,
        );
      const chain: VolumeInfo[] = [];
      let next = volume.backing;
      while (next) {
        if (chain.length > 16 || chain.some((c) => c.path === next?.path) || next.path === volume.path)
          throw new StepSkipped(`the backing chain of ${d.source} on ${from} loops or is too deep`);
        const b = await this.call('lookupVolume', this.hv.lookupVolume(from, next.path));
        if (!b)
          throw new StepSkipped(
            `backing file ${next.path} of disk ${d.target} is in no storage pool on ${from}; it cannot be copied`,
          );
        chain.push(b);
        next = b.backing;
      }
      out.push({ target: d.target, volume, chain });
    }
    return out;
  }

  /** Copies one backing file and checks the destination holds the same bytes. */
  private async copyVerified(
    from: string,
    to: string,
    backing: VolumeInfo,
    pool: StoragePoolInfo,
    done: BlockPreparation,
  ): Promise<CopiedBackingFile> {
    const started = this.hv.clock.now();
    let sent: VolumeDigest;
    try {
      sent = await this.call(
        'copyVolume',
        this.hv.copyVolume({ from, to, path: backing.path, pool: pool.name }),
        this.copyTimeoutMs,
      );
    } catch (err) {
      // A copy that failed half-way may have left its volume (the hypervisor removes it when it can).
      const left = await this.hv.lookupVolume(to, backing.path).catch(() => null);
      if (left) done.createdVolumes.push(backing.path);
      throw err;
    }
    done.createdVolumes.push(backing.path);
    const landed = await this.call(
      'volumeDigest',
      this.hv.volumeDigest(to, backing.path),
      this.copyTimeoutMs,
    );
    if (
      sent.sizeBytes !== backing.sizeBytes ||
      landed.sizeBytes !== sent.sizeBytes ||
      landed.sha256 !== sent.sha256
    )
      throw new BlockDestinationError(
        `copy of ${backing.path} to ${to} does not verify: sent ${sent.sizeBytes} bytes sha256 ${sent.sha256} ` +
          `(${from} lists ${backing.sizeBytes} bytes), ${to} holds ${landed.sizeBytes} bytes sha256 ${landed.sha256}`,
        true,
      );
    this.log?.info(
      {
        path: backing.path,
        sizeBytes: sent.sizeBytes,
        sha256: sent.sha256,
        ms: this.hv.clock.now() - started,
      },
      'backing file copied and verified',
    );
    return { path: backing.path, sizeBytes: sent.sizeBytes, sha256: sent.sha256 };
  }
}
