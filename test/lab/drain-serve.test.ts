// A whole drain on a three-host lab through real processes: `drover serve` runs the daemon (collector, planner,
// executor on the lab's libvirt daemons), and `drover drain lab1 --yes` asks it to empty lab1 and follows the
// plan to its end. Afterwards every guest runs on another host (exactly one, defined there only, heartbeat
// advancing) and lab1 is in maintenance. One migration at a time may leave a host, and the guests write little,
// so each migration about to end hands its slots over (src/executor/hand-over.ts): the next one sets up beside
// it on libvirt, held to a trickle, and takes the link once it has gone. A row goes to the fault table
// (bench/results/faults.json).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Snapshot } from '../../src/domain/snapshot.js';
import { EXECUTOR_LOG } from '../../src/executor/executor.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
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
import { startServe, type ServeProcess } from './lab-serve.js';
import { addRow, checkInvariant, writeTable } from '../faults/fault-table.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';
import { DROVER_BIN } from '../support/serve-process.js';

const run = promisify(execFile);
const DRAINED = 'lab1';
const GUESTS = 3;
const LINK_MIBPS = 40;
const TOKEN = 'drain-admin-token-0123456789abcd';
/**
 * The lab policy with one migration per host at a time, and guests assumed to write 0.5 MiB/s (the lab's
 * dirty-rate probe is off here): under 2 % of the link, so a step may take over the slots of one about to end.
 */
const DRAIN_POLICY = `version: 1
hosts: { cpuCeilingPct: 100, memCeilingPct: 100, memReserveMiB: 0 }
limits: { perHostConcurrency: 1, perClusterConcurrency: 4 }
migration: { assumeDirtyMiBpsWhenUnknown: 0.5 }
`;

let dir: string;
let prefix: string;
let redis: Redis;
let hv: LibvirtHypervisor;
let serve: ServeProcess | null = null;
let addedHost = false;
const guests: LabGuest[] = [];

const api = <T>(path: string): Promise<T> => {
  if (!serve) throw new Error('drover serve is not running');
  return serve.api<T>('GET', path);
};
const serveLog = () => serve?.logTail() ?? '(no log)';

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
  // The daemon starts while the guests boot (it samples them as they appear).
  const starting = startServe({
    dir,
    name: 'drain-lab',
    redisPrefix: prefix,
    token: TOKEN,
    linkMiBps: LINK_MIBPS,
    policy: DRAIN_POLICY,
    config: { executor: { pollIntervalMs: 500, progressIntervalMs: 500, slotRetryMs: 500 } },
  });
  // kept as soon as it runs, so that afterAll stops it whatever fails meanwhile
  starting.then((p) => (serve = p)).catch(() => undefined);
  for (let i = 0; i < GUESTS; i++) {
    const g = await defineGuest({ name: guestName('drain'), host: DRAINED, memMiB: 32, mb: 1, rate: 64 });
    guests.push(g);
  }
  for (const g of guests) await heartbeatAdvances(DRAINED, g.name, 20_000);
  serve = await starting;
}, 240_000);

afterAll(async () => {
  await serve?.stop();
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

    // Meanwhile, libvirt's own view: how many migration jobs run out of lab1 at once (polled).
    let watching = true;
    let mostActive = 0;
    let overlapSeenMs = 0;
    const watcher = (async () => {
      while (watching) {
        const t0 = Date.now();
        const jobs = await Promise.all(ids.map((id) => hv.jobStats(DRAINED, id).catch(() => null)));
        const active = jobs.filter((j) => j?.type === 'active').length;
        mostActive = Math.max(mostActive, active);
        await new Promise((r) => setTimeout(r, 50));
        if (active >= 2) overlapSeenMs += Date.now() - t0;
      }
    })();
    const drain = await run(
      process.execPath,
      [DROVER_BIN, 'drain', DRAINED, '--yes', '--json', '--url', serve?.url ?? '', '--token', TOKEN],
      { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1' }, timeout: 240_000, maxBuffer: 8 << 20 },
    )
      .catch((err: { code?: number; stdout?: string; stderr?: string }) => {
        throw new Error(`drover drain exited ${err.code}: ${err.stdout}\n${err.stderr}\n${serveLog()}`);
      })
      .finally(() => (watching = false));
    await watcher;
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

    // Hand-over: a migration took the slots of one about to end, so, with one migration per host allowed,
    // two ran out of lab1 at once, never more (the held one is the only one beyond the limit).
    const log = serve ? readFileSync(serve.logPath, 'utf8') : '';
    const lines = log.split('\n');
    const tookOver = lines.filter((l) => l.includes(EXECUTOR_LOG.tookOver)).length;
    const letGo = lines.filter((l) => l.includes(EXECUTOR_LOG.letGo)).length;
    expect(tookOver, serve?.logTail(80)).toBeGreaterThanOrEqual(1);
    // Whether a held one is let go before it ends is not asserted: a small guest (mostly zero pages) may send
    // all it has at the held 1 MiB/s and complete before the one it follows has gone. Every migration
    // completed (above).
    expect(mostActive).toBeLessThanOrEqual(2);
    addRow({
      suite: 'lab-drain',
      fault: 'drain of lab1 (3 hosts) via drover serve + drover drain --yes',
      outcome:
        `plan completed; guests on ${where.join(', ')}; lab1 ${host.state}; ` +
        `${tookOver} hand-over(s) (${letGo} let go before ending), libvirt saw up to ${mostActive} at once ` +
        `(~${(overlapSeenMs / 1000).toFixed(1)} s)`,
      vmsChecked: ids.length,
      violations: violations.length,
      details: violations.map((v) => `  drain: ${v}`),
      durationS: Math.round((Date.now() - started) / 100) / 10,
    });
    expect(violations).toEqual([]);
  }, 300_000);
});
