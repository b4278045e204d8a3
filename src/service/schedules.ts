// Scheduled runs: cron expressions (node-cron) and fixed intervals. A run never overlaps the previous run of
// the same schedule (a tick that finds it busy is counted as `overlap` and dropped), leader-only schedules
// run only on the leader, and every run ends as a metric (drover_schedule_runs_total{schedule,outcome}) and
// one log line.
import { createTask, type ScheduledTask } from 'node-cron';
import { errorCode, errorMessage } from '../domain/errors.js';
import type { DroverMetrics } from '../metrics/metrics.js';

export type ScheduleOutcome = 'ok' | 'failed' | 'overlap' | 'not_leader' | 'stopping' | 'missed';

/**
 * A cron tick may run this late (ms). node-cron's own default is 1 s: a process whose event loop is busy for
 * a second at the wrong moment would silently skip the run (a minute-by-minute rebalance then happens every
 * few minutes). Later than this, the run is counted as `missed` and logged.
 */
export const CRON_LATE_TOLERANCE_MS = 30_000;

export interface ScheduleLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ScheduleSpec {
  name: string;
  /** Cron expression (node-cron syntax) or an interval in ms. */
  trigger: { cron: string; timezone?: string } | { everyMs: number };
  /** Runs only while this process leads. */
  leaderOnly: boolean;
  /** The work; what it returns is logged with the outcome. */
  run: (signal: AbortSignal) => Promise<object | void>;
  /**
   * A run every few seconds (plan upkeep, reconcile): its `ok` runs log at debug, so the info log carries
   * only what changed. Failures, overlaps and missed runs still warn.
   */
  frequent?: boolean;
}

export interface SchedulesDeps {
  metrics?: Pick<DroverMetrics, 'scheduleRuns'>;
  log?: ScheduleLogger;
  isLeader: () => boolean;
}

interface Entry {
  spec: ScheduleSpec;
  busy: Promise<void> | null;
  task: ScheduledTask | null;
  timer: NodeJS.Timeout | null;
  lastOutcome: ScheduleOutcome | null;
  lastRunAt: number | null;
}

export interface ScheduleStatus {
  name: string;
  trigger: string;
  leaderOnly: boolean;
  running: boolean;
  lastOutcome: ScheduleOutcome | null;
  lastRunAt: string | null;
}

export class Schedules {
  private readonly entries = new Map<string, Entry>();
  private readonly abort = new AbortController();
  private started = false;

  constructor(private readonly deps: SchedulesDeps) {}

  add(spec: ScheduleSpec): void {
    if (this.entries.has(spec.name)) throw new Error(`schedule ${spec.name} added twice`);
    this.entries.set(spec.name, {
      spec,
      busy: null,
      task: null,
      timer: null,
      lastOutcome: null,
      lastRunAt: null,
    });
    // The outcomes an alert counts exist at 0 from the start, so increase() sees the first failure.
    for (const outcome of ['failed', 'missed'] as const)
      this.deps.metrics?.scheduleRuns.inc({ schedule: spec.name, outcome }, 0);
    if (this.started) this.arm(this.entries.get(spec.name)!);
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    for (const entry of this.entries.values()) this.arm(entry);
  }

  /** Stops every trigger, signals running work to stop, and waits for it. */
  async stop(): Promise<void> {
    this.started = false;
    this.abort.abort();
    for (const entry of this.entries.values()) {
      if (entry.task) await entry.task.destroy();
      entry.task = null;
      if (entry.timer) clearTimeout(entry.timer);
      entry.timer = null;
    }
    await Promise.all([...this.entries.values()].flatMap((e) => (e.busy ? [e.busy] : [])));
  }

  /** Runs a schedule now (still never overlapping), resolving with its outcome. */
  async runNow(name: string): Promise<ScheduleOutcome> {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`no schedule named ${name}`);
    return this.fire(entry);
  }

  status(): ScheduleStatus[] {
    return [...this.entries.values()].map((e) => ({
      name: e.spec.name,
      trigger: 'cron' in e.spec.trigger ? e.spec.trigger.cron : `every ${e.spec.trigger.everyMs} ms`,
      leaderOnly: e.spec.leaderOnly,
      running: e.busy !== null,
      lastOutcome: e.lastOutcome,
      lastRunAt: e.lastRunAt === null ? null : new Date(e.lastRunAt).toISOString(),
    }));
  }

  private arm(entry: Entry): void {
    const trigger = entry.spec.trigger;
    if ('cron' in trigger) {
      const options = {
        name: entry.spec.name,
        missedExecutionTolerance: CRON_LATE_TOLERANCE_MS,
        ...(trigger.timezone ? { timezone: trigger.timezone } : {}),
      };
      entry.task = createTask(trigger.cron, () => this.fire(entry), options);
      entry.task.on('execution:missed', (context) => {
        this.record(entry, 'missed', 0, { slot: context.date.toISOString() });
      });
      void entry.task.start();
      return;
    }
    // Intervals: the next run is timed from the end of the previous one's trigger, not its start, so a slow
    // run delays the next instead of piling up.
    const tick = () => {
      entry.timer = setTimeout(() => {
        void this.fire(entry).finally(() => {
          if (this.started) tick();
        });
      }, trigger.everyMs);
    };
    tick();
  }

  private fire(entry: Entry): Promise<ScheduleOutcome> {
    if (this.abort.signal.aborted) return Promise.resolve(this.record(entry, 'stopping', 0));
    if (entry.busy) return Promise.resolve(this.record(entry, 'overlap', 0));
    if (entry.spec.leaderOnly && !this.deps.isLeader())
      return Promise.resolve(this.record(entry, 'not_leader', 0));
    const startedAt = Date.now();
    let outcome: ScheduleOutcome = 'ok';
    const run = (async () => {
      try {
        const detail = await entry.spec.run(this.abort.signal);
        this.record(entry, 'ok', Date.now() - startedAt, detail ?? {});
      } catch (err) {
        outcome = 'failed';
        this.record(entry, 'failed', Date.now() - startedAt, {
          err: errorMessage(err),
          code: errorCode(err),
        });
      }
    })();
    entry.busy = run.finally(() => {
      entry.busy = null;
    });
    entry.lastRunAt = startedAt;
    return entry.busy.then(() => outcome);
  }

  private record(
    entry: Entry,
    outcome: ScheduleOutcome,
    durationMs: number,
    detail: object = {},
  ): ScheduleOutcome {
    const schedule = entry.spec.name;
    entry.lastOutcome = outcome;
    this.deps.metrics?.scheduleRuns.inc({ schedule, outcome });
    const fields = { module: 'schedules', schedule, outcome, durationMs, ...detail };
    if (outcome === 'failed' || outcome === 'overlap' || outcome === 'missed')
      this.deps.log?.warn(fields, 'schedule run');
    else if (outcome === 'ok' && entry.spec.frequent) this.deps.log?.debug(fields, 'schedule run');
    else if (outcome !== 'not_leader') this.deps.log?.info(fields, 'schedule run');
    return outcome;
  }
}
