// Storage through libvirt's storage pools: list pools, create a directory pool, look volumes up, create and
// delete them, and copy a volume's bytes between hosts over storage-volume streams (download on the source,
// upload on the destination, piped chunk by chunk and hashed on the way).
import { createHash } from 'node:crypto';
import { basename, dirname } from 'node:path';
import { isNoStorageVol } from '../../libvirt/errors.js';
import type { LibvirtClient } from '../../libvirt/libvirt-client.js';
import { StoragePoolState, type StoragePoolRef, type StorageVolRef } from '../../libvirt/remote-protocol.js';
import type { RpcStream } from '../../libvirt/rpc-stream.js';
import {
  HYPERVISOR_ERROR_CODES,
  HypervisorError,
  type CopyVolumeRequest,
  type StoragePoolInfo,
  type VolumeDigest,
  type VolumeInfo,
  type VolumeSpec,
} from '../hypervisor.js';
import { dirPoolXml, parsePoolXml, parseVolumeXml, volumeXml } from './storage-xml.js';

export interface LibvirtStorageDeps {
  /** The shared connection of a host. */
  client(hostId: string): Promise<LibvirtClient>;
  /** A connection of its own for one transfer (a paused download must not hold up other calls). */
  transferClient(hostId: string): Promise<LibvirtClient>;
  /** How long a stream may stay silent (ms). */
  streamIdleTimeoutMs: number;
}

/** Trailing slashes off, so `/a/b/` and `/a/b` compare equal. */
const normalizeDir = (p: string): string => (p.length > 1 ? p.replace(/\/+$/, '') : p);

export class LibvirtStorage {
  constructor(private readonly deps: LibvirtStorageDeps) {}

  async listPools(hostId: string): Promise<StoragePoolInfo[]> {
    const client = await this.deps.client(hostId);
    const pools = await client.listAllStoragePools();
    return Promise.all(pools.map((p) => this.poolInfo(client, p)));
  }

  private async poolInfo(client: LibvirtClient, pool: StoragePoolRef): Promise<StoragePoolInfo> {
    const [xml, info] = await Promise.all([client.storagePoolXml(pool), client.storagePoolInfo(pool)]);
    const facts = parsePoolXml(xml);
    return {
      name: pool.name,
      type: facts.type,
      targetPath: facts.targetPath,
      active: info.state === StoragePoolState.RUNNING || info.state === StoragePoolState.DEGRADED,
      capacityBytes: Number(info.capacityBytes),
      allocationBytes: Number(info.allocationBytes),
      availableBytes: Number(info.availableBytes),
    };
  }

  async createPool(hostId: string, spec: { name: string; targetPath: string }): Promise<StoragePoolInfo> {
    const client = await this.deps.client(hostId);
    const pool = await client.storagePoolDefineXml(dirPoolXml(spec.name, spec.targetPath));
    try {
      await client.storagePoolBuild(pool);
      await client.storagePoolCreate(pool);
      await client.storagePoolSetAutostart(pool, true);
    } catch (err) {
      // leave nothing half-made behind: a defined pool that cannot start would shadow the next attempt
      await client.storagePoolDestroy(pool).catch(() => undefined);
      await client.storagePoolUndefine(pool).catch(() => undefined);
      throw err;
    }
    return this.poolInfo(client, pool);
  }

  /** Active pools whose target is the directory of `path`. */
  private async poolsFor(client: LibvirtClient, path: string): Promise<StoragePoolRef[]> {
    const dir = normalizeDir(dirname(path));
    const pools = await client.listAllStoragePools();
    const out: StoragePoolRef[] = [];
    for (const p of pools) {
      const info = await this.poolInfo(client, p);
      if (info.active && info.targetPath !== null && normalizeDir(info.targetPath) === dir) out.push(p);
    }
    return out;
  }

  async lookupVolume(hostId: string, path: string): Promise<VolumeInfo | null> {
    const client = await this.deps.client(hostId);
    // Re-read the pools that hold this directory: a file made behind libvirt's back, or a size that changed.
    for (const p of await this.poolsFor(client, path)) await client.storagePoolRefresh(p);
    let vol: StorageVolRef;
    try {
      vol = await client.lookupStorageVolByPath(path);
    } catch (err) {
      if (isNoStorageVol(err)) return null;
      throw err;
    }
    return this.volumeInfo(client, vol, path);
  }

  private async volumeInfo(client: LibvirtClient, vol: StorageVolRef, path: string): Promise<VolumeInfo> {
    const [xml, info] = await Promise.all([client.storageVolXml(vol), client.storageVolInfo(vol)]);
    const facts = parseVolumeXml(xml);
    const allocationBytes = Number(info.allocationBytes);
    return {
      path: facts.path ?? path,
      pool: vol.pool,
      name: vol.name,
      format: facts.format,
      capacityBytes: Number(info.capacityBytes),
      allocationBytes,
      sizeBytes: facts.physicalBytes ?? allocationBytes,
      backing: facts.backing,
    };
  }

  async createVolume(hostId: string, spec: VolumeSpec): Promise<VolumeInfo> {
    const client = await this.deps.client(hostId);
    const pool = await client.lookupStoragePoolByName(spec.pool);
    const vol = await client.storageVolCreateXml(pool, volumeXml(spec));
    return this.volumeInfo(client, vol, await client.storageVolPath(vol));
  }

  async deleteVolume(hostId: string, path: string): Promise<void> {
    const client = await this.deps.client(hostId);
    const vol = await client.lookupStorageVolByPath(path);
    await client.storageVolDelete(vol);
  }

  async digest(hostId: string, path: string): Promise<VolumeDigest> {
    const client = await this.deps.transferClient(hostId);
    try {
      const vol = await client.lookupStorageVolByPath(path);
      const down = await client.storageVolDownload(vol, { idleTimeoutMs: this.deps.streamIdleTimeoutMs });
      const hash = createHash('sha256');
      let sizeBytes = 0;
      try {
        for await (const chunk of down) {
          hash.update(chunk);
          sizeBytes += chunk.length;
        }
        await down.finish();
      } catch (err) {
        await down.abort();
        throw err;
      }
      return { sizeBytes, sha256: hash.digest('hex') };
    } finally {
      await client.close();
    }
  }

  async copy(request: CopyVolumeRequest): Promise<VolumeDigest> {
    if (request.from === request.to)
      throw new HypervisorError(
        HYPERVISOR_ERROR_CODES.invalidArgument,
        `copyVolume: source and destination are both ${request.from}`,
      );
    const src = await this.deps.transferClient(request.from);
    let dst: LibvirtClient | null = null;
    try {
      dst = await this.deps.transferClient(request.to);
      const srcVol = await src.lookupStorageVolByPath(request.path);
      const srcFacts = parseVolumeXml(await src.storageVolXml(srcVol));
      const srcInfo = await src.storageVolInfo(srcVol);
      const fileBytes = srcFacts.physicalBytes ?? Number(srcInfo.allocationBytes);
      const pool = await dst.lookupStoragePoolByName(request.pool);
      // A raw volume as long as the file: the bytes go in as they are (a qcow2 file stays a qcow2 file).
      const dstVol = await dst.storageVolCreateXml(
        pool,
        volumeXml({ name: basename(request.path), format: 'raw', capacityBytes: fileBytes }),
      );
      try {
        const dstPath = await dst.storageVolPath(dstVol);
        if (dstPath !== request.path)
          throw new HypervisorError(
            HYPERVISOR_ERROR_CODES.invalidArgument,
            `copyVolume: pool ${request.pool} on ${request.to} puts the volume at ${dstPath}, not ${request.path}`,
          );
        const digest = await this.pipe(src, srcVol, dst, dstVol);
        // libvirt re-probes the file: its format and allocation as they now are
        await dst.storagePoolRefresh(pool);
        return digest;
      } catch (err) {
        await dst.storageVolDelete(dstVol).catch(() => undefined);
        throw err;
      }
    } finally {
      await Promise.all([src.close(), dst?.close()]);
    }
  }

  private async pipe(
    src: LibvirtClient,
    srcVol: StorageVolRef,
    dst: LibvirtClient,
    dstVol: StorageVolRef,
  ): Promise<VolumeDigest> {
    const idleTimeoutMs = this.deps.streamIdleTimeoutMs;
    const down = await src.storageVolDownload(srcVol, { idleTimeoutMs });
    let up: RpcStream | null = null;
    const hash = createHash('sha256');
    let sizeBytes = 0;
    try {
      up = await dst.storageVolUpload(dstVol, { idleTimeoutMs });
      for await (const chunk of down) {
        hash.update(chunk);
        sizeBytes += chunk.length;
        await up.write(chunk);
      }
      await down.finish();
      await up.finish();
    } catch (err) {
      await Promise.all([down.abort(), up?.abort()]);
      throw err;
    }
    return { sizeBytes, sha256: hash.digest('hex') };
  }
}
