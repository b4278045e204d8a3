// Fixture test: the shipped default policy parses, states exactly the built-in defaults, and its rules act.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY } from '../../src/domain/policy.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { loadPolicy } from '../../src/planner/load-policy.js';
import { planDrain } from '../../src/planner/make-plan.js';
import { STRATEGIES } from '../../src/planner/strategies/registry.js';

const path = new URL('../../policies/default.yaml', import.meta.url).pathname;

describe('policies/default.yaml', () => {
  it('states every built-in default', async () => {
    const policy = await loadPolicy(path);
    const { rules, strategies, ...settings } = policy;
    const { rules: _none, strategies: _unset, ...defaults } = DEFAULT_POLICY;
    expect(settings).toEqual(defaults);
    // Each registered strategy, with its own defaults.
    expect(strategies).toEqual(
      Object.fromEntries(STRATEGIES.all().map((s) => [s.name, { holdTimeS: s.holdTimeS, args: {} }])),
    );
    expect(rules.map((r) => r.name)).toEqual(['opt-out', 'pinned', 'keep-ha-groups-apart']);
    expect(readFileSync(path, 'utf8')).toMatch(/^# drover's default policy/m);
  });

  it('keeps opted-out and pinned VMs in place and HA group members apart', async () => {
    const policy = await loadPolicy(path);
    const vm = (id: string, host: string, labels: Record<string, string>) => ({
      id,
      name: id,
      host,
      state: 'running' as const,
      vcpus: 2,
      memMiB: 4096,
      cpuPct: 10,
      memUsedMiB: 2048,
      dirtyMiBps: 5,
      storage: 'shared' as const,
      labels,
    });
    const host = (id: string, state: 'active' | 'maintenance') => ({
      id,
      cpus: 32,
      memMiB: 131072,
      state,
      cpuPct: 5,
      memUsedMiB: 8192,
      bandwidthMiBps: 1150,
    });
    const snap: Snapshot = {
      version: 1,
      takenAt: '2026-11-25T12:00:00Z',
      hosts: [host('a', 'maintenance'), host('b', 'active'), host('c', 'active')],
      vms: [
        vm('out', 'a', { 'drover/exclude': 'true' }),
        vm('pin', 'a', { 'drover/pin': 'true' }),
        vm('ha-1', 'a', { 'drover/ha-group': 'pg' }),
        vm('ha-2', 'b', { 'drover/ha-group': 'pg' }),
        vm('plain', 'a', {}),
      ],
    };
    const plan = planDrain(snap, policy, ['a'], {
      now: Date.parse('2026-11-25T12:00:00Z'),
      allowPartial: true,
    });
    expect(plan.skipped.map((s) => [s.vm, s.why])).toEqual([
      ['out', 'cannot leave: excluded by rule opt-out (labelled drover/exclude=true)'],
      ['pin', 'cannot leave: pinned by rule pinned (labelled drover/pin=true)'],
    ]);
    expect(plan.steps.find((s) => s.vm === 'ha-1')?.to).toBe('c');
    expect(plan.steps.map((s) => s.vm).sort()).toEqual(['ha-1', 'plain']);
  });
});
