// Keeps the executor's BullMQ workers taking jobs through Redis outages. When the Redis node serving the
// queue restarts, a worker can end up closed, or running but no longer fetching (its blocking connection left
// waiting on the old socket): jobs then wait with nobody to take them, and a plan never finishes. Every few
// seconds the supervisor replaces a worker that stopped, or one that has room for more jobs while jobs have
// been ready for longer than a fetching worker lets them wait. The old worker is closed gracefully in the
// background: the jobs it still runs finish under their own locks, and a job whose lock lapsed meanwhile comes
// back to the executor, which hands it the running step's outcome rather than running the step twice.
import type { Worker } from 'bullmq';
import type { Logger } from 'pino';
import { SystemClock } from '../clock/clocks.js';
import { withDeadline } from '../clock/deadline.js';
import { errorMessage } from '../domain/errors.js';

export interface WorkerSupervisorOptions<D, R> {
  /** Makes a worker (already running). */
  create: () => Worker<D, R>;
  /** Jobs ready to be taken now (BullMQ wait and prioritized). */
  readyJobs: () => Promise<number>;
  /** Jobs this process runs now, and the most one worker runs at once. */
  running: () => number;
  concurrency: number;
  /** How often to look (ms). */
  checkEveryMs: number;
  /** A worker with room that took no job while jobs were ready this long is replaced (ms). */
  stuckAfterMs: number;
  /** How long close() waits for a replaced worker to finish closing (ms). */
  closeTimeoutMs: number;
  log: Logger;
}

interface Supervised<D, R> {
  worker: Worker<D, R>;
  /** When this worker last took a job (or was made), epoch ms. */
  lastTakenMs: number;
}

export class WorkerSupervisor<D, R> {
  private readonly opts: WorkerSupervisorOptions<D, R>;
  private readonly clock = new SystemClock();
  private readonly current: Supervised<D, R>[] = [];
  private readonly retiring = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private checking = false;
  private closed = false;
  /** Since when jobs have been ready without a break (epoch ms), null when none are. */
  private readySinceMs: number | null = null;
  /** Workers replaced so far (for tests and logs). */
  replaced = 0;

  constructor(opts: WorkerSupervisorOptions<D, R>) {
    this.opts = opts;
  }

  start(count: number): void {
    for (let i = 0; i < count; i++) this.current.push(this.make());
    this.timer ??= setInterval(() => {
      if (this.checking || this.closed) return;
      this.checking = true;
      this.check()
        .catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'worker check failed'))
        .finally(() => {
          this.checking = false;
        });
    }, this.opts.checkEveryMs);
  }

  private make(): Supervised<D, R> {
    const entry: Supervised<D, R> = { worker: this.opts.create(), lastTakenMs: Date.now() };
    entry.worker.on('active', () => {
      entry.lastTakenMs = Date.now();
    });
    entry.worker.on('stalled', (jobId: string) =>
      this.opts.log.warn({ jobId }, 'job lock lapsed: the job is queued again'),
    );
    entry.worker.on('closed', () => {
      if (!this.closed && this.current.includes(entry)) this.replace(entry, 'the worker closed');
    });
    return entry;
  }

  /** One look at every worker; replaces those that stopped or stopped fetching. */
  async check(): Promise<void> {
    const ready = await this.opts.readyJobs();
    const now = Date.now();
    if (ready === 0) this.readySinceMs = null;
    else this.readySinceMs ??= now;
    for (const entry of [...this.current]) {
      if (this.closed) return;
      if (!entry.worker.isRunning() && !entry.worker.closing) {
        this.replace(entry, 'the worker stopped running');
        continue;
      }
      const since = Math.max(this.readySinceMs ?? now, entry.lastTakenMs);
      const hasRoom = this.opts.running() < this.opts.concurrency * this.current.length;
      if (this.readySinceMs !== null && hasRoom && now - since >= this.opts.stuckAfterMs)
        this.replace(entry, `jobs ready for ${Math.round((now - since) / 1000)} s and none taken`);
    }
  }

  private replace(entry: Supervised<D, R>, why: string): void {
    const at = this.current.indexOf(entry);
    if (at < 0 || this.closed) return;
    this.replaced++;
    this.current.splice(at, 1, this.make());
    this.opts.log.warn({ why, replaced: this.replaced }, 'worker replaced');
    const closing = entry.worker
      .close()
      .catch((err: unknown) =>
        this.opts.log.warn({ err: errorMessage(err) }, 'replaced worker close failed'),
      );
    this.retiring.add(closing);
    void closing.finally(() => this.retiring.delete(closing));
  }

  /** Stops supervising and closes every worker (replaced ones get closeTimeoutMs to finish closing). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all(this.current.map((e) => e.worker.close()));
    this.current.length = 0;
    const retiring = [...this.retiring];
    if (retiring.length > 0)
      await withDeadline(
        this.clock,
        this.opts.closeTimeoutMs,
        Promise.all(retiring),
        () => new Error('a replaced worker did not close in time'),
      ).catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'replaced worker close'));
  }
}
