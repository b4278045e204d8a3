// The executor: a Plan's steps as BullMQ jobs (one per VM), workers that take per-host and cluster slots
// before migrating, share each host's link between its migrations, retry transient failures, report
// progress through BullMQ, record history, and adopt the migrations of crashed workers.
import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { errorCode, errorMessage } from '../domain/errors.js';
import type { MigrationRecord } from '../domain/history.js';
import type { Plan } from '../domain/plan.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import { callWithTimeout } from './call-timeout.js';
import type { ExecutionPolicy, ExecutorOptions } from './executor-options.js';
import type { HistoryStore } from './history-store.js';
import {
  MigrationRunner,
  MigrationStartError,
  isTransient,
  type MigrationJobData,
  type MigrationProgress,
  type MigrationReport,
  type RunHooks,
  type RunnerHypervisor,
} from './migration-runner.js';
import { SlotStore, bandwidthShareMiBps, type SlotClaim, type SlotRenewal } from './slot-store.js';
import { HELD_MIBPS, handOverAtMs, takesOverAhead } from './hand-over.js';
import type { AbortReason } from './watchdog.js';
import type { PredictiveForecast } from './watchdog-schedule.js';
import { WorkerSupervisor } from './worker-supervisor.js';

/** What a finished job returns (BullMQ returnvalue). */
export type MigrationJobResult =
  { status: 'skipped'; reason: string } | { status: MigrationReport['outcome']; report: MigrationReport };

export interface MigrationStatus {
  jobId: string;
  vmId: string;
  planId: string;
  from: string;
  to: string;
  kind: string;
  state: string;
  attemptsMade: number;
  /** When a worker first took the job (epoch ms), null while it waits. */
  startedAtMs: number | null;
  progress: MigrationProgress | null;
  /** Expected duration: the daemon's forecast for the step on its link share, else the plan's prediction. */
  expectedDurationS: number;
  result: MigrationJobResult | null;
  failedReason: string | null;
}

export interface EnqueueResult {
  /** VM ids whose step became a job. */
  enqueued: string[];
  /** VM ids that already had a job waiting or running (at most one job per VM). */
  alreadyQueued: string[];
}

export interface ExecutorDeps {
  /** Connection for the executor's own keys and BullMQ's queue (workers duplicate it for blocking calls). */
  redis: Redis;
  hypervisor: RunnerHypervisor;
  options: ExecutorOptions;
  history?: HistoryStore;
  logger?: Logger;
  metrics?: DroverMetrics;
  /** drover's own host state: a destination that is not active makes the step skip. */
  isHostActive?: (hostId: string) => Promise<boolean>;
  /** Benchmarks: clock times of the migration call and of each abort. */
  onMigrateCall?: (vmId: string, atMs: number) => void;
  onAbortIssued?: (vmId: string, atMs: number, reason: AbortReason, dueAtMs: number) => void;
}

/** BullMQ job ids may not contain ':'; VM ids (UUIDs) never do, but names could. */
export function jobIdFor(vmId: string): string {
  return `vm-${vmId.replace(/:/g, '_')}`;
}

const LIVE_STATES = ['active', 'waiting', 'delayed', 'prioritized', 'waiting-children'] as const;

/** A step's result kept for its job's next run (`<prefix>:outcome:<vm>`), in case the queue did not take it. */
interface StoredOutcome {
  planId: string;
  to: string;
  result: MigrationJobResult;
}
const OUTCOME_KEPT_MS = 3_600_000;
/** A write after a migration ended is retried this long while Redis is unreachable, this often (real time). */
const STORE_RETRY_MS = 120_000;
const STORE_RETRY_EVERY_MS = 500;
/** What the executor logs about slots handed over ahead and attempts tried again (tests look for these). */
export const EXECUTOR_LOG = {
  /** A step took the slots of a migration about to end (hand-over.ts). */
  tookOver: 'took over the slots of a migration about to end: sets up beside it, held until it has gone',
  /** A held migration is let go (the one it followed has gone). */
  letGo: 'the migration it was held behind has gone: takes its share of the link',
  /** An attempt failed in a way worth another (its slots are released meanwhile). */
  attemptFailed: 'attempt failed: tried again after the back-off',
} as const;
/** How often a held migration asks whether the one it follows has gone (real ms). */
const HELD_RENEW_MS = 100;

export class Executor {
  readonly queue: Queue<MigrationJobData, MigrationJobResult>;
  readonly slots: SlotStore;
  private readonly deps: ExecutorDeps;
  private readonly options: ExecutorOptions;
  private readonly log: Logger;
  private readonly runner: MigrationRunner;
  private supervisor: WorkerSupervisor<MigrationJobData, MigrationJobResult> | null = null;
  private readonly detach = new AbortController();
  /**
   * The steps this process is running, by VM. A job whose BullMQ lock lapsed while Redis was unreachable is
   * queued again by the stalled check and may come back to this process while the first run still watches
   * its migration: it then waits for that run's outcome instead of watching (and recording) it a second time.
   */
  private readonly inFlight = new Map<string, Promise<MigrationJobResult>>();

  constructor(deps: ExecutorDeps) {
    this.deps = deps;
    this.options = deps.options;
    this.log = (deps.logger ?? pino({ level: 'silent' })).child({ module: 'executor' });
    this.queue = new Queue<MigrationJobData, MigrationJobResult>(this.options.queueName, {
      connection: deps.redis,
      prefix: this.options.prefix,
    });
    this.slots = new SlotStore(deps.redis, this.options.prefix, this.options.slotLeaseMs);
    const runnerDeps = {
      hypervisor: deps.hypervisor,
      options: this.options,
      logger: deps.logger ?? pino({ level: 'silent' }),
      ...(deps.metrics ? { metrics: deps.metrics } : {}),
    };
    this.runner = new MigrationRunner(runnerDeps);
  }

  private key(name: string, vmId: string): string {
    return `${this.options.prefix}:${name}:${vmId}`;
  }

  /**
   * Turns the plan's steps into jobs. A VM that already has a waiting or running job keeps it; a finished
   * job of the same VM is replaced.
   */
  async enqueuePlan(
    plan: Plan,
    policy: ExecutionPolicy,
    forecasts: Readonly<Record<string, PredictiveForecast>> = {},
  ): Promise<EnqueueResult> {
    const result: EnqueueResult = { enqueued: [], alreadyQueued: [] };
    for (const step of plan.steps) {
      const jobId = jobIdFor(step.vm);
      const existing = await this.queue.getJob(jobId);
      if (existing) {
        const state = await existing.getState();
        if ((LIVE_STATES as readonly string[]).includes(state)) {
          result.alreadyQueued.push(step.vm);
          continue;
        }
        await existing.remove();
      }
      const data: MigrationJobData = {
        planId: plan.id,
        step,
        policy,
        forecast: forecasts[step.vm] ?? null,
        enqueuedAt: new Date().toISOString(),
      };
      const job = await this.queue.add('migrate', data, {
        jobId,
        attempts: this.options.attempts,
        backoff: { type: 'exponential', delay: this.options.backoffMs },
        removeOnComplete: { count: this.options.keepJobs },
        removeOnFail: { count: this.options.keepJobs },
      });
      // add() returns the existing job when another enqueuer won the race: still one job per VM.
      if (job.data.planId === plan.id && job.data.step.to === step.to) result.enqueued.push(step.vm);
      else result.alreadyQueued.push(step.vm);
    }
    return result;
  }

  /**
   * Starts `count` workers in this process (each runs up to workerConcurrency jobs), kept taking jobs by a
   * supervisor: a worker that stops, or stops fetching after a Redis outage, is replaced.
   */
  startWorkers(count = 1): void {
    const o = this.options;
    this.supervisor ??= new WorkerSupervisor({
      create: () => this.makeWorker(),
      readyJobs: async () => {
        const counts = await this.queue.getJobCounts('wait', 'prioritized');
        return (counts.wait ?? 0) + (counts.prioritized ?? 0);
      },
      running: () => this.inFlight.size,
      concurrency: o.workerConcurrency,
      checkEveryMs: Math.max(1_000, o.stalledIntervalMs),
      // A fetching worker with room takes a ready job within its block timeout (5 s) and a lock period.
      stuckAfterMs: Math.max(20_000, 3 * o.lockDurationMs),
      closeTimeoutMs: Math.max(5_000, o.lockDurationMs),
      log: this.log,
    });
    this.supervisor.start(count);
  }

  private makeWorker(): Worker<MigrationJobData, MigrationJobResult> {
    const worker = new Worker<MigrationJobData, MigrationJobResult>(
      this.options.queueName,
      (job, token) => this.process(job, token),
      {
        connection: this.deps.redis,
        prefix: this.options.prefix,
        concurrency: this.options.workerConcurrency,
        lockDuration: this.options.lockDurationMs,
        stalledInterval: this.options.stalledIntervalMs,
        maxStalledCount: this.options.maxStalledCount,
      },
    );
    worker.on('error', (err) => this.log.error({ err: errorMessage(err) }, 'worker error'));
    return worker;
  }

  /** Stops the workers. Running migrations keep running: they are adopted by the next worker. */
  async close(): Promise<void> {
    this.detach.abort();
    await this.supervisor?.close();
    this.supervisor = null;
    await this.queue.close();
  }

  /**
   * Stops a VM's migration: a waiting job is removed; a running one is asked to abort (its watchdog issues
   * the abort within a poll or two and confirms the VM is back on its source).
   */
  async abortVm(vmId: string): Promise<'removed' | 'abort-requested' | 'none'> {
    const job = await this.queue.getJob(jobIdFor(vmId));
    if (!job) return 'none';
    const state = await job.getState();
    if (state === 'waiting' || state === 'delayed' || state === 'prioritized') {
      try {
        await job.remove();
        return 'removed';
      } catch {
        // picked up meanwhile: fall through to the abort request
      }
    } else if (state !== 'active') {
      return 'none';
    }
    await this.deps.redis.set(this.key('abort', vmId), '1', 'PX', 3_600_000);
    return 'abort-requested';
  }

  /** Jobs waiting, running and recently finished, with their progress. */
  async list(): Promise<MigrationStatus[]> {
    const jobs = await this.queue.getJobs([...LIVE_STATES, 'completed', 'failed']);
    const out: MigrationStatus[] = [];
    for (const listed of jobs) {
      if (!listed.id) continue;
      const state = await listed.getState();
      // The job may have finished after it was listed: read it again so data and state agree.
      const job =
        state === 'completed' || state === 'failed'
          ? ((await this.queue.getJob(listed.id)) ?? listed)
          : listed;
      if (!job.id) continue;
      const progress =
        typeof job.progress === 'object' ? (job.progress as unknown as MigrationProgress) : null;
      out.push({
        jobId: job.id,
        vmId: job.data.step.vm,
        planId: job.data.planId,
        from: job.data.step.from,
        to: job.data.step.to,
        kind: job.data.step.kind,
        state,
        attemptsMade: job.attemptsMade,
        startedAtMs: job.processedOn ?? null,
        progress,
        expectedDurationS: job.data.forecast?.expectedDurationS ?? job.data.step.predicted.durationS,
        result: job.returnvalue ?? null,
        failedReason: job.failedReason ?? null,
      });
    }
    return out;
  }

  /**
   * The worker's processor: one run per VM at a time in this process. A job that comes back while the run it
   * lost its lock in is still going gets that run's result (its own lock is the valid one, so the result is
   * stored through it); when that run ended without a result (its lock was gone when it tried to hand the job
   * back, or it failed), the job runs again, looking at the real state first like any retry.
   */
  private async process(
    job: Job<MigrationJobData, MigrationJobResult>,
    token: string | undefined,
  ): Promise<MigrationJobResult> {
    const vmId = job.data.step.vm;
    const earlier = this.inFlight.get(vmId);
    if (earlier) {
      this.log.warn(
        { planId: job.data.planId, vm: vmId, jobId: job.id },
        'job came back while this process still runs its step: waiting for that run',
      );
      const outcome = await earlier.then(
        (result) => ({ result }),
        () => null,
      );
      if (outcome) return outcome.result;
    }
    const run = this.runStep(job, token);
    this.inFlight.set(vmId, run);
    try {
      return await run;
    } finally {
      if (this.inFlight.get(vmId) === run) this.inFlight.delete(vmId);
    }
  }

  /** One run of a step: slots, run record, the runner, history, clean-up. */
  private async runStep(
    job: Job<MigrationJobData, MigrationJobResult>,
    token: string | undefined,
  ): Promise<MigrationJobResult> {
    const data = job.data;
    const { step } = data;
    const claim: SlotClaim = { vmId: step.vm, from: step.from, to: step.to };
    const redis = this.deps.redis;
    const runKey = this.key('run', step.vm);
    const log = this.log.child({ planId: data.planId, vm: step.vm, jobId: job.id });
    // This step already ended in an earlier run whose result the queue did not take (its lock had lapsed):
    // that result, not a second look that would find the VM moved and call the step skipped.
    const earlier = await redis.get(this.key('outcome', step.vm));
    if (earlier !== null) {
      const stored = JSON.parse(earlier) as StoredOutcome;
      if (stored.planId === data.planId && stored.to === step.to) {
        log.info({ status: stored.result.status }, 'the step ended in an earlier run: its outcome');
        return stored.result;
      }
    }
    const runRecord = await redis.hgetall(runKey);
    const resumed = Object.keys(runRecord).length > 0;
    const earlierStartMs = runRecord.startedAtMs !== undefined ? Number(runRecord.startedAtMs) : NaN;

    if (!resumed && this.deps.history && (await this.deps.history.isQuarantined(step.vm))) {
      const q = await this.deps.history.quarantine(step.vm);
      return { status: 'skipped', reason: `${step.vm} is quarantined until ${q.until ?? '?'}` };
    }
    // Steps this one depends on (one that makes room on its destination) finish first; a resumed job has
    // already passed this gate.
    if (!resumed && step.after) {
      const gate = await this.dependencies(data);
      if (gate.wait) {
        if (!token) throw new Error('no lock token: cannot wait for the steps this one depends on');
        await job.moveToDelayed(Date.now() + this.options.slotRetryMs, token);
        throw new DelayedError();
      }
      if (gate.skip !== null) {
        log.info({ reason: gate.skip }, 'step skipped');
        return { status: 'skipped', reason: gate.skip };
      }
    }
    const links = await this.links(step.from, step.to, data.policy.defaultBandwidthMiBps);
    // Slots: a resumed job may be adopting a running migration, which holds its link whatever the count. A
    // step whose guest writes little may take over the slots of a migration about to end (hand-over.ts).
    const got = await this.slots.acquire(
      claim,
      data.policy.limits,
      resumed,
      step.concurrency,
      !resumed && takesOverAhead(step, Math.min(links.from, links.to)),
    );
    if (!got.ok) {
      if (!token) throw new Error('no lock token: cannot wait for a slot');
      await job.moveToDelayed(Date.now() + this.options.slotRetryMs, token);
      throw new DelayedError();
    }

    // The share counts this migration and its peers that send; it does not send before its set-up is over
    // (an adopted one may well: its first poll says so). A held one sends a trickle until the migration it
    // follows has gone; meanwhile it renews often, so that it takes the link as soon as that one has ended.
    const clock = this.deps.hypervisor.clock;
    const setupS = data.policy.setupS;
    let sending = false;
    let held = got.held;
    let ready = false;
    const readyTimer = new AbortController();
    const shareListeners = new Set<() => void>();
    const shareOf = (r: SlotRenewal): number | null =>
      r.held ? HELD_MIBPS : bandwidthShareMiBps(links.from, links.to, r);
    /** Marks this migration ready to hand its slots over at `atMs` (hypervisor clock), if ever. */
    const readyAt = (atMs: number | null): void => {
      if (atMs === null) return;
      clock.sleep(Math.max(0, atMs - clock.now()), readyTimer.signal).then(
        () => {
          ready = true;
          renewShare().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'slot renewal failed'));
        },
        () => undefined, // the step ended first
      );
    };
    if (got.held) log.info({ heldMiBps: HELD_MIBPS }, EXECUTOR_LOG.tookOver);
    const first = await this.slots.renew(claim, sending);
    if (held && !first.held) log.info(EXECUTOR_LOG.letGo);
    held = first.held;
    let share = shareOf(first);
    const renewShare = async (): Promise<void> => {
      const r = await this.slots.renew(claim, sending, ready);
      const before = share;
      share = shareOf(r);
      if (held && !r.held) {
        log.info(EXECUTOR_LOG.letGo);
        // Let go: its set-up is long over; it may hand over one set-up before its predicted end from now.
        readyAt(handOverAtMs(step, clock.now() - setupS * 1000, setupS));
      }
      held = r.held;
      if (share !== before) for (const l of shareListeners) l();
    };
    let abortRequested: AbortReason | null = null;
    let detached = false;
    // Kept for the next attempt when this one called migrate and is retried: the retry then looks for this
    // attempt's migration (running: adopt it; completed: record its completion) instead of skipping the step.
    let keepRunRecord = false;
    let ended = false;
    let lastProgressAt = 0;
    const heartbeat = setInterval(
      () => {
        void (async () => {
          await renewShare();
          if ((await redis.exists(this.key('abort', step.vm))) === 1) abortRequested = 'operator';
        })().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'slot renewal failed'));
      },
      Math.max(200, Math.min(1_000, this.options.slotLeaseMs / 3)),
    );
    const heldRenewal = setInterval(() => {
      if (held)
        renewShare().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'slot renewal failed'));
    }, HELD_RENEW_MS);
    const hooks: RunHooks = {
      signal: this.detach.signal,
      resumed,
      ...(Number.isFinite(earlierStartMs) ? { startedAtMs: earlierStartMs } : {}),
      abortRequested: () => abortRequested,
      // Every migration is held to its share of the configured links, drain steps with their own concurrency
      // too: the link figure is the most the operator lets migrations use, and nothing else enforces it (a
      // libvirt migration without a cap takes whatever the network gives, however many share the link).
      bandwidthShareMiBps: () => share,
      onSending: () => {
        sending = true;
        renewShare().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'slot renewal failed'));
      },
      onShareChange: (listener) => {
        shareListeners.add(listener);
        return () => shareListeners.delete(listener);
      },
      heldBack: () => held,
      beforeMigrate: async () => {
        await redis.hset(runKey, {
          jobId: job.id ?? '',
          planId: data.planId,
          from: step.from,
          to: step.to,
          startedAt: new Date().toISOString(),
          startedAtMs: String(this.deps.hypervisor.clock.now()),
          attempt: String(job.attemptsMade + 1),
        });
      },
      onProgress: (p) => {
        const now = Date.now();
        if (now - lastProgressAt < this.options.progressIntervalMs) return;
        lastProgressAt = now;
        job.updateProgress(p as unknown as object).catch((err: unknown) => {
          log.warn({ err: errorMessage(err) }, 'progress update failed');
        });
      },
      ...(this.deps.isHostActive ? { isHostActive: this.deps.isHostActive } : {}),
      onMigrateCall: (at: number) => {
        // Not while held: it hands over only once let go (renewShare).
        if (!held) readyAt(handOverAtMs(step, at, setupS));
        this.deps.onMigrateCall?.(step.vm, at);
      },
      ...(this.deps.onAbortIssued
        ? {
            onAbortIssued: (at: number, r: AbortReason, due: number) =>
              this.deps.onAbortIssued?.(step.vm, at, r, due),
          }
        : {}),
    };
    try {
      const report = await this.runner.run(data, hooks);
      ended = true;
      // The migration ended in the hypervisor: its record must reach Redis even when Redis is away just now
      // (a node restarting), or the VM's cooldown and history would forget a move that happened.
      await this.whenStored(log, 'the migration history', () => this.recordHistory(data, report));
      // A migration that failed (not aborted by the watchdog) with the VM confirmed back on its source is
      // worth another attempt, after the back-off, with fresh pre-checks.
      if (
        report.outcome === 'failed' &&
        report.problems.length === 0 &&
        job.attemptsMade + 1 < this.options.attempts
      ) {
        throw new MigrationStartError(`migration failed: ${report.reason}`, true);
      }
      const result: MigrationJobResult = { status: report.outcome, report };
      // Kept for the job's next run, should the queue not take this result (the job's lock lapsed meanwhile).
      const outcome: StoredOutcome = { planId: data.planId, to: step.to, result };
      await this.whenStored(log, 'the step outcome', () =>
        redis.set(this.key('outcome', step.vm), JSON.stringify(outcome), 'PX', OUTCOME_KEPT_MS),
      );
      return result;
    } catch (err) {
      const code = errorCode(err);
      if (code === 'step_skipped') {
        log.info({ reason: errorMessage(err) }, 'step skipped');
        return { status: 'skipped', reason: errorMessage(err) };
      }
      if (code === 'runner_detached') {
        // This worker is shutting down; the migration runs on. Hand the job back without spending an
        // attempt: the next worker adopts it.
        detached = true;
        if (!token) throw err;
        await job.moveToDelayed(Date.now() + 100, token);
        throw new DelayedError();
      }
      if (isTransient(err)) {
        const attempt = job.attemptsMade + 1;
        log.warn(
          { err: errorMessage(err), attempt, attempts: this.options.attempts },
          attempt < this.options.attempts ? EXECUTOR_LOG.attemptFailed : 'last attempt failed',
        );
        keepRunRecord =
          !ended && attempt < this.options.attempts && (await redis.exists(runKey).catch(() => 0)) === 1;
        throw err;
      }
      throw new UnrecoverableError(`${code ?? 'error'}: ${errorMessage(err)}`);
    } finally {
      clearInterval(heartbeat);
      clearInterval(heldRenewal);
      readyTimer.abort();
      if (!detached) {
        const keys = keepRunRecord ? [this.key('abort', step.vm)] : [runKey, this.key('abort', step.vm)];
        await this.slots
          .release(claim)
          .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'slot release failed (it lapses)'));
        // A run record left behind would make the VM's next step look like an adoption.
        await this.whenStored(log, 'the run record clean-up', () => redis.del(...keys));
      }
    }
  }

  /**
   * Runs a Redis write until it succeeds, retrying while Redis is unreachable (a node restarting, a failover)
   * for up to STORE_RETRY_MS; then, or when the executor closes, logs the loss as an error.
   */
  private async whenStored(log: Logger, what: string, write: () => Promise<unknown>): Promise<void> {
    const deadline = Date.now() + STORE_RETRY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        await write();
        if (attempt > 1) log.info({ what, attempt }, 'stored once Redis answered again');
        return;
      } catch (err) {
        if (Date.now() >= deadline || this.detach.signal.aborted) {
          log.error({ what, err: errorMessage(err) }, 'could not store in Redis');
          return;
        }
        await new Promise((r) => setTimeout(r, STORE_RETRY_EVERY_MS));
      }
    }
  }

  /**
   * Whether the steps a step runs after have finished: wait while one of them is queued or running; skip the
   * step when one ended other than completed. A dependency whose job is gone (removed with the finished jobs
   * kept no longer) or belongs to another plan does not hold the step: its pre-checks still look at the
   * destination as it is.
   */
  private async dependencies(data: MigrationJobData): Promise<{ wait: boolean; skip: string | null }> {
    for (const vmId of data.step.after ?? []) {
      const dep = await this.queue.getJob(jobIdFor(vmId));
      if (!dep || dep.data.planId !== data.planId) continue;
      const state = await dep.getState();
      if ((LIVE_STATES as readonly string[]).includes(state)) return { wait: true, skip: null };
      let status: string | undefined = 'failed';
      if (state === 'completed') {
        // The job read above may predate its end (no result yet): read it again for its result.
        const ended = await this.queue.getJob(jobIdFor(vmId));
        if (!ended) continue;
        status = ended.returnvalue?.status;
      }
      if (status !== 'completed')
        return {
          wait: false,
          skip: `the step it runs after (${vmId} to ${dep.data.step.to}) ended ${status ?? state}, not completed`,
        };
    }
    return { wait: false, skip: null };
  }

  private async links(from: string, to: string, fallback: number): Promise<{ from: number; to: number }> {
    const hv = this.deps.hypervisor;
    try {
      const hosts = await callWithTimeout(hv.clock, 'listHosts', this.options.callTimeoutMs, hv.listHosts());
      const bw = (id: string) => hosts.find((h) => h.id === id)?.bandwidthMiBps ?? fallback;
      return { from: bw(from), to: bw(to) };
    } catch {
      return { from: fallback, to: fallback };
    }
  }

  private async recordHistory(data: MigrationJobData, report: MigrationReport): Promise<void> {
    const history = this.deps.history;
    if (!history) return;
    const rec: MigrationRecord = {
      vmId: report.vmId,
      from: report.from,
      to: report.to,
      kind: report.kind,
      endedAt: new Date(report.endedAtMs).toISOString(),
      result: report.outcome === 'stuck' ? 'failed' : report.outcome,
      predictedDurationS: data.step.predicted.durationS,
      predictionCorrection: data.step.predicted.correction ?? 1,
      plannedDirtyMiBps: data.step.predicted.dirtyMiBps ?? null,
      plannedDirtyFactor: data.step.predicted.dirtyFactor ?? 1,
      measuredDurationS: report.durationS,
      downtimeMs: report.downtimeMs,
      downtimeBudgetMs: report.downtimeBudgetMs,
      predictedDowntimeMs: data.step.predicted.downtimeMs,
      ...(data.step.predicted.lastRoundMs !== undefined
        ? { predictedLastRoundMs: data.step.predicted.lastRoundMs }
        : {}),
      maxDowntimeMs: report.maxDowntimeMs,
      iterations: report.iterations,
      transferMiB: Math.round(report.transferMiB * 10) / 10,
      memMiB: report.memMiB,
      dirtyMiBps: report.dirtyMiBps,
      bandwidthMiBps: report.bandwidthMiBps,
    };
    const failedToConverge =
      report.outcome === 'aborted' && (report.abortReason === 'stalled' || report.abortReason === 'deadline');
    await history.record(rec, failedToConverge);
  }
}
