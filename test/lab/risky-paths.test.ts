// Risky paths on real libvirt: a destination whose CPU cannot run the guest is refused before anything moves
// (the destination daemon is asked through its CPU comparison call), and a VM running on two lab hosts at
// once is found by the reconciler, raised on its alert metric, and reported by `drover doctor` alike. After
// each: every guest runs and is defined on exactly one host, its heartbeat advancing.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Plan } from '../../src/domain/plan.js';
import { Executor, type MigrationStatus } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import { Reconciler } from '../../src/executor/reconciler.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { DomainXmlFlags } from '../../src/libvirt/remote-protocol.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import {
  REPO_ROOT,
  defineGuest,
  guestName,
  guestXml,
  heartbeatAdvances,
  labClient,
  labHostConfigs,
  removeGuest,
  waitFor,
  type LabGuest,
} from './lab-client.js';
import { addRow, checkInvariant, writeTable } from '../faults/fault-table.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { DROVER_BIN } from '../support/serve-process.js';

const run = promisify(execFile);
const A = 'lab1';
const B = 'lab2';

function plan(id: string, vm: string): Plan {
  return {
    id,
    reason: 'drain',
    createdAt: new Date().toISOString(),
    steps: [
      {
        vm,
        from: A,
        to: B,
        kind: 'live',
        why: 'lab test',
        predicted: { converges: true, durationS: 5, downtimeMs: 50, transferMiB: 32 },
        downtimeBudgetMs: 500,
      },
    ],
    skipped: [],
    before: { cpuSpreadPct: 0, memSpreadPct: 0 },
    after: { cpuSpreadPct: 0, memSpreadPct: 0 },
  };
}

describe('Risky paths on the libvirt lab', () => {
  let hv: LibvirtHypervisor;
  let redis: Redis;
  const prefixes: string[] = [];
  const guests: string[] = [];
  const executors: Executor[] = [];

  beforeAll(() => {
    hv = new LibvirtHypervisor(labHostConfigs(50), { callTimeoutMs: 15_000 });
  });
  afterAll(async () => {
    await hv.close();
    const rows = writeTable('lab-risky');
    expect(rows.reduce((n, r) => n + r.violations, 0)).toBe(0);
  });

  /** A fault-table row for the test's guests, whose invariant must hold. */
  async function row(fault: string, started: number, ids: string[], outcome: string): Promise<void> {
    const violations = await checkInvariant(hv, ids);
    addRow({
      suite: 'lab-risky',
      fault,
      outcome,
      vmsChecked: ids.length,
      violations: violations.length,
      details: violations.map((v) => `  ${fault}: ${v}`),
      durationS: Math.round((Date.now() - started) / 100) / 10,
    });
    expect(violations).toEqual([]);
  }
  beforeEach(() => {
    redis = connectRedis();
  });
  afterEach(async () => {
    await Promise.all(executors.splice(0).map((e) => e.close()));
    for (const name of guests.splice(0)) await removeGuest(name);
    for (const p of prefixes.splice(0)) await cleanPrefix(redis, p);
    redis.disconnect();
  });

  async function guest(cpuXml?: string): Promise<LabGuest> {
    const g = await defineGuest({
      name: guestName('risk'),
      host: A,
      memMiB: 32,
      ...(cpuXml ? { cpuXml } : {}),
    });
    guests.push(g.name);
    await heartbeatAdvances(A, g.name);
    return g;
  }

  async function migrate(g: LabGuest): Promise<MigrationStatus> {
    const prefix = uniquePrefix('lab-risky');
    prefixes.push(prefix);
    const ex = new Executor({ redis, hypervisor: hv, options: parseExecutorOptions({ prefix }) });
    executors.push(ex);
    await ex.enqueuePlan(plan(`risky-${g.name}`, g.id), parseExecutionPolicy({}));
    ex.startWorkers();
    return waitFor(
      `the job of ${g.name} to finish`,
      async () => {
        const s = (await ex.list()).find((x) => x.vmId === g.id);
        return s && (s.state === 'completed' || s.state === 'failed') ? s : undefined;
      },
      120_000,
      250,
    );
  }

  async function onlyOn(hostId: string, g: LabGuest): Promise<void> {
    expect(await hv.locateVm(g.id)).toEqual([{ hostId, state: 'running', persistent: true }]);
    await heartbeatAdvances(hostId, g.name);
  }

  it('a guest with a CPU model the destination lacks is refused before anything moves', async () => {
    const started = Date.now();
    // The source runs it anyway (check='none': TCG starts without the model's missing features); the
    // destination daemon, asked with the guest's CPU definition, answers incompatible.
    const g = await guest(
      `<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>Icelake-Server</model></cpu>`,
    );
    expect(await hv.cpuCompatible(g.id, A, B)).toBe(false);
    const done = await migrate(g);
    expect(done.result?.status, JSON.stringify(done)).toBe('skipped');
    expect(JSON.stringify(done.result)).toContain(`${B} cannot run the CPU model Icelake-Server`);
    await onlyOn(A, g);
    // no migration job ever ran on the source
    expect(await hv.completedJobStats(A, g.id)).toBeNull();
    await row(
      'destination lacks the guest CPU model',
      started,
      [g.id],
      'step skipped before migrating; guest on lab1',
    );
  }, 180_000);

  it('a host-model guest is asked of the destination with its expanded CPU, and moves when it fits', async () => {
    const started = Date.now();
    const g = await guest(`<cpu mode='host-model' check='none'/>`);
    // what the destination is asked: the model the source expanded host-model into, not "host-model"
    const client = await labClient(A);
    try {
      const xml = await client.domainXml(await client.lookupDomainByName(g.name), DomainXmlFlags.MIGRATABLE);
      expect(xml).toMatch(/<cpu mode=['"]custom['"][^>]*>[\s\S]*<model[^>]*>[^<]+<\/model>/);
    } finally {
      await client.close();
    }
    expect(await hv.cpuCompatible(g.id, A, B)).toBe(true);
    const done = await migrate(g);
    expect(done.result?.status, JSON.stringify(done)).toBe('completed');
    await onlyOn(B, g);
    await row(
      'host-model guest, CPU compared on the destination',
      started,
      [g.id],
      'job completed; guest on lab2',
    );
  }, 180_000);

  it('a VM running on two hosts: the reconciler, its alert metric and drover doctor agree', async () => {
    const started = Date.now();
    const g = await guest();
    const other = await guest(); // a guest where it belongs: must not be reported
    // The same domain (same UUID) started on the second host as well: a split brain.
    await defineTwin(B, g);
    const twin = await labClient(B);
    try {
      await twin.create(await twin.lookupDomainByName(g.name));
    } finally {
      await twin.close();
    }
    await heartbeatAdvances(B, g.name);

    const metrics = createMetrics({ processMetrics: false });
    const reconciler = new Reconciler({ hypervisor: hv, callTimeoutMs: 15_000, intervalMs: 60_000, metrics });
    const report = await reconciler.runOnce();
    expect(report.unreachableHosts).toEqual([]);
    expect(report.onSeveralHosts.map((e) => e.vmId)).toEqual([g.id]);
    expect(await metrics.registry.getSingleMetricAsString('drover_vms_on_multiple_hosts')).toMatch(
      /^drover_vms_on_multiple_hosts 1$/m,
    );

    const first = await doctor();
    const twice = first.checks.find((c) => c.name === 'VMs running on two hosts');
    expect(first.ok).toBe(false);
    expect(twice?.status).toBe('fail');
    expect(twice?.detail).toContain(`${g.name} (${g.id}) on ${A} and ${B}`);
    expect(twice?.detail).not.toContain(other.name);

    // Repaired (the copy on the second host stopped and undefined): all three agree again.
    await hv.destroyVm(B, g.id);
    await undefineOn(B, g.name);
    expect((await reconciler.runOnce()).onSeveralHosts).toEqual([]);
    expect(await metrics.registry.getSingleMetricAsString('drover_vms_on_multiple_hosts')).toMatch(
      /^drover_vms_on_multiple_hosts 0$/m,
    );
    const again = await doctor();
    expect(again.checks.find((c) => c.name === 'VMs running on two hosts')?.status).toBe('ok');
    await onlyOn(A, g);
    await onlyOn(A, other);
    await row(
      'VM running on two hosts (split brain)',
      started,
      [g.id, other.id],
      'reconciler, metric and doctor report it; after repair on lab1 only',
    );
  }, 240_000);

  /** `drover doctor --json` (a real process) over the lab, with a config of its own. */
  async function doctor(): Promise<{
    ok: boolean;
    checks: { name: string; status: string; detail: string }[];
  }> {
    const dir = mkdtempSync(join(tmpdir(), 'drover-doctor-'));
    try {
      const config = join(dir, 'drover.json');
      writeFileSync(join(dir, 'policy.yaml'), 'version: 1\n');
      writeFileSync(
        config,
        JSON.stringify({
          hypervisor: { kind: 'libvirt', hosts: labHostConfigs(50), options: { callTimeoutMs: 15_000 } },
          redis: { prefix: uniquePrefix('lab-doctor') },
          policy: { file: join(dir, 'policy.yaml'), watch: false },
          api: {
            port: 0,
            tokens: [{ name: 'doctor', role: 'admin', value: 'doctor-token-0123456789abcdef' }],
          },
        }),
      );
      const out = await run(process.execPath, [DROVER_BIN, 'doctor', '--config', config, '--json'], {
        cwd: REPO_ROOT,
        env: { ...process.env, REDIS_URL: redisUrl() },
      }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
      return JSON.parse(out.stdout) as {
        ok: boolean;
        checks: { name: string; status: string; detail: string }[];
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async function undefineOn(hostId: string, name: string): Promise<void> {
    const c = await labClient(hostId);
    try {
      await c.undefine(await c.lookupDomainByName(name));
    } finally {
      await c.close();
    }
  }

  /** The guest's own domain (same UUID) defined on `hostId` as well, not started. */
  async function defineTwin(hostId: string, g: LabGuest): Promise<void> {
    const c = await labClient(hostId);
    try {
      await c.defineXml(
        guestXml({ name: g.name, memMiB: 32 }).replace('<name>', `<uuid>${g.id}</uuid>\n  <name>`),
      );
    } finally {
      await c.close();
    }
  }

  it('a VM defined (not running) on two hosts: the reconciler, its alert metric and drover doctor agree', async () => {
    const started = Date.now();
    const g = await guest();
    const other = await guest();
    // A leftover definition on the second host (as an interrupted move or a hand copy leaves one).
    await defineTwin(B, g);
    expect(await hv.locateVm(g.id)).toEqual(
      expect.arrayContaining([
        { hostId: A, state: 'running', persistent: true },
        { hostId: B, state: 'shutoff', persistent: true },
      ]),
    );
    const metrics = createMetrics({ processMetrics: false });
    const reconciler = new Reconciler({ hypervisor: hv, callTimeoutMs: 15_000, intervalMs: 60_000, metrics });
    const report = await reconciler.runOnce();
    expect(report.onSeveralHosts).toEqual([]);
    expect(report.definedOnSeveralHosts.map((e) => e.vmId)).toEqual([g.id]);
    expect(await metrics.registry.getSingleMetricAsString('drover_vms_on_multiple_hosts')).toMatch(
      /^drover_vms_on_multiple_hosts 1$/m,
    );
    const first = await doctor();
    const defined = first.checks.find((c) => c.name === 'VMs defined on two hosts');
    expect(defined?.status).toBe('warn');
    expect(defined?.detail).toContain(`${g.name} (${g.id}) on ${A} and ${B}`);
    expect(defined?.detail).not.toContain(other.name);
    expect(first.checks.find((c) => c.name === 'VMs running on two hosts')?.status).toBe('ok');

    // Repaired (the leftover definition removed): all three agree again.
    await undefineOn(B, g.name);
    expect((await reconciler.runOnce()).definedOnSeveralHosts).toEqual([]);
    expect(await metrics.registry.getSingleMetricAsString('drover_vms_on_multiple_hosts')).toMatch(
      /^drover_vms_on_multiple_hosts 0$/m,
    );
    expect((await doctor()).checks.find((c) => c.name === 'VMs defined on two hosts')?.status).toBe('ok');
    await onlyOn(A, g);
    await onlyOn(A, other);
    await row(
      'VM defined on two hosts (leftover definition)',
      started,
      [g.id, other.id],
      'reconciler, metric and doctor report it; after repair on lab1 only',
    );
  }, 240_000);
});
