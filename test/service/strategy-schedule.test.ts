// The scheduled run through a real `drover serve` process: the config names the strategy
// (schedules.rebalance.strategy: consolidate), the plan records it, and the strategy's hold time
// (strategies.consolidate.holdTimeS in the policy) is applied from the last executed plan kept in Redis:
// scheduled runs inside the hold make no plan and say why, an operator's request plans anyway and the plan
// says who overrode the hold, and once the hold is over the schedule plans again. A config naming a strategy
// the daemon cannot schedule is refused at start, naming the field.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { freePort } from '../../src/service/private-redis.js';
import { cleanPrefix, connectRedis, serviceEnv, serviceRedis, uniquePrefix } from '../support/redis.js';
import { spawnServe, until, type ServeProcess } from '../support/serve-process.js';
import { ADMIN_TOKEN, writeFixture, type Fixture } from './service-fixture.js';

/** Long enough for several 2-second cron ticks inside it on a loaded machine; short enough to wait out. */
const HOLD_S = 20;

let fixture: Fixture;
let redis: Redis;
let port: number;
let serve: ServeProcess;
const env = () => ({ ...process.env, ...serviceEnv() });

interface PlanJson {
  id: string;
  strategy?: string;
  steps: unknown[];
  note?: string;
  hold?: { lastExecutedAt: string; holdTimeS: number; until: string; overriddenBy?: string };
}
interface RecordJson {
  plan: PlanJson;
  status: string;
  events: { at: string; status: string }[];
}

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const plans = async () => ((await api('GET', '/v1/plans')).body.plans ?? []) as RecordJson[];
/** The scheduled rebalance's log lines (what each run decided). */
const runs = () =>
  serve.logs.filter((l) => l.msg === 'schedule run' && l.schedule === 'rebalance' && l.outcome === 'ok');

beforeAll(async () => {
  port = await freePort();
  const prefix = uniquePrefix('strategy-schedule');
  fixture = await writeFixture(prefix, {
    redis: serviceRedis(prefix),
    schedules: {
      rebalance: { cron: '*/2 * * * * *', strategy: 'consolidate' },
      reconcile: { intervalS: 2 },
      plans: { intervalS: 0.5 },
    },
    automation: { level: 'full' },
    api: { port, tokens: [{ name: 'ops', role: 'admin', value: ADMIN_TOKEN }] },
    log: { level: 'info' },
  });
  await writeFile(
    join(fixture.dir, 'policy.yaml'),
    stringify({ strategies: { consolidate: { holdTimeS: HOLD_S } } }),
  );
  redis = connectRedis();
});

afterAll(async () => {
  if (serve?.alive()) {
    serve.child.kill('SIGTERM');
    await serve.exit;
  }
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
});

describe('drover serve runs the strategy its config names, under that strategy’s hold time', () => {
  it('makes one plan from scheduled runs inside the hold, lets an operator override it, plans again after', async () => {
    serve = spawnServe('serve', ['--config', join(fixture.dir, 'drover.yaml')], env());
    const ctx = () => serve.tail();

    // The first scheduled run consolidates (kvm-02..04 hold one VM each) and, under `full`, runs the plan.
    const first = await until(
      'the first scheduled plan completed',
      async () => (await plans().catch(() => [])).find((r) => r.status === 'completed'),
      120_000,
      ctx,
      200,
    );
    expect(first.plan.strategy).toBe('consolidate');
    expect(first.plan.steps.length).toBeGreaterThan(0);
    const executedAt = Number(await redis.hget(`${fixture.prefix}:last-executed`, 'consolidate'));
    const completedAt = Date.parse(first.events.findLast((e) => e.status === 'completed')?.at ?? '');
    // Recorded when the plan finished (the hold runs from the end of the last plan that moved VMs).
    const runningAt = Date.parse(first.events.find((e) => e.status === 'running')?.at ?? '');
    expect(executedAt).toBeGreaterThanOrEqual(runningAt);
    expect(Math.abs(executedAt - completedAt)).toBeLessThan(5_000);

    // Two scheduled runs inside the hold: each plans nothing and says it holds.
    const held = await until(
      'two scheduled runs held',
      () => {
        const h = runs().filter((l) =>
          /^holding: the last consolidate plan was executed at /.test(String(l.status)),
        );
        return h.length >= 2 ? h : null;
      },
      HOLD_S * 1000,
      ctx,
      200,
    );
    for (const line of held) {
      expect(line).toMatchObject({ strategy: 'consolidate', planId: null, steps: 0 });
      expect(String(line.status)).toContain(`hold time ${HOLD_S} s (strategies.consolidate.holdTimeS)`);
    }
    expect((await plans()).map((r) => r.plan.id)).toEqual([first.plan.id]);

    // An operator's request inside the hold plans anyway, and the plan says who overrode the hold.
    const manual = await api('POST', '/v1/plans', {
      reason: 'rebalance',
      strategy: 'consolidate',
      dryRun: true,
    });
    expect(manual.status).toBe(200);
    const manualPlan = manual.body.plan as PlanJson;
    expect(manualPlan.strategy).toBe('consolidate');
    expect(manualPlan.hold).toMatchObject({ holdTimeS: HOLD_S, overriddenBy: 'api:ops' });
    expect(Date.parse(manualPlan.hold?.lastExecutedAt ?? '')).toBe(executedAt);
    expect(manualPlan.steps.length).toBeGreaterThan(0);

    // After the hold the schedule plans again: the hold, not the cluster, kept the runs above empty.
    const second = await until(
      'a scheduled plan after the hold',
      async () => (await plans()).find((r) => r.plan.id !== first.plan.id),
      (HOLD_S + 60) * 1000,
      ctx,
      200,
    );
    expect(second.plan.strategy).toBe('consolidate');
    expect(Date.parse(second.events[0]?.at ?? '')).toBeGreaterThanOrEqual(executedAt + HOLD_S * 1000);
  }, 300_000);

  it('refuses at start a scheduled strategy it cannot run, naming the field', async () => {
    const bad = join(fixture.dir, 'bad.yaml');
    await writeFile(
      bad,
      stringify({
        hypervisor: { kind: 'sim', cluster: 'cluster.yaml' },
        policy: { file: 'policy.yaml' },
        schedules: {
          rebalance: { strategy: 'drain' },
          strategies: [{ strategy: 'spread-evenly', cron: '0 * * * *' }],
        },
      }),
    );
    const p = spawnServe('bad', ['--config', bad], env());
    expect(await p.exit).not.toBe(0);
    expect(p.stderr).toContain(
      'schedules.rebalance.strategy: expected one of balance | consolidate, got "drain" (a drain starts per host: drover drain HOST)',
    );
    expect(p.stderr).toContain(
      'schedules.strategies[0].strategy: expected one of balance | consolidate, got "spread-evenly" (no such strategy)',
    );
  }, 60_000);
});
