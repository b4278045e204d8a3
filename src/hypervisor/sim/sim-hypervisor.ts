// SimHypervisor: an in-process cluster that implements the Hypervisor interface with pre-copy physics
// (precopy.ts) run by a migration engine (migration-engine.ts: progress on the clock and link shares, behind
// a narrow port), lazily computed load (workloads.ts) and injectable faults (faults.ts). The cluster's state
// types are in sim-model.ts.
//
// Cost model: nothing runs for an idle VM. CPU counters and dirty rates are integrals of each VM's workload
// over clock time, computed when someone reads them, so sampling a host is O(VMs on it). The only timers
// are one per active migration, set for its next boundary (round end, switch-over end, noise period).
//
// libvirt semantics kept: VM ids are UUIDs; a migration always uses PERSIST_DEST | UNDEFINE_SOURCE (the
// definition moves with the VM); an incoming VM shows on the destination as a paused, transient domain
// until the migration ends; a VM's CPU counter restarts at 0 on each host it starts on (a new QEMU process);
// job-completed is emitted on both ends of a successful migration and never for an aborted one; an aborted
// migration stops the destination domain with detail `failed`.
import type { Clock } from '../../domain/clock.js';
import { cpuModelsRunnableOn } from '../../domain/cpu-models.js';
import { errorMessage } from '../../domain/errors.js';
import type { VmState } from '../../domain/snapshot.js';
import {
  HypervisorError,
  noMigrationJob,
  type CopyVolumeRequest,
  type DirtyRateReading,
  type HostInfo,
  type HostSample,
  type Hypervisor,
  type HypervisorEvent,
  type MigrationJob,
  type LifecycleEvent,
  type MigrationHandle,
  type MigrationOutcome,
  type MigrationRequest,
  type StoragePoolInfo,
  type VmInfo,
  type VmPresence,
  type VmSample,
  type VolumeDigest,
  type VolumeInfo,
  type VolumeSpec,
} from '../hypervisor.js';
import {
  parseClusterSpec,
  SimVmSpecSchema,
  type ClusterSpec,
  type ParsedHostSpec,
  type ParsedVmSpec,
  type SimVmSpec,
} from './cluster-spec.js';
import { SimFaults, type FaultHooks, type HostLoad } from './faults.js';
import { MigrationEngine } from './migration-engine.js';
import { PrecopyMigration, type MigrationCosts } from './precopy.js';
import { Prng } from './prng.js';
import type { Instance, SimDisk, SimHost, SimMigration, SimVm } from './sim-model.js';
import { DEFAULT_IMAGES_DIR, SimStorage, type SimBlockDisk } from './sim-storage.js';
import { createWorkload, presetWorkload, WorkloadSpecSchema } from './workloads.js';
import { parseWith } from '../../domain/validation.js';

/** libvirt's lifecycle event detail numbers (virDomainEvent*DetailType) that the simulator emits. */
export const LIFECYCLE_DETAIL = {
  defined: { added: 0, updated: 1 },
  undefined: { removed: 0 },
  started: { booted: 0, migrated: 1 },
  suspended: { paused: 0, migrated: 1, postcopy: 7, postcopyFailed: 8 },
  resumed: { unpaused: 0, migrated: 1, postcopy: 3 },
  stopped: { shutdown: 0, destroyed: 1, crashed: 2, migrated: 3, failed: 5 },
} as const;

export interface SimHypervisorOptions {
  clock: Clock;
  /** Migration bandwidth noise: each noise period the rate is multiplied by 1 ± up to this percent. Default 0. */
  bandwidthNoisePct?: number;
  /** Length of one bandwidth-noise period (clock ms). Default 1000. */
  noisePeriodMs?: number;
  /** How long an offline migration (copying a definition) takes (clock ms). Default 200. */
  offlineMigrationMs?: number;
  /** Downtime of the switch to post-copy (clock ms). Default 20. */
  postcopyDowntimeMs?: number;
  /**
   * Per-migration costs of real QEMU/libvirt (set-up time, one stream's throughput limit, zero-page scan
   * rate); see QEMU_MIGRATION_COSTS. Default: none (an ideal migration).
   */
  migrationCosts?: MigrationCosts;
}

const MIB = 1024 * 1024;

function err(code: ConstructorParameters<typeof HypervisorError>[0], message: string): HypervisorError {
  return new HypervisorError(code, message);
}

export class SimHypervisor implements Hypervisor {
  readonly clock: Clock;
  /** Fault injection for tests (see faults.ts). */
  readonly faults: SimFaults;
  /** Per-host storage pools and volumes (block migrations need the destination's). */
  readonly storage = new SimStorage();
  private readonly hosts = new Map<string, SimHost>();
  private readonly vms = new Map<string, SimVm>();
  /** vmId -> hosts where a domain of it exists. */
  private readonly presence = new Map<string, string[]>();
  private readonly listeners = new Set<(event: HypervisorEvent) => void>();
  private readonly engine: MigrationEngine;
  private readonly rng: Prng;
  private readonly originMs: number;
  private readonly offlineMs: number;
  private readonly postcopyDowntimeMs: number;
  private readonly costs: MigrationCosts;
  private migrationCount = 0;

  constructor(spec: ClusterSpec, options: SimHypervisorOptions) {
    const parsed = parseClusterSpec(spec);
    this.clock = options.clock;
    this.originMs = this.clock.now();
    this.rng = new Prng(parsed.seed);
    this.engine = new MigrationEngine(
      {
        clock: this.clock,
        noisePct: options.bandwidthNoisePct ?? 0,
        noisePeriodMs: options.noisePeriodMs ?? 1000,
      },
      {
        dirtiedMiB: (vm, t0, t1) => this.dirtiedMiB(vm, t0, t1),
        dirtyRateAt: (vm, t) => this.dirtyRateAt(vm, t),
        roundStarted: (m, iteration) =>
          this.emit({ kind: 'migration-iteration', hostId: m.src.info.id, vmId: m.vm.id, iteration }),
        throttled: (m, pct, atMs) => this.setThrottle(m.srcInst, pct, atMs),
        switchingOver: (m, atMs) => this.switchingOver(m, atMs),
        completed: (m, atMs) => this.completeMigration(m, atMs),
      },
    );
    this.offlineMs = options.offlineMigrationMs ?? 200;
    this.postcopyDowntimeMs = options.postcopyDowntimeMs ?? 20;
    this.costs = { ...options.migrationCosts };
    for (const h of parsed.hosts) this.addHostInternal(h);
    parsed.vms.forEach((v, i) => this.addVmInternal(v, i, false));
    this.faults = new SimFaults(this.hooks());
  }

  // ---------------------------------------------------------------- Hypervisor: inventory and samples

  listHosts(): Promise<HostInfo[]> {
    return Promise.resolve(
      [...this.hosts.values()].map((h) => ({ ...h.info, labels: { ...h.info.labels } })),
    );
  }

  async sampleHost(hostId: string): Promise<HostSample> {
    const host = await this.gate(hostId);
    const now = this.clock.now();
    this.settleHostCpu(host, now);
    return {
      hostId,
      at: now,
      cpuBusyNs: host.reportedBusyNs,
      cpuTotalNs: host.info.cpus * (now - host.bootMs) * 1e6,
      memTotalMiB: host.info.memMiB,
      memUsedMiB: this.hostMemUsed(host),
    };
  }

  async listVms(hostId: string): Promise<VmInfo[]> {
    const host = await this.gate(hostId);
    return [...host.vms.values()].map((inst) => this.vmInfo(inst));
  }

  async sampleVms(hostId: string): Promise<VmSample[]> {
    const host = await this.gate(hostId);
    const now = this.clock.now();
    const out: VmSample[] = [];
    for (const inst of host.vms.values()) {
      out.push({
        vmId: inst.vm.id,
        hostId,
        at: now,
        state: inst.state,
        cpuTimeNs: this.cpuNsAt(inst, now),
        vcpus: inst.vm.vcpus,
        memMiB: inst.vm.memMiB,
        memUsedMiB: inst.state === 'shutoff' ? null : inst.vm.memUsedMiB,
        dirtyRate: this.dirtyReading(inst, now),
        migrating: inst.job !== null && !inst.job.ended,
      });
    }
    return out;
  }

  async startDirtyRate(hostId: string, vmId: string, windowS: number): Promise<void> {
    if (!(Number.isFinite(windowS) && windowS > 0 && windowS <= 60)) {
      throw err('invalid_argument', `dirty-rate window: expected 0 < windowS <= 60, got ${windowS}`);
    }
    const inst = this.instance(await this.gate(hostId), vmId);
    if (inst.state !== 'running' || inst.incoming) {
      throw err('operation_invalid', `VM ${vmId} on ${hostId} is not running`);
    }
    inst.dirty = { startedAt: this.clock.now(), windowS, resultMiBps: null };
  }

  async cpuCompatible(vmId: string, fromHostId: string, toHostId: string): Promise<boolean> {
    const from = await this.gate(fromHostId);
    const to = await this.gate(toHostId);
    const inst = this.instance(from, vmId);
    return to.supported.has(inst.vm.cpuModel);
  }

  async locateVm(vmId: string): Promise<VmPresence[]> {
    await Promise.resolve();
    const out: VmPresence[] = [];
    for (const hostId of this.presence.get(vmId) ?? []) {
      if (this.faults.isDown(hostId)) continue;
      const inst = this.hosts.get(hostId)?.vms.get(vmId);
      if (inst) out.push({ hostId, state: inst.state, persistent: inst.persistent });
    }
    return out;
  }

  // ---------------------------------------------------------------- Hypervisor: VM control

  async suspendVm(hostId: string, vmId: string): Promise<void> {
    const inst = this.instance(await this.gate(hostId), vmId);
    if (inst.state === 'shutoff' || inst.incoming) {
      throw err('operation_invalid', `VM ${vmId} on ${hostId} is not running`);
    }
    if (inst.state === 'paused') return;
    const m = inst.job;
    if (m && !m.ended) this.engine.settle(m, this.clock.now());
    this.setState(inst, 'paused', this.clock.now());
    this.emitLifecycle(hostId, vmId, 'suspended', LIFECYCLE_DETAIL.suspended.paused);
  }

  async resumeVm(hostId: string, vmId: string): Promise<void> {
    const inst = this.instance(await this.gate(hostId), vmId);
    if (inst.state === 'shutoff') throw err('operation_invalid', `VM ${vmId} on ${hostId} is not running`);
    if (inst.state === 'running') return;
    const m = inst.job;
    const migrationPaused =
      m !== null && !m.ended && m.srcInst === inst && m.model.phase !== 'precopy' && m.model.phase !== 'disk';
    if (inst.incoming || migrationPaused) {
      throw err('operation_invalid', `VM ${vmId} on ${hostId} is paused by its migration`);
    }
    if (m && !m.ended) this.engine.settle(m, this.clock.now());
    this.setState(inst, 'running', this.clock.now());
    this.emitLifecycle(hostId, vmId, 'resumed', LIFECYCLE_DETAIL.resumed.unpaused);
  }

  async destroyVm(hostId: string, vmId: string): Promise<void> {
    const host = await this.gate(hostId);
    const inst = this.instance(host, vmId);
    if (inst.state === 'shutoff') throw err('operation_invalid', `VM ${vmId} on ${hostId} is not running`);
    const m = inst.job;
    if (m && !m.ended) {
      this.engine.settle(m, this.clock.now());
      this.endMigration(m, 'failed', `domain ${vmId} was destroyed on ${hostId}`);
    }
    if (!host.vms.has(vmId)) return; // ending the migration removed it (incoming domain)
    this.stopInstance(host, inst, this.clock.now());
    this.emitLifecycle(hostId, vmId, 'stopped', LIFECYCLE_DETAIL.stopped.destroyed);
  }

  // ---------------------------------------------------------------- Hypervisor: migration

  async migrate(request: MigrationRequest): Promise<MigrationHandle> {
    if (!(Number.isFinite(request.maxDowntimeMs) && request.maxDowntimeMs >= 0)) {
      throw err('invalid_argument', `maxDowntimeMs: expected a number >= 0, got ${request.maxDowntimeMs}`);
    }
    const cap = request.bandwidthMiBps ?? null;
    if (cap !== null && !(Number.isFinite(cap) && cap > 0)) {
      throw err('invalid_argument', `bandwidthMiBps: expected a positive number or null, got ${cap}`);
    }
    const src = await this.gate(request.from);
    const dst = await this.gate(request.to);
    if (src === dst) throw err('invalid_argument', `migration from ${request.from} to itself`);
    const srcInst = this.instance(src, request.vmId);
    if (srcInst.offlineMoving || (srcInst.job && !srcInst.job.ended)) {
      throw err('operation_invalid', `VM ${request.vmId} already has a migration job on ${src.info.id}`);
    }
    const existing = dst.vms.get(request.vmId);
    if (existing && existing.state !== 'shutoff') {
      throw err('operation_failed', `VM ${request.vmId} is already active on ${dst.info.id}`);
    }
    if (request.kind === 'offline') return this.migrateOffline(request, src, dst, srcInst);

    if (srcInst.state === 'shutoff' || srcInst.incoming) {
      throw err('operation_invalid', `VM ${request.vmId} is not running on ${src.info.id}`);
    }
    const vm = srcInst.vm;
    if (request.kind === 'live' && vm.disks.some((d) => !d.shared)) {
      throw err(
        'migrate_unsafe',
        `VM ${vm.id} has disks on local storage: a live migration needs block copy`,
      );
    }
    if (!dst.supported.has(vm.cpuModel)) {
      throw err('cpu_incompatible', `host ${dst.info.id} cannot run CPU model ${vm.cpuModel} of VM ${vm.id}`);
    }
    if (request.kind === 'block')
      this.storage.prepareIncoming(
        dst.info.id,
        this.blockDisks(vm, request.incremental ?? false),
        request.incremental ?? false,
      );
    const now = this.clock.now();
    const diskMiB =
      request.kind === 'block'
        ? vm.disks
            .filter((d) => !d.shared)
            .reduce((sum, d) => sum + (request.incremental ? d.topLayerMiB : d.allocatedMiB), 0)
        : 0;
    const dstInst: Instance = existing ?? this.newInstance(vm, dst.info.id, 'paused', false, now);
    if (existing) this.setState(existing, 'paused', now);
    dstInst.incoming = true;
    const model = new PrecopyMigration({
      startedAtMs: now,
      memMiB: vm.memMiB,
      usedMiB: vm.memUsedMiB,
      wwsMiB: vm.workload.wwsMiB,
      diskMiB,
      ...this.costs,
      maxDowntimeMs: request.maxDowntimeMs,
      autoConverge: request.autoConverge ?? false,
      postcopyDowntimeMs: this.postcopyDowntimeMs,
    });
    let resolve!: (o: MigrationOutcome) => void;
    const done = new Promise<MigrationOutcome>((r) => {
      resolve = r;
    });
    const rng = this.rng.fork(++this.migrationCount);
    const m: SimMigration = {
      request: { ...request },
      vm,
      src,
      dst,
      srcInst,
      dstInst,
      dstExisted: existing !== undefined,
      model,
      capMiBps: cap ?? srcInst.maxBandwidthMiBps,
      rng,
      noiseFactor: 1,
      noiseIndex: 0,
      pausedBeforeSwitch: false,
      timer: null,
      ended: false,
      resolve,
    };
    srcInst.job = m;
    dstInst.job = m;
    if (!existing) this.attach(dst, dstInst);
    this.emitLifecycle(dst.info.id, vm.id, 'started', LIFECYCLE_DETAIL.started.migrated);
    this.engine.start(m);
    return { request: m.request, done };
  }

  async jobStats(hostId: string, vmId: string): Promise<MigrationJob> {
    const inst = await this.progressInstance(hostId, vmId);
    const m = inst.job;
    if (!m || m.ended) return noMigrationJob();
    const now = this.clock.now();
    this.engine.settle(m, now);
    if (m.ended) return noMigrationJob();
    return m.model.stats('active', now, this.engine.guest(m), this.engine.bandwidthOf(m));
  }

  async completedJobStats(hostId: string, vmId: string): Promise<MigrationJob | null> {
    const inst = await this.progressInstance(hostId, vmId);
    return inst.completed ? { ...inst.completed } : null;
  }

  async setMaxDowntime(hostId: string, vmId: string, ms: number): Promise<void> {
    if (!(Number.isFinite(ms) && ms >= 0)) {
      throw err('invalid_argument', `max downtime: expected a number >= 0, got ${ms}`);
    }
    const m = this.outgoingJob(await this.progressInstance(hostId, vmId), hostId);
    const now = this.clock.now();
    this.engine.settle(m, now);
    if (m.ended) return;
    m.model.maxDowntimeMs = ms;
    // QEMU re-checks the switch-over condition continuously, so a larger limit can take effect at once.
    const happened = m.model.checkSwitchoverNow(this.engine.bandwidthOf(m));
    this.engine.apply(m, happened);
    this.engine.schedule(m);
  }

  async setMaxBandwidth(hostId: string, vmId: string, mibps: number): Promise<void> {
    if (!(Number.isFinite(mibps) && mibps > 0)) {
      throw err('invalid_argument', `max bandwidth: expected a positive number of MiB/s, got ${mibps}`);
    }
    const inst = await this.progressInstance(hostId, vmId);
    const m = inst.job;
    if (!m || m.ended) {
      inst.maxBandwidthMiBps = mibps;
      return;
    }
    if (m.srcInst !== inst)
      throw err('operation_invalid', `VM ${vmId} on ${hostId} is the migration's destination`);
    this.engine.settle(m, this.clock.now());
    if (m.ended) return;
    // The peers' rates change too: what this one no longer takes (or now takes) of the links is theirs.
    this.engine.changeShares([m.src, m.dst], () => {
      m.capMiBps = mibps;
    });
  }

  async startPostCopy(hostId: string, vmId: string): Promise<void> {
    const m = this.outgoingJob(await this.progressInstance(hostId, vmId), hostId);
    if (!m.request.postCopy) {
      throw err('operation_invalid', `migration of VM ${vmId} was not started with post-copy allowed`);
    }
    const now = this.clock.now();
    this.engine.settle(m, now);
    if (m.ended) throw err('operation_invalid', `VM ${vmId} has no active migration job`);
    if (m.model.phase !== 'precopy') {
      throw err('operation_invalid', `migration of VM ${vmId} is in phase ${m.model.phase}, not pre-copy`);
    }
    m.model.switchToPostcopy();
    m.pausedBeforeSwitch = m.srcInst.state === 'paused';
    this.setState(m.srcInst, 'paused', now);
    this.emitLifecycle(m.src.info.id, vmId, 'suspended', LIFECYCLE_DETAIL.suspended.postcopy);
    if (!m.pausedBeforeSwitch) {
      this.setState(m.dstInst, 'running', now);
      this.emitLifecycle(m.dst.info.id, vmId, 'resumed', LIFECYCLE_DETAIL.resumed.postcopy);
    }
    this.engine.apply(m, m.model.finishIfEmpty());
    this.engine.schedule(m);
  }

  async abortJob(hostId: string, vmId: string): Promise<void> {
    const m = this.outgoingJob(await this.progressInstance(hostId, vmId), hostId);
    if (m.model.postcopy) {
      throw err('operation_invalid', `migration of VM ${vmId} is in post-copy and can no longer be aborted`);
    }
    this.engine.settle(m, this.clock.now());
    if (m.ended) return;
    this.endMigration(m, 'aborted', 'operation aborted: migration out job: canceled by client');
  }

  subscribe(listener: (event: HypervisorEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  close(): Promise<void> {
    this.engine.close();
    for (const m of [...this.engine.active]) {
      this.engine.settle(m, this.clock.now());
      if (!m.ended) this.endMigration(m, 'failed', 'hypervisor closed');
    }
    this.listeners.clear();
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- simulator-only API

  /** Adds a VM to the running simulation (validated like a spec entry); emits defined/started. */
  addVm(spec: SimVmSpec): void {
    const parsed = parseWith(SimVmSpecSchema, spec, 'vm');
    if (!this.hosts.has(parsed.host)) throw err('no_host', `unknown host ${parsed.host}`);
    if (this.vms.has(parsed.id)) throw err('operation_failed', `VM ${parsed.id} already exists`);
    this.addVmInternal(parsed, this.vms.size, true);
  }

  /** Number of migrations in progress. */
  activeMigrations(): number {
    return this.engine.active.size;
  }

  /** The migration link bandwidth a host has now (after slowLink). */
  linkBandwidthMiBps(hostId: string): number {
    const host = this.hosts.get(hostId);
    if (!host) throw err('no_host', `unknown host ${hostId}`);
    return host.bandwidthMiBps * host.linkFactor;
  }

  /** The VM's CPU demand (percent of its vCPUs) and dirty rate (MiB/s) now, before any throttling. */
  vmDemand(vmId: string): { cpuPct: number; dirtyMiBps: number; wwsMiB: number } {
    const vm = this.vms.get(vmId);
    if (!vm) throw err('no_domain', `unknown VM ${vmId}`);
    const now = this.clock.now();
    return {
      cpuPct: vm.workload.cpuPctAt(now),
      dirtyMiBps: this.dirtyRateAt(vm, now),
      wwsMiB: vm.workload.wwsMiB,
    };
  }

  /** Every VM id in the simulation. */
  vmIds(): string[] {
    return [...this.vms.keys()];
  }

  /**
   * The host a VM lives on now: where it runs or is paused (not as the target of a migration under way), else
   * where it is defined; null for an unknown VM.
   */
  homeOf(vmId: string): string | null {
    let defined: string | null = null;
    for (const hostId of this.presence.get(vmId) ?? []) {
      const inst = this.hosts.get(hostId)?.vms.get(vmId);
      if (!inst) continue;
      if (!inst.incoming && inst.state !== 'shutoff') return hostId;
      defined ??= hostId;
    }
    return defined;
  }

  // ---------------------------------------------------------------- construction

  private addHostInternal(h: ParsedHostSpec): void {
    const now = this.originMs;
    this.storage.addHost(h.id, h.pools);
    this.hosts.set(h.id, {
      info: {
        id: h.id,
        cpus: h.cpus,
        memMiB: h.memMiB,
        cpuModel: h.cpuModel,
        bandwidthMiBps: h.bandwidthMiBps,
        labels: { ...h.labels },
      },
      bandwidthMiBps: h.bandwidthMiBps,
      supported: new Set(h.supportedCpuModels ?? cpuModelsRunnableOn(h.cpuModel)),
      reservedMemMiB: h.reservedMemMiB,
      vms: new Map(),
      linkFactor: 1,
      migrations: new Set(),
      bootMs: now,
      retiredCpuNs: 0,
      lastSourceNs: 0,
      reportedBusyNs: 0,
      lastSampleMs: now,
      load: null,
    });
  }

  private addVmInternal(v: ParsedVmSpec, index: number, announce: boolean): void {
    const host = this.hosts.get(v.host);
    if (!host) throw err('no_host', `unknown host ${v.host}`);
    const workloadSpec =
      typeof v.workload === 'string'
        ? parseWith(WorkloadSpecSchema, presetWorkload(v.workload, this.rng.fork(index)))
        : v.workload;
    const disks: SimDisk[] = (
      v.disks ?? [{ target: 'vda', source: null, shared: true, format: 'raw', capacityMiB: 20480 }]
    ).map((d) => {
      const allocatedMiB = d.allocatedMiB ?? d.capacityMiB;
      // A local disk is a file in a storage pool of its host (in libvirt's default directory unless given).
      const source =
        d.source ?? (d.shared ? null : `${DEFAULT_IMAGES_DIR}/${v.name}-${d.target}.${d.format ?? 'raw'}`);
      return {
        target: d.target,
        source,
        shared: d.shared,
        format: d.format ?? null,
        capacityMiB: d.capacityMiB,
        allocatedMiB,
        topLayerMiB: d.topLayerMiB ?? allocatedMiB,
        backing: d.backing
          ? { path: d.backing.path, format: d.backing.format ?? null, sizeMiB: d.backing.sizeMiB }
          : null,
      };
    });
    this.seedVolumes(host.info.id, disks);
    const vm: SimVm = {
      id: v.id,
      name: v.name,
      vcpus: v.vcpus,
      memMiB: v.memMiB,
      memUsedMiB: v.memUsedMiB ?? v.memMiB,
      cpuModel: v.cpuModel ?? host.info.cpuModel ?? 'qemu64',
      disks,
      storage: disks.every((d) => d.shared) ? 'shared' : 'local',
      labels: { ...v.labels },
      workload: createWorkload(workloadSpec, this.originMs, v.memMiB),
      spikes: [],
      breakAtSwitchover: false,
    };
    this.vms.set(vm.id, vm);
    const now = this.clock.now();
    const inst = this.newInstance(vm, host.info.id, v.state, v.persistent, now);
    this.attach(host, inst);
    if (announce) {
      if (v.persistent) this.emitLifecycle(host.info.id, vm.id, 'defined', LIFECYCLE_DETAIL.defined.added);
      if (v.state !== 'shutoff')
        this.emitLifecycle(host.info.id, vm.id, 'started', LIFECYCLE_DETAIL.started.booted);
    }
  }

  private newInstance(vm: SimVm, hostId: string, state: VmState, persistent: boolean, now: number): Instance {
    return {
      vm,
      hostId,
      state,
      persistent,
      incoming: false,
      cpuNs: 0,
      cpuSinceMs: state === 'running' ? now : null,
      throttlePct: 0,
      dirty: null,
      job: null,
      offlineMoving: false,
      completed: null,
      maxBandwidthMiBps: null,
    };
  }

  private attach(host: SimHost, inst: Instance): void {
    host.vms.set(inst.vm.id, inst);
    const hosts = this.presence.get(inst.vm.id);
    if (!hosts) this.presence.set(inst.vm.id, [host.info.id]);
    else if (!hosts.includes(host.info.id)) hosts.push(host.info.id);
  }

  private forget(host: SimHost, vmId: string): void {
    host.vms.delete(vmId);
    const hosts = this.presence.get(vmId);
    if (hosts)
      this.presence.set(
        vmId,
        hosts.filter((h) => h !== host.info.id),
      );
  }

  private detach(host: SimHost, inst: Instance, now: number): void {
    host.retiredCpuNs += this.cpuNsAt(inst, now);
    this.forget(host, inst.vm.id);
  }

  // ---------------------------------------------------------------- CPU, memory, dirty rate

  private cpuNsAt(inst: Instance, now: number): number {
    const since = inst.cpuSinceMs;
    if (since === null || now <= since) return inst.cpuNs;
    const pctMs = inst.vm.workload.cpuPctIntegral(since, now);
    return inst.cpuNs + (pctMs / 100) * inst.vm.vcpus * 1e6 * (1 - inst.throttlePct / 100);
  }

  /** Changes a domain's state at time `t`, settling its CPU counter first. */
  private setState(inst: Instance, state: VmState, t: number): void {
    const at = Math.max(t, inst.cpuSinceMs ?? t);
    inst.cpuNs = this.cpuNsAt(inst, at);
    inst.state = state;
    inst.cpuSinceMs = state === 'running' ? at : null;
  }

  private setThrottle(inst: Instance, pct: number, t: number): void {
    const at = Math.max(t, inst.cpuSinceMs ?? t);
    inst.cpuNs = this.cpuNsAt(inst, at);
    if (inst.cpuSinceMs !== null) inst.cpuSinceMs = at;
    inst.throttlePct = pct;
  }

  /** Stops a domain: a persistent one stays defined (shut off, counter reset), a transient one goes. */
  private stopInstance(host: SimHost, inst: Instance, now: number): void {
    this.setState(inst, 'shutoff', now);
    host.retiredCpuNs += inst.cpuNs;
    inst.cpuNs = 0;
    inst.throttlePct = 0;
    inst.dirty = null;
    inst.incoming = false;
    inst.job = null;
    if (!inst.persistent) this.forget(host, inst.vm.id);
  }

  private sourceNs(host: SimHost, now: number): number {
    if (host.load && host.load.cpuPct !== null) {
      return (host.load.cpuPct / 100) * host.info.cpus * (now - host.load.sinceMs) * 1e6;
    }
    let sum = host.retiredCpuNs;
    for (const inst of host.vms.values()) sum += this.cpuNsAt(inst, now);
    return sum;
  }

  /**
   * Moves the host's reported busy counter up to `now`: by the growth of its source (sum of its domains, or
   * the injected load), never by more than all its CPUs could do in the elapsed time.
   */
  private settleHostCpu(host: SimHost, now: number): void {
    const source = this.sourceNs(host, now);
    const capNs = host.info.cpus * Math.max(0, now - host.lastSampleMs) * 1e6;
    host.reportedBusyNs += Math.min(capNs, Math.max(0, source - host.lastSourceNs));
    host.lastSourceNs = source;
    host.lastSampleMs = now;
  }

  private hostMemUsed(host: SimHost): number {
    if (host.load && host.load.memUsedMiB !== null) return host.load.memUsedMiB;
    let sum = host.reservedMemMiB;
    for (const inst of host.vms.values()) if (inst.state !== 'shutoff') sum += inst.vm.memUsedMiB;
    return Math.min(sum, host.info.memMiB);
  }

  private dirtyRateAt(vm: SimVm, t: number): number {
    for (const s of vm.spikes) if (t >= s.fromMs && t < s.toMs) return s.dirtyMiBps;
    return vm.workload.dirtyMiBpsAt(t);
  }

  /** MiB the unthrottled guest writes over [t0, t1], spikes included. */
  private dirtiedMiB(vm: SimVm, t0: number, t1: number): number {
    if (t1 <= t0) return 0;
    let total = vm.workload.dirtiedMiB(t0, t1);
    for (const s of vm.spikes) {
      const a = Math.max(t0, s.fromMs);
      const b = Math.min(t1, s.toMs);
      if (b > a) total += (s.dirtyMiBps * (b - a)) / 1000 - vm.workload.dirtiedMiB(a, b);
    }
    return total;
  }

  /**
   * A dirty-rate measurement counts the distinct pages written during its window (so at most the writable
   * working set), divided by the window; the guest's current throttle applies.
   */
  private dirtyReading(inst: Instance, now: number): DirtyRateReading {
    const d = inst.dirty;
    if (!d) return { status: 'none', dirtyMiBps: null, startedAt: null, windowS: null };
    const endMs = d.startedAt + d.windowS * 1000;
    if (now < endMs)
      return { status: 'measuring', dirtyMiBps: null, startedAt: d.startedAt, windowS: d.windowS };
    if (d.resultMiBps === null) {
      const written = this.dirtiedMiB(inst.vm, d.startedAt, endMs) * (1 - inst.throttlePct / 100);
      d.resultMiBps = Math.min(written, inst.vm.workload.wwsMiB) / d.windowS;
    }
    return { status: 'measured', dirtyMiBps: d.resultMiBps, startedAt: d.startedAt, windowS: d.windowS };
  }

  // ---------------------------------------------------------------- storage

  private seedVolumes(hostId: string, disks: readonly SimDisk[]): void {
    for (const d of disks) {
      if (d.shared || d.source === null) continue;
      if (d.backing)
        this.storage.seed(hostId, {
          path: d.backing.path,
          format: d.backing.format,
          capacityBytes: d.capacityMiB * MIB,
          allocationBytes: d.backing.sizeMiB * MIB,
          sizeBytes: d.backing.sizeMiB * MIB,
          backing: null,
        });
      const allocated = (d.backing ? d.topLayerMiB : d.allocatedMiB) * MIB;
      this.storage.seed(hostId, {
        path: d.source,
        format: d.format,
        capacityBytes: d.capacityMiB * MIB,
        allocationBytes: allocated,
        sizeBytes: d.format === 'raw' ? d.capacityMiB * MIB : allocated,
        backing: d.backing ? { path: d.backing.path, format: d.backing.format } : null,
      });
    }
  }

  private blockDisks(vm: SimVm, incremental: boolean): SimBlockDisk[] {
    return vm.disks
      .filter((d): d is SimDisk & { source: string } => !d.shared && d.source !== null)
      .map((d) => ({
        path: d.source,
        format: d.format,
        capacityMiB: d.capacityMiB,
        copiedMiB: incremental ? d.topLayerMiB : d.allocatedMiB,
      }));
  }

  async listStoragePools(hostId: string): Promise<StoragePoolInfo[]> {
    await this.gate(hostId);
    return this.storage.listPools(hostId);
  }

  async createStoragePool(
    hostId: string,
    pool: { name: string; targetPath: string },
  ): Promise<StoragePoolInfo> {
    await this.gate(hostId);
    return this.storage.createPool(hostId, pool);
  }

  async lookupVolume(hostId: string, path: string): Promise<VolumeInfo | null> {
    await this.gate(hostId);
    return this.storage.lookupVolume(hostId, path);
  }

  async createVolume(hostId: string, spec: VolumeSpec): Promise<VolumeInfo> {
    await this.gate(hostId);
    return this.storage.createVolume(hostId, spec);
  }

  async deleteVolume(hostId: string, path: string): Promise<void> {
    await this.gate(hostId);
    this.storage.deleteVolume(hostId, path);
  }

  /** Takes the time the bytes need on the slower of the two links. */
  async copyVolume(request: CopyVolumeRequest): Promise<VolumeDigest> {
    const src = await this.gate(request.from);
    const dst = await this.gate(request.to);
    if (src === dst)
      throw err('invalid_argument', `copyVolume: source and destination are both ${request.from}`);
    const bytes = this.storage.copyCheck(request);
    const rateMiBps = Math.min(src.bandwidthMiBps * src.linkFactor, dst.bandwidthMiBps * dst.linkFactor);
    await this.clock.sleep(Math.ceil((bytes / MIB / rateMiBps) * 1000));
    await this.gate(request.from);
    await this.gate(request.to);
    return this.storage.copyCommit(request);
  }

  async volumeDigest(hostId: string, path: string): Promise<VolumeDigest> {
    await this.gate(hostId);
    return this.storage.digest(hostId, path);
  }

  private vmInfo(inst: Instance): VmInfo {
    const vm = inst.vm;
    return {
      id: vm.id,
      name: vm.name,
      hostId: inst.hostId,
      state: inst.state,
      persistent: inst.persistent,
      vcpus: vm.vcpus,
      memMiB: vm.memMiB,
      cpuModel: vm.cpuModel,
      disks: vm.disks.map((d) => ({
        target: d.target,
        source: d.source,
        shared: d.shared,
        format: d.format,
        capacityMiB: d.capacityMiB,
      })),
      storage: vm.storage,
      labels: { ...vm.labels },
    };
  }

  // ---------------------------------------------------------------- what a migration does to the domains (the engine port)

  /** The switch-over began: the source pauses (unless its user had paused it), or the armed fault breaks it. */
  private switchingOver(m: SimMigration, atMs: number): boolean {
    m.pausedBeforeSwitch = m.srcInst.state === 'paused';
    if (m.vm.breakAtSwitchover) {
      m.vm.breakAtSwitchover = false;
      this.breakPausedBothEnds(m, atMs);
      return false;
    }
    if (!m.pausedBeforeSwitch) {
      this.setState(m.srcInst, 'paused', atMs);
      this.emitLifecycle(m.src.info.id, m.vm.id, 'suspended', LIFECYCLE_DETAIL.suspended.migrated);
    }
    return true;
  }

  /** The engine completed the migration (and released it): the VM moves to the destination. */
  private completeMigration(m: SimMigration, atMs: number): void {
    const vmId = m.vm.id;
    const stats = m.model.stats('completed', atMs, this.engine.guest(m));
    const srcId = m.src.info.id;
    const dstId = m.dst.info.id;
    const now = this.clock.now();
    if (m.request.kind === 'block') {
      const incremental = m.request.incremental ?? false;
      this.storage.completeIncoming(srcId, dstId, this.blockDisks(m.vm, incremental), incremental);
    }
    // Source: the domain stops (migrated) and its definition is removed (UNDEFINE_SOURCE).
    m.srcInst.job = null;
    this.setState(m.srcInst, 'shutoff', atMs);
    this.detach(m.src, m.srcInst, now);
    this.emit({ kind: 'job-completed', hostId: srcId, vmId, stats: { ...stats } });
    this.emitLifecycle(srcId, vmId, 'stopped', LIFECYCLE_DETAIL.stopped.migrated);
    if (m.srcInst.persistent)
      this.emitLifecycle(srcId, vmId, 'undefined', LIFECYCLE_DETAIL.undefined.removed);
    // Destination: the domain runs (or stays paused if its user paused it) and is defined (PERSIST_DEST).
    const dst = m.dstInst;
    dst.job = null;
    dst.incoming = false;
    dst.completed = stats;
    dst.dirty = null;
    const wasRunning = dst.state === 'running';
    if (!m.pausedBeforeSwitch && !wasRunning) {
      this.setState(dst, 'running', atMs);
      this.emitLifecycle(dstId, vmId, 'resumed', LIFECYCLE_DETAIL.resumed.migrated);
    }
    const detail = dst.persistent ? LIFECYCLE_DETAIL.defined.updated : LIFECYCLE_DETAIL.defined.added;
    dst.persistent = true;
    this.emitLifecycle(dstId, vmId, 'defined', detail);
    this.emit({ kind: 'job-completed', hostId: dstId, vmId, stats: { ...stats } });
    m.resolve({ result: 'completed', error: null, stats });
  }

  /**
   * Ends a migration that did not complete: the VM keeps running on the source (resumed if the migration
   * had paused it) and nothing is left on the destination (a domain it had defined before stays defined,
   * shut off). Source gets no job-completed event; the destination domain stops with detail `failed`.
   */
  private endMigration(m: SimMigration, result: 'aborted' | 'failed', message: string): void {
    const now = this.clock.now();
    this.engine.release(m);
    const vmId = m.vm.id;
    const stats = m.model.stats(result === 'aborted' ? 'cancelled' : 'failed', now, this.engine.guest(m));
    const src = m.srcInst;
    src.job = null;
    src.completed = stats;
    if (src.throttlePct > 0) this.setThrottle(src, 0, now);
    const pausedByMigration =
      (m.model.phase === 'switchover' || m.model.phase === 'postcopy') && !m.pausedBeforeSwitch;
    if (m.model.postcopy) {
      // Post-copy cannot fall back: the guest's memory is split across both ends; it stops on both.
      if (m.dst.vms.get(vmId) === m.dstInst) {
        m.dstInst.job = null;
        m.dstInst.incoming = false;
        this.setState(m.dstInst, 'paused', now);
        this.emitLifecycle(m.dst.info.id, vmId, 'suspended', LIFECYCLE_DETAIL.suspended.postcopyFailed);
      }
      m.resolve({
        result: 'failed',
        error: `${message} (during post-copy: the VM is paused on both hosts)`,
        stats,
      });
      return;
    }
    if (pausedByMigration && this.srcAlive(m)) {
      this.setState(src, 'running', now);
      this.emitLifecycle(m.src.info.id, vmId, 'resumed', LIFECYCLE_DETAIL.resumed.migrated);
    }
    const dst = m.dstInst;
    if (m.dst.vms.get(vmId) === dst) {
      dst.job = null;
      dst.incoming = false;
      if (m.dstExisted) {
        this.setState(dst, 'shutoff', now);
        dst.cpuNs = 0;
      } else {
        this.detach(m.dst, dst, now);
      }
      this.emitLifecycle(m.dst.info.id, vmId, 'stopped', LIFECYCLE_DETAIL.stopped.failed);
    }
    m.resolve({ result, error: message, stats });
  }

  private srcAlive(m: SimMigration): boolean {
    return m.src.vms.get(m.vm.id) === m.srcInst && m.srcInst.state !== 'shutoff';
  }

  /** The paused-on-both-ends fault: the switch-over breaks after pausing the source. */
  private breakPausedBothEnds(m: SimMigration, atMs: number): void {
    this.engine.release(m);
    const vmId = m.vm.id;
    if (m.srcInst.state !== 'paused') {
      this.setState(m.srcInst, 'paused', atMs);
      this.emitLifecycle(m.src.info.id, vmId, 'suspended', LIFECYCLE_DETAIL.suspended.migrated);
    }
    const stats = m.model.stats('failed', atMs, this.engine.guest(m));
    m.srcInst.job = null;
    m.srcInst.completed = stats;
    m.dstInst.job = null;
    m.dstInst.incoming = false;
    m.resolve({
      result: 'failed',
      error:
        'migration failed at switch-over: connection to the destination lost; the VM is paused on both hosts',
      stats,
    });
  }

  private migrateOffline(
    request: MigrationRequest,
    src: SimHost,
    dst: SimHost,
    srcInst: Instance,
  ): Promise<MigrationHandle> {
    if (srcInst.state !== 'shutoff' || !srcInst.persistent) {
      throw err(
        'operation_invalid',
        `offline migration needs a defined, shut-off VM; ${request.vmId} is ${srcInst.state}`,
      );
    }
    srcInst.offlineMoving = true;
    const vm = srcInst.vm;
    const done = this.clock.sleep(this.offlineMs).then((): MigrationOutcome => {
      srcInst.offlineMoving = false;
      if (this.faults.isDown(src.info.id) || this.faults.isDown(dst.info.id)) {
        return { result: 'failed', error: 'a host of the offline migration is not answering', stats: null };
      }
      if (src.vms.get(vm.id) !== srcInst || srcInst.state !== 'shutoff') {
        return {
          result: 'failed',
          error: `VM ${vm.id} changed on ${src.info.id} during the offline migration`,
          stats: null,
        };
      }
      const now = this.clock.now();
      const existing = dst.vms.get(vm.id);
      if (existing && existing.state !== 'shutoff') {
        return { result: 'failed', error: `VM ${vm.id} is already active on ${dst.info.id}`, stats: null };
      }
      if (existing) {
        existing.persistent = true;
        this.emitLifecycle(dst.info.id, vm.id, 'defined', LIFECYCLE_DETAIL.defined.updated);
      } else {
        this.attach(dst, this.newInstance(vm, dst.info.id, 'shutoff', true, now));
        this.emitLifecycle(dst.info.id, vm.id, 'defined', LIFECYCLE_DETAIL.defined.added);
      }
      this.detach(src, srcInst, now);
      this.emitLifecycle(src.info.id, vm.id, 'undefined', LIFECYCLE_DETAIL.undefined.removed);
      return { result: 'completed', error: null, stats: null };
    });
    // `done` never rejects: anything unexpected becomes a failed outcome.
    const settled = done.catch((e: unknown): MigrationOutcome => ({
      result: 'failed',
      error: errorMessage(e),
      stats: null,
    }));
    return Promise.resolve({ request: { ...request }, done: settled });
  }

  // ---------------------------------------------------------------- gates, lookups, events

  private async gate(hostId: string): Promise<SimHost> {
    const host = this.hosts.get(hostId);
    if (!host) throw err('no_host', `unknown host ${hostId}`);
    const wait = this.faults.hostGate(hostId);
    if (wait) await wait;
    return host;
  }

  private instance(host: SimHost, vmId: string): Instance {
    const inst = host.vms.get(vmId);
    if (!inst) throw err('no_domain', `no domain with UUID ${vmId} on host ${host.info.id}`);
    return inst;
  }

  /** Looks the domain up, then waits while its monitor is hung (fault), then looks it up again. */
  private async progressInstance(hostId: string, vmId: string): Promise<Instance> {
    const host = await this.gate(hostId);
    this.instance(host, vmId);
    const wait = this.faults.progressGate(vmId);
    if (wait) await wait;
    return this.instance(host, vmId);
  }

  private outgoingJob(inst: Instance, hostId: string): SimMigration {
    const m = inst.job;
    if (!m || m.ended)
      throw err('operation_invalid', `no migration job is active for VM ${inst.vm.id} on ${hostId}`);
    if (m.srcInst !== inst) {
      throw err('operation_invalid', `VM ${inst.vm.id} on ${hostId} is the destination of its migration`);
    }
    return m;
  }

  private emitLifecycle(hostId: string, vmId: string, event: LifecycleEvent, detail: number): void {
    this.emit({ kind: 'lifecycle', hostId, vmId, event, detail });
  }

  /** Delivers an event to every listener asynchronously, in order; a down host emits nothing. */
  private emit(event: HypervisorEvent): void {
    if (this.listeners.size === 0 || this.faults.isDown(event.hostId)) return;
    const listeners = [...this.listeners];
    queueMicrotask(() => {
      for (const l of listeners) l(event);
    });
  }

  private hooks(): FaultHooks {
    return {
      knowsHost: (id) => this.hosts.has(id),
      knowsVm: (id) => this.vms.has(id),
      hostWentDown: (hostId, crash) => this.hostWentDown(hostId, crash),
      linkChanged: (hostId, factor) => {
        const host = this.hosts.get(hostId);
        if (host) this.engine.changeShares([host], () => (host.linkFactor = factor));
      },
      dirtySpike: (vmId, dirtyMiBps, durationMs) => {
        const vm = this.vms.get(vmId);
        if (!vm) return;
        const now = this.clock.now();
        // Spikes never overlap: a new one cuts the previous short.
        for (const s of vm.spikes) if (s.toMs > now) s.toMs = Math.max(s.fromMs, now);
        vm.spikes = vm.spikes.filter((s) => s.toMs > now - 3600_000);
        vm.spikes.push({ fromMs: now, toMs: now + durationMs, dirtyMiBps });
      },
      pausedOnBothEnds: (vmId) => {
        const vm = this.vms.get(vmId);
        if (!vm) return;
        vm.breakAtSwitchover = true;
        // Already switching over: break it now.
        for (const m of this.engine.active) {
          if (m.vm === vm && m.model.phase === 'switchover') {
            this.engine.settle(m, this.clock.now());
            if (!m.ended) {
              vm.breakAtSwitchover = false;
              this.breakPausedBothEnds(m, this.clock.now());
            }
          }
        }
      },
      setHostLoad: (hostId, load) => this.setHostLoad(hostId, load),
    };
  }

  private setHostLoad(hostId: string, load: HostLoad | null): void {
    const host = this.hosts.get(hostId);
    if (!host) return;
    const now = this.clock.now();
    this.settleHostCpu(host, now);
    host.load = load
      ? { cpuPct: load.cpuPct ?? null, memUsedMiB: load.memUsedMiB ?? null, sinceMs: now }
      : null;
    host.lastSourceNs = this.sourceNs(host, now);
  }

  private hostWentDown(hostId: string, crash: boolean): void {
    const host = this.hosts.get(hostId);
    if (!host) return;
    const now = this.clock.now();
    for (const m of [...host.migrations]) {
      this.engine.settle(m, now);
      if (!m.ended) this.endMigration(m, 'failed', `host ${hostId} stopped answering during the migration`);
    }
    if (!crash) return;
    for (const inst of [...host.vms.values()]) {
      if (inst.state !== 'shutoff') this.stopInstance(host, inst, now);
    }
  }
}
