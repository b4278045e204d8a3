// The consolidate strategy: frees whole hosts, all or nothing per host, under the same invariants as
// every plan.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parsePolicy } from '../../src/domain/policy.js';
import type { Host, Snapshot, Vm } from '../../src/domain/snapshot.js';
import { planWith } from '../../src/planner/make-plan.js';
import { checkPlan, clusterArb, policyArb } from './support/plan-properties.js';

const NOW = Date.parse('2026-11-26T00:00:00Z');

/** Hosts left with no VM once the plan's steps are applied. */
function emptiedBy(snap: Snapshot, steps: readonly { vm: string; to: string }[]): Set<string> {
  const where = new Map(snap.vms.map((v) => [v.id, v.host]));
  for (const s of steps) where.set(s.vm, s.to);
  const used = new Set(where.values());
  return new Set(snap.hosts.filter((h) => !used.has(h.id)).map((h) => h.id));
}

describe('consolidate properties', () => {
  it('keeps every plan invariant, frees exactly the hosts it names, and moves only their VMs', () => {
    let freed = 0;
    fc.assert(
      fc.property(clusterArb, policyArb, (snap, policy) => {
        const plan = planWith('consolidate', snap, policy, { now: NOW });
        expect(plan.reason).toBe('rebalance');
        expect(plan.steps.length).toBeLessThanOrEqual(policy.limits.maxMovesPerRun);
        checkPlan(snap, policy, plan);
        const named = /^frees \d+ hosts?: (.*)$/.exec(plan.note ?? '')?.[1]?.split(', ') ?? [];
        const before = emptiedBy(snap, []);
        const after = emptiedBy(snap, plan.steps);
        // The hosts it names are empty afterwards and were not before; nothing else changed state.
        expect(new Set([...after].filter((h) => !before.has(h)))).toEqual(new Set(named));
        // All or nothing: every VM of a freed host moves, and only those move.
        const onNamed = snap.vms.filter((v) => named.includes(v.host)).map((v) => v.id);
        expect(plan.steps.map((s) => s.vm).sort()).toEqual(onNamed.sort());
        // Nothing lands on a freed host.
        expect(plan.steps.some((s) => named.includes(s.to))).toBe(false);
        freed += named.length;
      }),
      { numRuns: 300 },
    );
    expect(freed).toBeGreaterThan(10);
  });
});

describe('consolidate scenarios', () => {
  const host = (i: number): Host => ({
    id: `kvm-${i}`,
    cpus: 32,
    memMiB: 131072,
    state: 'active',
    cpuPct: null,
    memUsedMiB: null,
    bandwidthMiBps: 1150,
    labels: { rack: 'r1' },
  });
  const vm = (i: number, h: number, labels: Record<string, string> = { app: 'web' }): Vm => ({
    id: `vm-${i}`,
    name: `web-${i}`,
    host: `kvm-${h}`,
    state: 'running',
    vcpus: 2,
    memMiB: 16384,
    cpuPct: 25,
    memUsedMiB: 8192,
    dirtyMiBps: 10,
    storage: 'shared',
    labels,
  });
  // Four hosts, each a quarter full (2 x 16 GiB of 128 GiB): two hosts can hold everything.
  const snap: Snapshot = {
    version: 1,
    takenAt: '2026-11-26T00:00:00Z',
    hosts: [0, 1, 2, 3].map(host),
    vms: [0, 1, 2, 3, 4, 5, 6, 7].map((i) => vm(i, i % 4)),
  };

  it('frees as many hosts as the ceilings allow', () => {
    const plan = planWith('consolidate', snap, parsePolicy({}), { now: NOW });
    expect(plan.note).toMatch(/^frees 2 hosts: /);
    expect(plan.steps).toHaveLength(4);
    expect(emptiedBy(snap, plan.steps).size).toBe(2);
    for (const s of plan.steps) expect(s.why).toMatch(/^empties kvm-\d \(2 VMs, mem 25%\) to free it/);
  });

  it('keeps a host whose VM may not move, saying which and why', () => {
    const pinned: Snapshot = {
      ...snap,
      vms: snap.vms.map((v) => (v.id === 'vm-0' ? vm(0, 0, { app: 'infra' }) : v)),
    };
    const policy = parsePolicy({
      rules: [
        {
          name: 'infra',
          conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'infra' }] },
          event: { type: 'exclude' },
        },
      ],
    });
    const plan = planWith('consolidate', pinned, policy, { now: NOW });
    expect(plan.steps.some((s) => s.from === 'kvm-0' || s.vm === 'vm-0')).toBe(false);
    expect(plan.skipped).toContainEqual({ vm: 'vm-0', why: 'keeps kvm-0 in use: excluded by rule infra' });
    expect(emptiedBy(pinned, plan.steps).has('kvm-0')).toBe(false);
  });

  it('frees nothing when the fill limit leaves no room, and respects maxHosts and maxMoves', () => {
    const tight = planWith('consolidate', snap, parsePolicy({}), { now: NOW, args: { fillMemPct: 30 } });
    expect(tight.steps).toEqual([]);
    expect(tight.note).toBe('no host can be freed within the constraints');
    const one = planWith('consolidate', snap, parsePolicy({}), { now: NOW, args: { maxHosts: 1 } });
    expect(one.note).toMatch(/^frees 1 host: kvm-\d$/);
    expect(one.steps).toHaveLength(2);
    const few = planWith('consolidate', snap, parsePolicy({}), { now: NOW, args: { maxMoves: 1 } });
    expect(few.steps).toEqual([]);
    expect(few.note).toBe('no host can be freed within the limit of 1 moves');
  });
});
