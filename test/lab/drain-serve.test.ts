// A whole drain on a three-host lab through real processes: `drover serve` runs the daemon (collector, planner,
// executor on the lab's libvirt daemons), and `drover drain lab1 --yes` asks it to empty lab1 and follows the
// plan to its end. Afterwards every guest runs on another host (exactly one, defined there only, heartbeat
// advancing) and lab1 is in maintenance. A row goes to the fault table (bench/results/faults.json).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { freePort } from '../../src/service/private-redis.js';
import {
  defineGuest,
  guestName,
  heartbeatAdvances,
  labDir,
  labHostConfigs,
  labCommand,
  labHosts,
  LAB_SCRIPT,
  REPO_ROOT,
  removeGuest,
  waitFor,
  type LabGuest,
} from './lab-client.js';
import { addRow, checkInvariant, writeTable } from '../faults/fault-table.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';

const run = promisify(execFile);
const DRAINED = 'lab1';
const GUESTS = 3;
const LINK_MIBPS = 40;
const TOKEN = 'drain-admin-token-0123456789abcd';

// As `drover lab-demo`: the CPU and memory ceilings are lifted (the lab hosts share this machine's memory);
// dirty rates are not measured here (an assumed 2 MiB/s instead).
const POLICY = `version: 1
hosts: { cpuCeilingPct: 100, memCeilingPct: 100, memReserveMiB: 0 }
limits: { perHostConcurrency: 2, perClusterConcurrency: 4 }
migration: { assumeDirtyMiBpsWhenUnknown: 2 }
`;

let dir: string;
let prefix: string;
let redis: Redis;
let hv: LibvirtHypervisor;
let serve: ChildProcess | null = null;
let url = '';
let addedHost = false;
const guests: LabGuest[] = [];

async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const body = (await res.json()) as T;
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

function serveLog(): string {
  try {
    return readFileSync(join(dir, 'serve.log'), 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '(no log)';
  }
}

beforeAll(async () => {
  // The lab's global setup brings up two hosts; this file needs a third.
  if (!labHosts().some((h) => h.id === 'lab3')) {
    await run('bash', [LAB_SCRIPT, 'up'], { env: { ...process.env, LAB_DIR: labDir(), LAB_HOSTS: '3' } });
    addedHost = true;
  }
  // Every lab host is this one machine: on a busy machine each would report it full and the planner would
  // rightly find no room. Each host reports only its own guests' CPU instead, as separate machines would.
  await labCommand('own-cpu', 'on');
  dir = mkdtempSync(join(tmpdir(), 'drover-drain-'));
  prefix = uniquePrefix('lab-drain');
  redis = connectRedis();
  hv = new LibvirtHypervisor(labHostConfigs(LINK_MIBPS), { callTimeoutMs: 15_000 });
  for (let i = 0; i < GUESTS; i++) {
    const g = await defineGuest({ name: guestName('drain'), host: DRAINED, memMiB: 32, mb: 1, rate: 64 });
    guests.push(g);
  }
  for (const g of guests) await heartbeatAdvances(DRAINED, g.name, 20_000);

  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
  const config = join(dir, 'drover.json');
  writeFileSync(
    config,
    JSON.stringify({
      instance: 'drain-lab',
      hypervisor: {
        kind: 'libvirt',
        hosts: labHostConfigs(LINK_MIBPS),
        options: { callTimeoutMs: 15_000, reconnectMinMs: 100, reconnectMaxMs: 1_000 },
      },
      redis: { prefix },
      policy: { file: join(dir, 'policy.yaml'), watch: false },
      schedules: { rebalance: { enabled: false }, plans: { intervalS: 1 }, reconcile: { intervalS: 5 } },
      automation: { level: 'partial' },
      api: { port, tokens: [{ name: 'drain', role: 'admin', value: TOKEN }] },
      metrics: { processMetrics: false },
      log: { level: 'info' },
      collector: { intervalS: 2, dirtyRate: { enabled: false }, smoothing: { cpuTauS: 2 } },
      executor: { pollIntervalMs: 500, progressIntervalMs: 500, slotRetryMs: 500 },
    }),
  );
  const fd = openSync(join(dir, 'serve.log'), 'a');
  serve = spawn(process.execPath, [join(REPO_ROOT, 'bin/drover.js'), 'serve', '--config', config], {
    cwd: REPO_ROOT,
    env: { ...process.env, REDIS_URL: redisUrl() },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  await waitFor(
    'drover serve to answer',
    async () => ((await fetch(`${url}/healthz`)).ok ? true : undefined),
    60_000,
    250,
  );
}, 240_000);

afterAll(async () => {
  if (serve && serve.exitCode === null && serve.signalCode === null) {
    const exited = new Promise((r) => serve?.once('exit', r));
    serve.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (serve.exitCode === null && serve.signalCode === null) serve.kill('SIGKILL');
  }
  for (const g of guests) await removeGuest(g.name).catch(() => undefined);
  await hv.close();
  await cleanPrefix(redis, prefix);
  redis.disconnect();
  await labCommand('own-cpu', 'off');
  if (addedHost) await labCommand('remove', 'lab3');
  rmSync(dir, { recursive: true, force: true });
  const rows = writeTable('lab-drain');
  expect(rows.reduce((n, r) => n + r.violations, 0)).toBe(0);
}, 120_000);

describe('drain of a lab host through drover serve and drover drain', () => {
  it('drover drain lab1 --yes empties lab1 onto the other hosts and leaves it in maintenance', async () => {
    const started = Date.now();
    const ids = guests.map((g) => g.id);
    // The daemon plans from its snapshot: wait for one with every guest on lab1 and every host measured.
    await waitFor(
      'a snapshot with every guest on lab1',
      async () => {
        const snap = await api<Snapshot>('/v1/snapshots/latest');
        const ours = snap.vms.filter((v) => ids.includes(v.id) && v.host === DRAINED);
        return ours.length === GUESTS && snap.hosts.length === 3 && snap.hosts.every((h) => h.cpuPct !== null)
          ? true
          : undefined;
      },
      60_000,
      500,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${serveLog()}`);
    });

    const drain = await run(
      process.execPath,
      [join(REPO_ROOT, 'bin/drover.js'), 'drain', DRAINED, '--yes', '--json', '--url', url, '--token', TOKEN],
      { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1' }, timeout: 240_000, maxBuffer: 8 << 20 },
    ).catch((err: { code?: number; stdout?: string; stderr?: string }) => {
      throw new Error(`drover drain exited ${err.code}: ${err.stdout}\n${err.stderr}\n${serveLog()}`);
    });
    const out = JSON.parse(drain.stdout) as {
      plan: { status: string; plan: { steps: { vm: string; to: string }[] } };
      migrations: { vm: string; state: string }[];
    };
    expect(out.plan.status).toBe('completed');
    expect(out.plan.plan.steps.map((s) => s.vm).sort()).toEqual([...ids].sort());
    expect(out.migrations.map((m) => m.state)).toEqual(ids.map(() => 'completed'));

    // Every guest on another host, exactly one; lab1 in maintenance.
    const violations = await checkInvariant(hv, ids);
    const where: string[] = [];
    for (const g of guests) {
      const on = (await hv.locateVm(g.id)).find((p) => p.state === 'running');
      where.push(on?.hostId ?? 'nowhere');
      if (!on) continue;
      await heartbeatAdvances(on.hostId, g.name, 15_000).catch((err: unknown) =>
        violations.push(`${g.name}: ${String(err)}`),
      );
    }
    expect(where.filter((h) => h === DRAINED || h === 'nowhere')).toEqual([]);
    const host = await api<{ id: string; state: string }>(`/v1/hosts/${DRAINED}`);
    expect(host.state).toBe('maintenance');
    addRow({
      suite: 'lab-drain',
      fault: 'drain of lab1 (3 hosts) via drover serve + drover drain --yes',
      outcome: `plan completed; guests on ${where.join(', ')}; lab1 ${host.state}`,
      vmsChecked: ids.length,
      violations: violations.length,
      details: violations.map((v) => `  drain: ${v}`),
      durationS: Math.round((Date.now() - started) / 100) / 10,
    });
    expect(violations).toEqual([]);
  }, 300_000);
});
