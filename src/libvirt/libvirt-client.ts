// LibvirtClient: one authenticated, opened connection to a libvirt daemon, with a typed method per
// procedure and typed domain events. Build it with `LibvirtClient.connect(uri, options)`.
import { LibvirtAuthError, LibvirtProtocolError, isNoSupport } from './errors.js';
import {
  AuthType,
  CpuCompareResult,
  DomainEventId,
  DriverFeature,
  JobStatsFlags,
  Procedure,
  readDomain,
  readNodeInfo,
  readNodeStats,
  readStoragePool,
  readStoragePoolInfo,
  readStorageVol,
  readTypedParams,
  REMOTE_AUTH_TYPE_LIST_MAX,
  REMOTE_DOMAIN_LIST_MAX,
  REMOTE_MIGRATE_COOKIE_MAX,
  REMOTE_STORAGE_POOL_LIST_MAX,
  REMOTE_STRING_MAX,
  writeDomain,
  writeStoragePool,
  writeStorageVol,
  writeTypedParams,
  type DomainRef,
  type NodeInfo,
  type StoragePoolInfo,
  type StoragePoolRef,
  type StorageVolRef,
  type TypedParam,
} from './remote-protocol.js';
import { RpcConnection, type RpcConnectionOptions } from './rpc-connection.js';
import type { RpcStream, RpcStreamOptions } from './rpc-stream.js';
import { openTransport, type TransportOptions } from './transport.js';
import { TypedEmitter } from './typed-emitter.js';
import { parseLibvirtUri, type LibvirtUri } from './uri.js';
import { XdrReader, XdrWriter } from './xdr.js';

export type ParamValue = number | bigint | boolean | string;
/** Typed parameters by name; a name that repeats (e.g. migrate_disks) keeps its last value here. */
export type ParamRecord = Record<string, ParamValue>;

export interface ConnectOptions extends TransportOptions, RpcConnectionOptions {
  /** Keepalive PING interval (ms), 0 = none. Default 5000. */
  keepaliveIntervalMs?: number;
}

export interface DomainStatsRecord {
  domain: DomainRef;
  params: ParamRecord;
}

export interface JobStatsReply {
  /** virDomainJobType */
  type: number;
  params: ParamRecord;
}

export interface StorageVolInfo {
  /** virStorageVolType */
  type: number;
  capacityBytes: bigint;
  allocationBytes: bigint;
}

export interface LifecycleEventPayload {
  callbackId: number;
  domain: DomainRef;
  /** virDomainEventType */
  event: number;
  detail: number;
}

export interface MigrationIterationPayload {
  callbackId: number;
  domain: DomainRef;
  iteration: number;
}

export interface JobCompletedPayload {
  callbackId: number;
  domain: DomainRef;
  params: ParamRecord;
}

export interface LibvirtClientEvents extends Record<string, unknown> {
  lifecycle: LifecycleEventPayload;
  'migration-iteration': MigrationIterationPayload;
  'job-completed': JobCompletedPayload;
  /** Server-pushed messages this client does not decode. */
  'unknown-message': { procedure: number };
  /** The connection ended; `error` is null after close(). */
  close: { error: Error | null };
}

export interface CompareCpuRequest {
  emulator?: string | null;
  arch?: string | null;
  machine?: string | null;
  virttype?: string | null;
  xmlCpu: string;
  flags?: number;
}

/** Turns a typed-parameter list into a record (numbers stay numbers, 64-bit values stay bigint). */
export function paramRecord(params: readonly TypedParam[]): ParamRecord {
  const out: ParamRecord = {};
  for (const p of params) out[p.field] = p.value;
  return out;
}

/** A parameter as a JS number (bigint converted; undefined when absent or not numeric). */
export function numberParam(params: ParamRecord, key: string): number | undefined {
  const v = params[key];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  return undefined;
}

/** `0b1c...` (36 chars, with dashes) from the 16 raw bytes. */
export function uuidToString(uuid: Buffer): string {
  const hex = uuid.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function uuidFromString(text: string): Buffer {
  const hex = text.replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new RangeError(`not a UUID: ${JSON.stringify(text)}`);
  return Buffer.from(hex, 'hex');
}

const domainArgs = (d: DomainRef) => {
  const w = new XdrWriter();
  writeDomain(w, d);
  return w;
};

const poolArgs = (p: StoragePoolRef) => {
  const w = new XdrWriter();
  writeStoragePool(w, p);
  return w;
};

const volArgs = (v: StorageVolRef) => {
  const w = new XdrWriter();
  writeStorageVol(w, v);
  return w;
};

export class LibvirtClient {
  readonly events = new TypedEmitter<LibvirtClientEvents>();
  private closing = false;

  private constructor(
    readonly uri: LibvirtUri,
    private readonly rpc: RpcConnection,
  ) {
    rpc.events.on('message', ({ procedure, body }) => this.onMessage(procedure, body));
    rpc.events.on('close', ({ error }) => this.events.emit('close', { error: this.closing ? null : error }));
  }

  /** Connects, authenticates (none or polkit) and opens the URI's driver on the daemon. */
  static async connect(uri: string | LibvirtUri, options: ConnectOptions = {}): Promise<LibvirtClient> {
    const parsed = typeof uri === 'string' ? parseLibvirtUri(uri) : uri;
    const stream = await openTransport(parsed, options);
    const rpc = new RpcConnection(stream, options);
    const client = new LibvirtClient(parsed, rpc);
    try {
      const keepalive = await client.supportsFeature(DriverFeature.PROGRAM_KEEPALIVE);
      if (keepalive && (options.keepaliveIntervalMs ?? 5_000) > 0)
        rpc.startKeepalive(options.keepaliveIntervalMs ?? 5_000);
      await client.authenticate();
      await client.open(parsed.remoteName);
    } catch (err) {
      rpc.destroy();
      throw err;
    }
    return client;
  }

  get closed(): boolean {
    return this.rpc.closed;
  }

  /** Raw call for procedures this client has no method for. */
  call(procedure: number, args?: XdrWriter, options?: { timeoutMs?: number }): Promise<XdrReader> {
    return this.rpc.call(procedure, args, options);
  }

  private async voidCall(procedure: number, args?: XdrWriter, timeoutMs?: number): Promise<void> {
    await this.rpc.call(procedure, args, timeoutMs === undefined ? {} : { timeoutMs });
  }

  // ----------------------------------------------------------------------------------------- connection

  async supportsFeature(feature: number): Promise<boolean> {
    const r = await this.rpc.call(Procedure.CONNECT_SUPPORTS_FEATURE, new XdrWriter().int(feature));
    return r.int() !== 0;
  }

  async authList(): Promise<number[]> {
    const r = await this.rpc.call(Procedure.AUTH_LIST);
    return r.array((x) => x.int(), REMOTE_AUTH_TYPE_LIST_MAX);
  }

  private async authenticate(): Promise<void> {
    const types = await this.authList();
    if (types.length === 0 || types.includes(AuthType.NONE)) return;
    if (types.includes(AuthType.POLKIT)) {
      const r = await this.rpc.call(Procedure.AUTH_POLKIT);
      if (r.int() === 0)
        throw new LibvirtAuthError(`${this.uri.raw}: polkit did not authorise this connection`);
      return;
    }
    if (types.includes(AuthType.SASL))
      throw new LibvirtAuthError(
        `${this.uri.raw}: the daemon requires SASL authentication, which this client does not support; ` +
          'allow auth "none" (with TLS client certificates, auth_tls = "none") or "polkit" for this socket',
      );
    throw new LibvirtAuthError(
      `${this.uri.raw}: the daemon offers only unknown auth types ${types.join(', ')}`,
    );
  }

  async open(name: string | null, flags = 0): Promise<void> {
    await this.voidCall(
      Procedure.CONNECT_OPEN,
      new XdrWriter().optional(name, (w, v) => w.string(v)).uint(flags),
    );
  }

  /** Sends CONNECT_CLOSE (bounded by timeoutMs) and closes the stream. Never throws. */
  async close(timeoutMs = 2_000): Promise<void> {
    if (this.rpc.closed) return;
    this.closing = true;
    try {
      await this.rpc.call(Procedure.CONNECT_CLOSE, undefined, { timeoutMs });
    } catch {
      // the connection is being dropped either way; a failed goodbye changes nothing
    }
    this.rpc.close();
  }

  /** Drops the connection at once (pending calls fail with a connection error). */
  destroy(): void {
    this.closing = true;
    this.rpc.destroy();
  }

  async libVersion(): Promise<bigint> {
    return (await this.rpc.call(Procedure.CONNECT_GET_LIB_VERSION)).uhyper();
  }

  async hostname(): Promise<string> {
    return (await this.rpc.call(Procedure.CONNECT_GET_HOSTNAME)).string(REMOTE_STRING_MAX);
  }

  async capabilities(): Promise<string> {
    return (await this.rpc.call(Procedure.CONNECT_GET_CAPABILITIES)).string(REMOTE_STRING_MAX);
  }

  async nodeInfo(): Promise<NodeInfo> {
    return readNodeInfo(await this.rpc.call(Procedure.NODE_GET_INFO));
  }

  /** Node CPU time counters (ns): kernel, user, idle, iowait, ... for `cpuNum` (-1 = all CPUs). */
  async nodeCpuStats(cpuNum = -1): Promise<Map<string, bigint>> {
    const count = await this.rpc.call(
      Procedure.NODE_GET_CPU_STATS,
      new XdrWriter().int(cpuNum).int(0).uint(0),
    );
    readNodeStats(count);
    const nparams = count.int();
    const r = await this.rpc.call(
      Procedure.NODE_GET_CPU_STATS,
      new XdrWriter().int(cpuNum).int(nparams).uint(0),
    );
    return readNodeStats(r);
  }

  /** Node memory figures (KiB): total, free, buffers, cached for `cell` (-1 = whole node). */
  async nodeMemoryStats(cell = -1): Promise<Map<string, bigint>> {
    const count = await this.rpc.call(
      Procedure.NODE_GET_MEMORY_STATS,
      new XdrWriter().int(0).int(cell).uint(0),
    );
    readNodeStats(count);
    const nparams = count.int();
    const r = await this.rpc.call(
      Procedure.NODE_GET_MEMORY_STATS,
      new XdrWriter().int(nparams).int(cell).uint(0),
    );
    return readNodeStats(r);
  }

  /** virConnectCompareHypervisorCPU: can this host's hypervisor run the given <cpu> definition? */
  async compareHypervisorCpu(req: CompareCpuRequest): Promise<number> {
    const w = new XdrWriter();
    const optString = (v: string | null | undefined) => w.optional(v, (x, s) => x.string(s));
    optString(req.emulator);
    optString(req.arch);
    optString(req.machine);
    optString(req.virttype);
    w.string(req.xmlCpu).uint(req.flags ?? 0);
    const result = (await this.rpc.call(Procedure.CONNECT_COMPARE_HYPERVISOR_CPU, w)).int();
    if (result < CpuCompareResult.ERROR || result > CpuCompareResult.SUPERSET)
      throw new LibvirtProtocolError(`CONNECT_COMPARE_HYPERVISOR_CPU: unknown result ${result}`);
    return result;
  }

  // ----------------------------------------------------------------------------------------- domains

  /** virConnectListAllDomains; `flags` from ListDomainsFlags (0 = every domain). */
  async listAllDomains(flags = 0): Promise<DomainRef[]> {
    const r = await this.rpc.call(Procedure.CONNECT_LIST_ALL_DOMAINS, new XdrWriter().int(1).uint(flags));
    const domains = r.array((x) => readDomain(x), REMOTE_DOMAIN_LIST_MAX, 28);
    r.uint();
    return domains;
  }

  async lookupDomainByName(name: string): Promise<DomainRef> {
    return readDomain(await this.rpc.call(Procedure.DOMAIN_LOOKUP_BY_NAME, new XdrWriter().string(name)));
  }

  /** Accepts the UUID as text or as its 16 bytes. */
  async lookupDomainByUuid(uuid: string | Buffer): Promise<DomainRef> {
    const bytes = typeof uuid === 'string' ? uuidFromString(uuid) : uuid;
    return readDomain(
      await this.rpc.call(Procedure.DOMAIN_LOOKUP_BY_UUID, new XdrWriter().fixedOpaque(bytes)),
    );
  }

  async domainXml(d: DomainRef, flags = 0): Promise<string> {
    const w = domainArgs(d).uint(flags);
    return (await this.rpc.call(Procedure.DOMAIN_GET_XML_DESC, w)).string(REMOTE_STRING_MAX);
  }

  /** virDomainGetState: [virDomainState, reason]. */
  async domainState(d: DomainRef): Promise<{ state: number; reason: number }> {
    const r = await this.rpc.call(Procedure.DOMAIN_GET_STATE, domainArgs(d).uint(0));
    return { state: r.int(), reason: r.int() };
  }

  async defineXml(xml: string): Promise<DomainRef> {
    return readDomain(await this.rpc.call(Procedure.DOMAIN_DEFINE_XML, new XdrWriter().string(xml)));
  }

  async undefine(d: DomainRef, flags = 0): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_UNDEFINE_FLAGS, domainArgs(d).uint(flags));
  }

  /** Starts a defined domain. */
  async create(d: DomainRef): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_CREATE, domainArgs(d));
  }

  async suspend(d: DomainRef): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_SUSPEND, domainArgs(d));
  }

  async resume(d: DomainRef): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_RESUME, domainArgs(d));
  }

  async destroyDomain(d: DomainRef): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_DESTROY, domainArgs(d));
  }

  /**
   * virConnectGetAllDomainStats for `domains` (empty = all of them, filtered by `flags`, an OR of
   * GetAllDomainStatsFlags); `stats` is an OR of DomainStatsTypes.
   */
  async allDomainStats(
    stats: number,
    flags = 0,
    domains: readonly DomainRef[] = [],
  ): Promise<DomainStatsRecord[]> {
    const w = new XdrWriter().array(domains, writeDomain).uint(stats).uint(flags);
    const r = await this.rpc.call(Procedure.CONNECT_GET_ALL_DOMAIN_STATS, w);
    return r.array(
      (x) => ({ domain: readDomain(x), params: paramRecord(readTypedParams(x)) }),
      REMOTE_DOMAIN_LIST_MAX,
      32,
    );
  }

  /** virDomainStartDirtyRateCalc (page-sampling); the result appears in the DIRTYRATE stats group. */
  async startDirtyRateCalc(
    d: DomainRef,
    seconds: number,
    flags = 0,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    await this.voidCall(
      Procedure.DOMAIN_START_DIRTY_RATE_CALC,
      domainArgs(d).int(seconds).uint(flags),
      options.timeoutMs,
    );
  }

  /** virDomainGetJobStats; `completed` asks for the last finished job's stats. */
  async jobStats(
    d: DomainRef,
    options: { completed?: boolean; keepCompleted?: boolean; timeoutMs?: number } = {},
  ): Promise<JobStatsReply> {
    const flags =
      (options.completed ? JobStatsFlags.COMPLETED : 0) |
      (options.keepCompleted ? JobStatsFlags.KEEP_COMPLETED : 0);
    const r = await this.rpc.call(
      Procedure.DOMAIN_GET_JOB_STATS,
      domainArgs(d).uint(flags),
      options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs },
    );
    const type = r.int();
    return { type, params: paramRecord(readTypedParams(r)) };
  }

  async abortJob(d: DomainRef, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_ABORT_JOB, domainArgs(d), options.timeoutMs);
  }

  /** virDomainAbortJobFlags: with AbortJobFlags.POSTCOPY, pauses an outgoing post-copy migration (source only). */
  async abortJobFlags(d: DomainRef, flags: number, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_ABORT_JOB_FLAGS, domainArgs(d).uint(flags), options.timeoutMs);
  }

  async migrateSetMaxDowntime(
    d: DomainRef,
    downtimeMs: number,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    await this.voidCall(
      Procedure.DOMAIN_MIGRATE_SET_MAX_DOWNTIME,
      domainArgs(d)
        .uhyper(BigInt(Math.round(downtimeMs)))
        .uint(0),
      options.timeoutMs,
    );
  }

  async migrateGetMaxDowntime(d: DomainRef): Promise<number> {
    return Number(
      (await this.rpc.call(Procedure.DOMAIN_MIGRATE_GET_MAX_DOWNTIME, domainArgs(d).uint(0))).uhyper(),
    );
  }

  /** Bandwidth cap in MiB/s. */
  async migrateSetMaxSpeed(
    d: DomainRef,
    bandwidthMiBps: number,
    flags = 0,
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    await this.voidCall(
      Procedure.DOMAIN_MIGRATE_SET_MAX_SPEED,
      domainArgs(d)
        .uhyper(BigInt(Math.round(bandwidthMiBps)))
        .uint(flags),
      options.timeoutMs,
    );
  }

  async migrateStartPostCopy(d: DomainRef, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.voidCall(Procedure.DOMAIN_MIGRATE_START_POST_COPY, domainArgs(d).uint(0), options.timeoutMs);
  }

  /**
   * Peer-to-peer migration (virDomainMigrateToURI3 with VIR_MIGRATE_PEER2PEER): the source daemon drives the
   * whole migration to `destUri`. Resolves when the migration has finished; give it a timeout that fits.
   */
  async migratePerform3Params(
    d: DomainRef,
    destUri: string,
    params: readonly TypedParam[],
    flags: number,
    options: { timeoutMs?: number } = {},
  ): Promise<Buffer> {
    const w = domainArgs(d).optional(destUri, (x, v) => x.string(v));
    writeTypedParams(w, params);
    w.opaque(Buffer.alloc(0)).uint(flags);
    const r = await this.rpc.call(Procedure.DOMAIN_MIGRATE_PERFORM3_PARAMS, w, options);
    return r.opaque(REMOTE_MIGRATE_COOKIE_MAX);
  }

  // ----------------------------------------------------------------------------------------- storage

  async listAllStoragePools(flags = 0): Promise<StoragePoolRef[]> {
    const r = await this.rpc.call(
      Procedure.CONNECT_LIST_ALL_STORAGE_POOLS,
      new XdrWriter().int(1).uint(flags),
    );
    const pools = r.array((x) => readStoragePool(x), REMOTE_STORAGE_POOL_LIST_MAX, 20);
    r.uint();
    return pools;
  }

  async lookupStoragePoolByName(name: string): Promise<StoragePoolRef> {
    return readStoragePool(
      await this.rpc.call(Procedure.STORAGE_POOL_LOOKUP_BY_NAME, new XdrWriter().string(name)),
    );
  }

  async lookupStorageVolByPath(path: string): Promise<StorageVolRef> {
    return readStorageVol(
      await this.rpc.call(Procedure.STORAGE_VOL_LOOKUP_BY_PATH, new XdrWriter().string(path)),
    );
  }

  async storageVolInfo(vol: StorageVolRef): Promise<StorageVolInfo> {
    const r = await this.rpc.call(Procedure.STORAGE_VOL_GET_INFO, volArgs(vol));
    return { type: r.int(), capacityBytes: r.uhyper(), allocationBytes: r.uhyper() };
  }

  /** The pool a volume belongs to. */
  async lookupStoragePoolByVolume(vol: StorageVolRef): Promise<StoragePoolRef> {
    return readStoragePool(await this.rpc.call(Procedure.STORAGE_POOL_LOOKUP_BY_VOLUME, volArgs(vol)));
  }

  async storagePoolXml(pool: StoragePoolRef, flags = 0): Promise<string> {
    return (await this.rpc.call(Procedure.STORAGE_POOL_GET_XML_DESC, poolArgs(pool).uint(flags))).string(
      REMOTE_STRING_MAX,
    );
  }

  async storagePoolInfo(pool: StoragePoolRef): Promise<StoragePoolInfo> {
    return readStoragePoolInfo(await this.rpc.call(Procedure.STORAGE_POOL_GET_INFO, poolArgs(pool)));
  }

  /** Rescans the pool's target (volumes created behind libvirt's back appear, sizes are re-read). */
  async storagePoolRefresh(pool: StoragePoolRef, flags = 0): Promise<void> {
    await this.voidCall(Procedure.STORAGE_POOL_REFRESH, poolArgs(pool).uint(flags));
  }

  /** Defines a persistent (inactive) pool. */
  async storagePoolDefineXml(xml: string, flags = 0): Promise<StoragePoolRef> {
    return readStoragePool(
      await this.rpc.call(Procedure.STORAGE_POOL_DEFINE_XML, new XdrWriter().string(xml).uint(flags)),
    );
  }

  /** Creates and starts a transient pool. */
  async storagePoolCreateXml(xml: string, flags = 0): Promise<StoragePoolRef> {
    return readStoragePool(
      await this.rpc.call(Procedure.STORAGE_POOL_CREATE_XML, new XdrWriter().string(xml).uint(flags)),
    );
  }

  /** Builds the pool's target (for a dir pool: creates the directory); flags from StoragePoolBuildFlags. */
  async storagePoolBuild(pool: StoragePoolRef, flags = 0): Promise<void> {
    await this.voidCall(Procedure.STORAGE_POOL_BUILD, poolArgs(pool).uint(flags));
  }

  /** Starts a defined pool; flags from StoragePoolCreateFlags. */
  async storagePoolCreate(pool: StoragePoolRef, flags = 0): Promise<void> {
    await this.voidCall(Procedure.STORAGE_POOL_CREATE, poolArgs(pool).uint(flags));
  }

  async storagePoolSetAutostart(pool: StoragePoolRef, autostart: boolean): Promise<void> {
    await this.voidCall(Procedure.STORAGE_POOL_SET_AUTOSTART, poolArgs(pool).int(autostart ? 1 : 0));
  }

  async storagePoolDestroy(pool: StoragePoolRef): Promise<void> {
    await this.voidCall(Procedure.STORAGE_POOL_DESTROY, poolArgs(pool));
  }

  async storagePoolUndefine(pool: StoragePoolRef): Promise<void> {
    await this.voidCall(Procedure.STORAGE_POOL_UNDEFINE, poolArgs(pool));
  }

  /** Creates a volume in the pool from its XML description. */
  async storageVolCreateXml(pool: StoragePoolRef, xml: string, flags = 0): Promise<StorageVolRef> {
    return readStorageVol(
      await this.rpc.call(Procedure.STORAGE_VOL_CREATE_XML, poolArgs(pool).string(xml).uint(flags)),
    );
  }

  async storageVolDelete(vol: StorageVolRef, flags = 0): Promise<void> {
    await this.voidCall(Procedure.STORAGE_VOL_DELETE, volArgs(vol).uint(flags));
  }

  async lookupStorageVolByName(pool: StoragePoolRef, name: string): Promise<StorageVolRef> {
    return readStorageVol(
      await this.rpc.call(Procedure.STORAGE_VOL_LOOKUP_BY_NAME, poolArgs(pool).string(name)),
    );
  }

  async storageVolXml(vol: StorageVolRef, flags = 0): Promise<string> {
    return (await this.rpc.call(Procedure.STORAGE_VOL_GET_XML_DESC, volArgs(vol).uint(flags))).string(
      REMOTE_STRING_MAX,
    );
  }

  async storageVolPath(vol: StorageVolRef): Promise<string> {
    return (await this.rpc.call(Procedure.STORAGE_VOL_GET_PATH, volArgs(vol))).string(REMOTE_STRING_MAX);
  }

  /**
   * virStorageVolUpload: opens a stream whose bytes the daemon writes into the volume from `offsetBytes`
   * (`lengthBytes` 0 = up to the end of what is sent). Write, then finish() (or abort()) the stream.
   */
  async storageVolUpload(
    vol: StorageVolRef,
    options: { offsetBytes?: bigint; lengthBytes?: bigint; flags?: number } & RpcStreamOptions = {},
  ): Promise<RpcStream> {
    const w = volArgs(vol)
      .uhyper(options.offsetBytes ?? 0n)
      .uhyper(options.lengthBytes ?? 0n)
      .uint(options.flags ?? 0);
    return this.rpc.openStream(Procedure.STORAGE_VOL_UPLOAD, w, options);
  }

  /**
   * virStorageVolDownload: opens a stream on which the daemon sends the volume's bytes from `offsetBytes`
   * (`lengthBytes` 0 = to the end). Read until null, then finish() the stream.
   */
  async storageVolDownload(
    vol: StorageVolRef,
    options: { offsetBytes?: bigint; lengthBytes?: bigint; flags?: number } & RpcStreamOptions = {},
  ): Promise<RpcStream> {
    const w = volArgs(vol)
      .uhyper(options.offsetBytes ?? 0n)
      .uhyper(options.lengthBytes ?? 0n)
      .uint(options.flags ?? 0);
    return this.rpc.openStream(Procedure.STORAGE_VOL_DOWNLOAD, w, options);
  }

  // ----------------------------------------------------------------------------------------- events

  /** Registers for one domain event type (DomainEventId), for all domains or one; returns the callback id. */
  async registerDomainEvent(eventId: number, domain: DomainRef | null = null): Promise<number> {
    const w = new XdrWriter().int(eventId).optional(domain, writeDomain);
    return (await this.rpc.call(Procedure.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, w)).int();
  }

  async deregisterDomainEvent(callbackId: number): Promise<void> {
    await this.voidCall(
      Procedure.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY,
      new XdrWriter().int(callbackId),
    );
  }

  /** Registers lifecycle, migration-iteration and job-completed events for every domain. */
  async registerDefaultEvents(): Promise<number[]> {
    const ids: number[] = [];
    for (const id of [
      DomainEventId.LIFECYCLE,
      DomainEventId.MIGRATION_ITERATION,
      DomainEventId.JOB_COMPLETED,
    ]) {
      try {
        ids.push(await this.registerDomainEvent(id));
      } catch (err) {
        if (!isNoSupport(err)) throw err;
      }
    }
    return ids;
  }

  private onMessage(procedure: number, body: Buffer): void {
    const r = new XdrReader(body);
    try {
      switch (procedure) {
        case Procedure.DOMAIN_EVENT_CALLBACK_LIFECYCLE:
          this.events.emit('lifecycle', {
            callbackId: r.int(),
            domain: readDomain(r),
            event: r.int(),
            detail: r.int(),
          });
          return;
        case Procedure.DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION:
          this.events.emit('migration-iteration', {
            callbackId: r.int(),
            domain: readDomain(r),
            iteration: r.int(),
          });
          return;
        case Procedure.DOMAIN_EVENT_CALLBACK_JOB_COMPLETED:
          this.events.emit('job-completed', {
            callbackId: r.int(),
            domain: readDomain(r),
            params: paramRecord(readTypedParams(r)),
          });
          return;
        default:
          this.events.emit('unknown-message', { procedure });
      }
    } catch (err) {
      // A malformed event must not take the connection down with it; report it as a close-worthy protocol error.
      this.events.emit('close', {
        error: new LibvirtProtocolError(`undecodable event ${procedure}`, { cause: err }),
      });
      this.rpc.destroy();
    }
  }
}
