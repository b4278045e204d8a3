// Redis Cluster, really: three primaries on loopback (`redis-cli --cluster create`), each process started and
// stopped by pid. `drover serve` configured with `redis.cluster` drains a host on the simulator while the
// primary serving drover's slot (every key carries the hash-tagged prefix) is stopped for longer than a queue
// lock and started again on its files: the drain completes with every VM migrated once (drover's per-VM
// counter) and running on one host, although the job in flight lost its lock and the worker its connection.
// A prefix without a hash tag is refused at start, naming the field, and writes nothing.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/service/private-redis.js';
import { addRow, writeTable } from '../faults/fault-table.js';
import { ADMIN_TOKEN, writeFixture, type Fixture } from '../service/service-fixture.js';
import { startRedisCluster, type RedisClusterProcs } from '../support/redis-procs.js';
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

const PREFIX = '{drover-cluster}';
const VMS = drainSpec().vms.map((v) => v.id);

let cluster: RedisClusterProcs;
let fixture: Fixture;
let port: number;
const procs: ServeProcess[] = [];
const startedAt = Date.now();

const env = () => {
  const e = { ...process.env };
  delete e.REDIS_URL;
  return e;
};

async function keyCount(): Promise<number> {
  let n = 0;
  for (const node of cluster.nodes) {
    const c = new Redis({ port: node.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    try {
      n += await c.dbsize();
    } finally {
      c.disconnect();
    }
  }
  return n;
}

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  port = await freePort();
  fixture = await writeFixture(
    PREFIX,
    {
      instance: 'drover-cluster',
      redis: { prefix: PREFIX, cluster: cluster.config() },
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
  for (const p of procs) if (p.alive()) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exit));
  await cluster?.stop();
  await fixture?.cleanup();
});

describe('drover serve on Redis Cluster', () => {
  it('refuses a prefix without a hash tag at start, naming the field, and writes nothing', async () => {
    const bad = join(fixture.dir, 'bad.yaml');
    await writeFile(
      bad,
      JSON.stringify({
        hypervisor: { kind: 'sim', cluster: 'cluster.yaml' },
        redis: { prefix: 'drover', cluster: cluster.config() },
        policy: { file: 'policy.yaml', watch: false },
      }),
    );
    const before = await keyCount();
    const p = spawnServe('bad-prefix', ['--config', bad], env());
    procs.push(p);
    expect(await p.exit).not.toBe(0);
    expect(p.stderr).toContain('redis.prefix');
    expect(p.stderr).toContain('{drover}');
    expect(await keyCount()).toBe(before);
  }, 60_000);

  it('finishes a drain when the node serving its slot is restarted mid-plan', async () => {
    const p = spawnServe('drover', ['--config', join(fixture.dir, 'drover.yaml')], env());
    procs.push(p);
    const ctx = () => `${p.tail()}\n${cluster.nodes.map((n) => `${n.name}: ${n.stderr}`).join('\n')}`;
    const api = apiClient(port, ADMIN_TOKEN);
    const node = await cluster.nodeFor(PREFIX);

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
    expect([...planned].sort()).toEqual([...VMS].sort());

    await until(
      'a first migration completed',
      async () => (await counter(port, 'drover_migrations_total', { result: 'completed' })) >= 1,
      60_000,
      ctx,
    );
    expect(await counter(port, 'drover_migrations_total', { result: 'completed' })).toBeLessThan(
      planned.length,
    );
    // The node stays down longer than a job's queue lock and a stalled check (the fixture's lockDurationMs,
    // 2 s, and stalledIntervalMs, 1 s; 5 s and 2 s by default): the jobs in flight lose their locks, and the
    // queue hands them out again once the node is back while their steps may still run in drover.
    await node.stop();
    const downAt = Date.now();
    await until('the node down past a lock period', () => Date.now() - downAt > 8_000, 20_000, ctx, 250);
    await node.restart();
    const downS = Math.round((Date.now() - downAt) / 100) / 10;
    await cluster.waitOk();

    expect(await planFinalState(api, planId, 180_000, ctx)).toBe('completed');
    const twice = await notMigratedOnce(port, planned);
    expect(twice).toEqual([]);
    const snapshot = await snapshotAfter(api, Date.now(), ctx);
    const violations = placementViolations(snapshot, VMS);
    expect(snapshot.vms.filter((v) => v.host === 'kvm-01')).toEqual([]);
    const lapsed = p.logs.filter((l) => l.msg === 'job lock lapsed: the job is queued again').length;
    const replaced = p.logs.filter((l) => l.msg === 'worker replaced').length;
    addRow({
      suite: 'redis-cluster',
      fault: 'Redis Cluster node (drover slot) restarted mid-plan',
      outcome: `drain completed, ${planned.length} moves once each (node down ${downS} s, ${lapsed} job locks lapsed, ${replaced} workers replaced)`,
      vmsChecked: VMS.length,
      violations: violations.length + twice.length,
      details: [...violations, ...twice],
      durationS: Math.round((Date.now() - startedAt) / 100) / 10,
    });
    writeTable('redis-cluster');
    expect(violations).toEqual([]);
  }, 300_000);
});
