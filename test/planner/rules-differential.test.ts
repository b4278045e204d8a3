// The compiled rules must give exactly json-rules-engine's answers: random rules over random VMs and hosts.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parsePolicy, RULE_OPERATORS, type RuleCondition } from '../../src/domain/policy.js';
import type { Host, Vm } from '../../src/domain/snapshot.js';
import { compileRules } from '../../src/planner/rules/compile-rules.js';
import { referenceEngine } from './support/reference-engine.js';

const FACTS = [
  'vm.name',
  'vm.state',
  'vm.vcpus',
  'vm.memMiB',
  'vm.memUsedMiB',
  'vm.cpuPct',
  'vm.dirtyMiBps',
  'vm.dirtyPeakMiBps',
  'vm.storage',
  'vm.diskMiB',
  'vm.labelKeys',
  'vm.labels.app',
  'vm.labels.tier',
  'host.id',
  'host.cpuPct',
  'host.memUsedPct',
  'host.state',
  'host.labels.rack',
  'host.labelKeys',
] as const;

const scalar = fc.oneof(
  fc.constantFrom(
    'web',
    'db',
    'a',
    'r1',
    'running',
    'shutoff',
    'shared',
    'local',
    'app',
    'tier',
    '12',
    '',
    'kvm-1',
  ),
  fc.integer({ min: -5, max: 70000 }),
  fc.double({ min: -10, max: 5000, noNaN: true }),
  fc.constantFrom(0, 1, 2, 4, 8, 16384, 4096, 50, 100),
  fc.boolean(),
  fc.constant(null),
);

const leaf: fc.Arbitrary<RuleCondition> = fc
  .record({
    fact: fc.constantFrom(...FACTS),
    operator: fc.constantFrom(...RULE_OPERATORS),
    scalar,
    list: fc.array(scalar, { maxLength: 4 }),
    priority: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  })
  .map(({ fact, operator, scalar: s, list, priority }) => {
    const value = operator === 'in' || operator === 'notIn' ? list : s;
    return priority === undefined ? { fact, operator, value } : { fact, operator, value, priority };
  });

const condition: fc.Arbitrary<RuleCondition> = fc.letrec<{ c: RuleCondition }>((tie) => ({
  c: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('c'), { maxLength: 3 }).map((all) => ({ all })),
    fc.array(tie('c'), { maxLength: 3 }).map((any) => ({ any })),
    tie('c').map((not) => ({ not })),
  ),
})).c;

const top = fc.oneof(
  fc.array(condition, { maxLength: 3 }).map((all) => ({ all })),
  fc.array(condition, { maxLength: 3 }).map((any) => ({ any })),
  condition.map((not) => ({ not })),
);

const rules = fc.array(fc.record({ conditions: top, priority: fc.integer({ min: 1, max: 3 }) }), {
  minLength: 1,
  maxLength: 4,
});

const nullable = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: null });
const labels = fc.dictionary(
  fc.constantFrom('app', 'tier', 'rack', 'x'),
  fc.constantFrom('web', 'db', 'r1', '12', ''),
  {
    maxKeys: 3,
  },
);

const vmArb: fc.Arbitrary<Vm> = fc
  .record({
    name: fc.constantFrom('web', 'db', 'a'),
    state: fc.constantFrom('running', 'paused', 'shutoff'),
    vcpus: fc.integer({ min: 1, max: 16 }),
    memMiB: fc.constantFrom(512, 4096, 16384, 65536),
    cpuPct: nullable(fc.double({ min: 0, max: 100, noNaN: true })),
    memUsedMiB: nullable(fc.integer({ min: 0, max: 65536 })),
    dirtyMiBps: nullable(fc.double({ min: 0, max: 2000, noNaN: true })),
    dirtyPeakMiBps: fc.option(nullable(fc.double({ min: 0, max: 3000, noNaN: true })), { nil: undefined }),
    storage: fc.constantFrom('shared', 'local'),
    diskMiB: fc.option(nullable(fc.integer({ min: 0, max: 100000 })), { nil: undefined }),
    labels: fc.option(labels, { nil: undefined }),
  })
  .map((v) => {
    const out: Vm = {
      id: 'vm',
      name: v.name,
      host: 'kvm-1',
      state: v.state,
      vcpus: v.vcpus,
      memMiB: v.memMiB,
      cpuPct: v.cpuPct,
      memUsedMiB: v.memUsedMiB,
      dirtyMiBps: v.dirtyMiBps,
      storage: v.storage,
    };
    if (v.dirtyPeakMiBps !== undefined) out.dirtyPeakMiBps = v.dirtyPeakMiBps;
    if (v.diskMiB !== undefined) out.diskMiB = v.diskMiB;
    if (v.labels !== undefined) out.labels = v.labels;
    return out;
  });

const hostArb: fc.Arbitrary<Host> = fc
  .record({
    id: fc.constantFrom('kvm-1', 'kvm-2'),
    cpuPct: nullable(fc.double({ min: 0, max: 100, noNaN: true })),
    memUsedMiB: nullable(fc.integer({ min: 0, max: 262144 })),
    state: fc.constantFrom('active', 'maintenance'),
    labels: fc.option(labels, { nil: undefined }),
  })
  .map((h) => {
    const out: Host = {
      id: h.id,
      cpus: 32,
      memMiB: 262144,
      state: h.state,
      cpuPct: h.cpuPct,
      memUsedMiB: h.memUsedMiB,
    };
    if (h.labels !== undefined) out.labels = h.labels;
    return out;
  });

describe('compiled rules versus json-rules-engine', () => {
  it('fire exactly the same rules on random rules and facts', async () => {
    await fc.assert(
      fc.asyncProperty(
        rules,
        fc.array(fc.tuple(vmArb, hostArb), { minLength: 1, maxLength: 8 }),
        async (rs, cases) => {
          const policy = parsePolicy({
            rules: rs.map((r, i) => ({
              name: `r${i}`,
              priority: r.priority,
              conditions: r.conditions,
              event: { type: 'exclude' },
            })),
          });
          const compiled = compileRules(policy.rules);
          const reference = referenceEngine(policy.rules);
          for (const [vm, host] of cases) {
            const mine = [...compiled.fired(vm, host)].sort((a, b) => a - b);
            expect(mine).toEqual(await reference.fired(vm, host));
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('lists fired rules highest priority first', () => {
    const policy = parsePolicy({
      rules: [
        { name: 'low', priority: 1, conditions: { all: [] }, event: { type: 'exclude' } },
        { name: 'high', priority: 5, conditions: { any: [] }, event: { type: 'pin' } },
        { name: 'never', priority: 9, conditions: { not: { all: [] } }, event: { type: 'pin' } },
      ],
    });
    const vm: Vm = {
      id: 'v',
      name: 'v',
      host: 'h',
      state: 'running',
      vcpus: 1,
      memMiB: 1,
      cpuPct: null,
      memUsedMiB: null,
      dirtyMiBps: null,
      storage: 'shared',
    };
    const host: Host = { id: 'h', cpus: 1, memMiB: 1, state: 'active', cpuPct: null, memUsedMiB: null };
    expect(compileRules(policy.rules).fired(vm, host)).toEqual([1, 0]);
  });
});
