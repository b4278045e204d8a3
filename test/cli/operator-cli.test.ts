// The operator commands as a person (or a script) runs them: `node bin/drover.js ...` against a running
// simulator-backed drover, checking output and exit codes.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { startService, type RunningService } from '../../src/service/main.js';
import { freePort } from '../../src/service/private-redis.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, READ_TOKEN, writeFixture, type Fixture } from '../service/service-fixture.js';
import { DROVER_BIN } from '../support/serve-process.js';

let fixture: Fixture;
let svc: RunningService;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function drover(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DROVER_BIN, ...args],
      { env: { ...process.env, NO_COLOR: '1', ...env }, timeout: 240_000 },
      (err, stdout, stderr) => {
        const code = err && typeof err.code === 'number' ? err.code : err ? 1 : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const admin = () => ['--url', svc.apiUrl!, '--token', ADMIN_TOKEN];

beforeAll(async () => {
  fixture = await writeFixture(uniquePrefix('cli'));
  svc = await startService(await fixture.load(), { env: { REDIS_URL: redisUrl() } });
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ready = await fetch(`${svc.apiUrl}/readyz`).then((r) => r.ok);
    if (ready) break;
    await new Promise((r) => setTimeout(r, 200));
  }
}, 300_000);

afterAll(async () => {
  await svc?.stop('test done');
  const redis = connectRedis();
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
});

describe('drover serve', () => {
  it('exits with badInput naming every bad field of the config', async () => {
    const bad = join(fixture.dir, 'bad.yaml');
    await writeFile(
      bad,
      'hypervisor: { kind: sim, cluster: c.yaml }\npolicy: {}\nautomation: { level: sometimes }\napi: { port: -1 }\nextra: 1\n',
    );
    const run = await drover(['serve', '--config', bad]);
    expect(run.code).toBe(EXIT.badInput);
    for (const field of ['policy.file', 'automation.level', 'api.port', 'extra'])
      expect(run.stderr, field).toContain(`${field}: `);
  }, 300_000);
});

describe('drover status / migrations / activate / abort', () => {
  it('prints the hosts table, and JSON only with --json', async () => {
    const human = await drover(['status', ...admin()]);
    expect(human.code).toBe(EXIT.ok);
    expect(human.stdout).toMatch(/^HOST\s+STATE\s+CPUS\s+CPU%\s+MEM%\s+VMS/m);
    expect(human.stdout).toMatch(/^kvm-01\s+active\s+16\s/m);
    expect(human.stdout).toContain(`leader ${svc.instance}`);
    const json = await drover(['status', '--json'], { DROVER_URL: svc.apiUrl!, DROVER_TOKEN: READ_TOKEN });
    expect(json.code).toBe(EXIT.ok);
    const view = JSON.parse(json.stdout) as { hosts: { id: string }[]; automation: string };
    expect(view.hosts.map((h) => h.id)).toEqual(['kvm-01', 'kvm-02', 'kvm-03', 'kvm-04']);
    expect(view.automation).toBe('partial');
  }, 300_000);

  it('finds the API and token from the daemon config with --config', async () => {
    const file = join(fixture.dir, 'client.yaml');
    const port = new URL(svc.apiUrl!).port;
    const text = `hypervisor: { kind: sim, cluster: cluster.yaml }\npolicy: { file: policy.yaml }\napi: { port: ${port}, tokens: [{ name: ops, role: admin, value: "${ADMIN_TOKEN}" }] }\n`;
    await writeFile(file, text);
    const run = await drover(['migrations', '--config', file, '--json']);
    expect(run.code).toBe(EXIT.ok);
    expect(JSON.parse(run.stdout)).toHaveProperty('migrations');
  }, 300_000);

  it('maps refusals to exit codes: denied, bad input, unreachable', async () => {
    const denied = await drover([
      'activate',
      'kvm-02',
      '--url',
      svc.apiUrl!,
      '--token',
      READ_TOKEN,
      '--json',
    ]);
    expect(denied.code).toBe(EXIT.denied);
    expect(JSON.parse(denied.stdout)).toMatchObject({ error: { code: 'forbidden' } });
    const unknown = await drover(['abort', 'no-such-vm', ...admin()]);
    expect(unknown.code).toBe(EXIT.badInput);
    expect(unknown.stderr).toContain('no migration of no-such-vm');
    const closed = await freePort();
    const down = await drover(['status', '--url', `http://127.0.0.1:${closed}`, '--token', ADMIN_TOKEN]);
    expect(down.code).toBe(EXIT.unreachable);
    expect(down.stderr).toContain('cannot reach drover');
  }, 300_000);
});

describe('drover drain', () => {
  it('refuses to drain without --yes when it cannot ask', async () => {
    const run = await drover(['drain', 'kvm-03', ...admin()]);
    expect(run.code).toBe(EXIT.usage);
    expect(run.stdout).toContain('Drain plan for kvm-03');
    expect(run.stderr).toContain('--yes');
    const host = JSON.parse((await drover(['status', '--json', ...admin()])).stdout) as {
      hosts: { id: string; state: string }[];
    };
    expect(host.hosts.find((h) => h.id === 'kvm-03')?.state).toBe('active');
  }, 300_000);

  it('drains a host with --yes, follows it to the end, and activates it again', async () => {
    const run = await drover(['drain', 'kvm-03', '--yes', '--poll-ms', '200', ...admin()]);
    expect(run.stderr).toMatch(/: completed/);
    expect(run.stdout).toMatch(/^VM\s+TO\s+RESULT\s+TOOK$/m);
    // The drain plan names its VM as `plan` and `status` do (kvm-03 carries vm-8).
    expect(run.stdout).toMatch(/^vm-8\s+kvm-03\s+kvm-0[124]\s+live\s/m);
    expect(run.stdout).toMatch(/plan drain-\S+: completed \(1 completed, 0 aborted, 0 failed, 0 skipped\)/);
    expect(run.code).toBe(EXIT.ok);
    const hosts = (await svc.service.listHosts()).find((h) => h.id === 'kvm-03');
    expect(hosts?.state).toBe('maintenance');
    const activated = await drover(['activate', 'kvm-03', '--json', ...admin()]);
    expect(JSON.parse(activated.stdout)).toMatchObject({ id: 'kvm-03', state: 'active' });
  }, 300_000);
});

describe('drover doctor', () => {
  it('checks config, policy, Redis, clock skew, every host and the daemon', async () => {
    const run = await drover(['doctor', '--config', join(fixture.dir, 'drover.yaml'), '--json'], {
      REDIS_URL: redisUrl(),
    });
    const report = JSON.parse(run.stdout) as { ok: boolean; checks: { name: string; status: string }[] };
    expect(run.code).toBe(EXIT.ok);
    expect(report.ok).toBe(true);
    const byName = new Map(report.checks.map((c) => [c.name, c.status]));
    for (const name of [
      'config',
      'policy',
      'redis',
      'clock skew',
      'host kvm-01',
      'host kvm-04',
      'VMs running on two hosts',
    ])
      expect(byName.get(name), name).toBe('ok');
    // The fixture's API listens on port 0, so doctor cannot find the daemon from the config: a warning.
    expect(byName.get('daemon')).toBe('warn');
  }, 300_000);
});
