// The runtime controls as an operator uses them: `drover pause|resume`, `drover plans|approve|cancel`,
// `drover quarantine list|add|lift` and `drover audit` as child processes against a simulator-backed drover on the
// run's Redis, checking output, exit codes, what the API and /metrics then say, and the audit trail.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { SystemClock } from '../../src/clock/clocks.js';
import type { MigrationRecord } from '../../src/domain/history.js';
import { HistoryStore } from '../../src/executor/history-store.js';
import { AuditLog, type AuditEntry } from '../../src/service/audit-log.js';
import { startService, type RunningService } from '../../src/service/main.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, READ_TOKEN, writeFixture, type Fixture } from '../service/service-fixture.js';
import { DROVER_BIN } from '../support/serve-process.js';

let fixture: Fixture;
let svc: RunningService;
const redis = connectRedis();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function drover(args: string[], token = ADMIN_TOKEN): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DROVER_BIN, ...args, '--url', svc.apiUrl!, '--token', token],
      { env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err && typeof err.code === 'number' ? err.code : err ? 1 : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function api(method: 'GET' | 'POST', path: string, body: unknown = {}, token = ADMIN_TOKEN) {
  const res = await fetch(`${svc.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function pausedMetric(): Promise<string | undefined> {
  const text = await (await fetch(`${svc.apiUrl}/metrics`)).text();
  return /^drover_automation_paused (\S+)$/m.exec(text)?.[1];
}

/** A stall abort as the executor records it: a failure to converge. */
function abortedRecord(vmId: string): MigrationRecord {
  return {
    vmId,
    from: 'kvm-01',
    to: 'kvm-02',
    kind: 'live',
    endedAt: new Date().toISOString(),
    result: 'aborted',
    predictedDurationS: 2,
    measuredDurationS: 30,
    downtimeMs: null,
    iterations: 40,
    transferMiB: 9000,
    memMiB: 1024,
    dirtyMiBps: 900,
    bandwidthMiBps: 1000,
  };
}

async function audit(): Promise<AuditEntry[]> {
  return ((await api('GET', '/v1/audit?limit=200')).body.entries ?? []) as AuditEntry[];
}

beforeAll(async () => {
  fixture = await writeFixture(uniquePrefix('controls'));
  svc = await startService(await fixture.load(), { env: { REDIS_URL: redisUrl() } });
  const deadline = Date.now() + 60_000;
  while (!(await fetch(`${svc.apiUrl}/readyz`).then((r) => r.ok))) {
    if (Date.now() > deadline) throw new Error('drover not ready within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  // Leading (plans are stored fenced by the leader's schedule; the API's need no lease, but drains do run).
  while (!svc.election.isLeader()) {
    if (Date.now() > deadline) throw new Error('no leader within 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  // Every VM's dirty rate measured: the planner leaves a VM it has not measured yet where it is (a drain of
  // kvm-03 planned too early skipped its VM on a busy machine).
  while (!(await svc.service.latestSnapshot())?.vms.every((v) => v.dirtyMiBps !== null)) {
    if (Date.now() > deadline) throw new Error('VMs not all measured within 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}, 120_000);

afterAll(async () => {
  await svc?.stop('test done');
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
});

describe('drover pause / resume', () => {
  it('pauses: status, API and metric say so, the schedule plans nothing, a drain waits for drover approve', async () => {
    expect(await pausedMetric()).toBe('0');
    const pause = await drover(['pause', '--note', 'kernel upgrades']);
    expect(pause.stderr).toBe('');
    expect(pause.code).toBe(EXIT.ok);
    expect(pause.stdout).toMatch(/^automation partial, PAUSED by ops at \S+ \(kernel upgrades\)$/m);
    expect((await api('GET', '/v1/automation')).body).toMatchObject({
      level: 'partial',
      paused: true,
      changedBy: 'api:ops',
      note: 'kernel upgrades',
    });
    expect(await pausedMetric()).toBe('1');
    // The scheduled rebalance plans nothing while paused (the cluster is lopsided: kvm-01 has six VMs).
    expect(await svc.service.scheduledRebalance()).toEqual({
      planId: null,
      steps: 0,
      status: 'automation paused',
    });
    // Under `partial` a drain runs on its own; paused, it waits for an operator.
    const drain = await api('POST', '/v1/hosts/kvm-03/drain');
    expect(drain.status).toBe(201);
    const drainId = (drain.body.record as { plan: { id: string }; status: string }).plan.id;
    expect((drain.body.record as { status: string }).status).toBe('pending');

    // Each command is its own Node process (seconds on a busy machine): independent ones run side by side.
    const [status, plans] = await Promise.all([drover(['status']), drover(['plans', '--status', 'pending'])]);
    expect(status.stdout).toMatch(/automation partial PAUSED/);
    expect(plans.code).toBe(EXIT.ok);
    expect(plans.stdout).toMatch(
      /^ID\s+REASON\s+STRATEGY\s+STATUS\s+STEPS\s+SKIPPED\s+HOST\s+CREATED\s+BY$/m,
    );
    expect(plans.stdout).toMatch(
      new RegExp(`^${drainId}\\s+drain\\s+drain\\s+pending\\s+1\\s+0\\s+kvm-03\\s+\\S+\\s+ops$`, 'm'),
    );

    // An explicit approval is an operator's decision: it runs even while paused, and finishes.
    const approve = await drover(['approve', drainId, '--note', 'go ahead']);
    expect(approve.code).toBe(EXIT.ok);
    expect(approve.stdout).toMatch(
      new RegExp(`^plan ${drainId} \\(drain, 1 step\\(s\\)\\) is running$`, 'm'),
    );
    const deadline = Date.now() + 60_000;
    while ((await svc.service.getPlan(drainId)).status !== 'completed') {
      if (Date.now() > deadline) throw new Error(`drain ${drainId} not completed within 60 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect((await svc.service.getHost('kvm-03')).state).toBe('maintenance');

    const resume = await drover(['resume', '--json']);
    expect(resume.code).toBe(EXIT.ok);
    expect(JSON.parse(resume.stdout)).toMatchObject({ paused: false, changedBy: 'api:ops' });
    expect(await pausedMetric()).toBe('0');
    await api('POST', '/v1/hosts/kvm-03/activate');
  }, 240_000);

  it('refuses a bad body naming the field, and a read token, changing nothing', async () => {
    const bad = await api('POST', '/v1/automation', { paused: 'yes' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_input', field: 'body.paused' });
    expect((await api('GET', '/v1/automation')).body.paused).toBe(false);
    const denied = await api('POST', '/v1/automation', { paused: true }, READ_TOKEN);
    expect(denied.status).toBe(403);
    expect((await api('GET', '/v1/automation')).body.paused).toBe(false);
  }, 120_000);
});

describe('drover plans / approve / cancel', () => {
  it('cancels a pending plan; cancelling it again exits 3', async () => {
    const created = await api('POST', '/v1/plans', { reason: 'rebalance' });
    expect(created.status).toBe(201);
    const id = (created.body.record as { plan: { id: string } }).plan.id;
    const cancel = await drover(['cancel', id, '--note', 'not today']);
    expect(cancel.code).toBe(EXIT.ok);
    expect(cancel.stdout).toMatch(
      new RegExp(`^plan ${id} \\(rebalance, \\d+ step\\(s\\)\\) is cancelled$`, 'm'),
    );
    const again = await drover(['cancel', id]);
    expect(again.code).toBe(EXIT.badInput);
    expect(again.stderr).toContain(`plan ${id} is cancelled; it cannot become cancelled`);
    const unknown = await api('POST', '/v1/plans/no-such-plan/approve');
    expect(unknown.status).toBe(404);
    const cancelled = (await api('GET', '/v1/plans?status=cancelled')).body.plans as {
      plan: { id: string };
    }[];
    expect(cancelled.map((p) => p.plan.id)).toContain(id);
  }, 120_000);
});

describe('drover quarantine', () => {
  it('lists a quarantined VM by name, the planner leaves it, lift frees it; lifting again is refused', async () => {
    // A failure to converge as the executor records it (a stall abort): vm-2 is quarantined for an hour.
    const history = new HistoryStore(
      redis,
      fixture.prefix,
      { maxRecords: 50, quarantineBaseS: 3600, quarantineMaxS: 7200 },
      new SystemClock(),
    );
    const vm2 = '00000000-0000-4000-8000-000000000002';
    await history.record(abortedRecord(vm2), true);
    const list = await drover(['quarantine', 'list']);
    expect(list.code).toBe(EXIT.ok);
    expect(list.stdout).toMatch(new RegExp(`^vm-2\\s+${vm2}\\s+1\\s+\\S+$`, 'm'));
    const plan = (await api('POST', '/v1/plans', { reason: 'rebalance', dryRun: true })).body.plan as {
      steps: { vm: string }[];
      skipped: { vm: string; why: string }[];
    };
    expect(plan.steps.map((s) => s.vm)).not.toContain(vm2);

    const lift = await drover(['quarantine', 'lift', 'vm-2']);
    expect(lift.code).toBe(EXIT.ok);
    expect(lift.stdout).toMatch(/^lifted the quarantine of vm-2 \(was until \S+\)$/m);
    expect((await api('GET', '/v1/quarantines')).body.quarantines).toEqual([]);
    const again = await api('POST', '/v1/quarantines/vm-2/lift');
    expect(again.status).toBe(404);
    expect(again.body.error).toMatchObject({ code: 'not_found', message: 'vm-2 is not quarantined' });
  }, 120_000);
});

describe('drover quarantine add', () => {
  it('quarantines a VM by hand: listed with its until, never shortened by a later add, lifted by lift; a bad forS is refused', async () => {
    const vm3 = '00000000-0000-4000-8000-000000000003';
    const bad = await api('POST', '/v1/quarantines/vm-3', { forS: -5 });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body.error)).toContain('forS');
    expect((await api('GET', '/v1/quarantines')).body.quarantines).toEqual([]);
    const unknown = await api('POST', '/v1/quarantines/no-such-vm', { forS: 60 });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'not_found' });

    const before = Date.now();
    const add = await drover([
      'quarantine',
      'add',
      'vm-3',
      '--for',
      '2h',
      '--reason',
      'change window',
      '--json',
    ]);
    expect(add.code, add.stderr).toBe(EXIT.ok);
    const added = JSON.parse(add.stdout) as { vm: string; vmName: string; until: string };
    expect(added).toMatchObject({ vm: vm3, vmName: 'vm-3', keptLonger: false });
    const untilMs = Date.parse(added.until) - before;
    expect(untilMs).toBeGreaterThanOrEqual(7200_000);
    expect(untilMs).toBeLessThan(7200_000 + 60_000);
    expect((await api('GET', '/v1/quarantines')).body.quarantines).toEqual([
      { vm: vm3, vmName: 'vm-3', failures: 0, until: added.until },
    ]);
    expect((await drover(['quarantine', 'add', 'vm-3', '--for', 'soon'])).code).toBe(EXIT.badInput);

    // A shorter add keeps the longer quarantine in force, and says so; a longer one extends it.
    const shorter = await drover(['quarantine', 'add', 'vm-3', '--for', '30m']);
    expect(shorter.code, shorter.stderr).toBe(EXIT.ok);
    expect(shorter.stdout).toMatch(
      new RegExp(
        `^vm-3 stays quarantined until ${added.until}: its quarantine in force ends later than the 30m asked \\(\\S+\\), so it was kept$`,
        'm',
      ),
    );
    const shorterApi = await api('POST', '/v1/quarantines/vm-3', { forS: 60 });
    expect(shorterApi.status).toBe(200);
    expect(shorterApi.body).toMatchObject({ until: added.until, keptLonger: true });
    expect(Date.parse(shorterApi.body.requestedUntil as string)).toBeLessThan(Date.parse(added.until));
    expect((await api('GET', '/v1/quarantines')).body.quarantines).toEqual([
      { vm: vm3, vmName: 'vm-3', failures: 0, until: added.until },
    ]);
    const longer = await api('POST', '/v1/quarantines/vm-3', { forS: 3 * 3600 });
    expect(longer.body).toMatchObject({ keptLonger: false });
    expect(longer.body.until).toBe(longer.body.requestedUntil);
    expect(Date.parse(longer.body.until as string)).toBeGreaterThan(Date.parse(added.until));
    // A failure to converge recorded meanwhile counts, but its shorter back-off (1 h) leaves the 3 h in force.
    const history = new HistoryStore(
      redis,
      fixture.prefix,
      { maxRecords: 50, quarantineBaseS: 3600, quarantineMaxS: 7200 },
      new SystemClock(),
    );
    expect(await history.record(abortedRecord(vm3), true)).toEqual({ failures: 1, until: longer.body.until });

    const lift = await drover(['quarantine', 'lift', 'vm-3']);
    expect(lift.code).toBe(EXIT.ok);
    expect((await api('GET', '/v1/quarantines')).body.quarantines).toEqual([]);
    const entries = (await audit()).map(
      (e) => `${e.action} ${e.target ?? '-'} ${e.outcome} ${e.detail ?? ''}`,
    );
    expect(entries).toContainEqual(expect.stringMatching(/^quarantine\.add vm-3 ok .*forS=7200/));
    expect(entries).toContainEqual(expect.stringMatching(/^quarantine\.add vm-3 invalid_input/));
  }, 120_000);
});

describe('drover audit', () => {
  it('has every change asked of the API, with who, what, on what, when and how it ended', async () => {
    const entries = await audit();
    const seen = entries.map((e) => `${e.who} ${e.action} ${e.target ?? '-'} ${e.outcome}`);
    for (const line of [
      'ops automation.set - ok',
      'ops host.drain kvm-03 ok',
      'ops plan.approve',
      'ops plan.cancel',
      'ops quarantine.lift vm-2 ok',
      'ops quarantine.lift vm-2 not_found',
      'ops plan.approve no-such-plan not_found',
      'ops automation.set - invalid_input',
    ])
      expect(
        seen.some((s) => s.startsWith(line)),
        `${line} in\n${seen.join('\n')}`,
      ).toBe(true);
    // A refused token is not an operator action: the read token's pause left no entry.
    expect(entries.every((e) => e.who === 'ops')).toBe(true);
    // Newest first, with times.
    const times = entries.map((e) => Date.parse(e.at));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    const pause = entries.find((e) => e.action === 'automation.set' && e.detail?.includes('paused=true'));
    expect(pause?.detail).toBe('paused=true note: kernel upgrades');

    const run = await drover(['audit', '--limit', '3'], READ_TOKEN);
    expect(run.code).toBe(EXIT.ok);
    expect(run.stdout).toMatch(/^AT\s+WHO\s+ACTION\s+TARGET\s+OUTCOME\s+DETAIL$/m);
    expect(run.stdout.trim().split('\n')).toHaveLength(4);
  }, 120_000);

  it('keeps only the newest entries up to its bound', async () => {
    const log = new AuditLog(redis, `${fixture.prefix}:bound`, 3);
    for (let i = 0; i < 5; i++)
      await log.append({
        at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        who: 'ops',
        action: 'plan.cancel',
        target: `p${i}`,
        outcome: 'ok',
        status: 200,
        detail: null,
      });
    expect((await log.list(10)).map((e) => e.target)).toEqual(['p4', 'p3', 'p2']);
    expect(await redis.llen(log.key)).toBe(3);
  });
});
