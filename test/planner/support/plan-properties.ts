// Random small clusters and policies for the planner's property tests, and the invariants every plan must
// keep, checked by replaying its steps against the snapshot.
import { expect } from 'vitest';
import fc from 'fast-check';
import type { Plan } from '../../../src/domain/plan.js';
import { parsePlan } from '../../../src/domain/plan.js';
import { parsePolicy, type Policy } from '../../../src/domain/policy.js';
import type { Host, Snapshot, Vm } from '../../../src/domain/snapshot.js';
import { predictVmMigration } from '../../../src/planner/predictor/predict-vm.js';

const hostArb = (i: number): fc.Arbitrary<Host> =>
  fc
    .record({
      cpus: fc.constantFrom(16, 32, 64),
      memGiB: fc.constantFrom(64, 128, 256),
      state: fc.constantFrom('active', 'active', 'active', 'active', 'disabled', 'down'),
      stale: fc.constantFrom(false, false, false, true),
      bandwidthMiBps: fc.constantFrom(100, 500, 1150),
      rack: fc.constantFrom('r1', 'r2'),
      extraMemMiB: fc.integer({ min: 0, max: 8192 }),
    })
    .map((h) => ({
      id: `kvm-${i}`,
      cpus: h.cpus,
      memMiB: h.memGiB * 1024,
      state: h.state,
      stale: h.stale,
      cpuPct: 0,
      memUsedMiB: h.extraMemMiB,
      bandwidthMiBps: h.bandwidthMiBps,
      labels: { rack: h.rack },
    }));

const vmArb = (i: number, hosts: number): fc.Arbitrary<Vm> =>
  fc
    .record({
      host: fc.integer({ min: 0, max: hosts - 1 }),
      state: fc.constantFrom('running', 'running', 'running', 'paused', 'shutoff'),
      vcpus: fc.constantFrom(1, 2, 4, 8),
      memMiB: fc.constantFrom(1024, 4096, 8192, 16384, 32768),
      cpuPct: fc.double({ min: 0, max: 100, noNaN: true }),
      dirty: fc.oneof(
        fc.double({ min: 0, max: 60, noNaN: true }),
        fc.double({ min: 300, max: 1500, noNaN: true }),
        fc.constant(null),
      ),
      storage: fc.constantFrom('shared', 'shared', 'shared', 'local'),
      app: fc.constantFrom('web', 'db', 'infra', 'cache'),
      ha: fc.constantFrom('g1', 'g2', 'none'),
      pin: fc.boolean(),
    })
    .map((v) => {
      const labels: Record<string, string> = { app: v.app };
      if (v.ha !== 'none') labels.ha = v.ha;
      if (v.pin && v.app === 'cache') labels.pin = 'yes';
      return {
        id: `vm-${i}`,
        name: `${v.app}-${i}`,
        host: `kvm-${v.host}`,
        state: v.state,
        vcpus: v.vcpus,
        memMiB: v.memMiB,
        cpuPct: v.cpuPct,
        memUsedMiB: Math.round(v.memMiB * 0.6),
        dirtyMiBps: v.dirty,
        storage: v.storage,
        diskMiB: 10240,
        labels,
      };
    });

export const clusterArb: fc.Arbitrary<Snapshot> = fc
  .record({ hosts: fc.integer({ min: 2, max: 8 }), vms: fc.integer({ min: 0, max: 40 }) })
  .chain(({ hosts, vms }) =>
    fc.record({
      hosts: fc.tuple(...Array.from({ length: hosts }, (_, i) => hostArb(i))),
      vms: fc.tuple(...Array.from({ length: vms }, (_, i) => vmArb(i, hosts))),
    }),
  )
  .map(({ hosts, vms }) => {
    // Host load as its VMs make it (what a collector would report), plus some overhead memory.
    for (const h of hosts) {
      const mine = vms.filter((v) => v.host === h.id && v.state !== 'shutoff');
      h.cpuPct = Math.min(
        100,
        (mine.reduce((s, v) => s + ((v.cpuPct ?? 0) / 100) * v.vcpus, 0) / h.cpus) * 100,
      );
      h.memUsedMiB = (h.memUsedMiB ?? 0) + mine.reduce((s, v) => s + v.memMiB, 0);
    }
    return { version: 1 as const, takenAt: '2026-11-26T00:00:00Z', hosts: [...hosts], vms: [...vms] };
  });

export const policyArb: fc.Arbitrary<Policy> = fc
  .record({
    target: fc.integer({ min: 5, max: 40 }),
    maxMoves: fc.integer({ min: 1, max: 30 }),
    memCeilingPct: fc.integer({ min: 50, max: 100 }),
    memReserveMiB: fc.constantFrom(0, 4096, 16384),
    allowBlock: fc.boolean(),
    budget: fc.constantFrom(30, 100, 300, 1000),
    perHost: fc.integer({ min: 1, max: 4 }),
  })
  .map((p) =>
    parsePolicy({
      balance: { targetCpuSpreadPct: p.target, targetMemSpreadPct: p.target, minImprovementPct: 0 },
      hosts: { memCeilingPct: p.memCeilingPct, memReserveMiB: p.memReserveMiB },
      limits: { maxMovesPerRun: p.maxMoves, perHostConcurrency: p.perHost },
      vms: { defaultDowntimeBudgetMs: p.budget },
      migration: { allowBlockMigration: p.allowBlock },
      rules: [
        {
          name: 'infra-out',
          conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'infra' }] },
          event: { type: 'exclude' },
        },
        {
          name: 'pinned',
          conditions: { all: [{ fact: 'vm.labels.pin', operator: 'equal', value: 'yes' }] },
          event: { type: 'pin' },
        },
        {
          name: 'ha',
          conditions: { all: [{ fact: 'vm.labelKeys', operator: 'contains', value: 'ha' }] },
          event: { type: 'antiAffinity', params: { byLabel: 'ha' } },
        },
        {
          name: 'db-tight',
          conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'db' }] },
          event: { type: 'downtimeBudget', params: { ms: 50 } },
        },
      ],
    }),
  );

/** Checks every invariant of a plan against the snapshot it was made from, replaying its steps in order. */
export function checkPlan(
  snap: Snapshot,
  policy: Policy,
  plan: Plan,
  draining: ReadonlySet<string> = new Set(),
): void {
  parsePlan(plan); // the Plan format, exactly
  const hosts = new Map(snap.hosts.map((h) => [h.id, h]));
  const where = new Map(snap.vms.map((v) => [v.id, v.host]));
  const vms = new Map(snap.vms.map((v) => [v.id, v]));
  const running = (v: Vm) => v.state !== 'shutoff';
  const memLoad = new Map<string, number>();
  for (const h of snap.hosts) {
    const sum = snap.vms.filter((v) => v.host === h.id && running(v)).reduce((s, v) => s + v.memMiB, 0);
    memLoad.set(h.id, Math.max(h.memUsedMiB ?? 0, sum));
  }
  const seen = new Set<string>();
  for (const step of plan.steps) {
    const vm = vms.get(step.vm);
    expect(vm, 'a known VM').toBeDefined();
    if (!vm) return;
    expect(seen.has(vm.id), 'a VM moves at most once').toBe(false);
    seen.add(vm.id);
    expect(step.from).toBe(where.get(vm.id));
    const to = hosts.get(step.to);
    expect(to?.state).toBe('active');
    expect(to?.stale).not.toBe(true);
    expect(draining.has(step.to)).toBe(false);
    // Excluded and pinned VMs never move.
    expect(vm.labels?.app).not.toBe('infra');
    expect(vm.labels?.pin).not.toBe('yes');
    // Storage decides the kind; block only when allowed.
    expect(step.kind).toBe(vm.state === 'shutoff' ? 'offline' : vm.storage === 'local' ? 'block' : 'live');
    if (step.kind === 'block') expect(policy.migration.allowBlockMigration).toBe(true);
    // Anti-affinity: the destination holds no other member of the VM's group at that point.
    const group = vm.labels?.ha;
    if (group !== undefined) {
      const clash = [...where.entries()].some(
        ([id, h]) => id !== vm.id && h === step.to && vms.get(id)?.labels?.ha === group,
      );
      expect(clash, `anti-affinity ${group} on ${step.to}`).toBe(false);
    }
    // Predicted to converge, and the predictor agrees independently at the link share.
    expect(step.predicted.converges).toBe(true);
    const from = hosts.get(step.from);
    const bw = Math.min(from?.bandwidthMiBps ?? 1150, to?.bandwidthMiBps ?? 1150);
    const f = predictVmMigration(
      vm,
      // A drain step says how many migrations share its source's link; others share it policy-wide.
      { bandwidthMiBps: bw, concurrency: step.concurrency ?? policy.limits.perHostConcurrency },
      policy,
      {
        kind: step.kind,
        downtimeBudgetMs: vm.labels?.app === 'db' ? 50 : policy.vms.defaultDowntimeBudgetMs,
      },
    );
    expect(f.prediction.converges).toBe(true);
    expect(step.downtimeBudgetMs).toBe(vm.labels?.app === 'db' ? 50 : policy.vms.defaultDowntimeBudgetMs);
    // Memory is never overcommitted on the receiving host.
    const mem = running(vm) ? vm.memMiB : 0;
    memLoad.set(step.from, (memLoad.get(step.from) ?? 0) - mem);
    memLoad.set(step.to, (memLoad.get(step.to) ?? 0) + mem);
    if (to) {
      const limit = Math.min(
        (to.memMiB * policy.hosts.memCeilingPct) / 100,
        to.memMiB - policy.hosts.memReserveMiB,
      );
      expect(memLoad.get(step.to)).toBeLessThanOrEqual(limit + 1e-6);
    }
    where.set(vm.id, step.to);
  }
}
