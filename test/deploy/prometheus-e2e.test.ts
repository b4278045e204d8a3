// End to end: a real Prometheus scrapes a running drover (simulator-backed), evaluates the shipped alert
// rules, and DroverMigrationStuck fires when a migration's source stops answering progress calls. Then the
// daemon runs a rebalance, a partial drain that leaves a pinned VM, an aborted migration, a host that stops
// answering and a rejected policy reload, and every query of deploy/grafana/drover.json and every series an alert of
// deploy/prometheus/alerts.yml reads must return samples: a panel or an alert over a metric drover never
// writes fails here. Fast: 1 s scrape and evaluation; the stuck alert's `for` is shortened to 2 s in a copy
// of alerts.yml (its expression is the shipped one).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { startService, type RunningService } from '../../src/service/main.js';
import { freePort } from '../../src/service/private-redis.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, writeFixture, type Fixture } from '../service/service-fixture.js';

interface RuleFile {
  groups: { rules: { alert: string; expr: string; for?: string }[] }[];
}
interface Panel {
  title?: string;
  panels?: Panel[];
  targets?: { expr?: string }[];
}
interface QueryAnswer {
  status: string;
  error?: string;
  data: { result: { metric: Record<string, string>; value: [number, string] }[] };
}
interface AlertsAnswer {
  data: { alerts: { labels: { alertname: string }; state: string; value: string }[] };
}

let fixture: Fixture;
let svc: RunningService;
let prom: ChildProcess | null = null;
let promUrl = '';
let dir = '';
let promLog = '';

const PIN_VM_8 = {
  name: 'pin-vm-8',
  conditions: { all: [{ fact: 'vm.name', operator: 'equal', value: 'vm-8' }] },
  event: { type: 'pin', params: { reason: 'kept on kvm-03 by the test' } },
};

async function until<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline)
      throw new Error(`${what}: not reached within ${timeoutMs} ms\n${promLog.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function query(expr: string): Promise<QueryAnswer> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const answer = (await res.json()) as QueryAnswer;
  if (answer.status !== 'success') throw new Error(`${expr}: ${answer.error ?? res.status}`);
  return answer;
}

/** Every Prometheus expression of the shipped dashboard, with the panel it belongs to. */
async function dashboardQueries(): Promise<{ title: string; expr: string }[]> {
  const board = JSON.parse(
    await readFile(join(import.meta.dirname, '../../deploy/grafana/drover.json'), 'utf8'),
  ) as { panels: Panel[] };
  const out: { title: string; expr: string }[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      if (p.panels) walk(p.panels);
      for (const t of p.targets ?? []) if (t.expr) out.push({ title: p.title ?? '?', expr: t.expr });
    }
  };
  walk(board.panels);
  return out;
}

/**
 * The series an expression reads: each metric selector in it, label matchers included except the dashboard's
 * own variables (a matcher on $job/$instance is the dashboard's filter, not part of the input).
 */
function inputSelectors(expr: string): string[] {
  const found = new Set<string>();
  const re = /\b([a-z_:][a-z0-9_:]*)(\{[^}]*\})?/g;
  const keywords = new Set([
    'by',
    'without',
    'on',
    'ignoring',
    'group_left',
    'group_right',
    'offset',
    'and',
    'or',
    'unless',
    'bool',
  ]);
  for (const m of expr.matchAll(re)) {
    const name = m[1]!;
    const after = expr.slice(m.index + m[0].length);
    // Functions are followed by "(", label names sit inside by (...) / {...}, $__ variables are not metrics.
    if (keywords.has(name) || after.startsWith('(') || !/^(drover_|up$)/.test(name)) continue;
    if (expr[m.index - 1] === '$' || expr[m.index - 1] === '_') continue;
    const matchers = (m[2] ?? '')
      .replace(/^\{|\}$/g, '')
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x && !x.includes('$'));
    found.add(matchers.length ? `${name}{${matchers.join(',')}}` : name);
  }
  return [...found];
}

/** Dashboard expressions with Grafana's variables replaced by what Grafana would send. */
function asGrafanaSends(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '15s')
    .replace(/(\w+)=~?"\$(job|instance)"/g, '$1=~".+"');
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(svc.apiUrl! + path, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return (await res.json()) as T;
}

beforeAll(async () => {
  fixture = await writeFixture(uniquePrefix('prom'), {
    // Per-VM series on, so drover_vm_migrations_total (DroverVmMigratedTooOften's input) is written.
    metrics: { processMetrics: false, perVmSeries: true },
    executor: {
      pollIntervalMs: 100,
      progressIntervalMs: 200,
      callTimeoutMs: 400,
      stuckAfterMs: 1000,
      lockDurationMs: 2000,
      stalledIntervalMs: 1000,
    },
  });
  // vm-8 (alone on kvm-03) is pinned: a partial drain of kvm-03 leaves it, a skipped VM.
  await writeFile(join(fixture.dir, 'policy.yaml'), stringify({ rules: [PIN_VM_8] }));
  svc = await startService(await fixture.load(), { env: { REDIS_URL: redisUrl() } });
  dir = await mkdtemp(join(tmpdir(), 'drover-prom-'));
  const rules = parse(
    await readFile(join(import.meta.dirname, '../../deploy/prometheus/alerts.yml'), 'utf8'),
  ) as RuleFile;
  for (const g of rules.groups) for (const r of g.rules) if (r.alert === 'DroverMigrationStuck') r.for = '2s';
  await writeFile(join(dir, 'alerts.yml'), stringify(rules));
  const target = new URL(svc.apiUrl!).host;
  await writeFile(
    join(dir, 'prometheus.yml'),
    stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: ['alerts.yml'],
      scrape_configs: [{ job_name: 'drover', static_configs: [{ targets: [target] }] }],
    }),
  );
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  prom.stderr?.on('data', (chunk: Buffer) => {
    promLog += chunk.toString();
  });
  await until('prometheus ready', async () => (await fetch(`${promUrl}/-/ready`)).ok, 30_000);
}, 60_000);

afterAll(async () => {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom!.once('exit', r));
    prom.kill('SIGTERM');
    await exited;
  }
  await svc?.stop('test done');
  const redis = connectRedis();
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('Prometheus scraping drover', () => {
  it('scrapes drover: the target is up, one leader, no stuck-migration alert', async () => {
    await until(
      'target up',
      async () => {
        const res = (await (await fetch(`${promUrl}/api/v1/query?query=up`)).json()) as {
          data: { result: { value: [number, string] }[] };
        };
        return res.data.result[0]?.value[1] === '1';
      },
      20_000,
    );
    const leader = (await (await fetch(`${promUrl}/api/v1/query?query=sum(drover_leader)`)).json()) as {
      data: { result: { value: [number, string] }[] };
    };
    expect(leader.data.result[0]?.value[1]).toBe('1');
    const alerts = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as AlertsAnswer;
    expect(alerts.data.alerts.map((a) => a.labels.alertname)).not.toContain('DroverMigrationStuck');
  }, 30_000);

  it('fires DroverMigrationStuck while a migration is stuck', async () => {
    const sim = svc.sim!;
    // vm-7 is alone on kvm-02: drain kvm-02 over a link slowed to ~1 MiB/s so the migration lasts minutes (it
    // cannot end before the alert fires, even on a loaded machine), then hang its monitor.
    sim.faults.slowLink('kvm-02', 0.001);
    const { plan } = await api<{ plan: { steps: { vm: string }[] } }>('POST', '/v1/hosts/kvm-02/drain', {});
    const vm = plan.steps[0]!.vm;
    await until(
      'migration running',
      async () => {
        const { migrations } = await api<{
          migrations: { vm: string; state: string; remainingMiB: number | null }[];
        }>('GET', '/v1/migrations');
        // Running and reporting progress: the migration is in flight in the hypervisor and watched. A step
        // reads 'running' from when its job is taken, before its first job question; a monitor hung then
        // fails the step (nothing started, nothing to call stuck).
        return migrations.some((m) => m.vm === vm && m.state === 'running' && m.remainingMiB !== null);
      },
      15_000,
    );
    const release = sim.faults.hangProgress(vm);
    try {
      const fired = await until(
        'alert firing',
        async () => {
          const res = (await (await fetch(`${promUrl}/api/v1/alerts`)).json()) as AlertsAnswer;
          return res.data.alerts.find(
            (a) => a.labels.alertname === 'DroverMigrationStuck' && a.state === 'firing',
          );
        },
        30_000,
      ).catch(async (err: Error) => {
        // Say what drover and Prometheus saw, so a failure names its cause.
        const migrations = await api<unknown>('GET', '/v1/migrations');
        const stuck = (await (await fetch(svc.apiUrl! + '/metrics')).text())
          .split('\n')
          .filter((l) => l.startsWith('drover_migrations_stuck'));
        const alerts = await (await fetch(`${promUrl}/api/v1/alerts`)).text();
        throw new Error(
          `${err.message}\nmigrations: ${JSON.stringify(migrations)}\n${stuck.join('\n')}\nalerts: ${alerts}`,
        );
      });
      expect(Number(fired.value)).toBeGreaterThanOrEqual(1);
    } finally {
      release();
      sim.faults.slowLink('kvm-02', 1);
    }
  }, 60_000);

  it('after a rebalance, a drain, an abort and a rejected reload, every dashboard query and alert input has samples', async () => {
    interface PlanAnswer {
      record: { plan: { id: string } } | null;
      plan: { id: string; steps: { vm: string }[]; skipped: { vm: string; why: string }[] };
    }
    interface MigrationsAnswer {
      migrations: { vm: string; planId: string; state: string }[];
    }
    const sim = svc.sim!;
    const planDone = (id: string) =>
      until(
        `plan ${id} finished`,
        async () => {
          const r = await api<{ status: string }>('GET', `/v1/plans/${id}`);
          return ['completed', 'failed'].includes(r.status) ? r.status : null;
        },
        60_000,
      );

    // A partial drain of kvm-03: its only VM is pinned, so it stays and is counted as skipped. It runs before
    // the rebalance, so nothing else is on kvm-03 yet and the drain ends at once (activate is refused while a
    // drain of the host is open).
    const drain = await api<PlanAnswer>('POST', '/v1/hosts/kvm-03/drain', { partial: true });
    expect(drain.plan.skipped.map((s) => s.why).join()).toMatch(/pinned/);
    await planDone(drain.plan.id);
    await api('POST', '/v1/hosts/kvm-03/activate', {});
    await until(
      'kvm-03 active in the latest snapshot',
      async () =>
        (await api<{ hosts: { id: string; state: string }[] }>('GET', '/v1/snapshots/latest')).hosts.some(
          (h) => h.id === 'kvm-03' && h.state === 'active',
        ),
      15_000,
    );

    // A rebalance: kvm-01 carries six busy VMs; the plan is approved by hand (automation: partial).
    const rebalance = await api<PlanAnswer>('POST', '/v1/plans', { reason: 'rebalance' });
    expect(rebalance.plan.steps.length).toBeGreaterThan(0);
    await api('POST', `/v1/plans/${rebalance.plan.id}/approve`, {});
    await planDone(rebalance.plan.id);

    // An abort: vm-9 leaves kvm-04 over a slowed link and is aborted while it runs.
    sim.faults.slowLink('kvm-04', 0.01);
    try {
      const slow = await api<PlanAnswer>('POST', '/v1/hosts/kvm-04/drain', {});
      const vm = slow.plan.steps[0]!.vm;
      await until(
        'kvm-04 migration running',
        async () =>
          (await api<MigrationsAnswer>('GET', '/v1/migrations')).migrations.some(
            (m) => m.vm === vm && m.state === 'running',
          ),
        15_000,
      );
      await api('POST', `/v1/migrations/${vm}/abort`, {});
      // the rest of kvm-04's VMs (the rebalance may have placed some there) leave at full speed
      sim.faults.slowLink('kvm-04', 1);
      await planDone(slow.plan.id);
    } finally {
      sim.faults.slowLink('kvm-04', 1);
    }

    // A host that stops answering: the collector counts the error and marks it stale until it is back.
    sim.faults.hostDown('kvm-04');
    try {
      await until(
        'collector error scraped',
        async () =>
          (await query('drover_collector_errors_total{host="kvm-04"}')).data.result.length > 0 &&
          (await query('drover_host_stale{host="kvm-04"} == 1')).data.result.length > 0,
        30_000,
      );
    } finally {
      sim.faults.hostUp('kvm-04');
    }

    // A policy file that fails validation is rejected; the one in force stays.
    const policyFile = join(fixture.dir, 'policy.yaml');
    await writeFile(policyFile, 'rules: 5\n');
    const reload = await svc.reloadPolicy('test');
    expect(reload.applied).toBe(false);
    expect(JSON.stringify(reload)).toMatch(/rules/);
    await writeFile(policyFile, stringify({ rules: [PIN_VM_8] }));

    // What the scenario must have written, beside the generic check of every panel and alert input below.
    const specific = [
      'drover_build_info{version!="",node!=""}',
      'drover_migrations_total{result="aborted"}',
      'drover_migrations_total{result="completed"}',
      'drover_plan_skipped_vms_total{reason="pinned"}',
      'drover_policy_reloads_total{outcome="rejected"}',
      'drover_vm_migrations_total',
      'drover_cluster_spread_percent{resource="cpu"}',
      'max_over_time(drover_host_stale{host="kvm-04"}[5m]) == 1',
    ];
    const alertInputs = (parse(await readFile(join(dir, 'alerts.yml'), 'utf8')) as RuleFile).groups.flatMap(
      (g) => g.rules.map((r) => ({ alert: r.alert, selectors: inputSelectors(r.expr) })),
    );
    const panels = await dashboardQueries();
    expect(panels.length).toBeGreaterThan(10);
    const checks = [
      ...specific.map((expr) => ({ what: 'scenario', expr })),
      ...alertInputs.flatMap((a) => {
        expect(a.selectors.length, a.alert).toBeGreaterThan(0);
        return a.selectors.map((expr) => ({ what: `alert ${a.alert}`, expr }));
      }),
      ...panels.map((p) => ({ what: `panel "${p.title}"`, expr: asGrafanaSends(p.expr) })),
    ];
    const empty: string[] = [];
    // Prometheus scrapes every second: wait for one more scrape after the scenario, then each must answer.
    const settleUntil = Date.now() + 20_000;
    for (const c of checks) {
      for (;;) {
        const n = (await query(c.expr)).data.result.length;
        if (n > 0) break;
        if (Date.now() > settleUntil) {
          empty.push(`${c.what}: ${c.expr}`);
          break;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    expect(empty).toEqual([]);
  }, 180_000);
});
