// The planner's working copy of the cluster: loads per host in flat arrays, updated as moves are chosen so
// that every later decision sees the earlier ones. Built once per plan from a Snapshot, a Policy and the
// rules' effects.
import type { VmHistory } from '../../domain/history.js';
import type { MigrationKind } from '../../domain/plan.js';
import type { Policy } from '../../domain/policy.js';
import type { Host, Snapshot, Vm } from '../../domain/snapshot.js';
import { predictVmMigration, type VmForecast } from '../predictor/predict-vm.js';
import { SwitchoverBook, type SwitchoverCost } from '../predictor/switchover.js';
import { evaluateRuleEffects, hostMatches, type VmRuleEffects } from '../rules/rule-effects.js';
import { canHostCpuModel } from '../../domain/cpu-models.js';

export interface ModelOptions {
  /** Epoch milliseconds the plan is made at (cooldowns, daily budgets, quarantine). */
  nowMs: number;
  history?: ReadonlyMap<string, VmHistory> | undefined;
  /** Hosts being drained: never targets, whatever their state says. */
  draining?: ReadonlySet<string> | undefined;
}

const DAY_MS = 86_400_000;

export class ClusterModel {
  readonly hosts: readonly Host[];
  readonly vms: readonly Vm[];
  readonly policy: Policy;
  readonly hostIndex = new Map<string, number>();
  /** VM index -> host index, as planned so far. */
  readonly vmHost: Int32Array;
  /** The VM's host in the snapshot. */
  readonly vmOrigin: Int32Array;
  readonly hostVms: number[][];
  /** Host CPU load in CPUs (cpuPct x cpus / 100), memory load in MiB. */
  readonly cpuLoad: Float64Array;
  readonly memLoad: Float64Array;
  /** What a host may hold: its ceiling, minus its reserve. */
  readonly cpuLimit: Float64Array;
  readonly memLimit: Float64Array;
  readonly vmCpu: Float64Array;
  readonly vmMem: Float64Array;
  /** Memory as balance counts it (policy balance.memoryBasis): allocated, or what the guests use. */
  readonly memBalLoad: Float64Array;
  readonly vmMemBal: Float64Array;
  /** Allocated vCPUs per host and what a host may be allocated (Nova: (cpus - reserved) x ratio). */
  readonly vcpuAlloc: Float64Array;
  readonly vcpuCap: Float64Array;
  /** Hosts that may receive VMs (active, fresh, not being drained). */
  readonly receivable: Uint8Array;
  /** Hosts whose utilisation counts in the spread (active and fresh). */
  readonly inSpread: Uint8Array;
  readonly effects: readonly (VmRuleEffects | undefined)[];
  readonly moved: Uint8Array;
  /** Anti-affinity groups as numbers; per VM its groups' numbers (parallel to effects[v].antiAffinity). */
  private readonly antiGroup = new Map<string, number>();
  private readonly antiIds: (number[] | undefined)[];
  /** Members of anti-affinity group g on host h, keyed g * hostCount + h. */
  private readonly antiCount = new Map<number, number>();
  private readonly aff = new Map<string, Map<number, number>>();
  /** Forecast cache: one slot per VM for its first link key (the common case), a map for the others. */
  private readonly forecastKey: Float64Array;
  private readonly forecastSlot: (VmForecast | undefined)[];
  private readonly forecastOther = new Map<string, VmForecast>();
  /** Switch-over costs learnt from the histories; built on the first forecast that needs it. */
  private switchovers: SwitchoverBook | null = null;
  readonly options: ModelOptions;

  constructor(snapshot: Snapshot, policy: Policy, options: ModelOptions) {
    this.hosts = snapshot.hosts;
    this.vms = snapshot.vms;
    this.policy = policy;
    this.options = options;
    const H = this.hosts.length;
    const V = this.vms.length;
    this.hosts.forEach((h, i) => this.hostIndex.set(h.id, i));
    this.vmHost = new Int32Array(V);
    this.vmOrigin = new Int32Array(V);
    this.hostVms = Array.from({ length: H }, () => []);
    this.cpuLoad = new Float64Array(H);
    this.memLoad = new Float64Array(H);
    this.cpuLimit = new Float64Array(H);
    this.memLimit = new Float64Array(H);
    this.vmCpu = new Float64Array(V);
    this.vmMem = new Float64Array(V);
    this.memBalLoad = new Float64Array(H);
    this.vmMemBal = new Float64Array(V);
    this.vcpuAlloc = new Float64Array(H);
    this.vcpuCap = new Float64Array(H);
    this.receivable = new Uint8Array(H);
    this.inSpread = new Uint8Array(H);
    this.moved = new Uint8Array(V);
    this.forecastKey = new Float64Array(V).fill(Number.NaN);
    this.forecastSlot = new Array<VmForecast | undefined>(V);
    const lim = policy.hosts;
    const vmCpuSum = new Float64Array(H);
    const vmMemSum = new Float64Array(H);
    const vmUsedSum = new Float64Array(H);
    const usedBasis = policy.balance.memoryBasis === 'used';
    for (let v = 0; v < V; v += 1) {
      const vm = this.vms[v] as Vm;
      const h = this.hostIndex.get(vm.host) ?? 0;
      this.vmHost[v] = h;
      this.vmOrigin[v] = h;
      (this.hostVms[h] as number[]).push(v);
      const on = vm.state !== 'shutoff';
      this.vmCpu[v] = on ? ((vm.cpuPct ?? 0) / 100) * vm.vcpus : 0;
      this.vmMem[v] = on ? vm.memMiB : 0;
      vmCpuSum[h] = (vmCpuSum[h] ?? 0) + (this.vmCpu[v] ?? 0);
      vmMemSum[h] = (vmMemSum[h] ?? 0) + (this.vmMem[v] ?? 0);
      this.vmMemBal[v] = usedBasis ? (on ? (vm.memUsedMiB ?? vm.memMiB) : 0) : (this.vmMem[v] ?? 0);
      vmUsedSum[h] = (vmUsedSum[h] ?? 0) + (this.vmMemBal[v] ?? 0);
      // Nova counts every instance's vCPUs, running or not.
      this.vcpuAlloc[h] = (this.vcpuAlloc[h] ?? 0) + vm.vcpus;
    }
    for (let h = 0; h < H; h += 1) {
      const host = this.hosts[h] as Host;
      this.cpuLoad[h] = host.cpuPct !== null ? (host.cpuPct / 100) * host.cpus : (vmCpuSum[h] ?? 0);
      // Memory: what the host reports or what its VMs may claim, whichever is more.
      this.memLoad[h] = Math.max(host.memUsedMiB ?? 0, vmMemSum[h] ?? 0);
      this.cpuLimit[h] = (host.cpus * Math.min(lim.cpuCeilingPct, 100 - lim.cpuReservePct)) / 100;
      this.memLimit[h] = Math.min((host.memMiB * lim.memCeilingPct) / 100, host.memMiB - lim.memReserveMiB);
      this.memBalLoad[h] = usedBasis ? (host.memUsedMiB ?? vmUsedSum[h] ?? 0) : (this.memLoad[h] ?? 0);
      this.vcpuCap[h] =
        lim.vcpuAllocationRatio === null
          ? Infinity
          : Math.max(0, host.cpus - lim.reservedCpus) * lim.vcpuAllocationRatio;
      const fresh = host.state === 'active' && host.stale !== true;
      this.inSpread[h] = fresh && !options.draining?.has(host.id) ? 1 : 0;
      this.receivable[h] = this.inSpread[h] ?? 0;
    }
    this.effects = evaluateRuleEffects(
      policy.rules,
      this.vms,
      (_vm, v) => this.hosts[this.vmHost[v] ?? 0] as Host,
    );
    this.antiIds = new Array<number[] | undefined>(V);
    const idsOf = new Map<VmRuleEffects, number[]>();
    for (let v = 0; v < V; v += 1) {
      const fx = this.effects[v];
      if (!fx) continue;
      const h = this.vmHost[v] ?? 0;
      if (fx.antiAffinity.length > 0) {
        // Rule effects are shared between VMs with the same groups; so are their group numbers.
        let ids = idsOf.get(fx);
        if (!ids) {
          ids = fx.antiAffinity.map((g) => {
            let id = this.antiGroup.get(g);
            if (id === undefined) {
              id = this.antiGroup.size;
              this.antiGroup.set(g, id);
            }
            return id;
          });
          idsOf.set(fx, ids);
        }
        this.antiIds[v] = ids;
        for (const id of ids) this.bumpAnti(id, h, 1);
      }
      for (const g of fx.affinity) bump(this.aff, g, h, 1);
    }
  }

  get hostCount(): number {
    return this.hosts.length;
  }

  cpuPct(h: number): number {
    return ((this.cpuLoad[h] ?? 0) / (this.hosts[h] as Host).cpus) * 100;
  }
  /** Memory utilisation as balance counts it (allocated or used, per balance.memoryBasis). */
  memPct(h: number): number {
    return ((this.memBalLoad[h] ?? 0) / (this.hosts[h] as Host).memMiB) * 100;
  }

  /** max - min utilisation over the hosts that count. */
  spread(): { cpuSpreadPct: number; memSpreadPct: number } {
    let cMin = Infinity;
    let cMax = -Infinity;
    let mMin = Infinity;
    let mMax = -Infinity;
    for (let h = 0; h < this.hosts.length; h += 1) {
      if (!this.inSpread[h]) continue;
      const c = this.cpuPct(h);
      const m = this.memPct(h);
      if (c < cMin) cMin = c;
      if (c > cMax) cMax = c;
      if (m < mMin) mMin = m;
      if (m > mMax) mMax = m;
    }
    if (cMax < cMin) return { cpuSpreadPct: 0, memSpreadPct: 0 };
    return { cpuSpreadPct: round1(cMax - cMin), memSpreadPct: round1(mMax - mMin) };
  }

  /**
   * Hosts whose loads moves have changed, in order (each move adds its two hosts; never shortened): a reader
   * that keeps per-host figures re-reads only the hosts added since it last looked.
   */
  readonly touched: number[] = [];

  move(v: number, to: number): void {
    const from = this.vmHost[v] ?? 0;
    if (from === to) return;
    this.touched.push(from, to);
    const list = this.hostVms[from] as number[];
    const at = list.indexOf(v);
    if (at >= 0) {
      list[at] = list[list.length - 1] as number;
      list.pop();
    }
    (this.hostVms[to] as number[]).push(v);
    this.vmHost[v] = to;
    this.cpuLoad[from] = (this.cpuLoad[from] ?? 0) - (this.vmCpu[v] ?? 0);
    this.memLoad[from] = (this.memLoad[from] ?? 0) - (this.vmMem[v] ?? 0);
    this.cpuLoad[to] = (this.cpuLoad[to] ?? 0) + (this.vmCpu[v] ?? 0);
    this.memLoad[to] = (this.memLoad[to] ?? 0) + (this.vmMem[v] ?? 0);
    this.memBalLoad[from] = (this.memBalLoad[from] ?? 0) - (this.vmMemBal[v] ?? 0);
    this.memBalLoad[to] = (this.memBalLoad[to] ?? 0) + (this.vmMemBal[v] ?? 0);
    const vcpus = (this.vms[v] as Vm).vcpus;
    this.vcpuAlloc[from] = (this.vcpuAlloc[from] ?? 0) - vcpus;
    this.vcpuAlloc[to] = (this.vcpuAlloc[to] ?? 0) + vcpus;
    this.moved[v] = 1;
    const ids = this.antiIds[v];
    if (ids) {
      for (const id of ids) {
        this.bumpAnti(id, from, -1);
        this.bumpAnti(id, to, 1);
      }
    }
    const fx = this.effects[v];
    if (fx) {
      for (const g of fx.affinity) {
        bump(this.aff, g, from, -1);
        bump(this.aff, g, to, 1);
      }
    }
  }

  /** Takes back the planned move of VM v: it is back on its snapshot host and may be moved again. */
  unmove(v: number): void {
    this.move(v, this.vmOrigin[v] ?? 0);
    this.moved[v] = 0;
  }

  /** How the VM would travel: offline when shut off, block for local storage, live otherwise. */
  kindOf(v: number): MigrationKind {
    const vm = this.vms[v] as Vm;
    if (vm.state === 'shutoff') return 'offline';
    return vm.storage === 'local' ? 'block' : 'live';
  }

  downtimeBudgetMs(v: number): number {
    return this.effects[v]?.downtimeBudgetMs ?? this.policy.vms.defaultDowntimeBudgetMs;
  }

  bandwidthMiBps(h: number): number {
    return (this.hosts[h] as Host).bandwidthMiBps ?? this.policy.migration.defaultBandwidthMiBps;
  }

  /** Prediction for moving VM v from its current host to `to` (cached per link bandwidth). */
  forecast(v: number, to: number, concurrency = this.policy.limits.perHostConcurrency): VmForecast {
    const from = this.vmHost[v] ?? 0;
    const bw = Math.min(this.bandwidthMiBps(from), this.bandwidthMiBps(to));
    const vm = this.vms[v] as Vm;
    const switchover = this.switchoverCost(vm.id, from, to);
    // bandwidth and concurrency in one number (exact for concurrency below 2^20); a cost learnt for this
    // pair makes the forecast depend on the destination, so those go to the keyed map.
    const key =
      concurrency < 1 << 20 && switchover.source === 'policy' ? bw * (1 << 20) + concurrency : Number.NaN;
    if (this.forecastKey[v] === key) return this.forecastSlot[v] as VmForecast;
    const other = `${v}/${bw}/${concurrency}/${switchover.ms}`;
    const slotFree = Number.isNaN(this.forecastKey[v] ?? Number.NaN);
    let f = slotFree && !Number.isNaN(key) ? undefined : this.forecastOther.get(other);
    if (f) return f;
    f = predictVmMigration(vm, { bandwidthMiBps: bw, concurrency }, this.policy, {
      kind: this.kindOf(v),
      downtimeBudgetMs: this.downtimeBudgetMs(v),
      history: this.options.history?.get(vm.id),
      switchover,
    });
    if (slotFree && !Number.isNaN(key)) {
      this.forecastKey[v] = key;
      this.forecastSlot[v] = f;
    } else this.forecastOther.set(other, f);
    return f;
  }

  /** The switch-over cost of VM id between hosts `from` and `to` (indices), learnt from the histories. */
  switchoverCost(vmId: string, from: number, to: number): SwitchoverCost {
    const history = this.options.history;
    if (!history || history.size === 0)
      return { ms: this.policy.migration.switchoverOverheadMs, source: 'policy', samples: 0 };
    this.switchovers ??= new SwitchoverBook(history.values(), this.policy.migration.switchoverOverheadMs);
    return this.switchovers.cost(vmId, (this.hosts[from] as Host).id, (this.hosts[to] as Host).id);
  }

  /**
   * Why VM v may not move at all (whatever the target), or null. `rebalance` adds cooldown and the daily
   * budget, which drains ignore.
   */
  immovable(v: number, purpose: 'rebalance' | 'drain'): string | null {
    const vm = this.vms[v] as Vm;
    const fx = this.effects[v];
    if (fx?.excludedBy !== undefined) return `excluded by rule ${fx.excludedBy}`;
    if (fx?.pinnedBy !== undefined) return `pinned by rule ${fx.pinnedBy}`;
    if (this.moved[v]) return 'already moved in this plan';
    if (vm.storage === 'local' && vm.state !== 'shutoff' && !this.policy.migration.allowBlockMigration)
      return 'local storage needs block migration, which the policy forbids';
    const hist = this.options.history?.get(vm.id);
    if (hist) {
      const now = this.options.nowMs;
      if (hist.quarantinedUntil !== null && Date.parse(hist.quarantinedUntil) > now)
        return `quarantined until ${hist.quarantinedUntil} after failing to converge`;
      if (purpose === 'rebalance') {
        const last = hist.records[hist.records.length - 1];
        const cooldownMs = this.policy.vms.cooldownS * 1000;
        if (last && now - Date.parse(last.endedAt) < cooldownMs)
          return `in cooldown: last migrated at ${last.endedAt} (cooldown ${this.policy.vms.cooldownS} s)`;
        const today = hist.records.filter((r) => now - Date.parse(r.endedAt) < DAY_MS).length;
        if (today >= this.policy.vms.maxMigrationsPerDay)
          return `daily budget spent: ${today} migrations in 24 h (max ${this.policy.vms.maxMigrationsPerDay})`;
      }
    }
    return null;
  }

  /** True when VM v fits on host `to` by capacity alone. */
  fits(v: number, to: number): boolean {
    return (
      (this.memLoad[to] ?? 0) + (this.vmMem[v] ?? 0) <= (this.memLimit[to] ?? 0) + 1e-9 &&
      (this.cpuLoad[to] ?? 0) + (this.vmCpu[v] ?? 0) <= (this.cpuLimit[to] ?? 0) + 1e-9 &&
      (this.vcpuAlloc[to] ?? 0) + (this.vms[v] as Vm).vcpus <= (this.vcpuCap[to] ?? 0) + 1e-9
    );
  }

  /**
   * Why VM v may not go to host `to` (capacity, rules, CPU model, affinity), or null when it may. Does not
   * look at the predictor (see forecast) nor at VM-level eligibility (see immovable).
   */
  placementProblem(v: number, to: number, gang: readonly number[] = []): string | null {
    const host = this.hosts[to] as Host;
    if (!this.receivable[to])
      return `${host.id} cannot receive (${host.state}${host.stale ? ', stale' : ''})`;
    const from = this.vmHost[v] ?? 0;
    if (from === to) return 'already there';
    if (!this.fits(v, to)) return `${host.id} lacks room`;
    const vm = this.vms[v] as Vm;
    const src = this.hosts[from] as Host;
    if (host.cpuModel != null && host.cpuModel !== src.cpuModel) {
      // A guest with a named CPU model may go to a host of that model or a later compatible one
      // (cpu-models.ts); one without (it sees its host's CPU) only to a host of its source's model.
      if (vm.cpuModel != null) {
        if (!canHostCpuModel(host.cpuModel, vm.cpuModel))
          return `${host.id} CPU model ${host.cpuModel} cannot run ${vm.cpuModel}`;
      } else if (src.cpuModel != null) return `${host.id} CPU model ${host.cpuModel} is not ${src.cpuModel}`;
    }
    const fx = this.effects[v];
    if (fx) {
      for (const sel of fx.avoid) if (hostMatches(sel, host)) return `rule avoids ${host.id}`;
      const ids = this.antiIds[v];
      if (ids) {
        const H = this.hosts.length;
        for (let i = 0; i < ids.length; i += 1) {
          if ((this.antiCount.get((ids[i] as number) * H + to) ?? 0) > 0)
            return `anti-affinity group ${fx.antiAffinity[i] ?? ''} already on ${host.id}`;
        }
      }
      for (const g of fx.affinity) {
        const perHost = this.aff.get(g);
        const here = perHost?.get(to) ?? 0;
        if (here > 0) continue;
        // Moving away from the rest of the group is only allowed when the whole group moves together.
        const elsewhere = [...(perHost?.entries() ?? [])].reduce((n, [h, c]) => n + (h === to ? 0 : c), 0);
        const movingTogether = gang.filter((x) => this.effects[x]?.affinity.includes(g)).length;
        if (elsewhere > Math.max(1, movingTogether)) return `affinity group ${g} is not on ${host.id}`;
      }
    }
    return null;
  }

  /**
   * The hard-rule violations VM v takes part in where it stands, and would on host `to`: anti-affinity
   * partners sharing its host, being apart from its affinity group's other hosts' members, and standing on
   * a host a rule avoids. Moving v from its host to `to` changes the cluster's violation count by
   * `violationDelta(v, to)`.
   */
  violationDelta(v: number, to: number): number {
    const fx = this.effects[v];
    if (!fx) return 0;
    const from = this.vmHost[v] ?? 0;
    if (from === to) return 0;
    let d = 0;
    const ids = this.antiIds[v];
    if (ids) {
      const H = this.hosts.length;
      for (const id of ids) {
        if ((this.antiCount.get(id * H + from) ?? 0) > 1) d -= 1;
        if ((this.antiCount.get(id * H + to) ?? 0) > 0) d += 1;
      }
    }
    for (const g of fx.affinity) {
      const per = this.aff.get(g);
      if ((per?.get(from) ?? 0) === 1) d -= 1;
      if ((per?.get(to) ?? 0) === 0) d += 1;
    }
    if (fx.avoid.length > 0) {
      const src = this.hosts[from] as Host;
      const dst = this.hosts[to] as Host;
      if (fx.avoid.some((sel) => hostMatches(sel, src))) d -= 1;
      if (fx.avoid.some((sel) => hostMatches(sel, dst))) d += 1;
    }
    return d;
  }

  /** Hosts holding members of VM v's affinity groups (other than its own host). */
  affinityHosts(v: number): number[] {
    const fx = this.effects[v];
    if (!fx || fx.affinity.length === 0) return [];
    const from = this.vmHost[v] ?? 0;
    const out = new Set<number>();
    for (const g of fx.affinity) for (const h of this.aff.get(g)?.keys() ?? []) if (h !== from) out.add(h);
    return [...out];
  }

  /** True when VM v has rules that can be broken by where it stands (anti-affinity, affinity, avoid). */
  hasPlacementRules(v: number): boolean {
    const fx = this.effects[v];
    return fx !== undefined && (fx.antiAffinity.length > 0 || fx.affinity.length > 0 || fx.avoid.length > 0);
  }

  /** Why VM v breaks a hard rule where it stands now, or null. */
  violationOf(v: number): string | null {
    const fx = this.effects[v];
    if (!fx) return null;
    const h = this.vmHost[v] ?? 0;
    const host = this.hosts[h] as Host;
    const ids = this.antiIds[v];
    if (ids) {
      const H = this.hosts.length;
      for (let i = 0; i < ids.length; i += 1)
        if ((this.antiCount.get((ids[i] as number) * H + h) ?? 0) > 1)
          return `anti-affinity group ${fx.antiAffinity[i] ?? ''} shares ${host.id}`;
    }
    for (const g of fx.affinity) {
      const per = this.aff.get(g);
      if (per && per.size > 1) {
        let top = -1;
        let topN = 0;
        for (const [hh, n] of per) if (n > topN || (n === topN && hh < top)) [top, topN] = [hh, n];
        if (top !== h) return `affinity group ${g} is split (most of it on ${this.hosts[top]?.id ?? ''})`;
      }
    }
    for (const sel of fx.avoid) if (hostMatches(sel, host)) return `a rule avoids ${host.id}`;
    return null;
  }

  /** The cluster's count of hard-rule violations (see violationDelta). */
  violations(): number {
    let n = 0;
    for (const c of this.antiCount.values()) n += c - 1;
    for (const per of this.aff.values()) n += Math.max(0, per.size - 1);
    for (let v = 0; v < this.vms.length; v += 1) {
      const fx = this.effects[v];
      if (!fx || fx.avoid.length === 0) continue;
      const host = this.hosts[this.vmHost[v] ?? 0] as Host;
      if (fx.avoid.some((sel) => hostMatches(sel, host))) n += 1;
    }
    return n;
  }

  /** 1 when a prefer-hosts rule of VM v matches host h, else 0. */
  preferred(v: number, h: number): number {
    const fx = this.effects[v];
    if (!fx || fx.prefer.length === 0) return 0;
    const host = this.hosts[h] as Host;
    return fx.prefer.some((s) => hostMatches(s, host)) ? 1 : 0;
  }

  /** Anti-affinity groups: group -> hosts with their member counts (read-only view, for checks and tests). */
  antiAffinityCounts(): ReadonlyMap<string, ReadonlyMap<number, number>> {
    const H = this.hosts.length;
    const out = new Map<string, Map<number, number>>();
    for (const [g, id] of this.antiGroup) {
      const per = new Map<number, number>();
      for (let h = 0; h < H; h += 1) {
        const n = this.antiCount.get(id * H + h) ?? 0;
        if (n > 0) per.set(h, n);
      }
      if (per.size > 0) out.set(g, per);
    }
    return out;
  }

  private bumpAnti(id: number, h: number, d: number): void {
    const key = id * this.hosts.length + h;
    const n = (this.antiCount.get(key) ?? 0) + d;
    if (n <= 0) this.antiCount.delete(key);
    else this.antiCount.set(key, n);
  }
}

function bump(m: Map<string, Map<number, number>>, g: string, h: number, d: number): void {
  let per = m.get(g);
  if (!per) {
    per = new Map();
    m.set(g, per);
  }
  const n = (per.get(h) ?? 0) + d;
  if (n <= 0) per.delete(h);
  else per.set(h, n);
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
