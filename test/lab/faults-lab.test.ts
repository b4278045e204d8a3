// Fault suite on the real libvirt lab: an executor worker process SIGKILLed before, during and right after a
// migration (another executor adopts it, watching the one still running, never migrates twice, and records it
// completed); the source libvirtd killed mid-migration and restarted; the link
// between the lab hosts cut mid-migration and restored; the source QEMU frozen with SIGSTOP mid-migration.
// Every case ends with the invariant on every host (running on exactly one, defined on exactly one) and the
// guest's heartbeat advancing where it runs. Rows go to the fault table (bench/results/faults.json).
import type { ChildProcess } from 'node:child_process';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Executor, type MigrationStatus } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import type { HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import {
  cutLink,
  heartbeatAdvances,
  killDaemon,
  labHostConfigs,
  restoreLink,
  startDaemon,
  waitFor,
  type LabGuest,
} from './lab-client.js';
import { LabGuests, jobFinished, labPlan, labStep, qemuPid, reportOf } from './lab-jobs.js';
import { addRow, checkInvariant, writeTable } from '../faults/fault-table.js';
import { startWorkerProcess } from '../executor/support/spawn-worker.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';

const A = 'lab1';
const B = 'lab2';
const LINK_MIBPS = 10;

const plan = (id: string, vm: string) =>
  labPlan(id, [
    labStep(vm, {
      why: 'fault suite',
      predicted: { converges: true, durationS: 8, downtimeMs: 50, transferMiB: 64 },
      downtimeBudgetMs: 300,
    }),
  ]);

let hv: LibvirtHypervisor;
let redis: Redis;
const prefixes: string[] = [];
const guests = new LabGuests('fault');
const executors: Executor[] = [];
const children: ChildProcess[] = [];
/** libvirt's own events: an incoming migration starts the domain on the destination. */
const events: HypervisorEvent[] = [];

beforeAll(async () => {
  hv = new LibvirtHypervisor(labHostConfigs(LINK_MIBPS), {
    callTimeoutMs: 15_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 1_000,
  });
  hv.subscribe((e) => events.push(e));
  redis = connectRedis();
  await hv.eventsReady();
});

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(executors.splice(0).map((e) => e.close()));
  await restoreLink(B).catch(() => undefined);
  await startDaemon(A).catch(() => undefined);
  await guests.removeAll();
});

afterAll(async () => {
  for (const p of prefixes) await cleanPrefix(redis, p);
  redis.disconnect();
  await hv.close();
  const rows = writeTable('lab');
  expect(rows.reduce((n, r) => n + r.violations, 0)).toBe(0);
}, 120_000);

/** A 64 MiB guest with 40 MiB written: about 5 s of migration on the 10 MiB/s link. */
const guest = () => guests.boot({ fillMiB: 40, mb: 4, rate: 256 });
/** A 192 MiB guest with 150 MiB written: about 15 s, so that another worker adopts it while it runs. */
const longGuest = () => guests.boot({ memMiB: 192, fillMiB: 150, mb: 4, rate: 256 });

function executor(prefix: string, onMigrate?: () => void): Executor {
  const ex = new Executor({
    redis,
    hypervisor: hv,
    options: parseExecutorOptions({
      prefix,
      callTimeoutMs: 3_000,
      lockDurationMs: 3_000,
      stalledIntervalMs: 1_500,
    }),
    ...(onMigrate ? { onMigrateCall: onMigrate } : {}),
  });
  executors.push(ex);
  return ex;
}

const finished = (ex: Executor, vmId: string) => jobFinished(ex, vmId, 90_000);

const migrating = (g: LabGuest) =>
  waitFor(
    'the migration to run',
    async () => ((await hv.jobStats(A, g.id)).type === 'active' ? true : undefined),
    60_000,
    100,
  );

/** Invariant, heartbeat where the guest runs, and the table row. */
async function conclude(
  fault: string,
  g: LabGuest,
  status: MigrationStatus | null,
  started: number,
  note = '',
): Promise<void> {
  const violations = await checkInvariant(hv, [g.id]);
  const where = (await hv.locateVm(g.id)).find((p) => p.state === 'running');
  if (where) {
    await heartbeatAdvances(where.hostId, g.name, 15_000).catch((err: unknown) =>
      violations.push(`${g.name}: ${String(err)}`),
    );
  }
  const result = status?.result?.status ?? status?.state ?? 'no job';
  addRow({
    suite: 'lab',
    fault,
    outcome: `job ${result}; guest on ${where?.hostId ?? 'nowhere'}${note ? `; ${note}` : ''}`,
    vmsChecked: 1,
    violations: violations.length,
    details: violations.map((v) => `  ${fault}: ${v}`),
    durationS: Math.round((Date.now() - started) / 100) / 10,
  });
  expect(violations).toEqual([]);
}

function workerProcess(prefix: string): Promise<ChildProcess> {
  return startWorkerProcess(redisUrl(), prefix, LINK_MIBPS, (c) => children.push(c));
}

async function sigkill(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
}

describe('fault suite on the libvirt lab', () => {
  for (const when of ['before', 'during', 'right after'] as const) {
    it(`an executor worker process SIGKILLed ${when} a migration: adopted, never migrated twice`, async () => {
      const started = Date.now();
      const prefix = uniquePrefix('fault-kill');
      prefixes.push(prefix);
      const g = await (when === 'during' ? longGuest() : guest());
      const child = await workerProcess(prefix);
      const enqueuer = executor(prefix);
      await enqueuer.enqueuePlan(plan(`kill-${when}`, g.id), parseExecutionPolicy({}));
      let migratingAtKill = false;
      if (when === 'before') {
        // As soon as the worker holds the job, before libvirt shows a migration job.
        await waitFor(
          'the job to be taken',
          async () =>
            (await enqueuer.list()).find((s) => s.vmId === g.id)?.state === 'active' ? true : undefined,
          60_000,
          20,
        );
        migratingAtKill = (await hv.jobStats(A, g.id)).type === 'active';
      } else if (when === 'during') {
        await migrating(g);
        await new Promise((r) => setTimeout(r, 1_500));
        migratingAtKill = true;
      } else {
        await waitFor(
          'the guest to run on the destination',
          async () =>
            (await hv.locateVm(g.id)).some((p) => p.hostId === B && p.state === 'running') ? true : undefined,
          90_000,
          50,
        );
      }
      await sigkill(child);
      const killedAt = Date.now();
      // libvirt keeps migrating without the client that started it
      if (when === 'during') expect((await hv.jobStats(A, g.id)).type).toBe('active');
      let migrateCalls = 0;
      const adopter = executor(prefix, () => migrateCalls++);
      adopter.startWorkers();
      let adoptedRunningAt: number | null = null;
      const status = await jobFinished(adopter, g.id, 120_000, (s) => {
        if (s.progress?.adopted && adoptedRunningAt === null) adoptedRunningAt = Date.now();
      });
      const report = reportOf(status);
      // A migration that had begun (or ended) is adopted, never started again, and recorded completed.
      if (when !== 'before' || migratingAtKill) expect(migrateCalls).toBe(0);
      else expect(migrateCalls).toBeLessThanOrEqual(1);
      expect(status.result?.status, JSON.stringify(status)).toBe('completed');
      if (when !== 'before') expect(report?.adopted).toBe(true);
      // The one still running at the kill is watched by the adopter (its progress says adopted) soon after.
      if (when === 'during') expect((adoptedRunningAt ?? Infinity) - killedAt).toBeLessThan(15_000);
      const startsOnB = events.filter(
        (e) => e.kind === 'lifecycle' && e.vmId === g.id && e.hostId === B && e.event === 'started',
      );
      expect(startsOnB.length).toBeLessThanOrEqual(1);
      await conclude(
        `worker SIGKILLed ${when} the migration`,
        g,
        status,
        started,
        `${migrateCalls} migrate call(s) by the adopter${when === 'before' ? (migratingAtKill ? ', libvirt job had started' : ', no libvirt job yet') : ''}`,
      );
    }, 180_000);
  }

  it('the source libvirtd killed mid-migration and restarted', async () => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-daemon');
    prefixes.push(prefix);
    const g = await guest();
    const ex = executor(prefix);
    ex.startWorkers();
    await ex.enqueuePlan(plan('daemon-kill', g.id), parseExecutionPolicy({}));
    await migrating(g);
    await killDaemon(A);
    await new Promise((r) => setTimeout(r, 2_000));
    await startDaemon(A);
    const status = await finished(ex, g.id);
    await conclude('source libvirtd SIGKILLed mid-migration, restarted', g, status, started);
  }, 180_000);

  it('the link between the lab hosts cut mid-migration and restored', async () => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-link');
    prefixes.push(prefix);
    const g = await guest();
    const ex = executor(prefix);
    ex.startWorkers();
    await ex.enqueuePlan(plan('link-cut', g.id), parseExecutionPolicy({}));
    await migrating(g);
    await cutLink(B);
    await new Promise((r) => setTimeout(r, 4_000));
    await restoreLink(B);
    const status = await finished(ex, g.id);
    await conclude('link to the destination down 4 s mid-migration', g, status, started);
  }, 180_000);

  it('the source QEMU frozen with SIGSTOP mid-migration, then continued', async () => {
    const started = Date.now();
    const prefix = uniquePrefix('fault-sigstop');
    prefixes.push(prefix);
    const g = await guest();
    const ex = executor(prefix);
    ex.startWorkers();
    await ex.enqueuePlan(plan('sigstop', g.id), parseExecutionPolicy({}));
    await migrating(g);
    const pid = qemuPid(A, g.name);
    process.kill(pid, 'SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 5_000));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const status = await finished(ex, g.id);
    await conclude('source QEMU SIGSTOPped 5 s mid-migration', g, status, started);
  }, 180_000);
});
