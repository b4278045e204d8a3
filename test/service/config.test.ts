import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { ConfigError, loadConfig } from '../../src/service/config.js';
import { DROVER_BIN } from '../support/serve-process.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

async function issuesOf(path: string, env: NodeJS.ProcessEnv = {}): Promise<string[]> {
  try {
    await loadConfig(path, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

const minimal = `
hypervisor: { kind: sim, generate: { hosts: 3, vmsPerHost: 2 } }
policy: { file: policies/balance.yaml }
api:
  tokens:
    - { name: ops, role: admin, value: "0123456789abcdef0123" }
`;

describe('loadConfig', () => {
  it('fills documented defaults and resolves paths against the config file', async () => {
    const loaded = await loadConfig(await write('min.yaml', minimal), {});
    expect(loaded.config.schedules.rebalance.cron).toBe('*/10 * * * *');
    expect(loaded.config.schedules.reconcile.intervalS).toBe(60);
    expect(loaded.config.automation).toEqual({ level: 'partial', planMaxAgeS: 600 });
    expect(loaded.config.redis.prefix).toBe('{drover}');
    expect(loaded.config.leader.leaseMs).toBe(10_000);
    expect(loaded.config.api).toMatchObject({ host: '127.0.0.1', port: 8080, bodyLimitBytes: 65536 });
    expect(loaded.policyPath).toBe(join(dir, 'policies/balance.yaml'));
    expect(loaded.tokens).toEqual([{ name: 'ops', role: 'admin', secret: '0123456789abcdef0123' }]);
  });

  it('names every bad field at once', async () => {
    const path = await write(
      'bad.yaml',
      `
hypervisor:
  kind: libvirt
  hosts:
    - { id: kvm-01, uri: "qemu+tcp://a/system", bandwidthMiBps: -5 }
    - { id: kvm-02 }
policy: { file: p.yaml, wach: true }
schedules:
  rebalance: { cron: "61 * * * *" }
  reconcile: { intervalS: 0 }
automation: { level: sometimes }
redis: { prefix: drover }
api:
  port: 70000
  tokens:
    - { name: ops, role: root, value: short }
leader: { leaseMs: 10 }
colour: blue
`,
    );
    const issues = await issuesOf(path);
    const paths = issues.map((i) => i.split(': ')[0]);
    expect(issues.length).toBeGreaterThanOrEqual(12);
    expect(paths).toEqual(
      expect.arrayContaining([
        'hypervisor.hosts[0].bandwidthMiBps',
        'hypervisor.hosts[1].uri',
        'policy.wach',
        'schedules.rebalance.cron',
        'schedules.reconcile.intervalS',
        'automation.level',
        'redis.prefix',
        'api.port',
        'api.tokens[0].role',
        'api.tokens[0].value',
        'leader.leaseMs',
        'colour',
      ]),
    );
    expect(issues.find((i) => i.startsWith('automation.level'))).toContain(
      'expected one of manual | partial | full, got "sometimes"',
    );
    expect(issues.find((i) => i.startsWith('colour'))).toContain('unknown field');
  });

  it('reports secrets that cannot be read, with their field', async () => {
    const path = await write(
      'secrets.yaml',
      `
hypervisor: { kind: sim, generate: { hosts: 3, vmsPerHost: 2 } }
policy: { file: p.yaml }
api:
  tokens:
    - { name: a, role: admin, env: DROVER_TEST_TOKEN }
    - { name: b, role: read, file: missing.token }
    - { name: c, role: read, value: "0123456789abcdef", env: X }
`,
    );
    const issues = await issuesOf(path);
    expect(issues).toEqual(
      expect.arrayContaining(['api.tokens[2]: expected exactly one of value, env, file, got 2']),
    );
    const fixed = await write(
      'secrets2.yaml',
      `
hypervisor: { kind: sim, generate: { hosts: 3, vmsPerHost: 2 } }
policy: { file: p.yaml }
api:
  tokens:
    - { name: a, role: admin, env: DROVER_TEST_TOKEN }
    - { name: b, role: read, file: missing.token }
`,
    );
    const issues2 = await issuesOf(fixed, {});
    expect(issues2[0]).toBe('api.tokens[0].env: environment variable DROVER_TEST_TOKEN is not set');
    expect(issues2[1]).toMatch(/^api\.tokens\[1\]\.file: cannot read .*missing\.token/);
    await writeFile(join(dir, 'missing.token'), 'read-token-0123456789\n');
    const ok = await loadConfig(fixed, { DROVER_TEST_TOKEN: 'admin-token-0123456789' });
    expect(ok.tokens.map((t) => [t.name, t.role, t.secret])).toEqual([
      ['a', 'admin', 'admin-token-0123456789'],
      ['b', 'read', 'read-token-0123456789'],
    ]);
  });

  it('requires an admin token while the API is on', async () => {
    const path = await write(
      'notoken.yaml',
      'hypervisor: { kind: sim, generate: { hosts: 3, vmsPerHost: 2 } }\npolicy: { file: p.yaml }\n',
    );
    expect(await issuesOf(path)).toEqual([
      'api.tokens: expected at least one admin token while the API is enabled',
    ]);
  });

  it('reports YAML syntax errors with their line, and a missing file', async () => {
    const path = await write('syntax.yaml', 'hypervisor: { kind: sim\npolicy: [\n');
    const issues = await issuesOf(path);
    expect(issues[0]).toMatch(/^line \d+, column \d+: /);
    expect((await issuesOf(join(dir, 'nope.yaml')))[0]).toMatch(/cannot read the config file/);
  });

  it('embeds the collector and executor option schemas and requires a sim cluster source', async () => {
    const path = await write(
      'embedded.yaml',
      `
hypervisor: { kind: sim }
policy: { file: p.yaml }
collector: { intervalS: -1, dirtyRate: { windowS: 99 } }
executor: { pollIntervalMs: 0, prefix: "{x}" }
api: { tokens: [{ name: ops, role: admin, value: "0123456789abcdef0123" }] }
`,
    );
    const paths = (await issuesOf(path)).map((i) => i.split(': ')[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        'hypervisor',
        'collector.intervalS',
        'collector.dirtyRate.windowS',
        'executor.pollIntervalMs',
        'executor.prefix',
      ]),
    );
  });

  it('refuses the removed fields, naming what does their job', async () => {
    const path = await write(
      'removed.yaml',
      `${minimal}schedules: { collect: { intervalS: 15 } }\nexecutor: { reconcileIntervalMs: 60000 }\n`,
    );
    const expected = [
      'schedules.collect: removed: it was never read; the collector samples every `collector.intervalS` seconds (delete this section)',
      'executor.reconcileIntervalMs: removed: it was never read; the reconciler runs every `schedules.reconcile.intervalS` seconds (delete this field)',
    ];
    expect(await issuesOf(path)).toEqual(expected);
    // `drover serve` refuses to start on it, printing the same lines.
    const serve = await new Promise<{ code: number; stderr: string }>((done) => {
      execFile(
        process.execPath,
        [DROVER_BIN, 'serve', '--config', path],
        { timeout: 120_000 },
        (err, _stdout, stderr) => done({ code: typeof err?.code === 'number' ? err.code : 0, stderr }),
      );
    });
    expect(serve.code).toBe(EXIT.badInput);
    for (const line of expected) expect(serve.stderr).toContain(`${path}: ${line}`);
  });

  it('suggests the nearest known key for a misspelt one, in the branch the document chose', async () => {
    const path = await write(
      'typos.yaml',
      `
hypervisor:
  kind: libvirt
  hosts: [{ id: kvm-01, uri: "qemu+tcp://a/system", bandwidthMibps: 100, sharedStoragePath: [/x] }]
  option: {}
policy: { file: p.yaml, wach: true }
collecter: {}
schedules: { rebalance: { timeZone: UTC } }
api: { tokens: [{ name: ops, role: admin, value: "0123456789abcdef0123" }] }
colour: blue
`,
    );
    expect((await issuesOf(path)).sort()).toEqual([
      'collecter: unknown field; did you mean `collector`?',
      'colour: unknown field',
      'hypervisor.hosts[0].bandwidthMibps: unknown field; did you mean `bandwidthMiBps`?',
      'hypervisor.hosts[0].sharedStoragePath: unknown field; did you mean `sharedStoragePaths`?',
      'hypervisor.option: unknown field; did you mean `options`?',
      'policy.wach: unknown field; did you mean `watch`?',
      'schedules.rebalance.timeZone: unknown field; did you mean `timezone`?',
    ]);
  });

  it('reads a field named like an Object method (toString, constructor) as an unknown field', async () => {
    const path = await write(
      'object-methods.yaml',
      `
hypervisor: { kind: sim, generate: { hosts: 2, vmsPerHost: 1 }, valueOf: 1 }
policy: { file: p.yaml }
api: { tokens: [{ name: ops, role: admin, value: "0123456789abcdef0123" }] }
toString: ''
constructor: 1
`,
    );
    expect((await issuesOf(path)).sort()).toEqual([
      'constructor: unknown field',
      'hypervisor.valueOf: unknown field',
      'toString: unknown field',
    ]);
  });

  it('rejects an unknown hypervisor kind naming the field', async () => {
    const path = await write('kind.yaml', 'hypervisor: { kind: xen }\npolicy: { file: p.yaml }\n');
    const issues = await issuesOf(path);
    expect(issues.some((i) => i.startsWith('hypervisor') && i.includes('sim | libvirt'))).toBe(true);
  });
});
