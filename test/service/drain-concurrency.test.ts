// Parallel operators against one running drover (the real service on the simulator, the run's Redis, over
// HTTP): twenty drains of one host make one plan, twenty rebalances get twenty distinct ids, activating a
// draining host is refused naming the plan (or cancels it when asked), and in the end no plan is left
// open and no VM was moved twice.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, startHarness, type Harness } from '../security/service-harness.js';

const prefix = uniquePrefix('drains');
let h: Harness;
let hosts: string[] = [];

interface Answer {
  status: number;
  json: Record<string, unknown>;
}

async function post(path: string, body: unknown = {}): Promise<Answer> {
  const res = await fetch(`${h.running.apiUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function get(path: string): Promise<Answer> {
  const res = await fetch(`${h.running.apiUrl}${path}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

interface PlanRecordView {
  status: string;
  host?: string;
  plan: { id: string; reason: string; steps: { vm: string }[] };
}

const planOf = (a: Answer) => (a.json.record as PlanRecordView).plan.id;

async function openPlans(): Promise<PlanRecordView[]> {
  const { json } = await get('/v1/plans?limit=500');
  return (json.plans as PlanRecordView[]).filter((p) =>
    ['pending', 'approved', 'running'].includes(p.status),
  );
}

async function until<T>(what: string, fn: () => Promise<T | null | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  h = await startHarness(
    redisUrl(),
    prefix,
    {
      hypervisor: { kind: 'sim', generate: { hosts: 6, vmsPerHost: 2 }, seed: 3 },
      automation: { level: 'full' },
      schedules: { rebalance: { enabled: false }, reconcile: { intervalS: 1 }, plans: { intervalS: 1 } },
    },
    // Plan VMs before their first dirty-rate measurement, so the drains have steps from the start.
    { 'policy.yaml': 'migration:\n  assumeDirtyMiBpsWhenUnknown: 20\n' },
  );
  const snap = await until(
    'first snapshot',
    async () => {
      const res = await get('/v1/snapshots/latest');
      return res.status === 200 ? res.json : null;
    },
    30_000,
  );
  hosts = (snap.hosts as { id: string }[]).map((x) => x.id);
  // Plans are kept by the leader's upkeep; wait for one.
  await until('a leader', async () => (await get('/v1/cluster')).json.leader ?? null, 30_000);
}, 60_000);

afterAll(async () => {
  await h?.stop();
  const redis = connectRedis();
  await cleanPrefix(redis, prefix);
  redis.disconnect();
});

describe('parallel drains and rebalances', () => {
  it('one plan per host drain, unique ids, activate refused while draining, all plans end, no VM moved twice', async () => {
    const host = hosts[0] ?? '';
    const drains = await Promise.all(Array.from({ length: 20 }, () => post(`/v1/hosts/${host}/drain`)));
    const rebalances = await Promise.all(
      Array.from({ length: 20 }, () => post('/v1/plans', { reason: 'rebalance' })),
    );

    // Exactly one drain plan: one 201, nineteen 200 answering with that same plan.
    expect(drains.map((d) => d.status).sort()).toEqual([...Array<number>(19).fill(200), 201]);
    const drainIds = new Set(drains.map(planOf));
    expect(drainIds.size).toBe(1);
    const drainId = [...drainIds][0] ?? '';

    // Twenty rebalances: every one stored under its own id (no "exists already"), ids sortable by time.
    for (const r of rebalances) expect(r.status, JSON.stringify(r.json)).toBe(201);
    const rebalanceIds = rebalances.map(planOf);
    expect(new Set(rebalanceIds).size).toBe(20);
    for (const id of [...rebalanceIds, drainId])
      expect(id).toMatch(/^(rebalance|drain)-\d{8}-\d{9}Z-[0-9a-z]{12}$/);

    // Activating the host while its drain is open: 409 naming the plan, and the host stays in maintenance.
    const drainRecord = (await get(`/v1/plans/${drainId}`)).json as unknown as PlanRecordView;
    if (!['completed', 'failed', 'cancelled'].includes(drainRecord.status)) {
      const refused = await post(`/v1/hosts/${host}/activate`);
      const stillOpen = ['pending', 'approved', 'running'].includes(
        ((await get(`/v1/plans/${drainId}`)).json as unknown as PlanRecordView).status,
      );
      if (stillOpen || refused.status === 409) {
        console.log(`activate during the drain: ${refused.status}`);
        expect(refused.status).toBe(409);
        expect(JSON.stringify(refused.json)).toContain(drainId);
        expect(((await get(`/v1/hosts/${host}`)).json as { state: string }).state).toBe('maintenance');
      }
    }

    // Every plan reaches a final state once its migrations end.
    await until('no open plan', async () => (await openPlans()).length === 0, 180_000);
    const { json } = await get('/v1/plans?limit=500');
    const all = json.plans as PlanRecordView[];
    expect(all.filter((p) => p.status === 'failed')).toEqual([]);
    expect(all.length).toBe(21);

    // No VM moved twice: the executor's migration history holds at most one completed move per VM.
    const redis = connectRedis();
    try {
      const snap = (await get('/v1/snapshots/latest')).json as { vms: { id: string; host: string }[] };
      let moved = 0;
      for (const vm of snap.vms) {
        const records = (await redis.lrange(`${prefix}:history:${vm.id}`, 0, -1)).map(
          (t) => JSON.parse(t) as { result: string },
        );
        const completed = records.filter((r) => r.result === 'completed').length;
        expect(completed, `VM ${vm.id} moves`).toBeLessThanOrEqual(1);
        moved += completed;
      }
      // At least the drained host's two VMs moved.
      expect(moved).toBeGreaterThanOrEqual(2);
      // The drained host is empty.
      await until(
        'drained host empty in the snapshot',
        async () => {
          const s = (await get('/v1/snapshots/latest')).json as { vms: { host: string }[] };
          return !s.vms.some((v) => v.host === host);
        },
        30_000,
      );
    } finally {
      redis.disconnect();
    }

    // Drain finished: the host can be activated, and drained again as a new plan.
    expect((await post(`/v1/hosts/${host}/activate`)).status).toBe(200);
    const again = await post(`/v1/hosts/${host}/drain`, { dryRun: false });
    expect(again.status).toBe(201);
    expect(planOf(again)).not.toBe(drainId);
  }, 240_000);

  it('activate with cancelDrain cancels the open drain of the host first', async () => {
    const host = hosts[1] ?? '';
    const drain = await post(`/v1/hosts/${host}/drain`);
    expect(drain.status).toBe(201);
    const id = planOf(drain);
    const res = await post(`/v1/hosts/${host}/activate`, { cancelDrain: true });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    expect((res.json as { state: string }).state).toBe('active');
    const record = (await get(`/v1/plans/${id}`)).json as unknown as PlanRecordView;
    // Cancelled, unless it had already finished before the activation.
    expect(['cancelled', 'completed']).toContain(record.status);
    const bad = await post(`/v1/hosts/${host}/activate`, { cancelDrain: 'yes' });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.json)).toContain('body.cancelDrain');
    await until('no open plan', async () => (await openPlans()).length === 0, 120_000);
  }, 180_000);
});
