// The npm package as an operator installs it: `npm pack` (which builds dist/ through prepack), then
// `npm install --omit=dev` of the tarball into an empty prefix, then the installed `drover` runs with
// production dependencies only (no tsx, no TypeScript): --version, an offline plan, and doctor.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { redisUrl, uniquePrefix } from '../support/redis.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '../..');
let dir = '';
let drover = '';

interface Failed {
  code: number;
  stdout: string;
  stderr: string;
}

async function droverRun(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(drover, args, {
      cwd: dir,
      env: { ...process.env, REDIS_URL: redisUrl(), NODE_OPTIONS: '' },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as Failed;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-install-'));
  const packed = await run('npm', ['pack', '--pack-destination', dir, '--json'], {
    cwd: root,
    timeout: 300_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
  const files = info!.files.map((f) => f.path);
  expect(files).toContain('dist/cli/main.js');
  expect(files).toContain('LICENSE');
  expect(files).toContain('CHANGELOG.md');
  expect(
    files.filter((f) => f.startsWith('test/') || f.startsWith('bench/') || f.startsWith('src/')),
  ).toEqual([]);
  const prefix = join(dir, 'prefix');
  await run(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--omit=dev',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      join(dir, info!.filename),
    ],
    { cwd: dir, timeout: 300_000 },
  );
  drover = join(prefix, 'bin', 'drover');
}, 600_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the installed npm package', () => {
  it('has no development tooling installed and prints its version', async () => {
    const lib = join(dir, 'prefix', 'lib', 'node_modules', 'drover');
    await expect(readFile(join(lib, 'node_modules', 'tsx', 'package.json'))).rejects.toThrow();
    const version = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string })
      .version;
    const r = await droverRun(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });

  it('samples a simulated cluster and plans offline from that snapshot', async () => {
    const collected = await droverRun(['collect', '--once', '--json']);
    expect(collected.code).toBe(0);
    await writeFile(join(dir, 'snapshot.json'), collected.stdout);
    const r = await droverRun(['plan', '--snapshot', join(dir, 'snapshot.json'), '--json']);
    expect([0, 5]).toContain(r.code);
    const plan = JSON.parse(r.stdout) as { reason: string; steps: unknown[] };
    expect(plan.reason).toBe('rebalance');
  });

  it('runs doctor on a config', async () => {
    const prefix = uniquePrefix('install');
    await writeFile(join(dir, 'cluster.yaml'), stringify(CLUSTER));
    await writeFile(join(dir, 'policy.yaml'), '{}\n');
    await writeFile(
      join(dir, 'drover.yaml'),
      stringify({
        hypervisor: { kind: 'sim', cluster: 'cluster.yaml' },
        redis: { prefix },
        policy: { file: 'policy.yaml' },
        api: { enabled: false },
        log: { level: 'silent' },
      }),
    );
    const r = await droverRun(['doctor', '--config', join(dir, 'drover.yaml')]);
    expect(r.stdout + r.stderr).toMatch(/config/i);
    expect(r.stdout + r.stderr).toMatch(/redis/i);
    expect(r.stderr).not.toMatch(/Cannot find (package|module)/);
    expect([0, 1]).toContain(r.code);
  });
});

const CLUSTER = {
  seed: 1,
  hosts: [
    { id: 'kvm-01', cpus: 8, memMiB: 16384, bandwidthMiBps: 1000 },
    { id: 'kvm-02', cpus: 8, memMiB: 16384, bandwidthMiBps: 1000 },
  ],
  vms: [
    {
      id: '00000000-0000-4000-8000-000000000001',
      name: 'vm-1',
      host: 'kvm-01',
      vcpus: 2,
      memMiB: 1024,
      workload: { kind: 'constant', cpuPct: 50, dirtyMiBps: 5, wwsMiB: 64 },
    },
  ],
};
