// The dry run on one's own hosts, through the real `drover` command and no daemon or Redis: `drover collect
// --config` samples the lab's libvirt hosts and QEMU guests continuously (no --once) into a snapshot file until
// SIGTERM, then `drover plan --snapshot` and `drover plan --drain` read that file.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { parsePlan } from '../../src/domain/plan.js';
import { parseSnapshot, type Snapshot } from '../../src/domain/snapshot.js';
import { defineGuest, guestName, labHostConfigs, removeGuest, waitFor, type LabGuest } from './lab-client.js';
import { DROVER_BIN } from '../support/serve-process.js';

const DROVER = DROVER_BIN;
const HOST = 'lab1';
// Every lab host reports the whole (shared) machine's load as its own: ceilings lifted, as in `drover lab-demo`.
const POLICY = `version: 1
hosts: { cpuCeilingPct: 100, memCeilingPct: 100, memReserveMiB: 0 }
migration: { assumeDirtyMiBpsWhenUnknown: 2 }
`;

function drover(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DROVER, ...args],
      { env: { ...process.env, NO_COLOR: '1' } },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe('drover collect --config on the lab, then drover plan', () => {
  let dir: string;
  const guests: LabGuest[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-collect-'));
    for (const tag of ['a', 'b'])
      guests.push(await defineGuest({ name: guestName(`collect-${tag}`), host: HOST }));
    await writeFile(join(dir, 'policy.yaml'), POLICY);
    await writeFile(
      join(dir, 'drover.yaml'),
      JSON.stringify({
        hypervisor: {
          kind: 'libvirt',
          hosts: labHostConfigs(),
          options: { callTimeoutMs: 15_000, reconnectMinMs: 100, reconnectMaxMs: 1_000 },
        },
        policy: { file: 'policy.yaml' },
        api: { enabled: false },
        // A host's CPU is the lowest smoothed reading of the hold window (one quieter moment of the
        // shared machine gives the others room), as in the lab's failover test.
        collector: {
          intervalS: 1,
          hostTimeoutMs: 10_000,
          dirtyRate: { windowS: 1 },
          smoothing: { cpuTauS: 2, holdS: 3600 },
        },
      }),
    );
  });

  afterAll(async () => {
    for (const g of guests) await removeGuest(g.name);
    await rm(dir, { recursive: true, force: true });
  });

  it('collects until SIGTERM into a file that plan and plan --drain read', async () => {
    const out = join(dir, 'snapshot.json');
    const startedMs = Date.now();
    const child = spawn(
      process.execPath,
      [DROVER, 'collect', '--config', join(dir, 'drover.yaml'), '--out', out],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const read = async (): Promise<Snapshot | undefined> => {
      try {
        return parseSnapshot(JSON.parse(await readFile(out, 'utf8')) as unknown, out);
      } catch {
        return undefined;
      }
    };
    let first: Snapshot;
    let later: Snapshot;
    try {
      first = await waitFor('the first snapshot file', read, 60_000);
      // Continuous: the file is written again with a newer snapshot, without --once.
      later = await waitFor(
        'a newer snapshot in the file',
        async () => {
          const s = await read();
          return s && s.takenAt > first.takenAt ? s : undefined;
        },
        60_000,
      );
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exit, stderr).toBe(EXIT.ok);
    expect(stdout).toContain(`written to ${out}`);

    // Stamped when taken: not before the command started, not after the file was read.
    for (const s of [first, later]) {
      expect(Date.parse(s.takenAt)).toBeGreaterThanOrEqual(startedMs);
      expect(Date.parse(s.takenAt)).toBeLessThanOrEqual(Date.now());
    }
    expect(later.hosts.map((h) => h.id).sort()).toEqual(
      labHostConfigs()
        .map((h) => h.id)
        .sort(),
    );
    expect(later.hosts.every((h) => !h.stale && h.cpuPct !== null)).toBe(true);
    for (const g of guests)
      expect(later.vms.find((v) => v.id === g.id)).toMatchObject({ name: g.name, host: HOST });

    const policy = join(dir, 'policy.yaml');
    const plan = await drover(['plan', '--snapshot', out, '--policy', policy]);
    expect([EXIT.ok, EXIT.notConverged], plan.stderr).toContain(plan.code);
    expect(plan.stdout).toContain(`from snapshot taken ${later.takenAt}`);

    const drain = await drover(['plan', '--snapshot', out, '--policy', policy, '--drain', HOST, '--json']);
    const drainPlan = parsePlan(JSON.parse(drain.stdout) as unknown);
    expect(drainPlan.reason).toBe('drain');
    // Every VM on the drained host (our two guests among them) has a step off it or a reason it stays. The
    // lab hosts all report the shared machine's load, so on a busy machine there may be no room for some:
    // then the drain cannot complete, and the plan names those (each with its reason) and moves nothing.
    const onHost = later.vms.filter((v) => v.host === HOST).map((v) => v.id);
    for (const g of guests) expect(onHost).toContain(g.id);
    const skipped = drainPlan.skipped.map((s) => s.vm);
    for (const vm of skipped) expect(onHost).toContain(vm);
    if (drainPlan.steps.length === 0 && skipped.length > 0 && skipped.length < onHost.length) {
      expect(drainPlan.note).toContain(`${skipped.length} of ${onHost.length} VMs cannot leave`);
      expect(drainPlan.skipped.every((s) => s.why.startsWith('cannot leave: '))).toBe(true);
    } else {
      const covered = [...drainPlan.steps.map((s) => s.vm), ...skipped];
      expect(covered.sort()).toEqual([...onHost].sort());
    }
    expect(drainPlan.steps.every((s) => s.from === HOST && s.to !== HOST)).toBe(true);
    expect(drain.code, drain.stderr).toBe(drainPlan.skipped.length > 0 ? EXIT.notConverged : EXIT.ok);
  });
});
