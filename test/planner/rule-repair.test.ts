// Rule repair that needs a sequence: balance parks a VM to make room for the repair; drains repair the rules
// their VMs break, never break one more, and make room on the only hosts a VM's rules allow by first moving a
// resident VM away. Small hand-made clusters under the default policy (its keep-ha-groups-apart rule).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parsePolicy, type Policy } from '../../src/domain/policy.js';
import type { Plan } from '../../src/domain/plan.js';
import type { Host, Snapshot, Vm } from '../../src/domain/snapshot.js';
import { ClusterModel } from '../../src/planner/constraints/cluster-model.js';
import { parsePolicyText } from '../../src/planner/load-policy.js';
import { planDrain, planRebalance } from '../../src/planner/make-plan.js';

const NOW = Date.parse('2026-12-03T00:00:00Z');
const GiB = 1024;

interface VmSpec {
  id: string;
  host: string;
  memGiB: number;
  cpu?: number;
  labels?: Record<string, string>;
}

function cluster(
  hosts: { id: string; state?: Host['state']; labels?: Record<string, string> }[],
  vms: VmSpec[],
): Snapshot {
  const vmList: Vm[] = vms.map((v) => ({
    id: v.id,
    name: v.id,
    host: v.host,
    state: 'running',
    vcpus: 2,
    memMiB: v.memGiB * GiB,
    cpuPct: ((v.cpu ?? 0.5) / 2) * 100,
    memUsedMiB: v.memGiB * GiB,
    dirtyMiBps: 5,
    storage: 'shared',
    labels: v.labels ?? {},
  }));
  const hostList: Host[] = hosts.map((h) => {
    const mine = vmList.filter((v) => v.host === h.id);
    return {
      id: h.id,
      cpus: 16,
      memMiB: 64 * GiB,
      state: h.state ?? 'active',
      cpuPct: (mine.reduce((s, v) => s + ((v.cpuPct ?? 0) / 100) * v.vcpus, 0) / 16) * 100,
      memUsedMiB: mine.reduce((s, v) => s + v.memMiB, 0),
      bandwidthMiBps: 1150,
      labels: h.labels ?? {},
    };
  });
  return { version: 1, takenAt: '2026-12-03T00:00:00Z', hosts: hostList, vms: vmList };
}

const file = fileURLToPath(new URL('../../policies/default.yaml', import.meta.url));
/** The shipped default policy (its rules: opt-out, pinned, keep-ha-groups-apart). */
const DEFAULT: Policy = parsePolicyText(readFileSync(file, 'utf8'), file);

const ha = (group: string) => ({ 'drover/ha-group': group });

/** Where every VM ends after the plan, and the cluster's rule violations then (and before). */
function violations(snap: Snapshot, policy: Policy, p: Plan): { before: number; after: number } {
  const m = new ClusterModel(snap, policy, { nowMs: NOW });
  const before = m.violations();
  const index = new Map(m.vms.map((v, i) => [v.id, i]));
  for (const s of p.steps) m.move(index.get(s.vm) ?? 0, m.hostIndex.get(s.to) ?? 0);
  return { before, after: m.violations() };
}

describe('rule repair in balance', () => {
  // Every host holds 52 of its 57.6 usable GiB: the HA pair sharing h0 cannot be split by one move (8 GiB
  // fits nowhere), but parking a 4 GiB VM of h1 elsewhere makes room for it there.
  const snap = cluster(
    [{ id: 'h0' }, { id: 'h1' }, { id: 'h2' }],
    [
      { id: 'db-1', host: 'h0', memGiB: 8, labels: ha('db') },
      { id: 'db-2', host: 'h0', memGiB: 8, labels: ha('db') },
      { id: 'f0a', host: 'h0', memGiB: 32 },
      { id: 'f0b', host: 'h0', memGiB: 4 },
      { id: 'f1a', host: 'h1', memGiB: 32 },
      { id: 'f1b', host: 'h1', memGiB: 16 },
      { id: 'c1', host: 'h1', memGiB: 4 },
      { id: 'f2a', host: 'h2', memGiB: 32 },
      { id: 'f2b', host: 'h2', memGiB: 16 },
      { id: 'c2', host: 'h2', memGiB: 4 },
    ],
  );

  it('parks a VM to make room, then moves the other: each step names the rule it repairs', () => {
    const p = planRebalance(snap, DEFAULT, { now: NOW });
    expect(p.steps).toHaveLength(2);
    const [park, repair] = p.steps;
    expect(park?.vm).toMatch(/^c[12]$/);
    expect(park?.why).toMatch(
      /^makes room on h[12] to repair a rule of db-[12] \(anti-affinity group keep-ha-groups-apart\/drover\/ha-group=db shares h0\)/,
    );
    expect(repair?.vm).toMatch(/^db-[12]$/);
    expect(repair?.from).toBe('h0');
    expect(repair?.to).toBe(park?.from);
    expect(repair?.why).toMatch(/^repairs a rule: anti-affinity group .* shares h0/);
    // The executor holds the repair until the parking move has completed.
    expect(repair?.after).toEqual([park?.vm]);
    expect(park?.after).toBeUndefined();
    expect(violations(snap, DEFAULT, p)).toEqual({ before: 1, after: 0 });
  });

  it('never parks a VM without the budget for the repair that follows', () => {
    const p = planRebalance(
      snap,
      { ...DEFAULT, limits: { ...DEFAULT.limits, maxMovesPerRun: 1 } },
      { now: NOW },
    );
    expect(p.steps).toEqual([]);
  });
});

describe('rule repair in more than two moves', () => {
  // h1 and h2 hold 56 of their 57.6 usable GiB: the HA pair sharing h0 needs 8 GiB, so two of their 4 GiB VMs
  // must leave first. h3 and h4 (and h0) have room for one 4 GiB VM each, not for an 8 GiB one, and none of
  // their VMs may move (excluded, or too large to park anywhere): no one move makes room.
  const snap = cluster(
    [{ id: 'h0' }, { id: 'h1' }, { id: 'h2' }, { id: 'h3' }, { id: 'h4' }],
    [
      { id: 'db-1', host: 'h0', memGiB: 8, labels: ha('db') },
      { id: 'db-2', host: 'h0', memGiB: 8, labels: ha('db') },
      { id: 'f0a', host: 'h0', memGiB: 32 },
      { id: 'f0b', host: 'h0', memGiB: 4 },
      ...[1, 2].flatMap((h) => [
        { id: `f${h}a`, host: `h${h}`, memGiB: 32 },
        { id: `f${h}b`, host: `h${h}`, memGiB: 16 },
        { id: `c${h}a`, host: `h${h}`, memGiB: 4 },
        { id: `c${h}b`, host: `h${h}`, memGiB: 4 },
      ]),
      ...[3, 4].flatMap((h) => [
        { id: `f${h}a`, host: `h${h}`, memGiB: 32 },
        { id: `f${h}b`, host: `h${h}`, memGiB: 16 },
        { id: `f${h}c`, host: `h${h}`, memGiB: 4, labels: { 'drover/exclude': 'true' } },
      ]),
    ],
  );

  it('parks two VMs, then repairs: the repair runs after both', () => {
    const p = planRebalance(snap, DEFAULT, { now: NOW });
    expect(p.steps).toHaveLength(3);
    const [a, b, repair] = p.steps;
    expect(a?.from).toBe(b?.from);
    expect([a?.vm, b?.vm].sort()).toEqual([`c${a?.from.slice(1)}a`, `c${a?.from.slice(1)}b`]);
    for (const park of [a, b]) expect(park?.why).toMatch(/^makes room on h[12] to repair a rule of db-[12]/);
    expect(repair?.vm).toMatch(/^db-[12]$/);
    expect(repair?.from).toBe('h0');
    expect(repair?.to).toBe(a?.from);
    expect(repair?.why).toMatch(/^repairs a rule: anti-affinity group .* shares h0/);
    expect(repair?.after).toEqual([a?.vm, b?.vm]);
    expect(violations(snap, DEFAULT, p)).toEqual({ before: 1, after: 0 });
  });

  it('never starts the sequence without the budget for all of it', () => {
    const p = planRebalance(
      snap,
      { ...DEFAULT, limits: { ...DEFAULT.limits, maxMovesPerRun: 2 } },
      { now: NOW },
    );
    expect(p.steps).toEqual([]);
  });
});

describe('rule repair in drains', () => {
  it('repairs the rules of the VMs it moves and says so', () => {
    // The HA pair shares h0, which is drained: they leave to different hosts.
    const snap = cluster(
      [{ id: 'h0', state: 'maintenance' }, { id: 'h1' }, { id: 'h2' }],
      [
        { id: 'db-1', host: 'h0', memGiB: 8, labels: ha('db') },
        { id: 'db-2', host: 'h0', memGiB: 8, labels: ha('db') },
        { id: 'x', host: 'h1', memGiB: 8 },
      ],
    );
    const p = planDrain(snap, DEFAULT, undefined, { now: NOW });
    expect(p.steps).toHaveLength(2);
    expect(new Set(p.steps.map((s) => s.to)).size).toBe(2);
    expect(p.steps.some((s) => /repairs a rule: anti-affinity group/.test(s.why))).toBe(true);
    expect(violations(snap, DEFAULT, p)).toEqual({ before: 1, after: 0 });
  });

  it('never makes a rule violation worse (random clusters, HA groups and a drained host)', () => {
    const arb = fc.record({
      hosts: fc.integer({ min: 3, max: 6 }),
      vms: fc.array(
        fc.record({
          host: fc.nat(5),
          memGiB: fc.constantFrom(2, 4, 8, 16),
          group: fc.option(fc.constantFrom('a', 'b', 'c'), { nil: undefined }),
        }),
        { minLength: 2, maxLength: 24 },
      ),
    });
    fc.assert(
      fc.property(arb, ({ hosts, vms }) => {
        const hs = Array.from({ length: hosts }, (_, i): { id: string; state: Host['state'] } => ({
          id: `h${i}`,
          state: i === 0 ? 'maintenance' : 'active',
        }));
        // Hosts filled no further than their usable memory.
        const used = new Map<string, number>();
        const specs: VmSpec[] = [];
        vms.forEach((v, i) => {
          const h = `h${v.host % hosts}`;
          if ((used.get(h) ?? 0) + v.memGiB > 56) return;
          used.set(h, (used.get(h) ?? 0) + v.memGiB);
          specs.push({
            id: `v${i}`,
            host: h,
            memGiB: v.memGiB,
            ...(v.group ? { labels: ha(v.group) } : {}),
          });
        });
        const snap = cluster(hs, specs);
        for (const allowPartial of [false, true]) {
          const p = planDrain(snap, DEFAULT, undefined, { now: NOW, allowPartial });
          const { before, after } = violations(snap, DEFAULT, p);
          expect(after).toBeLessThanOrEqual(before);
        }
      }),
      { numRuns: 150, seed: 15 },
    );
  });

  it('makes room on the only hosts a VM may use by first moving a resident VM away', () => {
    // lic-db may run only on licensed hosts (its rule avoids the others); the one licensed host left, h1, is
    // nearly full. Moving one of its other VMs to h2 first makes room.
    const policy = parsePolicy({
      rules: [
        {
          name: 'licensed-only',
          conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'lic-db' }] },
          event: { type: 'avoidHosts', params: { labels: { licensed: 'no' } } },
        },
      ],
    });
    const snap = cluster(
      [
        { id: 'h0', state: 'maintenance', labels: { licensed: 'yes' } },
        { id: 'h1', labels: { licensed: 'yes' } },
        { id: 'h2', labels: { licensed: 'no' } },
      ],
      [
        { id: 'lic-db', host: 'h0', memGiB: 16, labels: { app: 'lic-db' } },
        { id: 'big', host: 'h1', memGiB: 32 },
        { id: 'small', host: 'h1', memGiB: 12 },
        { id: 'other', host: 'h2', memGiB: 8 },
      ],
    );
    const p = planDrain(snap, policy, undefined, { now: NOW });
    expect(p.skipped).toEqual([]);
    expect(p.steps.map((s) => [s.vm, s.from, s.to])).toEqual([
      ['small', 'h1', 'h2'],
      ['lic-db', 'h0', 'h1'],
    ]);
    expect(p.steps[0]?.why).toMatch(/^makes room on h1 for lic-db/);
    // The executor holds lic-db's step until the room-making move has completed.
    expect(p.steps[1]?.after).toEqual(['small']);
    expect(p.steps[0]?.after).toBeUndefined();
    expect(violations(snap, policy, p)).toEqual({ before: 0, after: 0 });
  });

  it('moves several resident VMs away when no one of them makes room', () => {
    // As above, but lic-db needs 24 GiB and h1 has 9.6 free: both 8 GiB VMs must leave first ('big' fits
    // nowhere else); the drain step runs after both.
    const policy = parsePolicy({
      rules: [
        {
          name: 'licensed-only',
          conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'lic-db' }] },
          event: { type: 'avoidHosts', params: { labels: { licensed: 'no' } } },
        },
      ],
    });
    const snap = cluster(
      [
        { id: 'h0', state: 'maintenance', labels: { licensed: 'yes' } },
        { id: 'h1', labels: { licensed: 'yes' } },
        { id: 'h2', labels: { licensed: 'no' } },
      ],
      [
        { id: 'lic-db', host: 'h0', memGiB: 24, labels: { app: 'lic-db' } },
        { id: 'big', host: 'h1', memGiB: 32 },
        { id: 's1', host: 'h1', memGiB: 8 },
        { id: 's2', host: 'h1', memGiB: 8 },
        { id: 'other', host: 'h2', memGiB: 30 },
      ],
    );
    const p = planDrain(snap, policy, undefined, { now: NOW });
    expect(p.skipped).toEqual([]);
    const parks = p.steps.slice(0, 2);
    expect(parks.map((s) => [s.vm, s.from, s.to]).sort()).toEqual([
      ['s1', 'h1', 'h2'],
      ['s2', 'h1', 'h2'],
    ]);
    for (const s of parks) expect(s.why).toMatch(/^makes room on h1 for lic-db/);
    expect(p.steps.slice(2).map((s) => [s.vm, s.from, s.to])).toEqual([['lic-db', 'h0', 'h1']]);
    expect([...(p.steps[2]?.after ?? [])].sort()).toEqual(['s1', 's2']);
    expect(violations(snap, policy, p)).toEqual({ before: 0, after: 0 });
  });
});
