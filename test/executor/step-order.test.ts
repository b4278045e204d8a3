// Steps that depend on others (`after`): on a real Redis (BullMQ) with the simulator on a sped-up clock, a
// step whose destination has room only once another step has moved a VM away starts after that step has
// completed, and is skipped when that step does not complete.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ScaledClock } from '../../src/clock/clocks.js';
import { SimHypervisor, type SimVmSpec } from '../../src/hypervisor/sim/index.js';
import type { HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import type { Plan, Step } from '../../src/domain/plan.js';
import { Executor, type MigrationStatus } from '../../src/executor/executor.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';
import { policy, step, testOptions } from './support/sim-cluster.js';

const GiB = 1024;

function vm(id: string, hostId: string, memMiB: number): SimVmSpec {
  return {
    id,
    name: id,
    host: hostId,
    vcpus: 1,
    memMiB,
    cpuModel: 'Cascadelake-Server',
    workload: { kind: 'constant', cpuPct: 10, dirtyMiBps: 2, wwsMiB: 64 },
  };
}

function plan(id: string, steps: Step[]): Plan {
  return {
    id,
    reason: 'drain',
    createdAt: new Date().toISOString(),
    steps,
    skipped: [],
    before: { cpuSpreadPct: 0, memSpreadPct: 0 },
    after: { cpuSpreadPct: 0, memSpreadPct: 0 },
  };
}

describe('Executor: steps that run after others', () => {
  let redis: Redis;
  let prefix: string;
  let ex: Executor;
  /** `start:<vm>` when a migrated VM starts on its destination, `done:<vm>` when its job completes. */
  const events: string[] = [];
  // 64 GiB hosts. h2 is full but for 4 GiB: `mover` (8 GiB) must leave it before `incoming` (8 GiB) fits.
  // h4 is full: a step to it is skipped by its pre-checks.
  const host = (id: string) => ({
    id,
    cpus: 32,
    memMiB: 64 * GiB,
    bandwidthMiBps: 1000,
    cpuModel: 'Cascadelake-Server',
  });
  const hv = new SimHypervisor(
    {
      seed: 5,
      hosts: [host('h1'), host('h2'), host('h3'), host('h4')],
      vms: [
        vm('incoming', 'h1', 8 * GiB),
        vm('incoming-2', 'h1', 8 * GiB),
        vm('fill-2', 'h2', 52 * GiB),
        vm('mover', 'h2', 8 * GiB),
        vm('stuck', 'h2', 2 * GiB),
        vm('fill-4', 'h4', 63 * GiB),
      ],
    },
    { clock: new ScaledClock(20) },
  );
  hv.subscribe((e: HypervisorEvent) => {
    if (e.kind === 'lifecycle' && e.event === 'started' && e.detail === 1) events.push(`start:${e.vmId}`);
    if (e.kind === 'job-completed') events.push(`done:${e.vmId}`);
  });

  beforeAll(() => {
    redis = connectRedis();
    prefix = uniquePrefix('step-order');
    ex = new Executor({
      redis,
      hypervisor: hv,
      options: testOptions({ prefix, slotRetryMs: 50, progressIntervalMs: 50, callTimeoutMs: 20_000 }),
    });
    ex.startWorkers();
  });
  afterAll(async () => {
    await ex.close();
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  async function settled(vmIds: string[]): Promise<MigrationStatus[]> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const mine = (await ex.list()).filter((s) => vmIds.includes(s.vmId));
      if (mine.length === vmIds.length && mine.every((s) => s.state === 'completed' || s.state === 'failed'))
        return vmIds.map((id) => mine.find((s) => s.vmId === id) as MigrationStatus);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${vmIds.join(', ')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it('starts a step only once the step making room on its destination has completed', async () => {
    // The dependent step is listed first: order in the plan is no guarantee, `after` is.
    const steps = [
      step('incoming', { from: 'h1', to: 'h2', after: ['mover'] }),
      step('mover', { from: 'h2', to: 'h3' }),
    ];
    await ex.enqueuePlan(plan('p-room', steps), policy());
    const [incoming, mover] = await settled(['incoming', 'mover']);
    expect(mover?.result?.status, JSON.stringify(mover?.result)).toBe('completed');
    expect(incoming?.result?.status, JSON.stringify(incoming?.result)).toBe('completed');
    // The dependent migration started after the room-making one had completed.
    expect(events.indexOf('done:mover')).toBeGreaterThan(-1);
    expect(events.indexOf('start:incoming')).toBeGreaterThan(events.indexOf('done:mover'));
    expect((await hv.locateVm('incoming')).map((p) => p.hostId)).toEqual(['h2']);
    expect((await hv.locateVm('mover')).map((p) => p.hostId)).toEqual(['h3']);
  });

  it('skips a step when the step it runs after does not complete', async () => {
    // `stuck` cannot go to the full h4 (its pre-checks skip it), so `incoming-2` must not start.
    const steps = [
      step('incoming-2', { from: 'h1', to: 'h2', after: ['stuck'] }),
      step('stuck', { from: 'h2', to: 'h4' }),
    ];
    await ex.enqueuePlan(plan('p-skip', steps), policy());
    const [dependent, first] = await settled(['incoming-2', 'stuck']);
    expect(first?.result?.status).toBe('skipped');
    expect(dependent?.result).toMatchObject({ status: 'skipped' });
    expect(dependent?.result?.status === 'skipped' && dependent.result.reason).toMatch(
      /runs after \(stuck to h4\) ended skipped/,
    );
    expect(events).not.toContain('start:incoming-2');
    expect((await hv.locateVm('incoming-2')).map((p) => p.hostId)).toEqual(['h1']);
  });
});
