// The switch-over cost learnt from migration history: what a completed migration really kept the guest
// paused on top of the last round the max-downtime setting allowed QEMU to send while paused. QEMU's
// max-downtime bounds only its own estimate of that last round (remaining memory / bandwidth); stopping the
// vCPUs, sending device state and starting the destination come on top, and on some host pairs they are
// most of the downtime. The predictor adds this cost to the last round, and the watchdog sets
// max downtime = budget - cost so that the downtime QEMU really reports stays within the budget.
import type { MigrationRecord, VmHistory } from '../../domain/history.js';

/** Where a learnt cost came from, most specific first. */
export type SwitchoverSource = 'vm-pair' | 'pair' | 'vm' | 'policy';

export interface SwitchoverCost {
  ms: number;
  source: SwitchoverSource;
  /** Completed migrations the figure comes from (0 for the policy's assumption). */
  samples: number;
}

/** Recent completed migrations looked at per VM and per host pair. */
const VM_SAMPLES = 5;
const PAIR_SAMPLES = 20;

/**
 * What one completed migration says about the switch-over cost: its measured downtime less nothing. The
 * last round it sent while paused is part of that figure, so the sample is an upper bound of the fixed cost;
 * planning with it keeps the next migration's downtime within its budget as long as the cost itself does not
 * grow (cost + a last round below budget - cost stays below the budget). Records without a measured downtime
 * (aborted, offline, adopted without stats) say nothing.
 */
export function switchoverSample(r: MigrationRecord): number | null {
  if (r.result !== 'completed' || r.kind === 'offline') return null;
  if (r.downtimeMs === null || !(r.downtimeMs >= 0)) return null;
  return r.downtimeMs;
}

/** The learnt cost from samples, newest last: the largest of the VM's own recent ones, p90 of a pair's. */
function highest(samples: readonly number[]): number {
  return samples.reduce((a, b) => Math.max(a, b), 0);
}

function p90(samples: readonly number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.9 * sorted.length) - 1)] ?? 0;
}

/**
 * Switch-over costs by host pair and by VM, learnt from the fleet's histories (the planner reads them all).
 * `cost(vm, from, to)` answers with the most specific knowledge there is: this VM on this pair (the largest of
 * its last 5), then this pair over all VMs (p90 of the last 20), then this VM on any pair, then the policy.
 */
export class SwitchoverBook {
  private readonly byPair = new Map<string, number[]>();
  private readonly byVmPair = new Map<string, number[]>();
  private readonly byVm = new Map<string, number[]>();

  constructor(
    histories: Iterable<VmHistory>,
    private readonly defaultMs: number,
  ) {
    // Per pair, newest last across VMs: the records' end times order them.
    const pairRecords = new Map<string, { at: number; ms: number }[]>();
    for (const h of histories) {
      for (const r of h.records) {
        const ms = switchoverSample(r);
        if (ms === null) continue;
        const pair = pairKey(r.from, r.to);
        push(this.byVmPair, `${h.vmId}\u0000${pair}`, ms);
        push(this.byVm, h.vmId, ms);
        const list = pairRecords.get(pair) ?? [];
        list.push({ at: Date.parse(r.endedAt) || 0, ms });
        pairRecords.set(pair, list);
      }
    }
    for (const [pair, list] of pairRecords) {
      list.sort((a, b) => a.at - b.at);
      this.byPair.set(
        pair,
        list.slice(-PAIR_SAMPLES).map((x) => x.ms),
      );
    }
  }

  cost(vmId: string, from: string, to: string): SwitchoverCost {
    const pair = pairKey(from, to);
    const vmPair = this.byVmPair.get(`${vmId}\u0000${pair}`);
    if (vmPair && vmPair.length > 0) {
      const recent = vmPair.slice(-VM_SAMPLES);
      return { ms: highest(recent), source: 'vm-pair', samples: recent.length };
    }
    const pairSamples = this.byPair.get(pair);
    if (pairSamples && pairSamples.length > 0)
      return { ms: p90(pairSamples), source: 'pair', samples: pairSamples.length };
    const vm = this.byVm.get(vmId);
    if (vm && vm.length > 0) {
      const recent = vm.slice(-VM_SAMPLES);
      return { ms: highest(recent), source: 'vm', samples: recent.length };
    }
    return { ms: this.defaultMs, source: 'policy', samples: 0 };
  }
}

/** Both directions of a pair share the cost: the same two hosts stop and start the guest. */
function pairKey(a: string, b: string): string {
  return a < b ? `${a}\u0000${b}` : `${b}\u0000${a}`;
}

function push(map: Map<string, number[]>, key: string, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** How the cost reads in a skip reason: "this VM's switch-over", "this pair's switch-over", ... */
export function switchoverWho(source: SwitchoverSource): string {
  switch (source) {
    case 'vm-pair':
      return "this VM's switch-over on this pair";
    case 'pair':
      return "this pair's switch-over";
    case 'vm':
      return "this VM's switch-over";
    case 'policy':
      return 'the switch-over (policy migration.switchoverOverheadMs)';
  }
}
