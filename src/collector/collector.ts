// The collector: samples the hosts this process owns through a Hypervisor, keeps their smoothed history,
// starts dirty-rate measurements within the per-host limit, and writes a fresh Snapshot to its store.
//
// The store is handed in (collector-store.ts). Every collector sharing a store takes its share of the hosts
// (see membership.ts), and each host's history lives in the store, so whoever samples a host next continues
// its deltas and smoothing. With an in-memory store of its own, a collector samples every host itself.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { withDeadline } from '../clock/deadline.js';
import type { Clock } from '../domain/clock.js';
import { errorCode, errorMessage } from '../domain/errors.js';
import { HostSchema, VmSchema, spreadOf, type Snapshot } from '../domain/snapshot.js';
import { parseWith, zodIssues } from '../domain/validation.js';
import type { HostInfo, MigrationJobs, Sampling } from '../hypervisor/hypervisor.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import {
  memberTtlMs,
  parseCollectorOptions,
  primeGapMs,
  staleAfterMs,
  type CollectorOptions,
  type CollectorOptionsInput,
} from './collector-options.js';
import { HostSampleInvalid, HostTimeoutError } from './collector-errors.js';
import { pickDirtyRateProbes, type ProbeCandidate } from './dirty-rate-scheduler.js';
import type { CollectorStore, StoredHost } from './collector-store.js';
import {
  applyHostRound,
  emptyHostHistory,
  emptyVmHistory,
  staleRecord,
  vmHistory,
  type HostHistory,
  type HostRecord,
  type VmHistory,
} from './host-history.js';
import { ownerOf } from './membership.js';
import { buildSnapshot, isStale, type DroverHostState } from './snapshot-builder.js';

/** The few logger methods the collector uses (pino's signature). */
export interface CollectorLogger {
  warn(obj: object, msg: string): void;
}

/** The hypervisor roles the collector uses: sampling, and a look at a VM's job before a dirty-rate probe. */
export type CollectorHypervisor = Sampling & MigrationJobs;

export interface CollectorDeps {
  hypervisor: CollectorHypervisor;
  /** Where histories, membership and the snapshot live (Redis, shared; or this process's memory). */
  store: CollectorStore;
  metrics?: DroverMetrics;
  logger?: CollectorLogger;
  /** Default: the hypervisor's clock. */
  clock?: Clock;
  /** This process's id among the collectors; default hostname:pid:random. */
  memberId?: string;
}

/** How one host's sampling went in a cycle. */
export interface HostOutcome {
  hostId: string;
  ok: boolean;
  /** Error code when not ok (`host_timeout`, `host_sample_invalid`, or the hypervisor's). */
  error: string | null;
  message: string | null;
  durationMs: number;
  probesStarted: string[];
}

export interface CycleResult {
  startedAt: number;
  /** Hosts this process sampled (or tried to). */
  owned: string[];
  members: string[];
  outcomes: HostOutcome[];
  snapshot: Snapshot;
  /** CPU time this process used for the cycle (µs, user + system) and the part spent building the snapshot. */
  cpuUs: number;
  buildCpuUs: number;
}

const HostRecordSchema = z.looseObject({ hostId: z.string(), vms: z.array(z.unknown()) });
const HostListSchema = z.array(
  z.strictObject({
    id: z.string().min(1),
    cpus: z.number().int().positive(),
    memMiB: z.number().positive(),
    cpuModel: z.string().nullable(),
    bandwidthMiBps: z.number().positive().nullable(),
    labels: z.record(z.string(), z.string()),
  }),
);
const HostInfoPartSchema = z.looseObject(HostSchema.pick({ id: true, cpus: true, memMiB: true }).shape);
const HostPartSchema = HostSchema.pick({ cpuPct: true, memUsedMiB: true });

interface LocalHost {
  history: HostHistory;
  record: HostRecord | null;
}

/** The part of a VM's history that moves with it between hosts. */
interface VmDirtyHistory {
  dirty: VmHistory['dirty'];
  dirtyPoints: VmHistory['dirtyPoints'];
}

/** VMs whose newest dirty-rate point changed between two histories of a host. */
function newlyMeasured(before: HostHistory, after: HostHistory): string[] {
  const out: string[] = [];
  for (const [id, vh] of Object.entries(after.vms)) {
    const last = vh.dirtyPoints[vh.dirtyPoints.length - 1];
    const prev = before.vms[id]?.dirtyPoints;
    const prevLast = prev?.[prev.length - 1];
    if (last !== undefined && (prevLast === undefined || prevLast[0] !== last[0])) out.push(id);
  }
  return out;
}

/**
 * The collector gives the event loop a turn after this many hosts (sampled, serialised or counted). A
 * hypervisor that answers without I/O (the simulator, a cache) would otherwise run a whole cycle over
 * thousands of hosts as one uninterrupted chain of promise callbacks, and timers, sockets and the HTTP API
 * would wait for it.
 */
export const HOSTS_PER_TURN = 25;

/** Hosts whose history and record go to the store in one write. */
export const HOSTS_PER_WRITE = 50;

/** Resolves after the event loop has run its pending I/O and timers. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

export class Collector {
  readonly options: CollectorOptions;
  readonly memberId: string;
  private readonly hv: CollectorHypervisor;
  private readonly clock: Clock;
  private readonly store: CollectorStore;
  private readonly metrics: DroverMetrics | undefined;
  private readonly logger: CollectorLogger | undefined;
  private readonly memberTtlMs: number;
  private readonly local = new Map<string, LocalHost>();
  /** Hosts whose earlier sampling has not returned yet: not asked again until it does. */
  private readonly pending = new Map<string, Promise<unknown>>();
  private hosts: HostInfo[] = [];
  private loop: Promise<void> | null = null;
  private abort: AbortController | null = null;
  private lastSnapshotAt: number | null = null;
  private savedHostList: string | null = null;
  private vmIndex: Map<string, { hostId: string; vm: VmHistory }> | null = null;

  constructor(deps: CollectorDeps, options: CollectorOptionsInput | CollectorOptions = {}) {
    this.options = parseCollectorOptions(options, 'collector');
    this.hv = deps.hypervisor;
    this.clock = deps.clock ?? deps.hypervisor.clock;
    this.store = deps.store;
    this.metrics = deps.metrics;
    this.logger = deps.logger;
    this.memberId = deps.memberId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.memberTtlMs = memberTtlMs(this.options);
  }

  /** One sampling cycle: take this process's share of hosts, sample them, store, write the snapshot. */
  async runCycle(): Promise<CycleResult> {
    const cpu0 = cpuUs();
    const wall0 = performance.now();
    const startedAt = this.clock.now();
    try {
      this.hosts = this.usableHosts(await this.withTimeout('(all)', 'listHosts', this.hv.listHosts()));
      await this.saveHostList();
    } catch (err) {
      // Keep sampling the hosts known from the last cycle (or the last list any collector stored); with none
      // known there is nothing to do.
      if (this.hosts.length === 0) this.hosts = await this.loadHostList();
      if (this.hosts.length === 0) throw err;
      this.metrics?.collectorErrors.inc({ host: '(all)', kind: errorCode(err) ?? 'list_hosts' });
      this.logger?.warn({ module: 'collector', err: errorMessage(err) }, 'listing hosts failed');
    }
    await this.store.heartbeat(this.memberId, this.clock.now(), this.memberTtlMs);
    let members = await this.store.members(this.clock.now(), this.memberTtlMs);
    if (!members.includes(this.memberId)) members = [...members, this.memberId].sort();
    this.vmIndex = null;
    const owned = this.hosts.filter((h) => ownerOf(h.id, members) === this.memberId);
    const ownedIds = new Set(owned.map((h) => h.id));
    for (const id of [...this.local.keys()]) if (!ownedIds.has(id)) this.local.delete(id);
    await this.loadTakenOver(owned);

    const outcomes = await this.mapLimited(owned, this.options.hostConcurrency, (info) =>
      this.sampleOne(info),
    );
    await this.persist(owned);

    const cpuBuild0 = cpuUs();
    const snapshot = await this.buildAndWrite();
    const buildCpuUs = cpuUs() - cpuBuild0;
    this.updateMetrics(owned, outcomes);
    this.metrics?.collectorOwnedHosts.set(owned.length);
    this.metrics?.collectorCycleSeconds.observe((performance.now() - wall0) / 1000);
    return {
      startedAt,
      owned: owned.map((h) => h.id),
      members,
      outcomes,
      snapshot,
      cpuUs: cpuUs() - cpu0,
      buildCpuUs,
    };
  }

  /**
   * A snapshot from two cycles: CPU needs two readings, primeDelayMs apart; with dirty rates on, the gap is at
   * least one measurement window (plus 0.5 s for the hypervisor to finish it), so the VMs probed in the
   * first cycle (maxPerHost per host) have a rate in the second. The others' rates are null.
   */
  async collectOnce(): Promise<Snapshot> {
    await this.runCycle();
    await this.clock.sleep(primeGapMs(this.options));
    return (await this.runCycle()).snapshot;
  }

  /** Runs cycles on multiples of the interval until stop(); a failed cycle is logged and counted, not fatal. */
  start(): void {
    if (this.loop) return;
    const abort = new AbortController();
    this.abort = abort;
    this.loop = this.runLoop(abort.signal);
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    await this.loop;
    this.loop = null;
    this.abort = null;
    try {
      await this.store.leave(this.memberId);
    } catch (err) {
      // The others still take this process's hosts over once its heartbeat is older than the TTL.
      this.metrics?.collectorErrors.inc({ host: '(all)', kind: 'leave' });
      this.logger?.warn({ module: 'collector', err: errorMessage(err) }, 'collector could not leave');
    }
  }

  /** The host's last record as this process knows it (its own hosts only). */
  hostRecord(hostId: string): HostRecord | null {
    return this.local.get(hostId)?.record ?? null;
  }

  private async runLoop(signal: AbortSignal): Promise<void> {
    const intervalMs = this.options.intervalS * 1000;
    const heartbeatMs = this.memberTtlMs / 3;
    while (!signal.aborted) {
      try {
        await this.runCycle();
      } catch (err) {
        this.metrics?.collectorErrors.inc({ host: '(all)', kind: errorCode(err) ?? 'cycle' });
        this.logger?.warn({ module: 'collector', err: errorMessage(err) }, 'collector cycle failed');
      }
      // Sleep to the next multiple of the interval, heartbeating on the way so the TTL never lapses.
      const next = (Math.floor(this.clock.now() / intervalMs) + 1) * intervalMs;
      try {
        while (!signal.aborted && this.clock.now() < next) {
          await this.clock.sleep(Math.min(heartbeatMs, next - this.clock.now()), signal);
          if (this.clock.now() < next) await this.heartbeat();
          this.updateSnapshotAge();
        }
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      }
    }
  }

  /**
   * Hosts whose description can go into a snapshot. A host the hypervisor describes oddly (say 0 CPUs) is
   * left out, counted and logged with the field, rather than making every snapshot invalid.
   */
  private usableHosts(hosts: readonly HostInfo[]): HostInfo[] {
    const seen = new Set<string>();
    return hosts.filter((h, i) => {
      const checked = HostInfoPartSchema.safeParse(h);
      if (checked.success && !seen.has(h.id)) {
        seen.add(h.id);
        return true;
      }
      const detail = checked.success
        ? `hosts[${i}].id: duplicate host id ${JSON.stringify(h.id)}`
        : zodIssues(checked.error)
            .map((x) => `hosts[${i}].${x.path}: ${x.message}`)
            .join('; ');
      const err = new HostSampleInvalid(String(h.id), detail);
      this.metrics?.collectorErrors.inc({ host: String(h.id), kind: err.code });
      this.logger?.warn(
        { module: 'collector', host: h.id, err: err.message },
        'host left out of the snapshot',
      );
      return false;
    });
  }

  /** Stores the host list when it changed, for a collector that starts while listHosts fails. */
  private async saveHostList(): Promise<void> {
    const text = JSON.stringify(this.hosts);
    if (text === this.savedHostList) return;
    await this.store.saveHostList(text);
    this.savedHostList = text;
  }

  private async loadHostList(): Promise<HostInfo[]> {
    const data = this.readJson<unknown>(await this.store.loadHostList(), '(all)', 'host_list');
    const parsed = HostListSchema.safeParse(data);
    return parsed.success ? parsed.data : [];
  }

  /**
   * Tells the other collectors this process is alive (the loop does it every TTL/3 between cycles). A failure
   * is counted and logged; the next heartbeat or cycle tries again.
   */
  async heartbeat(): Promise<void> {
    try {
      await this.store.heartbeat(this.memberId, this.clock.now(), this.memberTtlMs);
    } catch (err) {
      this.metrics?.collectorErrors.inc({ host: '(all)', kind: 'heartbeat' });
      this.logger?.warn({ module: 'collector', err: errorMessage(err) }, 'collector heartbeat failed');
    }
  }

  /** Hosts this process has just taken over: continue their history from the store. */
  private async loadTakenOver(owned: readonly HostInfo[]): Promise<void> {
    const fresh = owned.filter((h) => !this.local.has(h.id)).map((h) => h.id);
    if (fresh.length === 0) return;
    const [histories, records] = await Promise.all([
      this.store.loadHistories(fresh),
      this.store.loadRecords(fresh),
    ]);
    fresh.forEach((id, i) => {
      const history = this.readJson<HostHistory>(histories[i], id, 'history');
      const record = this.readRecord(records[i], id);
      this.local.set(id, {
        history: history && history.hostId === id ? history : emptyHostHistory(id),
        record,
      });
    });
  }

  /** Parses stored JSON; a corrupt entry is counted and treated as absent (the host starts afresh). */
  private readJson<T>(text: string | null | undefined, hostId: string, what: string): T | null {
    if (text === null || text === undefined) return null;
    try {
      return JSON.parse(text) as T;
    } catch {
      this.metrics?.collectorErrors.inc({ host: hostId, kind: `corrupt_${what}` });
      return null;
    }
  }

  private readRecord(text: string | null | undefined, hostId: string): HostRecord | null {
    const data = this.readJson<unknown>(text, hostId, 'record');
    if (data === null) return null;
    if (!HostRecordSchema.safeParse(data).success) {
      this.metrics?.collectorErrors.inc({ host: hostId, kind: 'corrupt_record' });
      return null;
    }
    return data as HostRecord;
  }

  private async sampleOne(info: HostInfo): Promise<HostOutcome> {
    const t0 = performance.now();
    const entry = this.local.get(info.id) ?? { history: emptyHostHistory(info.id), record: null };
    const outcome: HostOutcome = {
      hostId: info.id,
      ok: false,
      error: null,
      message: null,
      durationMs: 0,
      probesStarted: [],
    };
    try {
      if (this.pending.has(info.id)) {
        throw new HostTimeoutError(info.id, this.options.hostTimeoutMs, 'the previous sample');
      }
      const work = Promise.all([
        this.hv.sampleHost(info.id),
        this.hv.listVms(info.id),
        this.hv.sampleVms(info.id),
      ]);
      const tracked = work.finally(() => this.pending.delete(info.id));
      this.pending.set(info.id, tracked);
      tracked.catch(() => undefined);
      const [host, vmInfos, vmSamples] = await this.withTimeout(info.id, 'sample', tracked);
      await this.seedArrivedVms(
        entry.history,
        vmInfos.map((v) => v.id),
      );
      const { history, record } = applyHostRound(
        entry.history,
        { info, host, vmInfos, vmSamples },
        this.options,
      );
      this.validate(record);
      const measured = newlyMeasured(entry.history, history);
      entry.history = history;
      entry.record = record;
      await this.saveVmDirty(history, measured);
      outcome.ok = true;
      if (this.options.dirtyRate.enabled)
        outcome.probesStarted = await this.startProbes(info.id, entry, vmSamples);
    } catch (err) {
      outcome.error = errorCode(err) ?? 'error';
      outcome.message = errorMessage(err);
      if (!outcome.ok) entry.record = staleRecord(info, entry.record);
      this.metrics?.collectorErrors.inc({
        host: info.id,
        kind: outcome.error === 'host_timeout' ? 'timeout' : outcome.ok ? 'dirty_rate' : outcome.error,
      });
      this.logger?.warn(
        { module: 'collector', host: info.id, code: outcome.error, err: outcome.message },
        outcome.ok ? 'dirty-rate probe failed' : 'host sample failed',
      );
    }
    this.local.set(info.id, entry);
    outcome.durationMs = performance.now() - t0;
    this.metrics?.collectorSampleSeconds.observe({ host: info.id }, outcome.durationMs / 1000);
    return outcome;
  }

  /**
   * VMs new to this host's history (they migrated here, or this process has just taken the host over) bring
   * their dirty-rate history with them: from another host this process samples, else from the store.
   */
  private async seedArrivedVms(history: HostHistory, vmIds: readonly string[]): Promise<void> {
    const arrived = vmIds.filter((id) => history.vms[id] === undefined);
    if (arrived.length === 0) return;
    const missing: string[] = [];
    const index = this.measuredVmIndex();
    for (const id of arrived) {
      const found = index.get(id);
      if (found && found.hostId !== history.hostId) {
        history.vms[id] = { ...emptyVmHistory(), dirty: found.vm.dirty, dirtyPoints: found.vm.dirtyPoints };
      } else missing.push(id);
    }
    if (missing.length === 0) return;
    const texts = await this.store.loadVmDirty(missing);
    missing.forEach((id, i) => {
      const saved = this.readJson<VmDirtyHistory>(texts[i], history.hostId, 'vm_dirty');
      if (saved && Array.isArray(saved.dirtyPoints) && saved.dirtyPoints.length > 0) {
        history.vms[id] = { ...emptyVmHistory(), dirty: saved.dirty, dirtyPoints: saved.dirtyPoints };
      }
    });
  }

  /** VM id -> its measured history on a host this process samples; built once per cycle, when first needed. */
  private measuredVmIndex(): Map<string, { hostId: string; vm: VmHistory }> {
    if (this.vmIndex) return this.vmIndex;
    const index = new Map<string, { hostId: string; vm: VmHistory }>();
    for (const [hostId, e] of this.local) {
      for (const [id, vm] of Object.entries(e.history.vms)) {
        if (vm.dirtyPoints.length > 0) index.set(id, { hostId, vm });
      }
    }
    this.vmIndex = index;
    return index;
  }

  /** Stores the dirty-rate history of VMs with a new measurement, under the VM (it follows the VM). */
  private async saveVmDirty(history: HostHistory, vmIds: readonly string[]): Promise<void> {
    if (vmIds.length === 0) return;
    const entries: { vmId: string; text: string }[] = [];
    for (const id of vmIds) {
      const vh = history.vms[id];
      if (!vh) continue;
      const saved: VmDirtyHistory = { dirty: vh.dirty, dirtyPoints: vh.dirtyPoints };
      entries.push({ vmId: id, text: JSON.stringify(saved) });
    }
    await this.store.saveVmDirty(entries, this.options.smoothing.dirtyWindowS * 1000);
  }

  /** Makes sure the record can go into a snapshot: a hypervisor's odd answer fails the host, naming the field. */
  private validate(record: HostRecord): void {
    try {
      parseWith(HostPartSchema, { cpuPct: record.cpuPct, memUsedMiB: record.memUsedMiB }, 'host');
      parseWith(z.array(VmSchema), record.vms, 'vms');
    } catch (err) {
      throw new HostSampleInvalid(record.hostId, errorMessage(err), { cause: err });
    }
  }

  private async startProbes(
    hostId: string,
    entry: LocalHost,
    vmSamples: readonly {
      vmId: string;
      state: ProbeCandidate['state'];
      migrating: boolean;
      dirtyRate: { status: string };
    }[],
  ): Promise<string[]> {
    const d = this.options.dirtyRate;
    const now = this.clock.now();
    const candidates: ProbeCandidate[] = vmSamples
      .filter((v) => entry.history.vms[v.vmId] !== undefined)
      .map((v) => ({
        vmId: v.vmId,
        state: v.state,
        migrating: v.migrating,
        measuring: v.dirtyRate.status === 'measuring',
        probeAt: vmHistory(entry.history, v.vmId).probeAt,
      }));
    const chosen = pickDirtyRateProbes(candidates, now, {
      maxPerHost: d.maxPerHost,
      windowMs: d.windowS * 1000,
      remeasureMs: d.remeasureS * 1000,
    });
    const started: string[] = [];
    for (const vmId of chosen) {
      // Look again right before starting: a migration may have begun since the sample.
      const job = await this.withTimeout(hostId, 'jobStats', this.hv.jobStats(hostId, vmId));
      if (job.type === 'active') continue;
      await this.withTimeout(hostId, 'startDirtyRate', this.hv.startDirtyRate(hostId, vmId, d.windowS));
      const vh = entry.history.vms[vmId];
      if (vh) vh.probeAt = this.clock.now();
      this.metrics?.dirtyRateProbes.inc();
      started.push(vmId);
    }
    return started;
  }

  private async persist(owned: readonly HostInfo[]): Promise<void> {
    if (owned.length === 0) return;
    // A slice of hosts at a time: serialised, then written (history and record of a host together, in one
    // transaction), with a turn of the event loop in between. One write of every host's history would be
    // megabytes converted and sent in one go, holding the event loop all that time.
    for (let at = 0; at < owned.length; at += HOSTS_PER_WRITE) {
      if (at > 0) await yieldToEventLoop();
      const slice: StoredHost[] = [];
      for (const h of owned.slice(at, at + HOSTS_PER_WRITE)) {
        const e = this.local.get(h.id);
        if (!e) continue;
        slice.push({
          hostId: h.id,
          history: JSON.stringify(e.history),
          record: e.record ? JSON.stringify(e.record) : null,
        });
      }
      await this.store.saveHosts(slice);
    }
  }

  private async buildAndWrite(): Promise<Snapshot> {
    const records = new Map<string, HostRecord>();
    const others: string[] = [];
    for (const h of this.hosts) {
      const e = this.local.get(h.id);
      if (e?.record) records.set(h.id, e.record);
      else others.push(h.id);
    }
    if (others.length > 0) {
      const texts = await this.store.loadRecords(others);
      others.forEach((id, i) => {
        const r = this.readRecord(texts[i], id);
        if (r) records.set(id, r);
      });
    }
    const states: Record<string, DroverHostState> = await this.store.hostStates();
    const now = this.clock.now();
    const snapshot = buildSnapshot({
      hosts: this.hosts,
      records,
      states,
      now,
      staleAfterMs: staleAfterMs(this.options),
    });
    await this.store.writeSnapshot(snapshot);
    this.lastSnapshotAt = now;
    if (this.metrics) {
      const spread = spreadOf(snapshot);
      this.metrics.clusterSpreadPct.set({ resource: 'cpu' }, spread.cpuSpreadPct);
      this.metrics.clusterSpreadPct.set({ resource: 'memory' }, spread.memSpreadPct);
    }
    return snapshot;
  }

  private updateMetrics(owned: readonly HostInfo[], outcomes: readonly HostOutcome[]): void {
    const m = this.metrics;
    if (!m) return;
    const now = this.clock.now();
    const limit = staleAfterMs(this.options);
    m.hostCpuPct.reset();
    m.hostMemPct.reset();
    m.hostStale.reset();
    if (m.perVmSeries) m.vmDirtyMiBps.reset();
    const failed = new Set(outcomes.flatMap((o) => (o.ok ? [] : [o.hostId])));
    for (const h of owned) {
      const r = this.local.get(h.id)?.record ?? undefined;
      const stale = isStale(r, now, limit) || failed.has(h.id);
      m.hostStale.set({ host: h.id }, stale ? 1 : 0);
      if (!r) continue;
      if (r.cpuEwmaPct !== null) m.hostCpuPct.set({ host: h.id }, r.cpuEwmaPct);
      if (r.memUsedMiB !== null && r.memMiB > 0)
        m.hostMemPct.set({ host: h.id }, Math.min(100, (r.memUsedMiB / r.memMiB) * 100));
      if (m.perVmSeries) {
        for (const vm of r.vms) {
          if (vm.dirtyMiBps !== null) m.vmDirtyMiBps.set({ vm: vm.id, host: h.id }, vm.dirtyMiBps);
        }
      }
    }
    this.updateSnapshotAge();
  }

  private updateSnapshotAge(): void {
    if (this.metrics && this.lastSnapshotAt !== null) {
      this.metrics.snapshotAgeSeconds.set(Math.max(0, (this.clock.now() - this.lastSnapshotAt) / 1000));
    }
  }

  /** Races the work against the host timeout on the collector's clock. */
  private withTimeout<T>(hostId: string, what: string, work: Promise<T>): Promise<T> {
    const timeoutMs = this.options.hostTimeoutMs;
    return withDeadline(this.clock, timeoutMs, work, () => new HostTimeoutError(hostId, timeoutMs, what));
  }

  private async mapLimited<T, R>(
    items: readonly T[],
    limit: number,
    fn: (item: T) => Promise<R>,
  ): Promise<R[]> {
    const out: R[] = new Array<R>(items.length);
    let next = 0;
    // After every HOSTS_PER_TURN items started, every worker waits at this gate until the event loop has had
    // a turn (a worker alone pausing would not do: the others would carry on in promise callbacks).
    let gate: Promise<void> | null = null;
    let sinceTurn = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        while (gate) await gate;
        if (next >= items.length) return;
        const i = next++;
        if (++sinceTurn >= HOSTS_PER_TURN) {
          sinceTurn = 0;
          gate = yieldToEventLoop().then(() => {
            gate = null;
          });
        }
        const item = items[i];
        if (item !== undefined) out[i] = await fn(item);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, () => worker()));
    return out;
  }
}
