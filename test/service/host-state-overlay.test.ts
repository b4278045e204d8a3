// A plan made right after a host went into maintenance, from a snapshot taken before: drover's own host
// states (set by drain and activate) win over the snapshot's, so that host is never a destination. Through
// the real service on the simulator, with a collector slow enough that the snapshot stays the older one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, startHarness, type Harness } from '../security/service-harness.js';

const prefix = uniquePrefix('overlay');
let h: Harness;

interface PlanView {
  plan: { steps: { vm: string; from: string; to: string }[] };
}

async function call<T>(
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: T }> {
  const res = await fetch(`${h.running.apiUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as T };
}

beforeAll(async () => {
  h = await startHarness(
    redisUrl(),
    prefix,
    {
      hypervisor: { kind: 'sim', generate: { hosts: 4, vmsPerHost: 2 }, seed: 5 },
      // One snapshot at start, none after within the test.
      collector: { intervalS: 3600 },
      schedules: { rebalance: { enabled: false }, reconcile: { intervalS: 3600 } },
    },
    // Plan VMs before their first dirty-rate measurement (the only snapshot has none).
    { 'policy.yaml': 'migration:\n  assumeDirtyMiBpsWhenUnknown: 20\n' },
  );
  const deadline = Date.now() + 60_000;
  while ((await call('GET', '/v1/snapshots/latest')).status !== 200) {
    if (Date.now() > deadline) throw new Error('no snapshot within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
}, 120_000);

afterAll(async () => {
  await h?.stop();
  const redis = connectRedis();
  await cleanPrefix(redis, prefix);
  await redis.quit();
});

describe('host states over an older snapshot', () => {
  it('never plans a move onto a host put in maintenance after the snapshot was taken', async () => {
    const taken = (await call<{ takenAt: string }>('GET', '/v1/snapshots/latest')).json.takenAt;
    const before = await call<PlanView>('POST', '/v1/hosts/kvm-001/drain', { dryRun: true });
    expect(before.status).toBe(200);
    // With every host active, the drain of kvm-001 sends a VM to some destination: that host goes next.
    const destination = before.json.plan.steps[0]?.to;
    expect(destination).toMatch(/^kvm-00[234]$/);

    expect((await call('POST', `/v1/hosts/${destination}/drain`, {})).status).toBe(201);
    const after = await call<PlanView>('POST', '/v1/hosts/kvm-001/drain', { dryRun: true });
    expect((await call<{ takenAt: string }>('GET', '/v1/snapshots/latest')).json.takenAt).toBe(taken);
    expect(after.json.plan.steps.length).toBeGreaterThan(0);
    expect(after.json.plan.steps.map((s) => s.to)).not.toContain(destination);
  }, 60_000);
});
