// Redis Sentinel, really: a primary, a replica and three sentinels on loopback; `drover serve` configured with
// `redis.sentinel` drains a host on the simulator; the primary is SIGKILLed mid-plan; the sentinels promote
// the replica; drover reconnects through them and the drain completes. Asserted: every planned VM migrated
// exactly once (drover's own per-VM counter, in the process that holds the simulator), the plan completed,
// every VM runs on one host, and the leader lease stayed single: the lease only ever names this drover, and
// the fencing tokens it was elected with never go back.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/service/private-redis.js';
import { addRow, writeTable } from '../faults/fault-table.js';
import { ADMIN_TOKEN, writeFixture, type Fixture } from '../service/service-fixture.js';
import { startSentinelSet, type SentinelSet } from '../support/redis-procs.js';
import {
  apiClient,
  counter,
  drainSpec,
  notMigratedOnce,
  placementViolations,
  planFinalState,
  snapshotAfter,
} from '../support/serve-api.js';
import { spawnServe, until, type ServeProcess } from '../support/serve-process.js';

const PREFIX = '{drover-sentinel}';
const INSTANCE = 'drover-sentinel';

const VMS = drainSpec().vms.map((v) => v.id);

let set: SentinelSet;
let fixture: Fixture;
let port: number;
let drover: ServeProcess | undefined;
const startedAt = Date.now();

beforeAll(async () => {
  set = await startSentinelSet();
  port = await freePort();
  fixture = await writeFixture(
    PREFIX,
    {
      instance: INSTANCE,
      redis: { prefix: PREFIX, sentinel: set.config() },
      api: { port, tokens: [{ name: 'ops', role: 'admin', value: ADMIN_TOKEN }] },
      metrics: { processMetrics: false, perVmSeries: true },
      log: { level: 'info' },
    },
    drainSpec(),
  );
  // Plan the VMs before their dirty rate is measured (the collector's first measurement takes a while).
  await writeFile(join(fixture.dir, 'policy.yaml'), 'migration: { assumeDirtyMiBpsWhenUnknown: 10 }\n');
});

afterAll(async () => {
  if (drover?.alive()) drover.child.kill('SIGKILL');
  await drover?.exit;
  await set?.stop();
  await fixture?.cleanup();
});

describe('drover serve on Redis Sentinel', () => {
  it('finishes a drain when the primary is killed mid-plan and a sentinel promotes the replica', async () => {
    const env = { ...process.env };
    delete env.REDIS_URL;
    const p = spawnServe('drover', ['--config', join(fixture.dir, 'drover.yaml')], env);
    drover = p;
    const ctx = () => `${p.tail()}\nsentinel-1: ${set.sentinels[0]?.stderr ?? ''}`;
    const api = apiClient(port, ADMIN_TOKEN);

    // The lease as the current master holds it, sampled all along (through the sentinels, as drover sees it).
    const watcher = new Redis({
      sentinels: set.config().sentinels,
      name: set.masterName,
      maxRetriesPerRequest: null,
    });
    watcher.on('error', () => undefined);
    const holders = new Set<string>();
    const fences: number[] = [];
    let watching = true;
    const watch = (async () => {
      while (watching) {
        try {
          const [value, fence] = await Promise.all([
            watcher.get(`${PREFIX}:leader`),
            watcher.get(`${PREFIX}:leader:fence`),
          ]);
          if (value !== null) holders.add(value.slice(value.indexOf(':') + 1));
          if (fence !== null) fences.push(Number(fence));
        } catch {
          // failing over; the next round asks the new master
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    try {
      const drain = await until(
        'the drain of kvm-01 accepted',
        async () => {
          if (!p.alive()) throw new Error('drover exited');
          const res = await api('POST', '/v1/hosts/kvm-01/drain').catch(() => null);
          return res && res.status < 300 ? res : null;
        },
        120_000,
        ctx,
        300,
      );
      const record = drain.body.record as { plan: { id: string; steps: { vm: string }[] } };
      const planId = record.plan.id;
      const planned = record.plan.steps.map((s) => s.vm);
      expect(planned.sort()).toEqual([...VMS].sort());

      await until(
        'a first migration completed',
        async () => (await counter(port, 'drover_migrations_total', { result: 'completed' })) >= 1,
        60_000,
        ctx,
      );
      const before = await counter(port, 'drover_migrations_total', { result: 'completed' });
      expect(before).toBeLessThan(planned.length);

      const oldPrimary = set.primary.port;
      await set.primary.kill();
      const promoted = await until(
        'a sentinel promotes the replica',
        async () => ((await set.masterPort()) === set.replica.port ? true : null),
        60_000,
        ctx,
        200,
      );
      expect(promoted).toBe(true);
      expect(await set.masterPort()).not.toBe(oldPrimary);

      expect(await planFinalState(api, planId, 180_000, ctx)).toBe('completed');
      const twice = await notMigratedOnce(port, planned);
      expect(twice).toEqual([]);
      expect(await counter(port, 'drover_migrations_total', { result: 'completed' })).toBe(planned.length);
      const snapshot = await snapshotAfter(api, Date.now(), ctx);
      const violations = placementViolations(snapshot, VMS);
      expect(snapshot.vms.filter((v) => v.host === 'kvm-01')).toEqual([]);

      // One drover: the lease never named anyone else, and every election after the failover took a token
      // larger than the ones before (the counter moved with the data to the replica).
      expect([...holders]).toEqual([INSTANCE]);
      const elected = p.logs.filter((l) => l.msg === 'elected leader').map((l) => Number(l.token));
      expect(elected.length).toBeGreaterThanOrEqual(1);
      for (let i = 1; i < elected.length; i++) expect(elected[i]).toBeGreaterThan(elected[i - 1]!);
      for (let i = 1; i < fences.length; i++) expect(fences[i]).toBeGreaterThanOrEqual(fences[i - 1]!);

      addRow({
        suite: 'redis-sentinel',
        fault: 'Sentinel failover mid-plan (primary SIGKILLed)',
        outcome: `replica promoted, drain completed, ${planned.length} moves once each, ${elected.length} election(s)`,
        vmsChecked: VMS.length,
        violations: violations.length + twice.length,
        details: [...violations, ...twice],
        durationS: Math.round((Date.now() - startedAt) / 100) / 10,
      });
      writeTable('redis-sentinel');
      expect(violations).toEqual([]);
    } finally {
      watching = false;
      await watch;
      watcher.disconnect();
    }
  }, 300_000);
});
