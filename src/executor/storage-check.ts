// Storage checked, not assumed. A host's `sharedStoragePaths` says which disks live on storage every host
// sees; a wrong entry would send a live migration off with disks the destination cannot open (or a block
// migration copying a disk onto itself). Before anything moves, this check proves it on both ends, as
// OpenStack Nova does before a live migration: a small marker volume is written through the source's storage
// pool in each disk directory, and looked for through the destination's pool of the same directory.
//   - live migration: every file-backed disk that the migration does not copy must be seen by both hosts;
//   - block migration (the inverse): a disk about to be copied must not be on storage the destination sees.
// Disks that are not files in a directory (network disks, block devices under /dev) cannot be proven this
// way and keep what the configuration says. A pool is created for a directory on a host that has none
// (named as the block migration's destination preparation names it, so both use the same one).
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { DroverError, errorMessage } from '../domain/errors.js';
import type { MigrationKind } from '../domain/plan.js';
import type { StoragePoolInfo, VmInfo, VolumeStorage } from '../hypervisor/hypervisor.js';
import { MIN_STORAGE_CALL_TIMEOUT_MS, poolNameFor } from './block-destination.js';
import { callWithTimeout } from './call-timeout.js';

/** The storage is not what the migration needs (`storage_not_shared` or `storage_shared`); never retried. */
export class StorageCheckError extends DroverError {
  readonly directory: string;
  constructor(code: 'storage_not_shared' | 'storage_shared', directory: string, message: string) {
    super(code, message);
    this.name = 'StorageCheckError';
    this.directory = directory;
  }
}

export interface StorageCheckOptions {
  /** Each storage call is given up after this long, at least 30 s (ms). */
  callTimeoutMs: number;
  logger?: Logger;
}

export interface StorageCheckRequest {
  vm: VmInfo;
  from: string;
  to: string;
  kind: MigrationKind;
}

/** What the check proved, per disk directory. */
export interface StorageProof {
  /** Directories both hosts see (the marker written on the source was found on the destination). */
  shared: string[];
  /** Directories the destination does not see (the marker was not found there). */
  local: string[];
}

const normalizeDir = (p: string): string => (p.length > 1 ? p.replace(/\/+$/, '') : p);

/** A disk source a marker file can prove: an absolute path of a file outside /dev. */
export function isFileSource(source: string | null): source is string {
  return source !== null && source.startsWith('/') && !source.startsWith('/dev/');
}

export class StorageCheck {
  private readonly log: Logger | undefined;
  private readonly callTimeoutMs: number;

  constructor(
    private readonly hv: VolumeStorage,
    options: StorageCheckOptions,
  ) {
    this.log = options.logger?.child({ module: 'storage-check' });
    this.callTimeoutMs = Math.max(options.callTimeoutMs, MIN_STORAGE_CALL_TIMEOUT_MS);
  }

  private call<T>(name: string, promise: Promise<T>): Promise<T> {
    return callWithTimeout(this.hv.clock, name, this.callTimeoutMs, promise);
  }

  /**
   * Proves the storage fits the migration; throws StorageCheckError (naming the disk, the directory and both
   * hosts) when it does not. Offline moves copy no disk and are not checked.
   */
  async verify(request: StorageCheckRequest): Promise<StorageProof> {
    const { vm, from, to, kind } = request;
    const proof: StorageProof = { shared: [], local: [] };
    if (kind === 'offline') return proof;
    // live: the disks said to be shared must be; block: the disks about to be copied must not be.
    const disks = vm.disks.filter((d) => isFileSource(d.source) && d.shared === (kind === 'live'));
    const dirs = new Map<string, string[]>();
    for (const d of disks) {
      const dir = normalizeDir(dirname(d.source ?? '/'));
      dirs.set(dir, [...(dirs.get(dir) ?? []), `${d.target} (${d.source})`]);
    }
    for (const [dir, names] of dirs) {
      const seen = await this.seenOnBoth(dir, from, to);
      (seen ? proof.shared : proof.local).push(dir);
      if (kind === 'live' && !seen)
        throw new StorageCheckError(
          'storage_not_shared',
          dir,
          `${vm.name}: disk ${names.join(', ')} is configured as shared storage (sharedStoragePaths) but ${dir} ` +
            `is not shared between ${from} and ${to}: a file written there on ${from} is not seen on ${to}; ` +
            `correct sharedStoragePaths of ${from} or move the VM with a block migration`,
        );
      if (kind === 'block' && seen)
        throw new StorageCheckError(
          'storage_shared',
          dir,
          `${vm.name}: disk ${names.join(', ')} is on storage ${from} and ${to} share (a file written in ${dir} ` +
            `on ${from} is seen on ${to}); a block migration would copy it onto itself: add ${dir} to ` +
            `sharedStoragePaths of both hosts and migrate live`,
        );
    }
    if (dirs.size > 0) this.log?.info({ vm: vm.id, from, to, kind, ...proof }, 'storage checked');
    return proof;
  }

  /** Writes a marker volume in `dir` on `from` and looks for it on `to`; the marker is removed again. */
  async seenOnBoth(dir: string, from: string, to: string): Promise<boolean> {
    const fromPool = await this.poolFor(from, dir);
    await this.poolFor(to, dir);
    const name = `drover-storage-check-${randomBytes(6).toString('hex')}.raw`;
    const marker = await this.call(
      'createVolume',
      this.hv.createVolume(from, { pool: fromPool.name, name, format: 'raw', capacityBytes: 4096 }),
    );
    try {
      return (await this.call('lookupVolume', this.hv.lookupVolume(to, marker.path))) !== null;
    } finally {
      await this.call('deleteVolume', this.hv.deleteVolume(from, marker.path)).catch((err: unknown) => {
        this.log?.warn(
          { host: from, path: marker.path, err: errorMessage(err) },
          'could not remove a marker',
        );
      });
      // Re-read on the destination so its pool forgets the marker too (a shared directory).
      await this.call('lookupVolume', this.hv.lookupVolume(to, marker.path)).catch(() => null);
    }
  }

  /** The host's active pool whose target is `dir`, created when there is none. */
  private async poolFor(hostId: string, dir: string): Promise<StoragePoolInfo> {
    const find = async () =>
      (await this.call('listStoragePools', this.hv.listStoragePools(hostId))).find(
        (p) => p.active && p.targetPath !== null && normalizeDir(p.targetPath) === dir,
      );
    const found = await find();
    if (found) return found;
    try {
      const made = await this.call(
        'createStoragePool',
        this.hv.createStoragePool(hostId, { name: poolNameFor(dir), targetPath: dir }),
      );
      this.log?.info({ host: hostId, pool: made.name, targetPath: dir }, 'created a storage pool to check');
      return made;
    } catch (err) {
      // Another check made it meanwhile.
      const again = await find();
      if (again) return again;
      throw err;
    }
  }
}
