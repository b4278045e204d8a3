// Properties every plan must have, on random small clusters, policies and rules.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parsePolicy } from '../../src/domain/policy.js';
import { planDrain, planRebalance } from '../../src/planner/make-plan.js';
import { checkPlan, clusterArb, policyArb } from './support/plan-properties.js';

const NOW = Date.parse('2026-11-26T00:00:00Z');

describe('planner properties', () => {
  it('rebalance plans respect capacity, rules, anti-affinity, convergence and max moves', () => {
    let moves = 0;
    fc.assert(
      fc.property(clusterArb, policyArb, (snap, policy) => {
        const plan = planRebalance(snap, policy, { now: NOW });
        moves += plan.steps.length;
        expect(plan.reason).toBe('rebalance');
        expect(plan.steps.length).toBeLessThanOrEqual(policy.limits.maxMovesPerRun);
        checkPlan(snap, policy, plan);
      }),
      { numRuns: 300 },
    );
    // The clusters are unbalanced often enough that the properties above were exercised on real moves.
    expect(moves).toBeGreaterThan(10);
  });

  it('drain plans respect the same invariants and either empty the host or move nothing', () => {
    fc.assert(
      fc.property(clusterArb, policyArb, fc.nat(), (snap, policy, pick) => {
        const host = snap.hosts[pick % snap.hosts.length];
        if (!host) return;
        const plan = planDrain(snap, policy, [host.id], { now: NOW });
        checkPlan(snap, policy, plan, new Set([host.id]));
        const onHost = snap.vms.filter((v) => v.host === host.id);
        if (plan.skipped.length === 0) {
          // Feasible: every VM leaves. Any other step moves a resident VM of another host to make room for
          // one of them, and says so.
          const leaving = plan.steps.filter((s) => s.from === host.id);
          expect(new Set(leaving.map((s) => s.vm))).toEqual(new Set(onHost.map((v) => v.id)));
          for (const s of plan.steps.filter((x) => x.from !== host.id)) {
            expect(s.why).toMatch(/^makes room on \S+ for /);
            expect(plan.steps.some((x) => x.from === host.id && x.to === s.from)).toBe(true);
          }
        } else {
          // Infeasible: nothing moves, and each blocker is a VM of the drained host with a reason.
          expect(plan.steps).toEqual([]);
          for (const s of plan.skipped) {
            expect(onHost.map((v) => v.id)).toContain(s.vm);
            expect(s.why).toMatch(/^cannot leave: ./);
          }
          expect(plan.note).toMatch(/cannot complete/);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a feasible drain empties the host', () => {
    // Room everywhere, slow dirtying, nothing excluded: every drain must be feasible.
    const roomy = clusterArb.map((snap) => ({
      ...snap,
      hosts: snap.hosts.map((h) => ({
        ...h,
        state: 'active' as const,
        stale: false,
        memMiB: 4 * 1024 * 1024,
        // the generator's memory use can exceed any capacity; room everywhere means well under it
        memUsedMiB: h.memUsedMiB === null ? null : Math.min(h.memUsedMiB, 1024 * 1024),
        cpus: 1024,
        // and the CPU load it measured on a small host is far under any ceiling on 1024 CPUs
        cpuPct: h.cpuPct === null ? null : Math.min(h.cpuPct, 10),
        bandwidthMiBps: 1150,
      })),
      vms: snap.vms.map((v) => ({ ...v, dirtyMiBps: 5, labels: { app: 'web' } })),
    }));
    fc.assert(
      fc.property(roomy, fc.nat(), (snap, pick) => {
        const policy = parsePolicy({});
        const host = snap.hosts[pick % snap.hosts.length];
        if (!host) return;
        const plan = planDrain(snap, policy, [host.id], { now: NOW });
        expect(plan.skipped).toEqual([]);
        const left = snap.vms.filter((v) => v.host === host.id).map((v) => v.id);
        expect(plan.steps.map((s) => s.vm).sort()).toEqual(left.sort());
        expect(plan.steps.every((s) => s.to !== host.id)).toBe(true);
        if (left.length > 0) expect(plan.etaS).toBeGreaterThan(0);
      }),
      { numRuns: 200 },
    );
  });
});
