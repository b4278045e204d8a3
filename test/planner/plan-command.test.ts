// `drover plan` end to end: a real process, offline, no Redis.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parsePlan } from '../../src/domain/plan.js';
import { DROVER_BIN } from '../support/serve-process.js';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
const fixture = join(root, 'test/planner/fixtures');

async function drover(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [DROVER_BIN, ...args], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// Each case starts real processes on a shared machine: generous timeouts.
const SLOW = 300_000;

describe('drover plan', () => {
  it(
    'prints exactly the Plan format with --json',
    async () => {
      const r = await drover(
        'plan',
        '--snapshot',
        join(fixture, 'imbalanced.json'),
        '--policy',
        join(root, 'policies/default.yaml'),
        '--json',
      );
      const plan = parsePlan(JSON.parse(r.stdout));
      expect(plan.reason).toBe('rebalance');
      expect(plan.steps.length).toBeGreaterThan(0);
      // jvm-1 cannot converge and pinned-1 is pinned: VMs skipped, so not everything moved (exit 5)
      expect(plan.skipped.length).toBe(2);
      expect(r.code).toBe(5);
    },
    SLOW,
  );

  it(
    'plans with another strategy by name, and refuses an unknown one naming the choices',
    async () => {
      const snapshotFile = join(fixture, 'imbalanced.json');
      const r = await drover('plan', '--snapshot', snapshotFile, '--strategy', 'consolidate', '--json');
      const plan = parsePlan(JSON.parse(r.stdout));
      // jvm-1 cannot converge, so it keeps kvm-01 in use: a VM skipped, exit 5
      expect(plan.skipped.map((s) => s.vm)).toEqual(['00000000-0000-4000-8000-000000000001']);
      expect(r.code).toBe(5);
      const snapshot = JSON.parse(readFileSync(snapshotFile, 'utf8')) as {
        vms: { id: string; host: string }[];
      };
      // every host the plan says it frees has all its VMs leaving and none arriving
      const freed = /frees \d+ hosts?: (.*)$/.exec(plan.note ?? '')?.[1]?.split(', ') ?? [];
      expect(freed.length).toBeGreaterThan(0);
      for (const host of freed) {
        const on = snapshot.vms.filter((v) => v.host === host).map((v) => v.id);
        expect(
          plan.steps
            .filter((s) => s.from === host)
            .map((s) => s.vm)
            .sort(),
        ).toEqual(on.sort());
        expect(plan.steps.some((s) => s.to === host)).toBe(false);
      }
      const bad = await drover('plan', '--snapshot', snapshotFile, '--strategy', 'nope');
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/no strategy "nope" \(there are balance, drain, consolidate\)/);
    },
    SLOW,
  );

  it(
    'prints a table with each move and its reason without --json',
    async () => {
      const r = await drover('plan', '--snapshot', join(fixture, 'drain.json'), '--drain', 'kvm-02');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/VM\s+FROM\s+TO\s+KIND\s+DURATION\s+DOWNTIME\s+TRANSFER\s+WHY/);
      expect(r.stdout).toMatch(/kvm-02\s+kvm-0[13]\s+block .*kvm-02 is being drained/);
      expect(r.stdout).toMatch(/ETA/);
    },
    SLOW,
  );

  it(
    'exits 3 naming the field on bad input',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'drover-plan-'));
      const snap = join(dir, 'snap.json');
      writeFileSync(
        snap,
        JSON.stringify({
          version: 1,
          takenAt: '2026-11-25T12:00:00Z',
          hosts: [{ id: 'a', cpus: -1 }],
          vms: [],
        }),
      );
      const policy = join(dir, 'p.yaml');
      writeFileSync(policy, 'limits:\n  maxMovesPerRun: -3\n');
      const [bad, badPolicy, host, missing] = await Promise.all([
        drover('plan', '--snapshot', snap),
        drover('plan', '--snapshot', join(fixture, 'imbalanced.json'), '--policy', policy, '--json'),
        drover('plan', '--snapshot', join(fixture, 'drain.json'), '--drain', 'nope'),
        drover('plan', '--snapshot', join(dir, 'absent.json')),
      ]);
      expect(bad.code).toBe(3);
      expect(bad.stderr).toContain(`${snap}: hosts[0].cpus: expected a positive integer, got -1`);
      expect(badPolicy.code).toBe(3);
      expect(JSON.parse(badPolicy.stdout)).toMatchObject({
        error: { code: 'invalid_input', issues: [{ path: 'limits.maxMovesPerRun' }] },
      });
      expect(host.code).toBe(3);
      expect(host.stderr).toContain('--drain: no host "nope"');
      expect(missing.code).toBe(3);
    },
    SLOW,
  );

  it(
    'exits 5 when a drain cannot complete, listing the blockers',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'drover-plan-'));
      const policy = join(dir, 'p.yaml');
      writeFileSync(policy, 'migration:\n  allowBlockMigration: false\n');
      const r = await drover(
        'plan',
        '--snapshot',
        join(fixture, 'drain.json'),
        '--policy',
        policy,
        '--drain',
        'kvm-02',
      );
      expect(r.code).toBe(5);
      expect(r.stdout).toContain('local storage needs block migration, which the policy forbids');
      expect(r.stdout).toContain('cannot complete');
    },
    SLOW,
  );
});
