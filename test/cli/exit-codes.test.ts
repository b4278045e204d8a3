// The README's exit-code table, command by command, through a real `drover` process.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePlan } from '../../src/domain/plan.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { writeFixture, type Fixture } from '../service/service-fixture.js';
import { uniquePrefix } from '../support/redis.js';

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
      [join(root, 'bin/drover.js'), ...args],
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
    expect(human.stdout).toMatch(/^jvm-1\s+dirty rate 900 MiB\/s cannot converge/m);
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
