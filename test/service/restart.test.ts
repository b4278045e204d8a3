// Restarts of the default deployment, through real processes: `drover serve` with its private Redis on a state
// directory and a simulated cluster that keeps its placement (hypervisor.keepPlacement). With a drain running,
// a rebalance just executed, a VM quarantined, a rebalance plan waiting for approval and automation paused,
// drover is stopped with SIGTERM, then (drain still running) SIGKILLed together with its redis-server, then
// SIGKILLed alone (its redis-server left on the files). Each time it starts again on the same directory and
// finds the host in maintenance, the plan pending, the quarantine and the pause in force, the VMs where they
// were (the simulator's placement is kept in Redis), the quarantined VM left out of a new rebalance, and at the
// end the drained VMs in cooldown; the drain finishes without a completed migration run twice, and every VM
// runs on exactly one host. After the last restart the balance strategy's hold time, counted from the rebalance
// executed before the first restart, still stops the scheduled rebalance (an operator's dry run says it
// overrides that hold). The quarantine is an operator's, asked of the API (POST /v1/quarantines/:vm), and is
// stored as the executor stores a failure to converge.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SystemClock } from '../../src/clock/clocks.js';
import type { MigrationRecord } from '../../src/domain/history.js';
import type { Plan } from '../../src/domain/plan.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { HistoryStore } from '../../src/executor/history-store.js';
import type { ClusterSpec } from '../../src/hypervisor/sim/cluster-spec.js';
import { freePort } from '../../src/service/private-redis.js';
import { addRow, writeTable } from '../faults/fault-table.js';
import { placementViolations } from '../support/serve-api.js';
import {
  killAndWait,
  logLine,
  running,
  spawnServe,
  until,
  type ServeProcess,
} from '../support/serve-process.js';
import { ADMIN_TOKEN, writeFixture, type Fixture } from './service-fixture.js';

const PREFIX = '{drover}';
const DRAINED = 'kvm-04';
const vmId = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;

/**
 * kvm-01 is hot (six busy VMs); kvm-04, the host drained, carries three idle 2 GiB VMs on a 150 MiB/s link, so
 * each of its migrations takes about 14 s and the drain (one at a time) is still running across two restarts.
 */
function cluster(): ClusterSpec {
  const hosts = ['kvm-01', 'kvm-02', 'kvm-03', DRAINED].map((id) => ({
    id,
    cpus: 16,
    memMiB: 65536,
    bandwidthMiBps: id === DRAINED ? 150 : 1000,
  }));
  const vms = [];
  for (let i = 1; i <= 11; i++) {
    const drained = i >= 9;
    vms.push({
      id: vmId(i),
      name: `vm-${i}`,
      host: i <= 6 ? 'kvm-01' : drained ? DRAINED : `kvm-0${i - 5}`,
      vcpus: 4,
      memMiB: drained ? 2048 : 1024,
      workload: drained
        ? { kind: 'constant' as const, cpuPct: 5, dirtyMiBps: 1, wwsMiB: 16 }
        : { kind: 'constant' as const, cpuPct: 80, dirtyMiBps: 5, wwsMiB: 64 },
    });
  }
  return { seed: 7, hosts, vms };
}
const DRAINED_VMS = [vmId(9), vmId(10), vmId(11)];

let fixture: Fixture;
let stateDir: string;
let configPath: string;
let port: number;
const procs: ServeProcess[] = [];
const ctx = () => procs.map((p) => p.tail()).join('\n');
/** Shared by the cases, in order. */
const s = {
  pendingId: '',
  rebalanced: new Map<string, string>(),
  drainId: '',
  quarantined: vmId(2),
  /** When the rebalance that starts the balance hold time was approved (epoch ms). */
  rebalanceApprovedAtMs: 0,
  current: null as ServeProcess | null,
  startedAt: Date.now(),
};

beforeAll(async () => {
  port = await freePort();
  fixture = await writeFixture(
    '{unused}',
    {
      redis: { prefix: PREFIX },
      hypervisor: { kind: 'sim', cluster: 'cluster.yaml', keepPlacement: true },
      api: { port, tokens: [{ name: 'ops', role: 'admin', value: ADMIN_TOKEN }] },
      log: { level: 'info' },
      shutdown: { graceMs: 10_000 },
    },
    cluster(),
  );
  await writeFile(
    join(fixture.dir, 'policy.yaml'),
    'limits: { perHostConcurrency: 1, maxMovesPerRun: 2 }\nvms: { cooldownS: 3600 }\n',
  );
  stateDir = join(fixture.dir, 'state');
  configPath = join(fixture.dir, 'drover.yaml');
});

afterAll(async () => {
  for (const p of procs) if (p.alive()) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exit));
  const pid = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8').catch(() => '0'));
  if (pid > 0 && running(pid)) await killAndWait(pid);
  await fixture.cleanup();
});

const env = () => {
  const e = { ...process.env };
  delete e.REDIS_URL;
  return e;
};

async function api(method: string, path: string, body: unknown = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function start(name: string): Promise<ServeProcess> {
  const p = spawnServe(name, ['--config', configPath, '--state-dir', stateDir], env());
  procs.push(p);
  s.current = p;
  await until(
    `${name} serves`,
    async () => {
      if (!p.alive()) throw new Error(`drover exited\n${p.tail()}`);
      return (await api('GET', '/v1/hosts').catch(() => null))?.status === 200;
    },
    120_000,
    ctx,
    200,
  );
  return p;
}

/** drover's Redis, as the test reads it (the port from drover's own log line). */
async function droverRedis(p: ServeProcess): Promise<Redis> {
  const line = await until('redis connected logged', () => logLine(p, 'redis connected'), 30_000, ctx);
  const url = /redis:\/\/127\.0\.0\.1:\d+/.exec(String(line.redis))?.[0];
  if (!url) throw new Error(`no redis url in ${JSON.stringify(line)}`);
  return new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
}

async function withRedis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = await droverRedis(s.current!);
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

async function planRecord(id: string): Promise<{ status: string; plan: Plan }> {
  return (await api('GET', `/v1/plans/${id}`)).body as unknown as { status: string; plan: Plan };
}

/** A snapshot taken after `afterMs` (so it shows the cluster as this process's simulator has it). */
async function freshSnapshot(afterMs: number): Promise<Snapshot> {
  return until(
    'a fresh snapshot',
    async () => {
      const res = await api('GET', '/v1/snapshots/latest');
      const snap = res.status === 200 ? (res.body as unknown as Snapshot) : null;
      return snap && Date.parse(snap.takenAt) > afterMs && snap.vms.length > 0 ? snap : null;
    },
    60_000,
    ctx,
    200,
  );
}

/** Every VM of the spec exactly once; returns where each runs. */
function placementOf(snap: Snapshot): Map<string, string> {
  const ids = snap.vms.map((v) => v.id).sort();
  expect(ids).toEqual(
    cluster()
      .vms.map((v) => v.id)
      .sort(),
  );
  return new Map(snap.vms.map((v) => [v.id, v.host]));
}

/** The migrations the executor recorded, per VM (drover's history in Redis). */
async function records(): Promise<Map<string, MigrationRecord[]>> {
  return withRedis(async (redis) => {
    const store = new HistoryStore(
      redis,
      PREFIX,
      { maxRecords: 50, quarantineBaseS: 3600, quarantineMaxS: 7200 },
      new SystemClock(),
    );
    return new Map(
      [...(await store.getMany(cluster().vms.map((v) => v.id)))].map(([id, h]) => [id, h.records]),
    );
  });
}

const completedOf = (recs: MigrationRecord[] | undefined) =>
  (recs ?? []).filter((r) => r.result === 'completed');

/** Drained VMs whose migration completed, per the history. */
async function drainedDone(): Promise<string[]> {
  const all = await records();
  return DRAINED_VMS.filter((id) => completedOf(all.get(id)).some((r) => r.from === DRAINED));
}

/** Everything that must hold after each restart. */
async function expectStateKept(before: Map<string, string>, since: number): Promise<void> {
  expect((await api('GET', `/v1/hosts/${DRAINED}`)).body.state).toBe('maintenance');
  expect((await planRecord(s.pendingId)).status).toBe('pending');
  expect((await api('GET', '/v1/automation')).body).toMatchObject({ paused: true, changedBy: 'api:ops' });
  const quarantines = (await api('GET', '/v1/quarantines')).body.quarantines as { vm: string }[];
  expect(quarantines.map((q) => q.vm)).toEqual([s.quarantined]);
  // The simulator starts from where the VMs were: the rebalanced ones are not back on kvm-01.
  const now = placementOf(await freshSnapshot(since));
  for (const [vm, host] of s.rebalanced) expect(now.get(vm), `rebalanced ${vm}`).toBe(host);
  for (const [vm, host] of before)
    if (!DRAINED_VMS.includes(vm)) expect(now.get(vm), `${vm} stays on ${host}`).toBe(host);
  // A drained VM is on kvm-04 or has left it, never elsewhere than the placement said or the drain's target.
  const drain = (await planRecord(s.drainId)).plan;
  for (const vm of DRAINED_VMS) {
    const step = drain.steps.find((st) => st.vm === vm);
    expect([before.get(vm), step?.to], `${vm} where it was or at its target`).toContain(now.get(vm));
  }
  // The cooldown of the rebalanced VMs holds: a new rebalance leaves them where they are.
  const dry = (await api('POST', '/v1/plans', { reason: 'rebalance', dryRun: true })).body.plan as Plan;
  console.log(
    `dry-run rebalance after the restart: ${JSON.stringify({ steps: dry.steps.map((st) => st.vm), skipped: dry.skipped })}`,
  );
  for (const vm of s.rebalanced.keys()) {
    expect(dry.steps.map((st) => st.vm)).not.toContain(vm);
    const skip = dry.skipped.find((k) => k.vm === vm);
    if (skip) expect(skip.why).toMatch(/cooldown/);
  }
  expect(dry.steps.map((st) => st.vm)).not.toContain(s.quarantined);
}

describe('drover serve restarted on its state directory', () => {
  it('sets the scene: a drain running, a rebalance executed, a quarantine, a pending plan, paused', async () => {
    s.startedAt = Date.now();
    await start('first');
    // Plans need every VM's dirty rate measured (a VM without one is not planned, and a drain that cannot
    // move every VM moves none).
    await until(
      'every dirty rate measured (and a snapshot with every VM)',
      async () => {
        const res = await api('GET', '/v1/snapshots/latest');
        const snap = res.status === 200 ? (res.body as unknown as Snapshot) : null;
        return snap !== null && snap.vms.length > 0 && snap.vms.every((v) => v.dirtyMiBps !== null);
      },
      60_000,
      ctx,
      200,
    );
    // Paused first: the drain is then stored pending, kvm-04 goes to maintenance (so the rebalance below
    // sends nothing there), and it starts when approved, after the rebalance.
    expect((await api('POST', '/v1/automation', { paused: true, note: 'restart test' })).status).toBe(200);
    const drain = await until(
      'a drain stored (needs a leader)',
      async () => {
        const res = await api('POST', `/v1/hosts/${DRAINED}/drain`);
        return res.status === 503 ? null : res;
      },
      60_000,
      ctx,
      200,
    );
    expect(drain.status, JSON.stringify(drain.body)).toBe(201);
    const drainPlan = (drain.body.record as { plan: Plan; status: string }).plan;
    expect((drain.body.record as { status: string }).status).toBe('pending');
    expect(drainPlan.steps.map((st) => st.vm).sort(), JSON.stringify(drainPlan.skipped)).toEqual(DRAINED_VMS);
    s.drainId = drainPlan.id;
    await until(
      'a snapshot with kvm-04 in maintenance',
      async () => {
        const res = await api('GET', '/v1/snapshots/latest');
        const snap = res.status === 200 ? (res.body as unknown as Snapshot) : null;
        return snap?.hosts.find((h) => h.id === DRAINED)?.state === 'maintenance';
      },
      30_000,
      ctx,
      200,
    );

    // Two rebalance plans from the same snapshot: one is approved and runs, the other stays pending.
    const made = [];
    for (let i = 0; i < 2; i++) {
      const res = await api('POST', '/v1/plans', { reason: 'rebalance' });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      made.push((res.body.record as { plan: Plan }).plan);
    }
    const [run, pending] = made as [Plan, Plan];
    expect(run.steps.length).toBeGreaterThan(0);
    expect(run.steps.map((st) => st.to)).not.toContain(DRAINED);
    s.pendingId = pending.id;
    s.rebalanceApprovedAtMs = Date.now();
    expect((await api('POST', `/v1/plans/${run.id}/approve`)).status).toBe(200);
    await until(
      'the rebalance completed',
      async () => (await planRecord(run.id)).status === 'completed',
      90_000,
      ctx,
      250,
    );
    const recs = await records();
    const why = JSON.stringify(await planRecord(run.id));
    for (const step of run.steps) {
      expect(completedOf(recs.get(step.vm)), `${step.vm} moved once: ${why}`).toHaveLength(1);
      s.rebalanced.set(step.vm, step.to);
    }

    // An operator quarantines vm-2 for an hour, through the API as `drover quarantine add` does.
    const q = await api('POST', `/v1/quarantines/${s.quarantined}`, { forS: 3600, reason: 'change window' });
    expect(q.status).toBe(200);
    expect(q.body).toMatchObject({ vm: s.quarantined, failures: 0 });
    // The drain starts on an operator's approval, paused or not.
    expect((await api('POST', `/v1/plans/${s.drainId}/approve`)).status).toBe(200);
  }, 240_000);

  it('SIGTERM mid-drain: all of it is there after the restart', async () => {
    // Stopped once a drained VM has arrived and others are still to go.
    await until('one drained VM arrived', async () => (await drainedDone()).length >= 1, 120_000, ctx, 250);
    const doneBefore = await drainedDone();
    expect(doneBefore.length).toBeLessThan(DRAINED_VMS.length);
    const before = placementOf(await freshSnapshot(Date.now()));
    const first = s.current!;
    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    const since = Date.now();
    const second = await start('second');
    expect(
      logLine(
        second,
        'the last drover on this state directory did not stop cleanly; its lock was taken over',
      ),
    ).toBeUndefined();
    await expectStateKept(before, since);
  }, 240_000);

  it('SIGKILL of drover and its redis-server mid-drain: all of it is there after the restart', async () => {
    const doneEarlier = await drainedDone();
    if (doneEarlier.length < DRAINED_VMS.length - 1)
      await until(
        'another drained VM arrived',
        async () => (await drainedDone()).length > doneEarlier.length,
        120_000,
        ctx,
        250,
      );
    const before = placementOf(await freshSnapshot(Date.now()));
    const redisPid = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8'));
    await killAndWait(s.current!.pid);
    await killAndWait(redisPid);
    const since = Date.now();
    const third = await start('third');
    expect(
      logLine(third, 'the last drover on this state directory did not stop cleanly; its lock was taken over'),
    ).toBeDefined();
    await expectStateKept(before, since);
  }, 240_000);

  it('the drain finishes with each drained VM migrated once, and every VM on exactly one host', async () => {
    await until(
      'the drain completed',
      async () => (await planRecord(s.drainId)).status === 'completed',
      180_000,
      ctx,
      500,
    );
    const recs = await records();
    const snap = await freshSnapshot(Date.now());
    const ids = cluster().vms.map((v) => v.id);
    const violations = placementViolations(snap, ids);
    const twice = [...s.rebalanced.keys(), ...DRAINED_VMS].filter(
      (vm) => completedOf(recs.get(vm)).length !== 1,
    );
    addRow({
      suite: 'restart',
      fault: 'SIGTERM, then SIGKILL of drover and its Redis, mid-drain',
      outcome: `drain completed across 2 restarts, ${DRAINED_VMS.length} drained VMs moved once each`,
      vmsChecked: ids.length,
      violations: violations.length + twice.length,
      details: [
        ...violations,
        ...twice.map((vm) => `${vm}: migrated ${completedOf(recs.get(vm)).length} times`),
      ],
      durationS: Math.round((Date.now() - s.startedAt) / 100) / 10,
    });
    writeTable('restart');
    expect(violations).toEqual([]);
    expect(twice).toEqual([]);
    for (const vm of DRAINED_VMS) expect(completedOf(recs.get(vm))[0]?.from).toBe(DRAINED);
    expect(placementOf(snap).size).toBe(ids.length);
    expect(snap.vms.map((v) => v.host)).not.toContain(DRAINED);
    expect((await api('GET', `/v1/hosts/${DRAINED}`)).body.state).toBe('maintenance');
  }, 240_000);

  it('SIGKILL of drover alone: its redis-server is stopped by the next start, and the state holds', async () => {
    const before = placementOf(await freshSnapshot(Date.now()));
    const orphan = Number(await readFile(join(stateDir, 'redis', 'redis.pid'), 'utf8'));
    await killAndWait(s.current!.pid);
    expect(running(orphan)).toBe(true);
    // The next drover runs with a CPU ceiling every host is above (for the cooldown check below).
    await writeFile(
      join(fixture.dir, 'policy.yaml'),
      'limits: { perHostConcurrency: 1, maxMovesPerRun: 20 }\nvms: { cooldownS: 3600 }\nhosts: { cpuCeilingPct: 10 }\n',
    );
    // ... and with the scheduled rebalance on, every 2 s (it waits while automation is paused).
    const config = parse(await readFile(configPath, 'utf8')) as { schedules: Record<string, unknown> };
    config.schedules.rebalance = { enabled: true, cron: '*/2 * * * * *' };
    await writeFile(configPath, stringify(config));
    const since = Date.now();
    await start('fourth');
    expect(running(orphan)).toBe(false);
    await expectStateKept(before, since);
    // The drained VMs, migrated before the restarts (the first two before the SIGTERM and before the SIGKILL of
    // Redis), are in cooldown for a new rebalance; no VM that never migrated is. kvm-04 is made active again and
    // every host is above its (lowered) ceiling, so the planner looks for VMs to move and names why each it
    // looked at stays; it plans from a snapshot with every load and dirty rate measured by this process.
    expect((await api('POST', `/v1/hosts/${DRAINED}/activate`)).status).toBe(200);
    await until(
      'a snapshot with every load measured',
      async () => {
        const res = await api('GET', '/v1/snapshots/latest');
        const snap = res.status === 200 ? (res.body as unknown as Snapshot) : null;
        return (
          snap !== null &&
          Date.parse(snap.takenAt) > since &&
          snap.hosts.every((h) => h.state === 'active') &&
          snap.hosts.every((h) => h.cpuPct !== null) &&
          snap.vms.every((v) => v.dirtyMiBps !== null)
        );
      },
      60_000,
      ctx,
      200,
    );
    const dry = (await api('POST', '/v1/plans', { reason: 'rebalance', dryRun: true })).body.plan as Plan;
    const why = new Map(dry.skipped.map((k) => [k.vm, k.why]));
    const migrated = new Set([...s.rebalanced.keys(), ...DRAINED_VMS]);
    for (const vm of DRAINED_VMS)
      expect(why.get(vm) ?? 'not skipped', `${vm}: ${JSON.stringify(dry)}`).toMatch(/^in cooldown/);
    for (const [vm, reason] of why) if (/cooldown/.test(reason)) expect(migrated.has(vm), vm).toBe(true);
    for (const vm of migrated) expect(dry.steps.map((st) => st.vm)).not.toContain(vm);
    // The balance hold time (the strategy's default, 900 s) runs from the rebalance executed before the first
    // restart: the operator's dry run plans anyway and says so, and the scheduled rebalance is held.
    expect(dry.hold, JSON.stringify(dry)).toMatchObject({ overriddenBy: 'api:ops', holdTimeS: 900 });
    expect(Date.parse(dry.hold!.lastExecutedAt)).toBeGreaterThanOrEqual(s.rebalanceApprovedAtMs);
    expect(Date.parse(dry.hold!.until)).toBeGreaterThan(Date.now());
    // The schedule waits for a pending plan: the one pending since the first process is cancelled first.
    expect((await api('POST', `/v1/plans/${s.pendingId}/cancel`)).status).toBe(200);
    expect((await api('POST', '/v1/automation', { paused: false })).status).toBe(200);
    const resumedAt = Date.now();
    const held = await until(
      'a scheduled rebalance after the resume',
      () =>
        s.current!.logs.find(
          (l) =>
            l.msg === 'schedule run' &&
            l.schedule === 'rebalance' &&
            Number(l.time) > resumedAt &&
            l.status !== 'automation paused',
        ),
      30_000,
      ctx,
      200,
    );
    expect(held, JSON.stringify(held)).toMatchObject({ outcome: 'ok', planId: null, steps: 0 });
    expect(String(held.status)).toMatch(/^holding: the last balance plan was executed at /);
    const last = s.current!;
    last.child.kill('SIGTERM');
    expect(await last.exit).toBe(0);
  }, 240_000);
});
