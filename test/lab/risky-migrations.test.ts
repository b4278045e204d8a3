// Risky migrations through drover's executor on real libvirt, on a link drover caps: auto-converge armed by
// the policy on a guest that dirties faster than the link (the watchdog sees QEMU raise the throttle, and the
// migration finishes); the watchdog's own switch to post-copy, then the link cut for a while (reported
// stalled, left alone, and the migration completes once the link is back), or the migration stream reset
// (both ends report the post-copy failed, the reconciler reports the guest split and raises its metric, and
// `drover recover` resumes the migration); two migrations of one drain sharing the source's link (each held
// to its half).
// After each: every guest runs and is defined on exactly one host, its heartbeat advancing. Rows go to the
// fault table (bench/results/faults.json).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Step } from '../../src/domain/plan.js';
import { Executor, type MigrationStatus } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import type { MigrationReport } from '../../src/executor/migration-runner.js';
import { Reconciler } from '../../src/executor/reconciler.js';
import type { VmEvidence } from '../../src/executor/recovery.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import {
  REPO_ROOT,
  cutLink,
  heartbeat,
  heartbeatAdvances,
  labHostConfigs,
  resetMigrationStreams,
  restoreLink,
  waitFor,
  type GuestSpec,
  type LabGuest,
} from './lab-client.js';
import { LabGuests, jobFinished, labPlan, labStep } from './lab-jobs.js';
import { addRow, checkInvariant, writeTable } from '../faults/fault-table.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { DROVER_BIN } from '../support/serve-process.js';

const run = promisify(execFile);

const A = 'lab1';
const B = 'lab2';
/** What drover lets migrations use of each lab host's link (MiB/s). */
const LINK_MIBPS = 8;
const MiB = 1024 * 1024;

let hv: LibvirtHypervisor;
let redis: Redis;
let ex: Executor;
/** The executor's metrics (drover_migrations_stuck). */
let exMetrics: ReturnType<typeof createMetrics>;
const prefix = uniquePrefix('lab-risky-mig');
const guests = new LabGuests('riskmig');
/** A daemon config naming the lab hosts, for `drover recover --config`. */
let configDir: string;
let config: string;

beforeAll(() => {
  configDir = mkdtempSync(join(tmpdir(), 'drover-risky-'));
  config = join(configDir, 'drover.json');
  writeFileSync(join(configDir, 'policy.yaml'), 'version: 1\n');
  writeFileSync(
    config,
    JSON.stringify({
      hypervisor: { kind: 'libvirt', hosts: labHostConfigs(LINK_MIBPS), options: { callTimeoutMs: 15_000 } },
      redis: { prefix },
      policy: { file: join(configDir, 'policy.yaml'), watch: false },
      api: { port: 0, tokens: [{ name: 'risky', role: 'admin', value: 'risky-token-0123456789abcdef' }] },
    }),
  );
  hv = new LibvirtHypervisor(labHostConfigs(LINK_MIBPS), {
    callTimeoutMs: 15_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 1_000,
  });
  redis = connectRedis();
  exMetrics = createMetrics({ processMetrics: false });
  ex = new Executor({
    redis,
    hypervisor: hv,
    metrics: exMetrics,
    options: parseExecutorOptions({ prefix, pollIntervalMs: 250, progressIntervalMs: 250 }),
  });
  ex.startWorkers(4);
});

afterAll(async () => {
  await restoreLink(B).catch(() => undefined);
  rmSync(configDir, { recursive: true, force: true });
  await ex.close();
  await guests.removeAll();
  await cleanPrefix(redis, prefix);
  redis.disconnect();
  await hv.close();
  const rows = writeTable('lab-risky-migrations');
  expect(rows.reduce((n, r) => n + r.violations, 0)).toBe(0);
}, 120_000);

const guest = (spec: Omit<GuestSpec, 'name' | 'host'>): Promise<LabGuest> => guests.boot(spec);

const plan = (id: string, steps: Step[]) => labPlan(`${id}-${Date.now()}`, steps);

function step(vm: string, durationS: number, extra: Partial<Step> = {}): Step {
  return labStep(vm, {
    predicted: { converges: true, durationS, downtimeMs: 100, transferMiB: 64 },
    ...extra,
  });
}

/** Waits for the VM's job to end; `onPoll` sees every status on the way. */
const finished = (vmId: string, timeoutMs: number, onPoll?: (s: MigrationStatus) => void) =>
  jobFinished(ex, vmId, timeoutMs, onPoll);

function reportOf(s: MigrationStatus): MigrationReport {
  const result = s.result as { status: string; report?: MigrationReport } | null;
  if (!result?.report) throw new Error(`no report: ${JSON.stringify(s)}`);
  return result.report;
}

/** Invariant and heartbeat for each guest, and the fault-table row. */
async function conclude(fault: string, gs: LabGuest[], started: number, outcome: string): Promise<void> {
  const violations = await checkInvariant(
    hv,
    gs.map((g) => g.id),
  );
  for (const g of gs) {
    const where = (await hv.locateVm(g.id)).find((p) => p.state === 'running');
    if (!where) continue;
    await heartbeatAdvances(where.hostId, g.name, 15_000).catch((err: unknown) =>
      violations.push(`${g.name}: ${String(err)}`),
    );
  }
  addRow({
    suite: 'lab-risky-migrations',
    fault,
    outcome,
    vmsChecked: gs.length,
    violations: violations.length,
    details: violations.map((v) => `  ${fault}: ${v}`),
    durationS: Math.round((Date.now() - started) / 100) / 10,
  });
  expect(violations).toEqual([]);
}

describe('risky migrations on a capped lab link', () => {
  it('auto-converge armed by the policy: the watchdog sees the throttle rise and the migration finish', async () => {
    const started = Date.now();
    // 16 MiB/s of writes over a 16 MiB region: the guest rewrites its region faster than the 8 MiB/s link
    // can send it once, so plain pre-copy does not finish.
    const g = await guest({ mb: 16, rate: 4096 });
    const t0 = Date.now();
    const before = await heartbeat(A, g.name);
    const after = await heartbeatAdvances(A, g.name);
    const writesMiBps = ((after.pages - before.pages) * 4096) / MiB / ((Date.now() - t0) / 1000);
    expect(writesMiBps).toBeGreaterThan(LINK_MIBPS);

    await ex.enqueuePlan(
      plan('auto-converge', [step(g.id, 60)]),
      parseExecutionPolicy({ allowAutoConverge: true }),
    );
    const throttles: number[] = [];
    const done = await finished(g.id, 240_000, (s) => {
      const t = s.progress?.throttlePct;
      if (t !== undefined && t !== throttles[throttles.length - 1]) throttles.push(t);
    });
    const report = reportOf(done);
    expect(report.outcome, report.reason).toBe('completed');
    // QEMU throttled the guest, raising it step by step, and the watchdog followed it there.
    expect(report.maxThrottlePct).toBeGreaterThanOrEqual(30);
    expect(throttles.filter((t) => t > 0).length).toBeGreaterThanOrEqual(2);
    expect(report.watchdog.filter((r) => r.action.kind === 'abort')).toEqual([]);
    await conclude(
      'guest dirtying faster than the capped link, auto-converge armed',
      [g],
      started,
      `job completed in ${report.durationS.toFixed(1)} s; throttle up to ${report.maxThrottlePct} %; on ${B}`,
    );
  }, 300_000);

  /** Boots a guest that pre-copy cannot move over the capped link and has the watchdog switch it to post-copy. */
  async function inPostCopy(): Promise<LabGuest> {
    // 50 MiB/s of writes over 64 MiB: pre-copy cannot finish at 8 MiB/s; post-copy then has ~64 MiB to pull.
    const g = await guest({ memMiB: 128, fillMiB: 48, mb: 64, rate: 12_800 });
    await ex.enqueuePlan(
      plan('post-copy', [
        step(g.id, 30, {
          predicted: {
            converges: true,
            durationS: 30,
            downtimeMs: 100,
            transferMiB: 128,
            technique: 'post-copy',
          },
        }),
      ]),
      parseExecutionPolicy({ allowPostCopy: true }),
    );
    // The watchdog switches once round 0 is over (the planner predicted post-copy); wait until the guest
    // runs on the destination.
    await waitFor(
      'the guest to run on the destination in post-copy',
      async () =>
        (await hv.locateVm(g.id)).some(
          (p) => p.hostId === B && p.state === 'running' && p.postCopy === 'active',
        )
          ? true
          : undefined,
      180_000,
      100,
    );
    return g;
  }

  const stuckGauge = async () =>
    Number(/^drover_migrations_stuck (\S+)$/m.exec(await exMetrics.registry.metrics())?.[1] ?? 'NaN');

  it('the link cut for a while in post-copy: reported stalled, never paused, and the migration completes once it is back', async () => {
    const started = Date.now();
    const g = await inPostCopy();
    await cutLink(B);
    try {
      // The watchdog reports the stall (the DroverMigrationStuck alert's gauge) and leaves the migration be.
      await waitFor(
        'the stalled post-copy to be counted stuck',
        async () => ((await stuckGauge()) === 1 ? true : undefined),
        60_000,
        250,
      );
      await new Promise((r) => setTimeout(r, 5_000));
      expect((await hv.locateVm(g.id)).map((p) => [p.hostId, p.postCopy]).sort()).toEqual([
        [A, 'active'],
        [B, 'active'],
      ]);
    } finally {
      await restoreLink(B);
    }
    // TCP carries the stream on: the migration completes by itself.
    const report = reportOf(await finished(g.id, 240_000));
    expect(report.outcome, report.reason).toBe('completed');
    const kinds = report.watchdog.map((r) => r.action.kind);
    expect(kinds).toEqual(expect.arrayContaining(['post-copy', 'post-copy-stalled']));
    expect(kinds.filter((k) => k === 'abort')).toEqual([]);
    expect(await stuckGauge()).toBe(0);
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    const stalled = report.watchdog.find((r) => r.action.kind === 'post-copy-stalled');
    await conclude(
      'link cut while in post-copy (watchdog switched)',
      [g],
      started,
      `stalled after ${(((stalled?.action as { stalledMs?: number } | undefined)?.stalledMs ?? 0) / 1000).toFixed(1)} s, counted stuck; completed once the link was back, ${report.durationS.toFixed(1)} s in all; on ${B}`,
    );
  }, 600_000);

  it('the migration stream reset in post-copy: reported split, alerted, drover recover resumes it', async () => {
    const started = Date.now();
    const g = await inPostCopy();
    // Both ends see the stream break now (a reset, as a firewall or a restarted switch would send).
    await resetMigrationStreams(B);
    const report = reportOf(await finished(g.id, 180_000));
    expect(report.outcome, report.reason).toBe('failed');
    expect(report.watchdog.filter((r) => r.action.kind === 'abort')).toEqual([]);
    expect(report.problems.join('\n')).toContain('post-copy failed');
    expect(report.evidence?.diagnosis).toBe('postcopy-failed');
    // The reconciler reports the broken post-copy (the alert's metric) with resuming it as the repair, never
    // destroying either side.
    const metrics = createMetrics({ processMetrics: false });
    const reconciler = new Reconciler({ hypervisor: hv, callTimeoutMs: 15_000, intervalMs: 60_000, metrics });
    const evidence = (await reconciler.runOnce()).onSeveralHosts.find((e) => e.vmId === g.id);
    expect(evidence?.diagnosis).toBe('postcopy-failed');
    expect(evidence?.actions.map((a) => [a.kind, a.hostId, a.toHostId, a.forcing])).toEqual([
      ['postcopy-resume', A, B, false],
    ]);
    expect(await metrics.registry.getSingleMetricAsString('drover_vms_on_multiple_hosts')).toMatch(
      /^drover_vms_on_multiple_hosts 1$/m,
    );
    const where = async () => JSON.stringify(await hv.locateVm(g.id));
    // The operator's path: `drover recover VM --apply 1` resumes the migration.
    const recover = await run(
      process.execPath,
      [DROVER_BIN, 'recover', g.id, '--config', config, '--apply', '1', '--json'],
      { cwd: REPO_ROOT, env: { ...process.env, REDIS_URL: redisUrl() }, timeout: 360_000 },
    ).catch(async (err: { code?: number; stdout?: string; stderr?: string }) => {
      throw new Error(
        `drover recover exited ${err.code}: ${err.stdout}\n${err.stderr}\non the hosts: ${await where()}`,
      );
    });
    const out = JSON.parse(recover.stdout) as {
      evidence: VmEvidence;
      applied: { kind: string; error: string | null; waitedForDestinationMs?: number }[];
      after: VmEvidence | null;
    };
    expect(out.evidence.diagnosis).toBe('postcopy-failed');
    expect(out.applied, `${recover.stderr}\non the hosts: ${await where()}`).toEqual([
      expect.objectContaining({ kind: 'postcopy-resume', error: null }),
    ]);
    // It waited exactly when the destination had not yet seen the stream break.
    const destinationSaw = out.evidence.hosts.find((h) => h.hostId === B)?.postCopy;
    const waitedMs = out.applied[0]?.waitedForDestinationMs;
    expect(waitedMs !== undefined, `${B} reported post-copy ${destinationSaw}; waited ${waitedMs} ms`).toBe(
      destinationSaw === 'active',
    );
    expect(out.after?.diagnosis).toBe('ok');
    expect(out.after?.holder).toBe(B);
    expect((await reconciler.runOnce()).onSeveralHosts).toEqual([]);
    expect(await metrics.registry.getSingleMetricAsString('drover_vms_on_multiple_hosts')).toMatch(
      /^drover_vms_on_multiple_hosts 0$/m,
    );
    // Nothing left paused: the guest runs on the destination only, defined there only, heartbeat advancing.
    expect(await hv.locateVm(g.id)).toEqual([{ hostId: B, state: 'running', persistent: true }]);
    await conclude(
      'migration stream reset while in post-copy, recovered',
      [g],
      started,
      `job failed, split ${A}/${B} reported; drover recover resumed it${
        waitedMs === undefined
          ? ''
          : ` after waiting ${(waitedMs / 1000).toFixed(0)} s for ${B} to see the break`
      }; on ${B}`,
    );
  }, 600_000);

  it('two migrations of a drain share the capped source link: each gets its half', async () => {
    const started = Date.now();
    const pair = [await guest({ fillMiB: 48 }), await guest({ fillMiB: 48 })];
    // As the drain planner gives them: two at once from the source (Step.concurrency 2).
    await ex.enqueuePlan(
      plan(
        'shared-link',
        pair.map((g) => step(g.id, 12, { concurrency: 2 })),
      ),
      parseExecutionPolicy({ limits: { perHostOutbound: 2, perHostInbound: 2, cluster: 4 } }),
    );
    // Each migration's data sent over the time both were sending (QEMU's own counters, on the source).
    const samples = new Map<string, { at: number; sentMiB: number }[]>(pair.map((g) => [g.id, []]));
    const shares = new Set<number | null>();
    await waitFor(
      'both migrations to end',
      async () => {
        const stats = await Promise.all(pair.map((g) => hv.jobStats(A, g.id).catch(() => null)));
        const now = Date.now();
        if (stats.every((s) => s?.type === 'active' && s.iteration === 0 && s.memProcessedMiB > 0))
          stats.forEach((s, i) =>
            samples.get(pair[i]?.id ?? '')?.push({ at: now, sentMiB: s?.memProcessedMiB ?? 0 }),
          );
        for (const s of await ex.list())
          if (s.progress && pair.some((g) => g.id === s.vmId)) shares.add(s.progress.bandwidthMiBps);
        const st = await Promise.all(pair.map((g) => ex.list().then((l) => l.find((x) => x.vmId === g.id))));
        return st.every((s) => s?.state === 'completed' || s?.state === 'failed') ? true : undefined;
      },
      180_000,
      250,
    );
    const reports = await Promise.all(pair.map((g) => finished(g.id, 10_000).then(reportOf)));
    for (const r of reports) expect(r.outcome, r.reason).toBe('completed');
    const rates = pair.map((g) => {
      // the first to start ran alone at the whole link until the second took its slot: skip 2 s of overlap
      const all = samples.get(g.id) ?? [];
      const s = all.filter((x) => x.at >= (all[0]?.at ?? 0) + 2_000);
      const first = s[0];
      const last = s[s.length - 1];
      // uncapped, the two end within a second or two and leave no such window
      expect(s.length, 'samples while both sent').toBeGreaterThanOrEqual(4);
      return first && last ? (last.sentMiB - first.sentMiB) / ((last.at - first.at) / 1000) : 0;
    });
    const half = LINK_MIBPS / 2;
    expect(shares.has(half)).toBe(true);
    // Each within its half (QEMU's rate limiter overshoots a little per interval), and the link not exceeded.
    for (const r of rates) {
      expect(r).toBeGreaterThan(half * 0.5);
      expect(r).toBeLessThan(half * 1.3);
    }
    expect(rates[0]! + rates[1]!).toBeLessThan(LINK_MIBPS * 1.2);
    await conclude(
      'two migrations sharing a capped source link',
      pair,
      started,
      `both completed; ${rates.map((r) => r.toFixed(1)).join(' and ')} MiB/s of ${LINK_MIBPS} while both sent`,
    );
  }, 300_000);
});
