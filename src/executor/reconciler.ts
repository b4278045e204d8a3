// The reconciler: periodically looks for VMs running or paused on more than one host outside a migration, and
// for VMs defined (persistent) on more than one host, and reports each (metric drover_vms_on_multiple_hosts
// counts both, an error log with the evidence). It repairs nothing itself: `drover recover VM` shows the
// evidence and the actions.
import { pino, type Logger } from 'pino';
import { errorMessage } from '../domain/errors.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import { callWithTimeout } from './call-timeout.js';
import { gatherEvidence, type EvidenceSource, type VmEvidence } from './recovery.js';

export interface ReconcileReport {
  at: string;
  hostsChecked: number;
  /** Hosts that did not answer in time (their VMs could not be counted). */
  unreachableHosts: string[];
  vmsChecked: number;
  /** VMs active on several hosts with no migration in flight. */
  onSeveralHosts: VmEvidence[];
  /** VMs defined on several hosts (active on at most one) with no migration in flight. */
  definedOnSeveralHosts: VmEvidence[];
}

export interface ReconcilerDeps {
  /** Lists every host's VMs and gathers evidence on those found twice. */
  hypervisor: EvidenceSource;
  callTimeoutMs: number;
  intervalMs: number;
  logger?: Logger;
  metrics?: DroverMetrics;
}

export class Reconciler {
  private readonly deps: ReconcilerDeps;
  private readonly log: Logger;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
    this.log = (deps.logger ?? pino({ level: 'silent' })).child({ module: 'reconciler' });
  }

  async runOnce(): Promise<ReconcileReport> {
    const hv = this.deps.hypervisor;
    const timeoutMs = this.deps.callTimeoutMs;
    const hosts = await callWithTimeout(hv.clock, 'listHosts', timeoutMs, hv.listHosts());
    const where = new Map<string, string[]>();
    const definedOn = new Map<string, string[]>();
    const unreachable: string[] = [];
    let vmsChecked = 0;
    await Promise.all(
      hosts.map(async (h) => {
        try {
          const vms = await callWithTimeout(hv.clock, 'listVms', timeoutMs, hv.listVms(h.id));
          for (const vm of vms) {
            vmsChecked++;
            if (vm.persistent) definedOn.set(vm.id, [...(definedOn.get(vm.id) ?? []), h.id]);
            if (vm.state !== 'running' && vm.state !== 'paused') continue;
            where.set(vm.id, [...(where.get(vm.id) ?? []), h.id]);
          }
        } catch (err) {
          unreachable.push(h.id);
          this.log.warn({ host: h.id, err: errorMessage(err) }, 'host did not answer the reconciler');
        }
      }),
    );
    const onSeveralHosts: VmEvidence[] = [];
    for (const [vmId, hostIds] of where) {
      if (hostIds.length < 2) continue;
      const evidence = await gatherEvidence(hv, vmId, timeoutMs);
      if (evidence.diagnosis === 'migrating') continue;
      onSeveralHosts.push(evidence);
      this.log.error({ vm: vmId, hosts: hostIds, evidence }, 'VM active on more than one host');
    }
    const definedOnSeveralHosts: VmEvidence[] = [];
    for (const [vmId, hostIds] of definedOn) {
      if (hostIds.length < 2 || (where.get(vmId)?.length ?? 0) >= 2) continue;
      const evidence = await gatherEvidence(hv, vmId, timeoutMs);
      if (evidence.diagnosis === 'migrating') continue;
      definedOnSeveralHosts.push(evidence);
      this.log.error({ vm: vmId, hosts: hostIds, evidence }, 'VM defined on more than one host');
    }
    this.deps.metrics?.vmsOnTwoHosts.set(onSeveralHosts.length + definedOnSeveralHosts.length);
    return {
      at: new Date(hv.clock.now()).toISOString(),
      hostsChecked: hosts.length,
      unreachableHosts: unreachable.sort(),
      vmsChecked,
      onSeveralHosts,
      definedOnSeveralHosts,
    };
  }

  /** Runs every intervalMs (on the hypervisor's clock) until the returned function is called. */
  start(): () => void {
    const stop = new AbortController();
    const loop = async (): Promise<void> => {
      while (!stop.signal.aborted) {
        try {
          await this.runOnce();
        } catch (err) {
          this.log.error({ err: errorMessage(err) }, 'reconcile run failed');
        }
        try {
          await this.deps.hypervisor.clock.sleep(this.deps.intervalMs, stop.signal);
        } catch {
          return;
        }
      }
    };
    void loop();
    return () => stop.abort();
  }
}
