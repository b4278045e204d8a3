// WorkerSupervisor with real BullMQ workers on the test Redis: a worker that closes is replaced, and a worker
// that runs but takes none of the ready jobs is replaced (here it listens on another queue, the way a worker
// whose blocking connection stayed on a dead socket runs without fetching); the jobs then run.
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WorkerSupervisor } from '../../src/executor/worker-supervisor.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

async function until<T>(
  what: string,
  fn: () => T | null | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('WorkerSupervisor', () => {
  let redis: Redis;
  let prefix: string;
  let queue: Queue;
  let supervisor: WorkerSupervisor<{ n: number }, number> | null = null;

  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('supervisor');
    queue = new Queue('jobs', { connection: redis, prefix });
  });
  afterEach(async () => {
    await supervisor?.close();
    supervisor = null;
    await queue.close();
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  /** A supervisor whose n-th worker (from 0) listens on `queueOf(n)`; `done` collects the jobs processed. */
  function supervise(
    queueOf: (n: number) => string,
    done: number[],
  ): { made: Worker<{ n: number }, number>[] } {
    const made: Worker<{ n: number }, number>[] = [];
    supervisor = new WorkerSupervisor<{ n: number }, number>({
      create: () => {
        const w = new Worker<{ n: number }, number>(
          queueOf(made.length),
          (job) => {
            done.push(job.data.n);
            return Promise.resolve(job.data.n);
          },
          { connection: redis, prefix, concurrency: 2, drainDelay: 1 },
        );
        made.push(w);
        return w;
      },
      readyJobs: async () => {
        const c = await queue.getJobCounts('wait', 'prioritized');
        return (c.wait ?? 0) + (c.prioritized ?? 0);
      },
      running: () => 0,
      concurrency: 2,
      checkEveryMs: 200,
      stuckAfterMs: 1_500,
      closeTimeoutMs: 5_000,
      log: pino({ level: 'silent' }),
    });
    supervisor.start(1);
    return { made };
  }

  it('replaces a worker that closed, and the replacement takes the jobs', async () => {
    const done: number[] = [];
    const { made } = supervise(() => 'jobs', done);
    await made[0]!.close();
    await until('a second worker', () => made.length === 2);
    await queue.add('j', { n: 1 });
    await until('the job done', () => done.includes(1));
    expect(supervisor!.replaced).toBe(1);
  });

  it('replaces a running worker that takes none of the ready jobs', async () => {
    const done: number[] = [];
    // The first worker runs on another queue: for this queue it never fetches.
    const { made } = supervise((n) => (n === 0 ? 'elsewhere' : 'jobs'), done);
    await queue.add('j', { n: 1 });
    await queue.add('j', { n: 2 });
    await until('both jobs done', () => done.length === 2);
    expect(made.length).toBe(2);
    expect(supervisor!.replaced).toBe(1);
    expect(done.sort()).toEqual([1, 2]);
  });
});
