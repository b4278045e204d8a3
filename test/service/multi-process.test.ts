// Three `drover serve` processes on one Redis: exactly one leads; SIGKILL the leader and another takes over
// within one lease period of the last renewal; SIGTERM hands the lease over at once and exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Redis } from 'ioredis';
import { freePort } from '../../src/service/private-redis.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, smallCluster, writeFixture, type Fixture } from './service-fixture.js';
import { DROVER_BIN } from '../support/serve-process.js';

const LEASE_MS = 2000;

interface Proc {
  name: string;
  child: ChildProcess;
  port: number;
  exit: Promise<number | null>;
  stderr: string;
}

let fixture: Fixture;
let redis: Redis;
const procs: Proc[] = [];

async function start(name: string): Promise<Proc> {
  const port = await freePort();
  const config = {
    instance: name,
    hypervisor: { kind: 'sim', cluster: 'cluster.yaml' },
    redis: { prefix: fixture.prefix },
    policy: { file: 'policy.yaml', watch: false },
    schedules: { rebalance: { enabled: false }, plans: { intervalS: 1 } },
    leader: { leaseMs: LEASE_MS },
    api: { port, tokens: [{ name: 'ops', role: 'admin', value: ADMIN_TOKEN }] },
    metrics: { processMetrics: false },
    log: { level: 'warn' },
    collector: { intervalS: 1 },
    shutdown: { graceMs: 15_000 },
  };
  const file = join(fixture.dir, `${name}.yaml`);
  await writeFile(file, stringify(config));
  const child = spawn(process.execPath, [DROVER_BIN, 'serve', '--config', file], {
    env: { ...process.env, REDIS_URL: redisUrl() },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const proc: Proc = {
    name,
    child,
    port,
    stderr: '',
    exit: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
  child.stderr?.on('data', (c: Buffer) => {
    proc.stderr += c.toString();
  });
  procs.push(proc);
  return proc;
}

async function leaderName(): Promise<string | null> {
  const value = await redis.get(`${fixture.prefix}:leader`);
  return value === null ? null : value.slice(value.indexOf(':') + 1);
}

async function leaderGauge(p: Proc): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${p.port}/metrics`)).text();
    const m = /^drover_leader (\d)$/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function until<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
  stepMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not within ${timeoutMs} ms\n${procs.map((p) => `${p.name}: ${p.stderr}`).join('\n')}`,
      );
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

beforeAll(async () => {
  fixture = await writeFixture(uniquePrefix('multi'), {}, smallCluster());
  redis = connectRedis();
  await Promise.all(['drover-a', 'drover-b', 'drover-c'].map((n) => start(n)));
  // Every process serves its API once started.
  for (const p of procs)
    await until(`${p.name} up`, async () => (await leaderGauge(p)) !== null, 120_000, 200);
}, 150_000);

afterAll(async () => {
  for (const p of procs)
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exit));
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
});

describe('three drover processes on one Redis', () => {
  it('has exactly one leader, by the lease and by the metric', async () => {
    const first = await until('a leader', leaderName, 10_000);
    await until(
      'leader gauge',
      async () => (await leaderGauge(procs.find((p) => p.name === first)!)) === 1,
      10_000,
      200,
    );
    const gauges = await Promise.all(procs.map(leaderGauge));
    expect(gauges.filter((g) => g === 1)).toHaveLength(1);
    expect(gauges.filter((g) => g === 0)).toHaveLength(2);
  }, 30_000);

  it('replaces a SIGKILLed leader within one lease period', async () => {
    const old = (await leaderName())!;
    const victim = procs.find((p) => p.name === old)!;
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exit;
    const next = await until(
      'new leader',
      async () => {
        const name = await leaderName();
        return name !== null && name !== old ? name : null;
      },
      3 * LEASE_MS,
    );
    const takeoverMs = Date.now() - killedAt;
    expect(next).not.toBe(old);
    // The lease was renewed at most a quarter lease before the kill, so expiry comes within one lease.
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_MS + 500);
    const survivor = procs.find((p) => p.name === next)!;
    await until('gauge of the new leader', async () => (await leaderGauge(survivor)) === 1, 5000, 100);
  }, 30_000);

  it('hands the lease over at once on SIGTERM and exits 0', async () => {
    const current = (await leaderName())!;
    const leaving = procs.find((p) => p.name === current)!;
    const at = Date.now();
    leaving.child.kill('SIGTERM');
    const next = await until(
      'next leader',
      async () => {
        const name = await leaderName();
        return name !== null && name !== current ? name : null;
      },
      3 * LEASE_MS,
    );
    expect(Date.now() - at).toBeLessThan(LEASE_MS);
    expect(await leaving.exit).toBe(0);
    expect(
      procs.filter((p) => p.child.exitCode === null && p.child.signalCode === null).map((p) => p.name),
    ).toEqual([next]);
  }, 30_000);
});
