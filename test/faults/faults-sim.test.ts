// Fault suite on the simulator, where it is faithful: the whole service (composition root, collector,
// planner, BullMQ executor on real Redis) drains a host while a fault is injected mid-migration; each case
// ends with the invariant checked for every VM on every host, and no VM migrated twice. Cases that need a
// process to die with the hypervisor's world surviving it (SIGKILL, a second process taking over) are in the
// lab suite: the simulator lives inside the process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import type { HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import type { SimHypervisor } from '../../src/hypervisor/sim/index.js';
import { startPrivateRedis, type PrivateRedis } from '../../src/service/private-redis.js';
import { ADMIN_TOKEN, startHarness, type Harness } from '../security/service-harness.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { addRow, checkInvariant, writeTable, type FaultRow } from './fault-table.js';

const SOURCE = 'h1';
const PINNED = '00000000-0000-4000-8000-000000000004';

/** h1 carries four 1 GiB VMs (one labelled pinned); h2 and h3 one each. Links of 300 MiB/s: ~4 s a move. */
function clusterSpec(): unknown {
  const hosts = ['h1', 'h2', 'h3'].map((id) => ({ id, cpus: 32, memMiB: 131072, bandwidthMiBps: 300 }));
  const vms = [1, 2, 3, 4, 5, 6].map((i) => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    name: `vm-${i}`,
    host: i <= 4 ? 'h1' : `h${i - 3}`,
    vcpus: 2,
    memMiB: 1024,
    labels: i === 4 ? { pinned: 'yes' } : {},
    // vm-2 writes over almost all of its memory, so a dirty-rate spike can keep it from converging.
    workload: { kind: 'constant', cpuPct: 20, dirtyMiBps: 5, wwsMiB: i === 2 ? 1000 : 64 },
  }));
  return { seed: 11, hosts, vms };
}
const ALL_VMS = [1, 2, 3, 4, 5, 6].map((i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);

/** The collector measures dirty rates over time; until then the planner assumes this one. */
const BASE_POLICY = { migration: { assumeDirtyMiBpsWhenUnknown: 10 } };
const PIN_POLICY = stringify({
  ...BASE_POLICY,
  rules: [
    {
      name: 'pinned-stay',
      conditions: { all: [{ fact: 'vm.labels.pinned', operator: 'equal', value: 'yes' }] },
      event: { type: 'pin', params: { reason: 'pinned by its owner' } },
    },
  ],
});

interface PlanView {
  id: string;
  status: string;
  plan: { steps: { vm: string; to: string }[]; skipped: { vm: string; why: string }[]; note?: string };
}

async function api(
  h: Harness,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${h.running.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err; // Redis may be down on purpose
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}${last ? ` (${last instanceof Error ? last.message : JSON.stringify(last)})` : ''}`,
      );
    await new Promise((r) => setTimeout(r, 150));
  }
}

interface CaseRun {
  h: Harness;
  sim: SimHypervisor;
  events: HypervisorEvent[];
  planId: string;
}

/** Starts the service, waits for a snapshot and a leader, and asks for a drain of h1. */
async function startDrain(
  url: string,
  prefix: string,
  policy = stringify(BASE_POLICY),
  body: { partial?: boolean } = {},
): Promise<CaseRun> {
  const h = await startHarness(
    url,
    prefix,
    {
      hypervisor: { kind: 'sim', cluster: 'cluster.yaml' },
      automation: { level: 'partial' },
      log: { level: 'warn' },
      executor: {
        pollIntervalMs: 100,
        callTimeoutMs: 2_000,
        lockDurationMs: 3_000,
        stalledIntervalMs: 1_500,
      },
    },
    { 'cluster.yaml': stringify(clusterSpec()), 'policy.yaml': policy },
  );
  const sim = h.running.sim;
  if (!sim) throw new Error('the harness did not build a simulator');
  const events: HypervisorEvent[] = [];
  sim.subscribe((e) => events.push(e));
  await until(
    'a snapshot and a leader',
    async () => {
      const c = await api(h, 'GET', '/v1/cluster');
      const view = c.json as { leader: unknown; hosts: { id: string; vms: number }[] };
      const vms = view.hosts.reduce((n, x) => n + x.vms, 0);
      return view.leader && view.hosts.length === 3 && vms === ALL_VMS.length ? true : undefined;
    },
    60_000,
  );
  const created = await api(h, 'POST', `/v1/hosts/${SOURCE}/drain`, body);
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  const planId = (created.json as { record: { plan: { id: string } } }).record.plan.id;
  return { h, sim, events, planId };
}

async function migrationRunning(run: CaseRun): Promise<string> {
  return until(
    'a migration to run',
    async () => {
      for (const vm of ALL_VMS.slice(0, 4)) {
        const stats = await run.sim.jobStats(SOURCE, vm).catch(() => null);
        if (stats?.type === 'active') return vm;
      }
      return undefined;
    },
    60_000,
  );
}

async function planFinished(run: CaseRun, timeoutMs = 90_000): Promise<PlanView> {
  return until(
    'the plan to finish',
    async () => {
      const r = await api(run.h, 'GET', `/v1/plans/${run.planId}`);
      const view = r.json as PlanView;
      if (r.status !== 200 || !view.plan) throw new Error(`GET plan: ${r.status} ${JSON.stringify(r.json)}`);
      if (['completed', 'failed', 'cancelled', 'expired'].includes(view.status)) return view;
      throw new Error(`plan ${view.status}: ${JSON.stringify(await api(run.h, 'GET', '/v1/migrations'))}`);
    },
    timeoutMs,
  );
}

/** VMs that were started on some host more than once (a migration repeated). */
function repeatedStarts(events: HypervisorEvent[]): string[] {
  const starts = new Map<string, number>();
  for (const e of events)
    if (e.kind === 'lifecycle' && e.event === 'started') starts.set(e.vmId, (starts.get(e.vmId) ?? 0) + 1);
  return [...starts.entries()].filter(([, n]) => n > 1).map(([vm, n]) => `${vm}: started ${n} times`);
}

async function finish(run: CaseRun, fault: string, started: number, extra: string[] = []): Promise<PlanView> {
  const view = await planFinished(run);
  // The invariant decides; VMs started more than once (e.g. on a destination whose migration then failed,
  // then again) are reported in the outcome for a look, not counted as violations.
  const violations = [...(await checkInvariant(run.sim, ALL_VMS)), ...extra];
  const restarts = repeatedStarts(run.events);
  const moved = view.plan.steps.filter((s) => s.to !== SOURCE).length;
  const onSource = (await Promise.all(ALL_VMS.map((vm) => run.sim.locateVm(vm)))).filter((w) =>
    w.some((p) => p.hostId === SOURCE && p.state !== 'shutoff'),
  ).length;
  record(fault, {
    suite: 'sim',
    fault,
    outcome: `plan ${view.status}; ${moved} steps, ${view.plan.skipped.length} skipped, ${onSource} left on ${SOURCE}${restarts.length > 0 ? `; ${restarts.length} VM started twice` : ''}`,
    vmsChecked: ALL_VMS.length,
    violations: violations.length,
    details: [...violations, ...restarts].map((v) => `  ${fault}: ${v}`),
    durationS: Math.round((Date.now() - started) / 100) / 10,
  });
  expect(violations).toEqual([]);
  return view;
}

/**
 * The cases run concurrently (each has its own service, key prefix and simulator; they spend their time waiting
 * on simulated migrations), so their rows are kept here and added to the table in the order the cases are
 * declared, not the order they finish in.
 */
const FAULTS = {
  pin: 'drain, one VM pinned by a rule (planning)',
  pinPartial: 'partial drain, one VM pinned by a rule',
  noConverge: 'drain, one VM cannot converge (execution)',
  monitor: 'source QEMU monitor unresponsive 5 s mid-migration',
  sourceDown: 'source host unreachable 3 s mid-migration',
  destHang: 'destination host hung 4 s mid-migration',
  link: 'link of h1 at 1% for 4 s mid-migration',
  redis: 'Redis restarted (AOF) mid-plan',
} as const;
const finished = new Map<string, FaultRow>();
function record(fault: string, row: FaultRow): void {
  finished.set(fault, row);
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  for (const name of Object.values(FAULTS)) {
    const row = finished.get(name);
    if (row) addRow(row);
  }
  const rows = writeTable('sim');
  expect(rows.reduce((n, r) => n + r.violations, 0)).toBe(0);
}, 60_000);

function withRun(prefix: string, run: CaseRun): void {
  cleanups.push(async () => {
    await run.h.stop();
    const redis = connectRedis();
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });
}

describe.concurrent('faults on the simulator (whole service, drain of h1)', () => {
  it('a drain where one VM is pinned by a rule: refused as a whole, the plan says why, nothing moves', async ({
    expect,
  }) => {
    // A drain is all-or-nothing unless asked for a partial one: a planning-time blocker keeps every VM where
    // it is and the plan names the blocker.
    const started = Date.now();
    const prefix = uniquePrefix('fault-pin');
    const run = await startDrain(redisUrl(), prefix, PIN_POLICY);
    withRun(prefix, run);
    const view = await finish(run, FAULTS.pin, started);
    const skipped = view.plan.skipped.find((s) => s.vm === PINNED);
    expect(skipped?.why).toMatch(/pin/);
    expect(view.plan.steps).toEqual([]);
    for (const vm of ALL_VMS.slice(0, 4))
      expect(await run.sim.locateVm(vm)).toEqual([
        expect.objectContaining({ hostId: SOURCE, state: 'running' }),
      ]);
  }, 120_000);

  it('a partial drain where one VM is pinned: the rest move, the pinned VM stays running, the plan says why', async ({
    expect,
  }) => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-pin-partial');
    const run = await startDrain(redisUrl(), prefix, PIN_POLICY, { partial: true });
    withRun(prefix, run);
    const view = await finish(run, FAULTS.pinPartial, started);
    expect(view.plan.skipped.find((s) => s.vm === PINNED)?.why).toMatch(/pin/);
    expect(view.plan.note).toMatch(/partial drain/);
    expect(view.plan.steps.length).toBeGreaterThan(0);
    expect(view.plan.steps.some((s) => s.vm === PINNED)).toBe(false);
    expect((await run.sim.locateVm(PINNED)).find((p) => p.state === 'running')?.hostId).toBe(SOURCE);
    // the pinned VM is the only one left on the drained host
    const left = [];
    for (const vm of ALL_VMS)
      if ((await run.sim.locateVm(vm)).some((p) => p.hostId === SOURCE)) left.push(vm);
    expect(left).toEqual([PINNED]);
    for (const s of view.plan.steps)
      expect((await run.sim.locateVm(s.vm)).find((p) => p.state === 'running')?.hostId).toBe(s.to);
  }, 120_000);

  it('a drain where one VM cannot converge when it runs: the rest move, it stays running, the report says why', async ({
    expect,
  }) => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-noconv');
    // The watchdog's deadline (predicted x 2 + margin) ends the stuck migration; a 10 s margin instead of the
    // default 30 s ends it 20 s sooner, still well past what the converging moves of this drain take.
    const policy = stringify({ ...BASE_POLICY, watchdog: { predictive: { deadlineMarginS: 10 } } });
    const run = await startDrain(redisUrl(), prefix, policy);
    withRun(prefix, run);
    // Right after planning, the VM starts dirtying its memory far faster than the 300 MiB/s link.
    const stuck = ALL_VMS[1] ?? '';
    run.sim.faults.dirtySpike(stuck, { dirtyMiBps: 3_000, durationMs: 600_000 });
    const view = await finish(run, FAULTS.noConverge, started);
    const migration = (await api(run.h, 'GET', `/v1/migrations/${stuck}`)).json as { state?: string };
    const events = JSON.stringify(
      ((await api(run.h, 'GET', `/v1/plans/${run.planId}`)).json as { events: unknown }).events,
    );
    console.log(`non-converging VM: migration ${JSON.stringify(migration)}; plan events ${events}`);
    expect((await run.sim.locateVm(stuck)).find((p) => p.state === 'running')?.hostId).toBe(SOURCE);
    expect(['aborted', 'failed']).toContain(migration.state);
    for (const s of view.plan.steps.filter((x) => x.vm !== stuck))
      expect((await run.sim.locateVm(s.vm)).find((p) => p.state === 'running')?.hostId).toBe(s.to);
  }, 150_000);

  it('the source QEMU monitor stops answering mid-migration, then answers again', async () => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-monitor');
    const run = await startDrain(redisUrl(), prefix);
    withRun(prefix, run);
    const vm = await migrationRunning(run);
    const release = run.sim.faults.hangProgress(vm);
    await new Promise((r) => setTimeout(r, 5_000));
    release();
    await finish(run, FAULTS.monitor, started);
  }, 120_000);

  it('the source host becomes unreachable mid-migration, then comes back', async () => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-src-down');
    const run = await startDrain(redisUrl(), prefix);
    withRun(prefix, run);
    await migrationRunning(run);
    run.sim.faults.hostDown(SOURCE, { mode: 'error' });
    await new Promise((r) => setTimeout(r, 3_000));
    run.sim.faults.hostUp(SOURCE);
    await finish(run, FAULTS.sourceDown, started);
  }, 120_000);

  it('the destination host hangs mid-migration, then comes back', async () => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-dst-hang');
    const run = await startDrain(redisUrl(), prefix);
    withRun(prefix, run);
    const vm = await migrationRunning(run);
    const record = (await api(run.h, 'GET', `/v1/plans/${run.planId}`)).json as PlanView;
    const dest = record.plan.steps.find((s) => s.vm === vm)?.to ?? 'h2';
    run.sim.faults.hostDown(dest, { mode: 'hang' });
    await new Promise((r) => setTimeout(r, 4_000));
    run.sim.faults.hostUp(dest);
    await finish(run, FAULTS.destHang, started);
  }, 120_000);

  it('the migration link drops to 1% mid-migration, then recovers', async () => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-link');
    const run = await startDrain(redisUrl(), prefix);
    withRun(prefix, run);
    await migrationRunning(run);
    run.sim.faults.slowLink(SOURCE, 0.01);
    await new Promise((r) => setTimeout(r, 4_000));
    run.sim.faults.slowLink(SOURCE, 1);
    await finish(run, FAULTS.link, started);
  }, 120_000);

  it('Redis restarts (AOF on) mid-plan: the plan and its jobs survive and nothing migrates twice', async ({
    expect,
  }) => {
    const started = Date.now();
    const dir = await mkdtemp(join(tmpdir(), 'drover-fault-redis-'));
    let redis: PrivateRedis = await startPrivateRedis({ appendOnly: true, dir });
    cleanups.push(async () => {
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const prefix = uniquePrefix('fault-redis');
    const run = await startDrain(redis.url, prefix);
    cleanups.push(() => run.h.stop());
    await migrationRunning(run);
    const before = (await api(run.h, 'GET', `/v1/plans/${run.planId}`)).json as PlanView;
    await redis.stop();
    await new Promise((r) => setTimeout(r, 2_000));
    redis = await startPrivateRedis({ appendOnly: true, dir, port: redis.port });
    const view = await finish(run, FAULTS.redis, started);
    // The plan is the one stored before the restart, with the same steps, and every step's VM is where it
    // was meant to go.
    expect(view.plan.steps).toEqual(before.plan.steps);
    for (const s of view.plan.steps)
      expect((await run.sim.locateVm(s.vm)).find((p) => p.state === 'running')?.hostId).toBe(s.to);
    expect(view.status).toBe('completed');
  }, 150_000);
});
