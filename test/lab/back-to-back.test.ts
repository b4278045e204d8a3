// Thirty migrations of small idle guests through the executor on the libvirt lab, one right after the
// other: every one ends `completed` on its first attempt with its real figures, never as an error followed
// by a skip. Small idle guests finish fast, which is when an answer can race the end of the job.
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Plan, Step } from '../../src/domain/plan.js';
import { Executor, type MigrationStatus } from '../../src/executor/executor.js';
import { parseExecutionPolicy, parseExecutorOptions } from '../../src/executor/executor-options.js';
import { HistoryStore } from '../../src/executor/history-store.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import {
  defineGuest,
  guestName,
  heartbeatAdvances,
  labHostConfigs,
  removeGuest,
  waitFor,
} from './lab-client.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const A = 'lab1';
const B = 'lab2';
const ROUNDS = 15; // two guests, each moved once per round: 30 migrations

function step(vm: string, from: string, to: string): Step {
  return {
    vm,
    from,
    to,
    kind: 'live',
    why: 'lab test',
    predicted: { converges: true, durationS: 5, downtimeMs: 50, transferMiB: 32 },
    downtimeBudgetMs: 300,
  };
}

describe('Back-to-back migrations on the libvirt lab', () => {
  let hv: LibvirtHypervisor;
  let redis: Redis;
  let prefix: string;
  const guests: string[] = [];

  beforeAll(async () => {
    hv = new LibvirtHypervisor(labHostConfigs(100), { callTimeoutMs: 15_000 });
    hv.subscribe(() => undefined);
    await hv.eventsReady();
  });
  afterAll(async () => {
    await hv.close();
  });
  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('lab-b2b');
  });
  afterEach(async () => {
    for (const name of guests.splice(0)) await removeGuest(name);
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  it('thirty migrations of small idle guests: each completed on its first attempt, with its figures', async () => {
    const g1 = await defineGuest({ name: guestName('b2b'), host: A, memMiB: 64 });
    guests.push(g1.name);
    const g2 = await defineGuest({ name: guestName('b2b'), host: B, memMiB: 64 });
    guests.push(g2.name);
    await heartbeatAdvances(A, g1.name);
    await heartbeatAdvances(B, g2.name);
    const history = new HistoryStore(
      redis,
      prefix,
      { maxRecords: 100, quarantineBaseS: 60, quarantineMaxS: 600 },
      hv.clock,
    );
    let migrateCalls = 0;
    const ex = new Executor({
      redis,
      hypervisor: hv,
      options: parseExecutorOptions({ prefix }),
      history,
      onMigrateCall: () => migrateCalls++,
    });
    ex.startWorkers();
    const where = new Map([
      [g1.id, A],
      [g2.id, B],
    ]);
    const results: MigrationStatus[] = [];
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const steps = [g1.id, g2.id].map((id) => {
          const from = where.get(id) ?? A;
          return step(id, from, from === A ? B : A);
        });
        const plan: Plan = {
          id: `b2b-${round}`,
          reason: 'rebalance',
          createdAt: new Date().toISOString(),
          steps,
          skipped: [],
          before: { cpuSpreadPct: 0, memSpreadPct: 0 },
          after: { cpuSpreadPct: 0, memSpreadPct: 0 },
        };
        await ex.enqueuePlan(plan, parseExecutionPolicy({}));
        for (const s of steps) {
          const done = await waitFor(
            `round ${round}: the job of ${s.vm} to finish`,
            async () => {
              const st = (await ex.list()).find((x) => x.vmId === s.vm && x.planId === plan.id);
              return st && (st.state === 'completed' || st.state === 'failed') ? st : undefined;
            },
            120_000,
            100,
          );
          results.push(done);
          const report = done.result && 'report' in done.result ? done.result.report : null;
          // The first attempt decided it: no error, no retry, no adoption, the stats of the real job.
          expect(done.result?.status, `round ${round}: ${JSON.stringify(done)}`).toBe('completed');
          expect(done.attemptsMade, `round ${round}: ${JSON.stringify(done)}`).toBeLessThanOrEqual(1);
          expect(report?.adopted).toBe(false);
          expect(report?.problems).toEqual([]);
          expect(report?.transferMiB).toBeGreaterThan(0);
          expect(report?.downtimeMs).not.toBeNull();
          where.set(s.vm, s.to);
        }
      }
    } finally {
      await ex.close();
    }
    expect(results).toHaveLength(2 * ROUNDS);
    expect(migrateCalls).toBe(2 * ROUNDS);
    for (const [id, host] of where) {
      const h = await history.get(id);
      expect(h.records).toHaveLength(ROUNDS);
      expect(h.records.every((r) => r.result === 'completed')).toBe(true);
      expect(await hv.locateVm(id)).toEqual([{ hostId: host, state: 'running', persistent: true }]);
    }
    await heartbeatAdvances(where.get(g1.id) ?? A, g1.name);
    await heartbeatAdvances(where.get(g2.id) ?? B, g2.name);
  }, 900_000);
});
