// End to end: a real Prometheus scrapes a running drover (simulator-backed), evaluates the shipped alert
// rules, and DroverMigrationStuck fires when a migration's source stops answering progress calls.
// Fast: 1 s scrape and evaluation; the alert's `for` is shortened to 2 s in a copy of alerts.yml (its
// expression is the shipped one).
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
  groups: { rules: { alert: string; for?: string }[] }[];
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
    executor: {
      pollIntervalMs: 100,
      progressIntervalMs: 200,
      callTimeoutMs: 400,
      stuckAfterMs: 1000,
      lockDurationMs: 2000,
      stalledIntervalMs: 1000,
    },
  });
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
    // vm-7 is alone on kvm-02: drain kvm-02 over a slowed link so the migration lasts, then hang its monitor.
    sim.faults.slowLink('kvm-02', 0.01);
    const { plan } = await api<{ plan: { steps: { vm: string }[] } }>('POST', '/v1/hosts/kvm-02/drain', {});
    const vm = plan.steps[0]!.vm;
    await until(
      'migration running',
      async () => {
        const { migrations } = await api<{ migrations: { vm: string; state: string }[] }>(
          'GET',
          '/v1/migrations',
        );
        return migrations.some((m) => m.vm === vm && m.state === 'running');
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
      );
      expect(Number(fired.value)).toBeGreaterThanOrEqual(1);
    } finally {
      release();
      sim.faults.slowLink('kvm-02', 1);
    }
  }, 60_000);
});
