// Strategies by name: a strategy written in its own folder is one registry line away from planWith, the
// policy's strategies section and the hold time; nothing in the planner knows it.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors.js';
import { parsePolicy } from '../../src/domain/policy.js';
import type { Host, Snapshot, Vm } from '../../src/domain/snapshot.js';
import { planWith } from '../../src/planner/make-plan.js';
import { checkPolicyStrategies } from '../../src/planner/policy-strategies.js';
import { STRATEGIES } from '../../src/planner/strategies/registry.js';
import { parsePolicyText } from '../../src/planner/load-policy.js';
import { evacuateLabelStrategy } from './strategies/evacuate-label/evacuate-label-strategy.js';

const NOW = Date.parse('2026-11-26T00:00:00Z');

// The one registry line.
const registry = STRATEGIES.with(evacuateLabelStrategy);

const host = (i: number, rack: string): Host => ({
  id: `kvm-${i}`,
  cpus: 32,
  memMiB: 131072,
  state: 'active',
  cpuPct: null,
  memUsedMiB: null,
  bandwidthMiBps: 1150,
  labels: { rack },
});
const vm = (i: number, h: number): Vm => ({
  id: `vm-${i}`,
  name: `vm-${i}`,
  host: `kvm-${h}`,
  state: 'running',
  vcpus: 2,
  memMiB: 8192,
  cpuPct: 20,
  memUsedMiB: 4096,
  dirtyMiBps: 5,
  storage: 'shared',
  labels: {},
});
// Rack r1: kvm-0 with three VMs and kvm-1 empty (the emptiest host, were it allowed to take VMs); rack r2:
// kvm-2 and kvm-3 with two VMs each.
const snap: Snapshot = {
  version: 1,
  takenAt: '2026-11-26T00:00:00Z',
  hosts: [host(0, 'r1'), host(1, 'r1'), host(2, 'r2'), host(3, 'r2')],
  vms: [vm(0, 0), vm(1, 0), vm(2, 0), vm(3, 2), vm(4, 2), vm(5, 3), vm(6, 3)],
};

describe('a strategy registered in a test', () => {
  it('plans by name with its args; its scope keeps VMs off the hosts it empties; the plan names it', () => {
    const plan = planWith('evacuate-label', snap, parsePolicy({}), {
      now: NOW,
      registry,
      args: { value: 'r1' },
    });
    expect(plan.strategy).toBe('evacuate-label');
    expect(plan.reason).toBe('rebalance');
    expect(plan.steps.map((s) => s.vm).sort()).toEqual(['vm-0', 'vm-1', 'vm-2']);
    // kvm-1 is the emptiest host, but in the scope's emptied hosts: nothing lands there.
    for (const s of plan.steps) expect(['kvm-2', 'kvm-3']).toContain(s.to);
    expect(plan.note).toBe('evacuates rack=r1');
  });

  it('is unknown to the registry it is not in', () => {
    expect(() =>
      planWith('evacuate-label', snap, parsePolicy({}), { now: NOW, args: { value: 'r1' } }),
    ).toThrow(/unknown strategy "evacuate-label" \(there are balance, drain, consolidate\)/);
  });

  it('takes its args and hold time from the policy, a request overriding the args', () => {
    const policy = parsePolicy({
      strategies: { 'evacuate-label': { holdTimeS: 60, args: { value: 'r2' } } },
    });
    checkPolicyStrategies(policy, 'policy.yaml', registry);
    const fromPolicy = planWith('evacuate-label', snap, policy, { now: NOW, registry });
    expect(fromPolicy.steps.map((s) => s.from).sort()).toEqual(['kvm-2', 'kvm-2', 'kvm-3', 'kvm-3']);
    const requested = planWith('evacuate-label', snap, policy, { now: NOW, registry, args: { value: 'r1' } });
    expect(requested.note).toBe('evacuates rack=r1');
    // Its hold: 60 s from the policy (the strategy's own default is 300 s).
    const held = planWith('evacuate-label', snap, policy, {
      now: NOW,
      registry,
      lastExecutedAtMs: NOW - 30_000,
    });
    expect(held.steps).toEqual([]);
    expect(held.note).toMatch(/hold time 60 s \(strategies\.evacuate-label\.holdTimeS\)/);
    const after = planWith('evacuate-label', snap, policy, {
      now: NOW,
      registry,
      lastExecutedAtMs: NOW - 61_000,
    });
    expect(after.steps).toHaveLength(4);
    const byDefault = planWith('evacuate-label', snap, parsePolicy({}), {
      now: NOW,
      registry,
      args: { value: 'r1' },
      lastExecutedAtMs: NOW - 200_000,
    });
    expect(byDefault.note).toMatch(/hold time 300 s \(the evacuate-label strategy's default\)/);
  });

  it('has its policy args checked by its own schema, the error naming the field', () => {
    const policy = parsePolicy({ strategies: { 'evacuate-label': { args: { value: 7, extra: true } } } });
    let error: unknown;
    try {
      checkPolicyStrategies(policy, 'policy.yaml', registry);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).issues).toEqual([
      { path: 'strategies.evacuate-label.args.value', message: 'expected a non-empty string, got 7' },
      { path: 'strategies.evacuate-label.args.extra', message: 'unknown field' },
    ]);
  });
});

describe("the policy's strategies section", () => {
  it('names an unknown strategy and a bad argument of a known one', () => {
    expect(() =>
      parsePolicyText(
        'strategies:\n  evacuate-label: {}\n  consolidate:\n    args: { maxHosts: 0 }\n',
        'p.yaml',
      ),
    ).toThrow(
      'p.yaml: strategies.evacuate-label: no strategy "evacuate-label" (there are balance, drain, consolidate)\n' +
        'p.yaml: strategies.consolidate.args.maxHosts: expected a positive integer, got 0',
    );
  });

  it('still loads balance.holdTimeS as the balance hold time; consolidate no longer borrows it', () => {
    const old = parsePolicyText('balance:\n  holdTimeS: 60\n', 'old.yaml');
    expect(old.strategies).toEqual({ balance: { holdTimeS: 60 } });
    expect('holdTimeS' in old.balance).toBe(false);
    expect(() =>
      parsePolicyText(
        'balance: { holdTimeS: 60 }\nstrategies: { balance: { holdTimeS: 90 } }\n',
        'both.yaml',
      ),
    ).toThrow(
      'both.yaml: balance.holdTimeS: 60 differs from strategies.balance.holdTimeS (90); keep strategies.balance.holdTimeS only',
    );
    // A long balance hold leaves consolidate with its own (900 s): 1,000 s after its last plan it plans.
    const policy = parsePolicyText('strategies: { balance: { holdTimeS: 5000 } }\n', 'p.yaml');
    const spread: Snapshot = { ...snap, vms: snap.vms.map((v, i) => ({ ...v, host: `kvm-${i % 4}` })) };
    const last = NOW - 1_000_000;
    const consolidate = planWith('consolidate', spread, policy, { now: NOW, lastExecutedAtMs: last });
    expect(consolidate.hold).toBeUndefined();
    expect(consolidate.steps.length).toBeGreaterThan(0);
    const balance = planWith('balance', spread, policy, { now: NOW, lastExecutedAtMs: last });
    expect(balance.hold?.holdTimeS).toBe(5000);
  });
});
