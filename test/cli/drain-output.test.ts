// What `drover drain` prints, case by case, through the real command against a real `drover serve` (a child
// process on the simulator): the plan in the same columns as `drover plan`, ETAs while it runs, and counts
// that say how many VMs moved and how many stayed.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { ADMIN_TOKEN, smallCluster, writeFixture, type Fixture } from '../service/service-fixture.js';
import { cleanPrefix, connectRedis, serviceEnv, uniquePrefix } from '../support/redis.js';
import { DROVER_BIN, killAndWait, spawnServe, until, type ServeProcess } from '../support/serve-process.js';

/** The header `drover plan` prints over its moves. */
const PLAN_HEADER = /^VM\s+FROM\s+TO\s+KIND\s+DURATION\s+DOWNTIME\s+TRANSFER\s+WHY$/m;

let fixture: Fixture;
let serve: ServeProcess;
let url: string;

function drover(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DROVER_BIN, ...args, '--url', url, '--token', ADMIN_TOKEN],
      { env: { ...process.env, NO_COLOR: '1' }, timeout: 240_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  // kvm-01 carries six small VMs; kvm-02..04 each a 48 GiB VM besides, so once kvm-01 is in maintenance
  // big-04 has nowhere to go (64 GiB hosts) while kvm-04's small VM can leave.
  const cluster = smallCluster();
  for (const host of ['kvm-02', 'kvm-03', 'kvm-04'])
    cluster.vms.push({
      id: `00000000-0000-4000-8000-0000000001${host.slice(-2)}`,
      name: `big-${host.slice(-2)}`,
      host,
      vcpus: 2,
      memMiB: 49152,
      workload: { kind: 'constant' as const, cpuPct: 10, dirtyMiBps: 5, wwsMiB: 64 },
    });
  // A generous host timeout: on a busy machine a slow sample would mark kvm-01 stale (down), and a drain of a
  // host that is down has nothing it can move.
  fixture = await writeFixture(
    uniquePrefix('drain-output'),
    {
      log: { level: 'info' },
      collector: { intervalS: 0.5, hostTimeoutMs: 15_000, dirtyRate: { windowS: 1, remeasureS: 5 } },
    },
    cluster,
  );
  serve = spawnServe('drover', ['--config', join(fixture.dir, 'drover.yaml')], serviceEnv());
  const listening = await until(
    'drover serve listening',
    () => serve.logs.find((l) => l.msg === 'api listening'),
    120_000,
    () => serve.tail(),
  );
  url = String(listening.url);
  await until(
    'a snapshot with every VM measured and every host fresh',
    async () => {
      const r = await fetch(`${url}/v1/snapshots/latest`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      if (!r.ok) return false;
      const snap = (await r.json()) as {
        vms: { dirtyMiBps: number | null }[];
        hosts: { stale?: boolean }[];
      };
      // Every VM measured too: the planner refuses to move a VM whose dirty rate it has not seen yet.
      return (
        snap.vms.length === 12 &&
        snap.vms.every((v) => v.dirtyMiBps !== null) &&
        snap.hosts.every((h) => h.stale !== true)
      );
    },
    120_000,
    () => serve.tail(),
  );
}, 300_000);

afterAll(async () => {
  if (serve?.alive()) await killAndWait(serve.pid, 'SIGTERM');
  const redis = connectRedis();
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
});

describe('drover drain output', () => {
  it('shows the plan in the columns of drover plan, with names and an ETA, and changes nothing unasked', async () => {
    // Not a terminal and no --yes: the plan is shown, then it stops before changing anything.
    const run = await drover(['drain', 'kvm-01']);
    expect(run.code, run.stdout + run.stderr).toBe(EXIT.usage);
    expect(run.stdout, serve.tail()).toMatch(PLAN_HEADER);
    for (let i = 1; i <= 6; i++)
      expect(run.stdout).toMatch(new RegExp(`^vm-${i}\\s+kvm-01\\s+kvm-0[234]\\s+live\\s`, 'm'));
    expect(run.stdout).toMatch(/^6 move\(s\), 0 stay, ETA \d/m);
    const hosts = await fetch(`${url}/v1/hosts`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const { hosts: list } = (await hosts.json()) as { hosts: { id: string; state: string }[] };
    expect(list.find((h) => h.id === 'kvm-01')?.state).toBe('active');
  }, 120_000);

  it('follows a drain with an ETA on every waiting or running migration and counts what moved', async () => {
    const run = await drover(['drain', 'kvm-01', '--yes', '--poll-ms', '200']);
    expect(run.code, run.stdout + run.stderr).toBe(EXIT.ok);
    const progress = run.stderr.split('\n').filter((l) => /^vm-\d: (waiting|queued|running)/.test(l));
    expect(progress.length).toBeGreaterThanOrEqual(6);
    for (const line of progress) expect(line).toMatch(/ETA \d/);
    expect(run.stdout).toContain('6 VM(s) moved off kvm-01, 0 stay');
  }, 180_000);

  it('after --partial says how many stayed and names them', async () => {
    const run = await drover(['drain', 'kvm-04', '--yes', '--partial', '--poll-ms', '200']);
    expect(run.stdout).toMatch(PLAN_HEADER);
    expect(run.stdout).toMatch(/^skipped big-04: cannot leave/m);
    // kvm-04's small VM and those the first drain sent there move; big-04 stays.
    const moves = /^(\d+) move\(s\), 1 stay, ETA \d/m.exec(run.stdout)?.[1];
    expect(Number(moves)).toBeGreaterThanOrEqual(1);
    expect(run.stdout).toContain(`${moves} VM(s) moved off kvm-04, 1 stay`);
    expect(run.stdout).toContain('1 VM(s) stay on kvm-04: big-04');
    expect(run.code).toBe(EXIT.notConverged);
  }, 180_000);
});
