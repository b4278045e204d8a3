// The Hypervisor interface over real libvirt hosts, through drover's own remote-protocol client.
// One connection per host (reconnected with back-off), peer-to-peer migrations with typed parameters and
// PERSIST_DEST | UNDEFINE_SOURCE, page-sampling dirty-rate measurements, and domain events.
import type { Clock } from '../../domain/clock.js';
import { errorCode } from '../../domain/errors.js';
import type { VmState } from '../../domain/snapshot.js';
import {
  isConnectionLost,
  isInvalidArgument,
  isMigrateUnsafe,
  isNoDomain,
  isNoSupport,
  isOperationAborted,
  isOperationInvalid,
  isTimeout,
} from '../../libvirt/errors.js';
import { LibvirtClient, numberParam, uuidToString, type ParamRecord } from '../../libvirt/libvirt-client.js';
import {
  CpuCompareResult,
  DirtyRateStatus,
  DomainPausedReason,
  DomainRunningReason,
  DomainState,
  DomainStatsTypes,
  DomainXmlFlags,
  GetAllDomainStatsFlags,
  LifecycleEventType,
  ListDomainsFlags,
  MigrateFlags,
  type DomainRef,
  type TypedParam,
} from '../../libvirt/remote-protocol.js';
import { parseLibvirtUri } from '../../libvirt/uri.js';
import { SystemClock } from '../../clock/clocks.js';
import { HYPERVISOR_ERROR_CODES, HypervisorError, type HypervisorErrorCode } from '../hypervisor.js';
import type {
  CopyVolumeRequest,
  DirtyRateReading,
  DiskInfo,
  HostInfo,
  HostSample,
  Hypervisor,
  HypervisorEvent,
  MigrationJob,
  LifecycleEvent,
  MigrationHandle,
  MigrationOutcome,
  MigrationRequest,
  PostCopyResumeRequest,
  StoragePoolInfo,
  VmInfo,
  VmPresence,
  VmSample,
  VolumeDigest,
  VolumeInfo,
  VolumeSpec,
} from '../hypervisor.js';
import { parseDomainXml, hostCpuModel } from './domain-xml.js';
import { HostConnection } from './host-connection.js';
import {
  LibvirtHypervisorOptionsSchema,
  parseHostConfigs,
  type LibvirtHostConfig,
  type LibvirtHypervisorOptions,
  type ParsedLibvirtHostConfig,
} from './host-config.js';
import { jobTypeName, toMigrationJob } from './job-stats.js';
import { LibvirtStorage } from './libvirt-storage.js';
import { parseWith } from '../../domain/validation.js';

/**
 * A libvirt client error as the Hypervisor interface reports it: one of HYPERVISOR_ERROR_CODES, with the
 * client's typed error (libvirt code, domain, message) kept as `cause`.
 */
export function toHypervisorError(err: unknown, what: string): HypervisorError {
  if (err instanceof HypervisorError) return err;
  const message = `${what}: ${err instanceof Error ? err.message : String(err)}`;
  const code = (c: HypervisorErrorCode) => new HypervisorError(c, message, { cause: err });
  if (isNoDomain(err)) return code(HYPERVISOR_ERROR_CODES.noDomain);
  if (isConnectionLost(err) || isTimeout(err)) return code(HYPERVISOR_ERROR_CODES.hostUnreachable);
  if (isOperationInvalid(err)) return code(HYPERVISOR_ERROR_CODES.operationInvalid);
  if (isMigrateUnsafe(err)) return code(HYPERVISOR_ERROR_CODES.migrateUnsafe);
  if (isInvalidArgument(err)) return code(HYPERVISOR_ERROR_CODES.invalidArgument);
  return code(HYPERVISOR_ERROR_CODES.operationFailed);
}

const hasCode = (err: unknown, code: HypervisorErrorCode): boolean => errorCode(err) === code;

const LIFECYCLE_NAMES: Record<number, LifecycleEvent> = {
  [LifecycleEventType.DEFINED]: 'defined',
  [LifecycleEventType.UNDEFINED]: 'undefined',
  [LifecycleEventType.STARTED]: 'started',
  [LifecycleEventType.SUSPENDED]: 'suspended',
  [LifecycleEventType.RESUMED]: 'resumed',
  [LifecycleEventType.STOPPED]: 'stopped',
  [LifecycleEventType.SHUTDOWN]: 'shutdown',
  [LifecycleEventType.PMSUSPENDED]: 'pmsuspended',
  [LifecycleEventType.CRASHED]: 'crashed',
};

const STATS_GROUPS =
  DomainStatsTypes.STATE |
  DomainStatsTypes.CPU_TOTAL |
  DomainStatsTypes.BALLOON |
  DomainStatsTypes.VCPU |
  DomainStatsTypes.DIRTYRATE;

/** Whether a domain state and reason say the VM is in a post-copy migration, and whether that broke. */
export function postCopyOf(virState: number, reason: number): VmPresence['postCopy'] {
  if (virState === DomainState.PAUSED) {
    if (reason === DomainPausedReason.POSTCOPY) return 'active';
    if (reason === DomainPausedReason.POSTCOPY_FAILED) return 'failed';
  } else if (virState === DomainState.RUNNING) {
    if (reason === DomainRunningReason.POSTCOPY) return 'active';
    if (reason === DomainRunningReason.POSTCOPY_FAILED) return 'failed';
  }
  return undefined;
}

export function vmStateOf(virState: number): VmState {
  switch (virState) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
    case DomainState.SHUTDOWN:
      return 'running';
    case DomainState.PAUSED:
    case DomainState.PMSUSPENDED:
      return 'paused';
    default:
      return 'shutoff';
  }
}

const kibToMiB = (kib: number | undefined): number | null => (kib === undefined ? null : kib / 1024);

/**
 * Client-side bound of a monitor call: above libvirt's own 30 s wait for a domain's job, so a call queued
 * behind a stuck one gets the daemon's answer (its timeout error) rather than being abandoned to it.
 */
const MONITOR_CALL_TIMEOUT_MS = 60_000;

export class LibvirtHypervisor implements Hypervisor {
  readonly clock: Clock;
  private readonly hosts: Map<string, { config: ParsedLibvirtHostConfig; connection: HostConnection }>;
  private readonly listeners = new Set<(event: HypervisorEvent) => void>();
  private readonly postCopyStarted = new Set<string>();
  private readonly abortRequested = new Set<string>();
  /** When drover started the last dirty-rate measurement of host/vm (libvirt reports QEMU's own clock). */
  private readonly dirtyRateStartedAt = new Map<string, number>();
  private readonly options: {
    callTimeoutMs: number;
    migrationTimeoutMs: number;
  };
  private readonly storage: LibvirtStorage;
  /**
   * Calls that need a domain's QEMU monitor go one at a time per domain (see viaMonitor): the tail of each
   * domain's queue, and the job-stats question in flight, which a second asker joins.
   */
  private readonly monitorQueues = new Map<string, Promise<void>>();
  private readonly monitorJoinable = new Map<string, Promise<unknown>>();
  /** The stats of the last job-completed event per host/vm (the source reports a migration's figures). */
  private readonly completedEvents = new Map<string, { at: number; stats: MigrationJob }>();

  /**
   * @param hosts `{ id, uri, bandwidthMiBps?, labels?, peerUri?, migrateUri?, sharedStoragePaths? }` per host
   * @throws ValidationError naming each bad field (e.g. `hosts[1].uri: transport: "ftp" is not supported`)
   */
  constructor(
    hosts: readonly LibvirtHostConfig[],
    options: LibvirtHypervisorOptions = {},
    clock: Clock = new SystemClock(),
  ) {
    const parsedHosts = parseHostConfigs(hosts);
    const opts = parseWith(LibvirtHypervisorOptionsSchema, options, 'libvirt');
    this.clock = clock;
    this.options = {
      callTimeoutMs: opts.callTimeoutMs ?? 30_000,
      migrationTimeoutMs: opts.migrationTimeoutMs ?? 6 * 3_600_000,
    };
    this.hosts = new Map(
      parsedHosts.map((config) => [
        config.id,
        {
          config,
          connection: new HostConnection(
            config.id,
            config.uri,
            {
              callTimeoutMs: this.options.callTimeoutMs,
              connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
              keepaliveIntervalMs: opts.keepaliveIntervalMs ?? 5_000,
              reconnectMinMs: opts.reconnectMinMs ?? 250,
              reconnectMaxMs: opts.reconnectMaxMs ?? 30_000,
            },
            (client) => this.wireEvents(config.id, client),
          ),
        },
      ]),
    );
    this.storage = new LibvirtStorage({
      client: (hostId) => this.client(hostId),
      transferClient: (hostId) =>
        LibvirtClient.connect(this.host(hostId).config.uri, {
          callTimeoutMs: this.options.callTimeoutMs,
          connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
          // a download waiting for a slow upload reads nothing for a while: no keepalive verdict on it
          keepaliveIntervalMs: 0,
        }),
      streamIdleTimeoutMs: Math.max(this.options.callTimeoutMs, 60_000),
    });
  }

  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toHypervisorError(err, what);
    }
  }

  /**
   * Runs a call that needs the QEMU monitor of host/vm after the previous such call of that domain answered.
   * libvirtd serves at most max_client_requests (5 by default) calls of one connection at once and stops
   * reading the connection beyond that, so questions repeated to a monitor that does not answer (a QEMU
   * stopped with SIGSTOP) would block every other call to the host, locating VMs included. Queued here, a
   * stuck domain holds one of those requests, not all. Its client-side timeout is long, since the daemon keeps
   * working on a call the client gave up on; callers bound their own wait (the executor's call timeouts).
   * A joinable call (no arguments: job stats) shares the one already asked instead of queueing another.
   * `ahead` (the abort) does not wait for the calls queued before it: an abort is what ends a migration
   * the watchdog gave up on, and a job-stats question in flight to a slow monitor would otherwise hold it
   * for that question's whole round trip. Joinable as well, so a domain holds at most one of them.
   */
  private viaMonitor<T>(
    hostId: string,
    vmId: string,
    what: string,
    fn: (timeoutMs: number) => Promise<T>,
    joinable = false,
    ahead = false,
  ): Promise<T> {
    const lane = `${hostId}/${vmId}`;
    const joinKey = `${lane}/${what}`;
    if (joinable) {
      const pending = this.monitorJoinable.get(joinKey);
      if (pending) return pending as Promise<T>;
    }
    const timeoutMs = Math.max(this.options.callTimeoutMs, MONITOR_CALL_TIMEOUT_MS);
    if (ahead) {
      const call = fn(timeoutMs);
      if (joinable) this.monitorJoinable.set(joinKey, call);
      const drop = (): void => {
        if (this.monitorJoinable.get(joinKey) === call) this.monitorJoinable.delete(joinKey);
      };
      call.then(drop, drop);
      return call;
    }
    const previous = this.monitorQueues.get(lane) ?? Promise.resolve();
    const call = previous.then(() => fn(timeoutMs));
    const tail = call.then(
      () => undefined,
      () => undefined,
    );
    this.monitorQueues.set(lane, tail);
    if (joinable) this.monitorJoinable.set(joinKey, call);
    void tail.then(() => {
      if (this.monitorQueues.get(lane) === tail) this.monitorQueues.delete(lane);
      if (this.monitorJoinable.get(joinKey) === call) this.monitorJoinable.delete(joinKey);
    });
    return call;
  }

  private host(hostId: string) {
    const host = this.hosts.get(hostId);
    if (!host)
      throw new HypervisorError(HYPERVISOR_ERROR_CODES.noHost, `unknown host ${JSON.stringify(hostId)}`);
    return host;
  }

  /** The connected client of a host (connecting if needed). */
  async client(hostId: string): Promise<LibvirtClient> {
    return this.host(hostId).connection.get();
  }

  private async domain(hostId: string, vmId: string): Promise<{ client: LibvirtClient; dom: DomainRef }> {
    const client = await this.client(hostId);
    const dom = await client.lookupDomainByUuid(vmId);
    return { client, dom };
  }

  // ------------------------------------------------------------------------------------------ hosts

  async listHosts(): Promise<HostInfo[]> {
    return this.guard('listHosts', async () => {
      return Promise.all(
        [...this.hosts.values()].map(async ({ config }) => {
          const client = await this.client(config.id);
          const [info, mem, caps] = await Promise.all([
            client.nodeInfo(),
            client.nodeMemoryStats(),
            client.capabilities(),
          ]);
          return {
            id: config.id,
            cpus: info.cpus,
            memMiB: Number(mem.get('total') ?? info.memoryKiB) / 1024,
            cpuModel: hostCpuModel(caps),
            bandwidthMiBps: config.bandwidthMiBps ?? null,
            labels: { ...(config.labels ?? {}) },
          };
        }),
      );
    });
  }

  async sampleHost(hostId: string): Promise<HostSample> {
    return this.guard('sampleHost', async () => {
      const client = await this.client(hostId);
      const [cpu, mem] = await Promise.all([client.nodeCpuStats(), client.nodeMemoryStats()]);
      const get = (m: Map<string, bigint>, k: string) => Number(m.get(k) ?? 0n);
      const busy = get(cpu, 'kernel') + get(cpu, 'user');
      const total = busy + get(cpu, 'idle') + get(cpu, 'iowait');
      const totalKiB = get(mem, 'total');
      const usedKiB = totalKiB - get(mem, 'free') - get(mem, 'buffers') - get(mem, 'cached');
      return {
        hostId,
        at: this.clock.now(),
        cpuBusyNs: busy,
        cpuTotalNs: total,
        memTotalMiB: totalKiB / 1024,
        memUsedMiB: Math.max(0, usedKiB) / 1024,
      };
    });
  }

  // ------------------------------------------------------------------------------------------ VMs

  async listVms(hostId: string): Promise<VmInfo[]> {
    return this.guard('listVms', async () => {
      const { config } = this.host(hostId);
      const client = await this.client(hostId);
      const [all, persistent] = await Promise.all([
        client.listAllDomains(),
        client.listAllDomains(ListDomainsFlags.PERSISTENT),
      ]);
      const persistentIds = new Set(persistent.map((d) => uuidToString(d.uuid)));
      const vms = await Promise.all(
        all.map(async (dom): Promise<VmInfo | null> => {
          try {
            const [xml, state] = await Promise.all([client.domainXml(dom), client.domainState(dom)]);
            const facts = parseDomainXml(xml);
            const disks: DiskInfo[] = await Promise.all(
              facts.disks.map(async (d) => {
                const shared =
                  d.type === 'network' ||
                  d.shareable ||
                  (d.source !== null &&
                    (config.sharedStoragePaths ?? []).some((p) => d.source?.startsWith(p)));
                return {
                  target: d.target,
                  source: d.source,
                  shared,
                  format: d.format,
                  capacityMiB: await this.diskCapacityMiB(client, d.source),
                };
              }),
            );
            const id = uuidToString(dom.uuid);
            return {
              id,
              name: dom.name,
              hostId,
              state: vmStateOf(state.state),
              persistent: persistentIds.has(id),
              vcpus: facts.vcpus,
              memMiB: facts.memMiB,
              cpuModel: facts.cpuModel,
              disks,
              storage: disks.every((d) => d.shared) ? 'shared' : 'local',
              labels: facts.labels,
            };
          } catch (err) {
            if (isNoDomain(err)) return null; // vanished while we listed (migrated away, undefined)
            throw err;
          }
        }),
      );
      return vms.filter((v): v is VmInfo => v !== null);
    });
  }

  private async diskCapacityMiB(client: LibvirtClient, source: string | null): Promise<number | null> {
    if (source === null || !source.startsWith('/')) return null;
    try {
      const vol = await client.lookupStorageVolByPath(source);
      const info = await client.storageVolInfo(vol);
      return Number(info.capacityBytes) / (1024 * 1024);
    } catch (err) {
      if (isConnectionLost(err)) throw err;
      return null; // not in any storage pool: libvirt cannot tell its size
    }
  }

  async sampleVms(hostId: string): Promise<VmSample[]> {
    return this.guard('sampleVms', async () => {
      const client = await this.client(hostId);
      // NOWAIT: a domain whose job is busy (migrating, a stuck monitor) gives what it can without its job
      // (state, CPU time) instead of holding up every other domain's figures.
      const records = await client.allDomainStats(STATS_GROUPS, GetAllDomainStatsFlags.NOWAIT);
      const at = this.clock.now();
      return Promise.all(
        records.map(async ({ domain, params }) => {
          const state = vmStateOf(numberParam(params, 'state.state') ?? DomainState.SHUTOFF);
          const migrating = state !== 'shutoff' && (await this.migratingNow(hostId, client, domain));
          const memKiB = numberParam(params, 'balloon.maximum') ?? numberParam(params, 'balloon.current');
          const vmId = uuidToString(domain.uuid);
          return {
            vmId,
            hostId,
            at,
            state,
            cpuTimeNs: numberParam(params, 'cpu.time') ?? 0,
            vcpus: numberParam(params, 'vcpu.current') ?? 1,
            memMiB: kibToMiB(memKiB) ?? 0,
            memUsedMiB: usedMemMiB(params),
            dirtyRate: dirtyRateOf(params, this.dirtyRateStartedAt.get(`${hostId}/${vmId}`) ?? null),
            migrating,
          };
        }),
      );
    });
  }

  /**
   * Whether the domain has a migration job, asked of its monitor for at most the call timeout: a monitor
   * that does not answer in time, or a domain receiving a migration (libvirt gives job stats on the source
   * only), counts as busy with one. Only a lost connection fails the host's sample.
   */
  private async migratingNow(hostId: string, client: LibvirtClient, domain: DomainRef): Promise<boolean> {
    const vmId = uuidToString(domain.uuid);
    const asked = this.viaMonitor(
      hostId,
      vmId,
      'jobStats',
      (timeoutMs) => client.jobStats(domain, { timeoutMs }),
      true,
    );
    asked.catch(() => undefined);
    const bound = new AbortController();
    try {
      const reply = await Promise.race([
        asked,
        this.clock.sleep(this.options.callTimeoutMs, bound.signal).then(
          () => null,
          () => null,
        ),
      ]);
      return reply === null || jobTypeName(reply.type) === 'active';
    } catch (err) {
      if (isConnectionLost(err)) throw err;
      if (isNoDomain(err) || isOperationInvalid(err)) return false; // gone or not running: no job
      // Receiving a migration (no such support on the destination), the daemon's own timeout waiting for
      // the domain's job, or another refusal: the domain is busy with a job.
      return isNoSupport(err) || isTimeout(err) || true;
    } finally {
      bound.abort();
    }
  }

  async startDirtyRate(hostId: string, vmId: string, windowS: number): Promise<void> {
    return this.guard('startDirtyRate', async () => {
      const startedAt = this.clock.now();
      await this.viaMonitor(hostId, vmId, 'startDirtyRate', async (timeoutMs) => {
        const { client, dom } = await this.domain(hostId, vmId);
        await client.startDirtyRateCalc(dom, Math.max(1, Math.round(windowS)), 0, { timeoutMs });
      });
      this.dirtyRateStartedAt.set(`${hostId}/${vmId}`, startedAt);
    });
  }

  async cpuCompatible(vmId: string, fromHostId: string, toHostId: string): Promise<boolean> {
    return this.guard('cpuCompatible', async () => {
      const { client, dom } = await this.domain(fromHostId, vmId);
      const facts = parseDomainXml(await client.domainXml(dom, DomainXmlFlags.MIGRATABLE));
      if (facts.cpuXml === null || /mode=['"]host-passthrough['"]/.test(facts.cpuXml)) {
        // no CPU model to check (TCG default CPU) / passthrough: libvirt itself checks at migration time
        return true;
      }
      const dest = await this.client(toHostId);
      const result = await dest.compareHypervisorCpu({
        emulator: facts.emulator,
        arch: facts.arch,
        machine: facts.machine,
        virttype: facts.type,
        xmlCpu: facts.cpuXml,
      });
      return result !== CpuCompareResult.INCOMPATIBLE;
    });
  }

  // ------------------------------------------------------------------------------------------ migration

  async migrate(request: MigrationRequest): Promise<MigrationHandle> {
    return this.guard('migrate', async () => {
      if (request.from === request.to)
        throw new HypervisorError(
          HYPERVISOR_ERROR_CODES.invalidArgument,
          `migrate: source and destination are both ${request.from}`,
        );
      if (!(request.maxDowntimeMs >= 0))
        throw new HypervisorError(
          HYPERVISOR_ERROR_CODES.invalidArgument,
          `migrate: maxDowntimeMs must be >= 0, got ${request.maxDowntimeMs}`,
        );
      const source = this.host(request.from);
      const dest = this.host(request.to);
      const { client, dom } = await this.domain(request.from, request.vmId);
      const key = `${request.from}/${request.vmId}`;
      this.postCopyStarted.delete(key);
      this.abortRequested.delete(key);

      let flags = MigrateFlags.PEER2PEER | MigrateFlags.PERSIST_DEST | MigrateFlags.UNDEFINE_SOURCE;
      const params: TypedParam[] = [];
      if (request.kind === 'offline') {
        flags |= MigrateFlags.OFFLINE;
      } else {
        flags |= MigrateFlags.LIVE;
        if (request.autoConverge) flags |= MigrateFlags.AUTO_CONVERGE;
        if (request.postCopy) flags |= MigrateFlags.POSTCOPY;
        // drover's storage check proved both ends see the disks: tell libvirt not to second-guess it
        if (request.storageVerified) flags |= MigrateFlags.UNSAFE;
        if (request.bandwidthMiBps) {
          const cap = BigInt(Math.max(1, Math.round(request.bandwidthMiBps)));
          params.push({ field: 'bandwidth', type: 'ullong', value: cap });
          // QEMU sends post-copy pages under a cap of their own (none by default): the same cap holds there.
          if (request.postCopy) params.push({ field: 'bandwidth.postcopy', type: 'ullong', value: cap });
        }
        if (dest.config.migrateUri)
          params.push({ field: 'migrate_uri', type: 'string', value: dest.config.migrateUri });
        await client.migrateSetMaxDowntime(dom, request.maxDowntimeMs);
      }
      if (request.kind === 'block') {
        flags |= request.incremental ? MigrateFlags.NON_SHARED_INC : MigrateFlags.NON_SHARED_DISK;
        const facts = parseDomainXml(await client.domainXml(dom));
        for (const disk of facts.disks) {
          const shared =
            disk.type === 'network' ||
            disk.shareable ||
            (disk.source !== null &&
              (source.config.sharedStoragePaths ?? []).some((p) => disk.source?.startsWith(p)));
          if (!shared && disk.target)
            params.push({ field: 'migrate_disks', type: 'string', value: disk.target });
        }
      }
      const destUri = dest.config.peerUri ?? dest.config.uri;
      parseLibvirtUri(destUri);

      const calledAt = this.clock.now();
      const perform = client.migratePerform3Params(dom, destUri, params, flags, {
        timeoutMs: this.options.migrationTimeoutMs,
      });
      const done = perform.then(
        () => this.completedOutcome(request, calledAt),
        (err: unknown) => this.failedOutcome(request, key, err, calledAt),
      );
      // Resolve once the job is visible on the source with its memory figures (libvirt shows the job a moment
      // before QEMU reports any), or once the call already settled. The migration call is out: from here on
      // only its own answer (`done`) decides the outcome, so an answer of this wait that races the end of the
      // job (the domain gone, shut off or "not running", no job any more) ends the wait and nothing else.
      const settled = done.then(() => true);
      // An offline move has no running job to wait for.
      const deadline = request.kind === 'offline' ? this.clock.now() : this.clock.now() + 10_000;
      while (this.clock.now() < deadline) {
        const finished = await Promise.race([settled, this.clock.sleep(50).then(() => false)]);
        if (finished) break;
        const seen = await Promise.race([
          settled.then(() => 'ended' as const),
          this.viaMonitor(
            request.from,
            request.vmId,
            'jobStats',
            (timeoutMs) => client.jobStats(dom, { timeoutMs }),
            true,
          ).then(
            (stats) =>
              jobTypeName(stats.type) === 'active' && (numberParam(stats.params, 'memory_total') ?? 0) > 0
                ? ('running' as const)
                : jobTypeName(stats.type) === 'active' || jobTypeName(stats.type) === 'none'
                  ? ('starting' as const)
                  : ('ended' as const),
            () => 'ended' as const,
          ),
        ]);
        if (seen !== 'starting') break;
      }
      return { request, done };
    });
  }

  private async completedOutcome(request: MigrationRequest, calledAt: number): Promise<MigrationOutcome> {
    return { result: 'completed', error: null, stats: await this.statsOfCompletion(request, calledAt) };
  }

  /**
   * The figures of a migration that completed: the destination's completed-job stats, else the source's
   * job-completed event (the source domain is gone by now), else its completed-job stats. The outcome is
   * known either way; failing to read them changes nothing.
   */
  private async statsOfCompletion(request: MigrationRequest, calledAt: number): Promise<MigrationJob | null> {
    const fromDest = await this.completedJobStats(request.to, request.vmId).catch(() => null);
    if (fromDest !== null) return fromDest;
    const event = this.completedEvents.get(`${request.from}/${request.vmId}`);
    if (event && event.at >= calledAt) return event.stats;
    return this.completedJobStats(request.from, request.vmId).catch(() => null);
  }

  private async failedOutcome(
    request: MigrationRequest,
    key: string,
    err: unknown,
    calledAt: number,
  ): Promise<MigrationOutcome> {
    const message = err instanceof Error ? err.message : String(err);
    if (isConnectionLost(err)) return this.followAfterDisconnect(request, key, message);
    const aborted = this.abortRequested.has(key) || isOperationAborted(err);
    this.abortRequested.delete(key);
    // An error that races the end of the job ("domain is not running", no domain, no active job) says where
    // the VM is not; where it runs says how the migration ended. Running on the destination and nowhere else
    // is a completed migration, whatever the call answered.
    if (await this.runsOnDestinationOnly(request)) return this.completedOutcome(request, calledAt);
    const stats = await this.completedJobStats(request.from, request.vmId).catch(() => null);
    return { result: aborted ? 'aborted' : 'failed', error: message, stats };
  }

  /** True when the VM runs on the request's destination and is not running or paused anywhere else. */
  private async runsOnDestinationOnly(request: MigrationRequest): Promise<boolean> {
    if (request.kind === 'offline') return false;
    const where = await this.locateVm(request.vmId).catch(() => null);
    if (where === null) return false;
    const live = where.filter((p) => p.state !== 'shutoff');
    return live.length === 1 && live[0]?.hostId === request.to && live[0].state === 'running';
  }

  /**
   * The connection to the source dropped while it performed the migration. A peer-to-peer migration keeps
   * running inside the source daemon, so follow it from new connections until the job is gone, then decide
   * from where the VM is.
   */
  private async followAfterDisconnect(
    request: MigrationRequest,
    key: string,
    message: string,
  ): Promise<MigrationOutcome> {
    const deadline = this.clock.now() + this.options.migrationTimeoutMs;
    while (this.clock.now() < deadline) {
      await this.clock.sleep(1_000);
      try {
        const job = await this.jobStats(request.from, request.vmId);
        if (job.type === 'active') continue;
      } catch (err) {
        if (hasCode(err, HYPERVISOR_ERROR_CODES.hostUnreachable)) continue;
        if (!hasCode(err, HYPERVISOR_ERROR_CODES.noDomain))
          return { result: 'failed', error: `${message}; then ${String(err)}`, stats: null };
      }
      try {
        // Completed only when the guest runs on the destination and nowhere else. A paused copy on the
        // destination is the incoming side of a migration that did not finish (the source daemon restarted
        // and resumed the guest, say); a guest running on the source failed to move. Anything else (paused
        // on both ends, on neither yet) has not settled: look again.
        const live = (await this.locateVm(request.vmId)).filter((p) => p.state !== 'shutoff');
        const elsewhere = live.filter((p) => p.hostId !== request.to);
        const onDest = live.find((p) => p.hostId === request.to);
        const settledOnDest = onDest?.state === 'running' && elsewhere.length === 0;
        const stillOnSource = elsewhere.some((p) => p.state === 'running');
        if (!settledOnDest && !stillOnSource) continue;
        const aborted = this.abortRequested.has(key);
        this.abortRequested.delete(key);
        if (settledOnDest) return { result: 'completed', error: null, stats: null };
        return { result: aborted ? 'aborted' : 'failed', error: message, stats: null };
      } catch (err) {
        if (!hasCode(err, HYPERVISOR_ERROR_CODES.hostUnreachable))
          return { result: 'failed', error: `${message}; then ${String(err)}`, stats: null };
      }
    }
    return { result: 'failed', error: `${message}; lost track of the migration`, stats: null };
  }

  async jobStats(hostId: string, vmId: string): Promise<MigrationJob> {
    return this.guard('jobStats', async () => {
      let reply;
      try {
        reply = await this.viaMonitor(
          hostId,
          vmId,
          'jobStats',
          async (timeoutMs) => {
            const found = await this.domain(hostId, vmId);
            return found.client.jobStats(found.dom, { timeoutMs });
          },
          true,
        );
      } catch (err) {
        // libvirt refuses the question for a domain that is not running (shut off at the end of its
        // migration, say); such a domain has no job.
        if (isOperationInvalid(err)) return toMigrationJob('none', {}, false);
        throw err;
      }
      const type = jobTypeName(reply.type);
      return toMigrationJob(
        type,
        reply.params,
        type === 'active' && this.postCopyStarted.has(`${hostId}/${vmId}`),
      );
    });
  }

  async completedJobStats(hostId: string, vmId: string): Promise<MigrationJob | null> {
    return this.guard('completedJobStats', async () => {
      let found;
      try {
        found = await this.domain(hostId, vmId);
      } catch (err) {
        if (isNoDomain(err)) return null;
        throw err;
      }
      const reply = await found.client.jobStats(found.dom, { completed: true, keepCompleted: true });
      const type = jobTypeName(reply.type);
      if (type === 'none') return null;
      const params: ParamRecord = reply.params;
      return toMigrationJob(type, params, this.postCopyStarted.has(`${hostId}/${vmId}`));
    });
  }

  async setMaxDowntime(hostId: string, vmId: string, ms: number): Promise<void> {
    return this.guard('setMaxDowntime', async () => {
      if (!(ms >= 0))
        throw new HypervisorError(
          HYPERVISOR_ERROR_CODES.invalidArgument,
          `setMaxDowntime: ms must be >= 0, got ${ms}`,
        );
      await this.viaMonitor(hostId, vmId, 'setMaxDowntime', async (timeoutMs) => {
        const { client, dom } = await this.domain(hostId, vmId);
        await client.migrateSetMaxDowntime(dom, ms, { timeoutMs });
      });
    });
  }

  async setMaxBandwidth(hostId: string, vmId: string, mibps: number): Promise<void> {
    return this.guard('setMaxBandwidth', async () => {
      if (!(mibps > 0))
        throw new HypervisorError(
          HYPERVISOR_ERROR_CODES.invalidArgument,
          `setMaxBandwidth: mibps must be > 0, got ${mibps}`,
        );
      await this.viaMonitor(hostId, vmId, 'setMaxBandwidth', async (timeoutMs) => {
        const { client, dom } = await this.domain(hostId, vmId);
        await client.migrateSetMaxSpeed(dom, Math.max(1, Math.round(mibps)), 0, { timeoutMs });
      });
    });
  }

  async startPostCopy(hostId: string, vmId: string): Promise<void> {
    return this.guard('startPostCopy', async () => {
      await this.viaMonitor(hostId, vmId, 'startPostCopy', async (timeoutMs) => {
        const { client, dom } = await this.domain(hostId, vmId);
        await client.migrateStartPostCopy(dom, { timeoutMs });
      });
      this.postCopyStarted.add(`${hostId}/${vmId}`);
    });
  }

  async abortJob(hostId: string, vmId: string): Promise<void> {
    return this.guard('abortJob', async () => {
      this.abortRequested.add(`${hostId}/${vmId}`);
      await this.viaMonitor(
        hostId,
        vmId,
        'abortJob',
        async (timeoutMs) => {
          const { client, dom } = await this.domain(hostId, vmId);
          await client.abortJob(dom, { timeoutMs });
        },
        true,
        true,
      );
    });
  }

  async resumePostCopy(request: PostCopyResumeRequest): Promise<void> {
    return this.guard('resumePostCopy', async () => {
      const dest = this.host(request.to);
      const { client, dom } = await this.domain(request.from, request.vmId);
      // The flags of drover's own live migrations, plus the resume: libvirt picks the broken job up again.
      const flags =
        MigrateFlags.LIVE |
        MigrateFlags.PEER2PEER |
        MigrateFlags.PERSIST_DEST |
        MigrateFlags.UNDEFINE_SOURCE |
        MigrateFlags.POSTCOPY |
        MigrateFlags.POSTCOPY_RESUME;
      const params: TypedParam[] = [];
      if (request.bandwidthMiBps)
        params.push({
          field: 'bandwidth.postcopy',
          type: 'ullong',
          value: BigInt(Math.max(1, Math.round(request.bandwidthMiBps))),
        });
      if (dest.config.migrateUri)
        params.push({ field: 'migrate_uri', type: 'string', value: dest.config.migrateUri });
      await client.migratePerform3Params(dom, dest.config.peerUri ?? dest.config.uri, params, flags, {
        timeoutMs: this.options.migrationTimeoutMs,
      });
    });
  }

  // ------------------------------------------------------------------------------------------ recovery

  async locateVm(vmId: string): Promise<VmPresence[]> {
    return this.guard('locateVm', async () => {
      const found = await Promise.all(
        [...this.hosts.keys()].map(async (hostId): Promise<VmPresence | null> => {
          const client = await this.client(hostId);
          let dom: DomainRef;
          try {
            dom = await client.lookupDomainByUuid(vmId);
          } catch (err) {
            if (isNoDomain(err)) return null;
            throw err;
          }
          let state: Awaited<ReturnType<LibvirtClient['domainState']>>;
          let persistent: DomainRef[];
          try {
            [state, persistent] = await Promise.all([
              client.domainState(dom),
              client.listAllDomains(ListDomainsFlags.PERSISTENT),
            ]);
          } catch (err) {
            // Gone between the lookup and its state: the end of a migration away (the source let it go).
            if (isNoDomain(err)) return null;
            throw err;
          }
          const postCopy = postCopyOf(state.state, state.reason);
          return {
            hostId,
            state: vmStateOf(state.state),
            persistent: persistent.some((d) => d.uuid.equals(dom.uuid)),
            ...(postCopy ? { postCopy } : {}),
          };
        }),
      );
      return found.filter((p): p is VmPresence => p !== null);
    });
  }

  async suspendVm(hostId: string, vmId: string): Promise<void> {
    return this.guard('suspendVm', async () => {
      const { client, dom } = await this.domain(hostId, vmId);
      await client.suspend(dom);
    });
  }

  async resumeVm(hostId: string, vmId: string): Promise<void> {
    return this.guard('resumeVm', async () => {
      const { client, dom } = await this.domain(hostId, vmId);
      await client.resume(dom);
    });
  }

  async destroyVm(hostId: string, vmId: string): Promise<void> {
    return this.guard('destroyVm', async () => {
      const { client, dom } = await this.domain(hostId, vmId);
      await client.destroyDomain(dom);
    });
  }

  /** True when the VM is paused on that host because a post-copy migration switched it over. */
  async pausedForPostCopy(hostId: string, vmId: string): Promise<boolean> {
    return this.guard('pausedForPostCopy', async () => {
      const { client, dom } = await this.domain(hostId, vmId);
      const { state, reason } = await client.domainState(dom);
      return state === DomainState.PAUSED && reason === DomainPausedReason.POSTCOPY;
    });
  }

  // ------------------------------------------------------------------------------------------ storage

  async listStoragePools(hostId: string): Promise<StoragePoolInfo[]> {
    return this.guard('listStoragePools', () => this.storage.listPools(hostId));
  }

  async createStoragePool(
    hostId: string,
    pool: { name: string; targetPath: string },
  ): Promise<StoragePoolInfo> {
    return this.guard('createStoragePool', () => this.storage.createPool(hostId, pool));
  }

  async lookupVolume(hostId: string, path: string): Promise<VolumeInfo | null> {
    return this.guard('lookupVolume', () => this.storage.lookupVolume(hostId, path));
  }

  async createVolume(hostId: string, spec: VolumeSpec): Promise<VolumeInfo> {
    return this.guard('createVolume', () => this.storage.createVolume(hostId, spec));
  }

  async deleteVolume(hostId: string, path: string): Promise<void> {
    return this.guard('deleteVolume', () => this.storage.deleteVolume(hostId, path));
  }

  async copyVolume(request: CopyVolumeRequest): Promise<VolumeDigest> {
    return this.guard('copyVolume', () => this.storage.copy(request));
  }

  async volumeDigest(hostId: string, path: string): Promise<VolumeDigest> {
    return this.guard('volumeDigest', () => this.storage.digest(hostId, path));
  }

  // ------------------------------------------------------------------------------------------ events

  subscribe(listener: (event: HypervisorEvent) => void): () => void {
    this.listeners.add(listener);
    for (const { connection } of this.hosts.values()) {
      connection.enableEvents().catch(() => {
        // HostConnection keeps retrying in the background
      });
    }
    return () => this.listeners.delete(listener);
  }

  /** Resolves once every host's connection is up with its event registrations (for callers that must not miss events). */
  async eventsReady(): Promise<void> {
    await Promise.all(
      [...this.hosts.values()].map(({ connection }) =>
        connection.enableEvents().then(() => connection.get()),
      ),
    );
  }

  private emit(event: HypervisorEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }

  private wireEvents(hostId: string, client: LibvirtClient): void {
    client.events.on('lifecycle', ({ domain, event, detail }) => {
      const name = LIFECYCLE_NAMES[event];
      if (name)
        this.emit({ kind: 'lifecycle', hostId, vmId: uuidToString(domain.uuid), event: name, detail });
    });
    client.events.on('migration-iteration', ({ domain, iteration }) => {
      this.emit({
        kind: 'migration-iteration',
        hostId,
        vmId: uuidToString(domain.uuid),
        iteration: Math.max(0, iteration - 1),
      });
    });
    client.events.on('job-completed', ({ domain, params }) => {
      const vmId = uuidToString(domain.uuid);
      const stats = toMigrationJob('completed', params, this.postCopyStarted.has(`${hostId}/${vmId}`));
      this.completedEvents.set(`${hostId}/${vmId}`, { at: this.clock.now(), stats });
      if (this.completedEvents.size > 1_000) {
        const oldest = this.completedEvents.keys().next().value;
        if (oldest !== undefined) this.completedEvents.delete(oldest);
      }
      this.emit({ kind: 'job-completed', hostId, vmId, stats });
    });
  }

  async close(): Promise<void> {
    this.listeners.clear();
    await Promise.all([...this.hosts.values()].map(({ connection }) => connection.close()));
  }
}

function usedMemMiB(params: ParamRecord): number | null {
  const available = numberParam(params, 'balloon.available');
  const unused = numberParam(params, 'balloon.unused');
  if (available !== undefined && unused !== undefined) return (available - unused) / 1024;
  return kibToMiB(numberParam(params, 'balloon.rss'));
}

/**
 * The DIRTYRATE stats group as a reading. `dirtyrate.calc_start_time` is on QEMU's own (monotonic) clock, so
 * the start time comes from the caller: when drover asked for the measurement, or null if it did not.
 */
export function dirtyRateOf(params: ParamRecord, startedAt: number | null): DirtyRateReading {
  const status = numberParam(params, 'dirtyrate.calc_status');
  if (status === DirtyRateStatus.MEASURED) {
    return {
      status: 'measured',
      dirtyMiBps: numberParam(params, 'dirtyrate.megabytes_per_second') ?? 0,
      startedAt,
      windowS: numberParam(params, 'dirtyrate.calc_period') ?? null,
    };
  }
  return {
    status: status === DirtyRateStatus.MEASURING ? 'measuring' : 'none',
    dirtyMiBps: null,
    startedAt: null,
    windowS: null,
  };
}
