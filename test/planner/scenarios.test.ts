// Hand-written clusters with the plan each must give.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/domain/policy.js';
import { parseSnapshot, type Snapshot } from '../../src/domain/snapshot.js';
import type { VmHistory } from '../../src/domain/history.js';
import { makePlan, planDrain, planRebalance } from '../../src/planner/make-plan.js';

const NOW = Date.parse('2026-11-25T12:00:00Z');
const fixture = (name: string): Snapshot =>
  parseSnapshot(JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8')), name);
const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

const rules = [
  {
    name: 'infra',
    conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'infra' }] },
    event: { type: 'exclude' },
  },
  {
    name: 'pin',
    conditions: { all: [{ fact: 'vm.labels.drover/pin', operator: 'equal', value: 'true' }] },
    event: { type: 'pin' },
  },
  {
    name: 'ha',
    conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'db' }] },
    event: { type: 'antiAffinity', params: { byLabel: 'ha' } },
  },
] as const;

describe('rebalance scenarios', () => {
  const snap = fixture('imbalanced');
  const policy = parsePolicy({ rules: [...rules] });

  it('moves load off the hot host, never the JVM, the excluded or the pinned VM, and says why', () => {
    const plan = planRebalance(snap, policy, { now: NOW });
    expect(plan.before.cpuSpreadPct).toBeGreaterThan(80);
    expect(plan.after.cpuSpreadPct).toBeLessThanOrEqual(20);
    expect(plan.after.memSpreadPct).toBeLessThanOrEqual(20);
    expect(plan.steps.every((s) => s.from === 'kvm-01')).toBe(true);
    const moved = plan.steps.map((s) => s.vm);
    expect(moved).not.toContain(id(1));
    expect(moved).not.toContain(id(2));
    expect(moved).not.toContain(id(3));
    expect(plan.skipped).toEqual([
      {
        vm: id(1),
        why: 'dirty rate 700 MiB/s cannot converge at 575 MiB/s within 300 ms (1150 MiB/s link shared by 2 migrations)',
      },
      { vm: id(2), why: 'excluded by rule infra' },
      { vm: id(3), why: 'pinned by rule pin' },
    ]);
    for (const s of plan.steps) expect(s.why).toMatch(/kvm-01 cpu \d+%/);
    expect(plan.etaS).toBeGreaterThan(0);
  });

  it('plans the JVM once post-copy is allowed, marking the technique', () => {
    const pc = parsePolicy({ migration: { allowPostCopy: true }, limits: { maxMovesPerRun: 20 } });
    const hotOnlyJvm: Snapshot = {
      ...snap,
      vms: snap.vms.filter((v) => v.host !== 'kvm-01' || v.id === id(1)),
    };
    hotOnlyJvm.hosts = hotOnlyJvm.hosts.map((h) =>
      h.id === 'kvm-01' ? { ...h, cpuPct: 90, memUsedMiB: 100000 } : h,
    );
    const plan = planRebalance(hotOnlyJvm, pc, { now: NOW });
    const jvm = plan.steps.find((s) => s.vm === id(1));
    expect(jvm?.predicted.technique).toBe('post-copy');
    expect(jvm?.predicted.downtimeMs).toBe(pc.migration.postCopySwitchoverMs);
    expect(planRebalance(hotOnlyJvm, policy, { now: NOW }).steps.map((s) => s.vm)).not.toContain(id(1));
  });

  it('respects max moves, hold time and minimum improvement, and says why it did nothing', () => {
    const two = planRebalance(snap, parsePolicy({ limits: { maxMovesPerRun: 2 } }), { now: NOW });
    expect(two.steps).toHaveLength(2);
    expect(two.note).toMatch(/limit of 2 moves/);
    const held = planRebalance(snap, policy, { now: NOW, lastExecutedAtMs: NOW - 60_000 });
    expect(held.steps).toEqual([]);
    expect(held.note).toBe(
      `holding: the last balance plan was executed at ${new Date(NOW - 60_000).toISOString()}; ` +
        `hold time 900 s (the balance strategy's default), until ${new Date(NOW + 840_000).toISOString()}`,
    );
    expect(held.hold).toEqual({
      lastExecutedAt: new Date(NOW - 60_000).toISOString(),
      holdTimeS: 900,
      until: new Date(NOW + 840_000).toISOString(),
    });
    // A manual request plans inside the hold and says so; after the hold, nothing is held.
    const manual = planRebalance(snap, policy, {
      now: NOW,
      lastExecutedAtMs: NOW - 60_000,
      overrideHold: 'api:ops',
    });
    expect(manual.steps.length).toBeGreaterThan(0);
    expect(manual.hold?.overriddenBy).toBe('api:ops');
    const after = planRebalance(snap, policy, { now: NOW, lastExecutedAtMs: NOW - 900_000 });
    expect(after.steps.length).toBeGreaterThan(0);
    expect(after.hold).toBeUndefined();
    // The gate applies to plans that repair no rule, relieve no host above a ceiling and leave the spread
    // over target: one move, no ceilings.
    const picky = planRebalance(
      snap,
      parsePolicy({
        balance: { minImprovementPct: 500 },
        hosts: { cpuCeilingPct: 100, memCeilingPct: 100, memReserveMiB: 0 },
        limits: { maxMovesPerRun: 1 },
      }),
      { now: NOW },
    );
    expect(picky.steps).toEqual([]);
    expect(picky.note).toMatch(/less than the minimum 500/);
    expect(picky.after).toEqual(picky.before);
    const wide = { targetCpuSpreadPct: 90, targetMemSpreadPct: 90 };
    const calm = planRebalance(snap, parsePolicy({ balance: wide, hosts: { cpuCeilingPct: 95 } }), {
      now: NOW,
    });
    expect(calm.steps).toEqual([]);
    expect(calm.note).toMatch(/^spread within target/);
    // Within the spread target but kvm-01 (90 % CPU) is above the default 85 % ceiling: one move relieves it.
    const hot = planRebalance(snap, parsePolicy({ balance: wide }), { now: NOW });
    expect(hot.steps).toHaveLength(1);
    expect(hot.steps[0]?.why).toMatch(/^kvm-01 cpu 90% > ceiling 85%/);
  });

  it('skips VMs in cooldown or quarantine and over their daily budget', () => {
    const hist = (vm: string, endedAt: string, quarantinedUntil: string | null = null): VmHistory => ({
      vmId: vm,
      quarantinedUntil,
      records: [
        {
          vmId: vm,
          from: 'a',
          to: 'b',
          kind: 'live',
          endedAt,
          result: 'completed',
          predictedDurationS: null,
          measuredDurationS: 10,
          downtimeMs: 50,
          iterations: 2,
          transferMiB: 9000,
          memMiB: 12288,
          dirtyMiBps: 20,
          bandwidthMiBps: null,
        },
      ],
    });
    const history = new Map<string, VmHistory>([
      [id(4), hist(id(4), '2026-11-25T11:30:00Z')],
      [id(5), hist(id(5), '2026-11-24T00:00:00Z', '2026-11-26T00:00:00Z')],
    ]);
    const plan = planRebalance(snap, policy, { now: NOW, history });
    const moved = plan.steps.map((s) => s.vm);
    expect(moved).not.toContain(id(4));
    expect(moved).not.toContain(id(5));
    const why = new Map(plan.skipped.map((s) => [s.vm, s.why]));
    expect(why.get(id(4))).toMatch(/^in cooldown: last migrated at 2026-11-25T11:30:00Z/);
    expect(why.get(id(5))).toMatch(/^quarantined until 2026-11-26T00:00:00Z/);
  });
});

describe('drain scenarios', () => {
  const snap = fixture('drain');
  const policy = parsePolicy({ rules: [...rules] });

  it('empties the host in maintenance: live, block and offline, never onto the stale host or next to its HA peer', () => {
    const plan = makePlan(snap, policy, { now: NOW });
    expect(plan.reason).toBe('drain');
    expect(plan.skipped).toEqual([]);
    const kinds = new Map(plan.steps.map((s) => [s.vm, s.kind]));
    expect(kinds).toEqual(
      new Map([
        [id(103), 'live'],
        [id(104), 'offline'],
        [id(105), 'block'],
        [id(106), 'live'],
      ]),
    );
    expect(plan.steps.every((s) => s.from === 'kvm-02' && s.to !== 'kvm-04')).toBe(true);
    expect(plan.steps.find((s) => s.vm === id(106))?.to).not.toBe('kvm-03');
    expect(plan.etaS).toBeGreaterThanOrEqual(Math.max(...plan.steps.map((s) => s.predicted.durationS)));
  });

  it('says which VMs cannot go and why, and moves nothing, when the drain cannot complete', () => {
    const noBlock = parsePolicy({ rules: [...rules], migration: { allowBlockMigration: false } });
    const plan = planDrain(snap, noBlock, ['kvm-02'], { now: NOW });
    expect(plan.steps).toEqual([]);
    expect(plan.skipped).toEqual([
      { vm: id(105), why: 'cannot leave: local storage needs block migration, which the policy forbids' },
    ]);
    expect(plan.note).toBe('drain of kvm-02 cannot complete: 1 of 4 VMs cannot leave; nothing moved');
    const partial = planDrain(snap, noBlock, ['kvm-02'], { now: NOW, allowPartial: true });
    expect(partial.steps).toHaveLength(3);
  });
});
