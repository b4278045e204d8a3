// Fixture test: the conservative policy parses and plans few, tightly bounded, plain pre-copy moves.
import { describe, expect, it } from 'vitest';
import { loadPolicy } from '../../src/planner/load-policy.js';
import { planRebalance } from '../../src/planner/make-plan.js';
import { generateCluster } from './support/generate-cluster.js';

const path = new URL('../../policies/conservative.yaml', import.meta.url).pathname;

describe('policies/conservative.yaml', () => {
  it('parses with its cautious limits', async () => {
    const policy = await loadPolicy(path);
    expect(policy.limits).toEqual({ maxMovesPerRun: 5, perHostConcurrency: 1, perClusterConcurrency: 2 });
    expect(policy.migration.allowBlockMigration).toBe(false);
    expect(policy.migration.allowPostCopy).toBe(false);
    expect(policy.vms.defaultDowntimeBudgetMs).toBe(100);
    expect(policy.rules.map((r) => r.name)).toEqual([
      'databases-barely-pause',
      'big-churners-stay',
      'keep-ha-groups-apart',
    ]);
  });

  it('plans at most 5 moves, no block migration, no fast churner, databases at 50 ms', async () => {
    const policy = await loadPolicy(path);
    const snap = generateCluster({ hosts: 30, vms: 300, seed: 11 });
    const plan = planRebalance(snap, policy, { now: Date.parse('2026-11-26T00:00:00Z') });
    expect(plan.steps.length).toBeGreaterThan(0);
    expect(plan.steps.length).toBeLessThanOrEqual(5);
    const vms = new Map(snap.vms.map((v) => [v.id, v]));
    for (const s of plan.steps) {
      const vm = vms.get(s.vm);
      expect(s.kind).toBe('live');
      expect(s.predicted.technique).toBeUndefined();
      expect(vm?.dirtyMiBps ?? 0).toBeLessThanOrEqual(200);
      expect(s.downtimeBudgetMs).toBe(vm?.labels?.app === 'db' ? 50 : 100);
      expect(s.predicted.downtimeMs).toBeLessThanOrEqual(
        (s.downtimeBudgetMs ?? 0) + policy.migration.switchoverOverheadMs,
      );
    }
  });
});
