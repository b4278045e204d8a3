// The README's exit-code table, command by command, through a real `drover` process.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePlan } from '../../src/domain/plan.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { startService, type RunningService } from '../../src/service/main.js';
import { ADMIN_TOKEN, smallCluster, writeFixture, type Fixture } from '../service/service-fixture.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { DROVER_BIN } from '../support/serve-process.js';

const root = join(import.meta.dirname, '../..');
const imbalanced = join(root, 'test/planner/fixtures/imbalanced.json');
let dir: string;
let fixture: Fixture;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function drover(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DROVER_BIN, ...args],
      { env: { ...process.env, NO_COLOR: '1' }, timeout: 240_000 },
      (err, stdout, stderr) => {
        const code = err && typeof err.code === 'number' ? err.code : err ? 1 : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-exit-'));
  // A simulated cluster's daemon config: `drover recover` opens its hosts (no daemon, no Redis needed).
  fixture = await writeFixture(uniquePrefix('exit-codes'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await fixture.cleanup();
});

describe('drover plan --snapshot (rebalance)', () => {
  it('exits notConverged when the plan skips a VM, and names it', async () => {
    const human = await drover(['plan', '--snapshot', imbalanced]);
    expect(human.stderr).toBe('');
    expect(human.stdout).toMatch(/^skipped \(1\):$/m);
    expect(human.stdout).toMatch(/^jvm-1\s+dirty rate 700 MiB\/s cannot converge/m);
    expect(human.code).toBe(EXIT.notConverged);
    const json = await drover(['plan', '--snapshot', imbalanced, '--json']);
    const plan = parsePlan(JSON.parse(json.stdout));
    expect(plan.reason).toBe('rebalance');
    expect(plan.steps.length).toBeGreaterThan(0);
    expect(plan.skipped.map((s) => s.vm)).toEqual(['00000000-0000-4000-8000-000000000001']);
    expect(json.code).toBe(EXIT.notConverged);
  }, 300_000);

  it('exits ok when every VM the plan wants to move can move', async () => {
    // The same cluster with jvm-1 writing slowly enough to converge: nothing is skipped.
    const snapshot = JSON.parse(await readFile(imbalanced, 'utf8')) as {
      vms: { name: string; dirtyMiBps: number; dirtyPeakMiBps?: number }[];
    };
    const jvm = snapshot.vms.find((v) => v.name === 'jvm-1');
    if (!jvm) throw new Error('fixture lacks jvm-1');
    jvm.dirtyMiBps = 50;
    jvm.dirtyPeakMiBps = 60;
    const file = join(dir, 'converging.json');
    await writeFile(file, JSON.stringify(snapshot));
    const run = await drover(['plan', '--snapshot', file, '--json']);
    const plan = parsePlan(JSON.parse(run.stdout));
    expect(plan.skipped).toEqual([]);
    expect(plan.steps.length).toBeGreaterThan(0);
    expect(run.code).toBe(EXIT.ok);
  }, 300_000);
});

describe('drover recover', () => {
  it('exits badInput for a VM no host has, and ok for one that runs', async () => {
    const config = join(fixture.dir, 'drover.yaml');
    const unknown = '00000000-0000-4000-8000-0000000000ff';
    const human = await drover(['recover', unknown, '--config', config]);
    expect(human.stderr).toContain(`no VM ${unknown} on any host`);
    expect(human.code).toBe(EXIT.badInput);
    const json = await drover(['recover', unknown, '--config', config, '--json', '--apply', '1']);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: 'not_found', field: 'vm' } });
    expect(json.code).toBe(EXIT.badInput);
    const known = await drover(['recover', '00000000-0000-4000-8000-000000000001', '--config', config]);
    expect(known.stdout).toMatch(/diagnosis: ok — running on kvm-01 only/);
    expect(known.code).toBe(EXIT.ok);
  }, 300_000);
});

describe('drover drain --no-wait', () => {
  let stuck: Fixture;
  let svc: RunningService;

  beforeAll(async () => {
    // Every host carries a 48 GiB VM: kvm-04's cannot fit on any other 64 GiB host, so draining kvm-04
    // can move nothing.
    const cluster = smallCluster();
    cluster.vms = cluster.vms.filter((v) => v.host !== 'kvm-04');
    for (const host of ['kvm-01', 'kvm-02', 'kvm-03', 'kvm-04'])
      cluster.vms.push({
        id: `00000000-0000-4000-8000-0000000001${host.slice(-2)}`,
        name: `big-${host.slice(-2)}`,
        host,
        vcpus: 2,
        memMiB: 49152,
        workload: { kind: 'constant' as const, cpuPct: 10, dirtyMiBps: 5, wwsMiB: 64 },
      });
    stuck = await writeFixture(uniquePrefix('exit-drain'), {}, cluster);
    svc = await startService(await stuck.load(), { env: { REDIS_URL: redisUrl() } });
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      if (await fetch(`${svc.apiUrl}/readyz`).then((r) => r.ok)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
  }, 300_000);

  afterAll(async () => {
    await svc?.stop('test done');
    const redis = connectRedis();
    await cleanPrefix(redis, stuck.prefix);
    redis.disconnect();
    await stuck.cleanup();
  });

  it('exits notConverged and says nothing moved when no VM can leave the host', async () => {
    const admin = ['--url', svc.apiUrl!, '--token', ADMIN_TOKEN];
    const run = await drover(['drain', 'kvm-04', '--yes', '--no-wait', ...admin]);
    expect(run.stdout).toMatch(/^skipped big-04: /m);
    // The service stores the plan with no moves and completes it at once.
    expect(run.stdout).toMatch(/\(plan drain-\S+, completed; `drover activate kvm-04` ends maintenance\)/);
    expect(run.stdout).toMatch(/nothing moved: 1 VM\(s\) stay on kvm-04, which is in maintenance/);
    expect(run.code).toBe(EXIT.notConverged);
    // What the service does with the host: it stays in maintenance, its VM where it was.
    const host = (await svc.service.listHosts()).find((h) => h.id === 'kvm-04');
    expect(host?.state).toBe('maintenance');
    const json = await drover(['drain', 'kvm-04', '--yes', '--no-wait', '--json', ...admin]);
    const shown = JSON.parse(json.stdout) as { plan: { plan: { steps: unknown[]; skipped: unknown[] } } };
    expect(shown.plan.plan.steps).toEqual([]);
    expect(shown.plan.plan.skipped).toHaveLength(1);
    expect(json.code).toBe(EXIT.notConverged);
    // Followed to the end with --partial: the VM that stayed is named in the summary.
    const partial = await drover(['drain', 'kvm-04', '--yes', '--partial', '--poll-ms', '200', ...admin]);
    expect(partial.stdout).toMatch(/^skipped big-04: /m);
    expect(partial.stdout).toContain('1 VM(s) stay on kvm-04: big-04');
    expect(partial.code).toBe(EXIT.notConverged);
  }, 300_000);
});

describe('flag errors', () => {
  it('name the flag and what was typed, not a parsed key and null', async () => {
    const watchdog = await drover([
      'watchdog',
      'schedule',
      '--profile',
      'strict',
      '--mem-mib',
      'abc',
      '--budget-ms',
      '-3',
    ]);
    expect(watchdog.stderr.trim().split('\n')).toEqual([
      'drover watchdog schedule: --profile: expected one of predictive | nova | kubevirt, got "strict"',
      'drover watchdog schedule: --mem-mib: expected a positive number, got "abc"',
      'drover watchdog schedule: --budget-ms: expected a positive number, got "-3"',
    ]);
    expect(watchdog.code).toBe(EXIT.badInput);
    const collect = await drover(['collect', '--once', '--hosts', 'abc', '--vms-per-host', '0']);
    expect(collect.stderr.trim().split('\n')).toEqual([
      'drover collect: --hosts: expected a positive integer, got "abc"',
      'drover collect: --vms-per-host: expected a positive integer, got "0"',
    ]);
    expect(collect.code).toBe(EXIT.badInput);
    // Refused before any request: the URL need not answer.
    const drain = await drover(['drain', 'kvm-01', '--poll-ms', 'abc', '--url', 'http://127.0.0.1:9']);
    expect(drain.stderr).toContain('--poll-ms: expected a number >= 50, got "abc"');
    expect(drain.code).toBe(EXIT.usage);
  }, 300_000);
});
