// The end of a migration step: decides the outcome (from the handle, else from where the VM runs), reads the
// completed job, verifies the VM is where it should be and nowhere else, repairs only what the evidence proves,
// and reports (log line and metrics).
import { errorMessage } from '../domain/errors.js';
import type {
  Inventory,
  MigrationJob,
  MigrationJobs,
  MigrationOutcome,
  VmControl,
  VmPresence,
} from '../hypervisor/hypervisor.js';
import type { DroverMetrics } from '../metrics/metrics.js';
import { CallTimeout, callWithTimeout } from './call-timeout.js';
import type { ExecutorOptions } from './executor-options.js';
import {
  END_SETTLE_MS,
  END_SETTLE_POLL_MS,
  type MigrationJobData,
  type MigrationReport,
  type RunOutcome,
  type WatchContext,
  type WatchdogRecord,
} from './migration-step.js';
import { applyRecoveryAction, gatherEvidence, type VmEvidence } from './recovery.js';

/** The hypervisor roles the finish uses: where the VM is, its jobs, and VM control for recovery. */
export type FinishHypervisor = Inventory & MigrationJobs & VmControl;

export class MigrationFinisher {
  constructor(
    private readonly hv: FinishHypervisor,
    private readonly options: ExecutorOptions,
    private readonly metrics: DroverMetrics | undefined,
  ) {}

  private call<T>(name: string, promise: Promise<T>): Promise<T> {
    return callWithTimeout(this.hv.clock, name, this.options.callTimeoutMs, promise);
  }

  /** Decides the outcome from the handle and the evidence; verifies; repairs only what the evidence proves. */
  async finish(
    ctx: WatchContext,
    settled: MigrationOutcome | null,
    records: WatchdogRecord[],
    stuckReason: string | null,
  ): Promise<MigrationReport> {
    const { job, watchdog, log } = ctx;
    const { step } = job;
    const abortReason = watchdog.state.abortReason;
    const { outcome, reason } = await this.decideOutcome(ctx, settled, stuckReason);
    let stats: MigrationJob | null = settled?.stats ?? null;

    if (outcome === 'completed' && stats === null) {
      stats =
        (await this.call('completedJobStats', this.hv.completedJobStats(step.to, step.vm)).catch(
          () => null,
        )) ??
        (await this.call('completedJobStats', this.hv.completedJobStats(step.from, step.vm)).catch(
          () => null,
        ));
    }
    const problems: string[] = [];
    let evidence: VmEvidence | null = null;
    if (outcome === 'completed') {
      problems.push(...(await this.verifyOnDestination(job)));
    } else {
      evidence = await this.confirmOnSource(ctx, outcome, settled, problems);
      if (evidence?.diagnosis !== 'ok' && outcome !== 'stuck') {
        log.error({ evidence }, 'after the migration ended the VM is not running on its source only');
      }
    }
    const last = stats ?? watchdog.state.lastJob;
    const lastActive = watchdog.state.lastJob?.type === 'active' ? watchdog.state.lastJob : null;
    const endedAtMs = this.hv.clock.now();
    const report: MigrationReport = {
      planId: job.planId,
      vmId: step.vm,
      from: step.from,
      to: step.to,
      kind: step.kind,
      outcome,
      reason,
      adopted: ctx.adopted,
      startedAtMs: ctx.startedAtMs,
      endedAtMs,
      durationS: (endedAtMs - ctx.startedAtMs) / 1000,
      downtimeMs: outcome === 'completed' && stats !== null ? stats.downtimeMs : null,
      iterations: last ? last.iteration + 1 : 0,
      transferMiB: last ? last.memProcessedMiB + last.diskProcessedMiB : 0,
      memMiB: ctx.vm.memMiB,
      dirtyMiBps: lastActive ? Math.round(lastActive.dirtyMiBps * 10) / 10 : null,
      maxDowntimeMs: watchdog.state.maxDowntimeMs,
      downtimeBudgetMs: ctx.schedule.downtimeBudgetMs ?? job.policy.defaultDowntimeBudgetMs,
      bandwidthMiBps: ctx.bandwidthMiBps,
      profile: ctx.schedule.profile,
      abortReason,
      maxThrottlePct: watchdog.state.throttlePct,
      watchdog: records,
      problems,
      evidence,
    };
    this.observe(report);
    log.info(
      {
        outcome,
        reason,
        durationS: report.durationS,
        downtimeMs: report.downtimeMs,
        iterations: report.iterations,
        problems,
      },
      'migration ended',
    );
    return report;
  }

  /** How the migration ended: from the handle when it settled, else from where the VM runs now. */
  private async decideOutcome(
    ctx: WatchContext,
    settled: MigrationOutcome | null,
    stuckReason: string | null,
  ): Promise<{ outcome: RunOutcome; reason: string }> {
    const { step } = ctx.job;
    const abortReason = ctx.watchdog.state.abortReason;
    let outcome: RunOutcome;
    let reason: string;

    if (stuckReason !== null) {
      outcome = 'stuck';
      reason = stuckReason;
    } else if (settled !== null) {
      outcome =
        settled.result === 'completed' ? 'completed' : abortReason !== null ? 'aborted' : settled.result;
      reason = settled.result === 'completed' ? 'completed' : (settled.error ?? settled.result);
    } else {
      // No handle (adopted) or it never settled: the hosts say how it ended, once they have settled.
      const presences = await this.settledPresences(step.vm, step.from);
      const runningOn = (presences ?? []).filter((p) => p.state === 'running').map((p) => p.hostId);
      if (runningOn.length === 1 && runningOn[0] === step.to) {
        outcome = 'completed';
        reason = 'completed (seen on the destination)';
      } else if (runningOn.length === 1 && runningOn[0] === step.from) {
        outcome = abortReason !== null ? 'aborted' : 'failed';
        reason =
          abortReason !== null ? `aborted: ${abortReason}` : 'the migration ended with the VM on the source';
      } else {
        outcome = 'stuck';
        reason = `the migration ended with the VM running on [${runningOn.join(', ')}]`;
      }
    }
    if (outcome === 'aborted' && abortReason !== null)
      reason = `aborted: ${abortReason}${settled?.error ? ` (${settled.error})` : ''}`;
    return { outcome, reason };
  }

  /**
   * Where the VM is once the migration's end has settled: running on its source (the migration did not
   * go), or running on one host with no other copy left (libvirt's last phases resume the destination and
   * then let the source go; a job that is over on the source can be read while both are still paused).
   * Looks again for up to END_SETTLE_MS, then answers with what it last saw (null: the hosts did not answer).
   */
  private async settledPresences(vmId: string, from: string): Promise<VmPresence[] | null> {
    const clock = this.hv.clock;
    const deadline = clock.now() + END_SETTLE_MS;
    for (;;) {
      const presences = await this.call('locateVm', this.hv.locateVm(vmId)).catch(() => null);
      const running = (presences ?? []).filter((p) => p.state === 'running');
      const settled =
        presences !== null && running.length === 1 && (running[0]?.hostId === from || presences.length === 1);
      if (settled || clock.now() >= deadline) return presences;
      await clock.sleep(END_SETTLE_POLL_MS);
    }
  }

  /** After a completion: the VM runs on the destination only, is defined there and not on the source. */
  private async verifyOnDestination(job: MigrationJobData): Promise<string[]> {
    const { step } = job;
    const problems: string[] = [];
    let presences: VmPresence[] | null = null;
    // A slow answer is no verdict: on a loaded host the location calls can take longer than one call
    // timeout, so ask up to three times before reporting that the end could not be verified.
    for (let attempt = 1; presences === null; attempt++) {
      try {
        presences = await this.call('locateVm', this.hv.locateVm(step.vm));
      } catch (err) {
        if (!(err instanceof CallTimeout) || attempt >= 3) return [`could not verify: ${errorMessage(err)}`];
      }
    }
    const dest = presences.find((p) => p.hostId === step.to);
    if (!dest || dest.state !== 'running') problems.push(`not running on ${step.to}`);
    else if (!dest.persistent) problems.push(`not defined (persistent) on ${step.to}`);
    for (const p of presences) {
      if (p.hostId === step.to) continue;
      if (p.state === 'shutoff') problems.push(`still defined on ${p.hostId}`);
      else problems.push(`also ${p.state} on ${p.hostId}`);
    }
    return problems;
  }

  /**
   * After an abort or failure: confirm the VM runs on the source and nothing is left on the destination.
   * Repairs only what the evidence proves (a leftover paused copy; paused on both ends with a proven outcome).
   */
  private async confirmOnSource(
    ctx: WatchContext,
    outcome: RunOutcome,
    settled: MigrationOutcome | null,
    problems: string[],
  ): Promise<VmEvidence | null> {
    const { step } = ctx.job;
    const hint = {
      from: step.from,
      to: step.to,
      outcome: settled === null ? null : settled.result,
      postCopy: ctx.watchdog.state.phase === 'post-copy' || (ctx.watchdog.state.lastJob?.postCopy ?? false),
    } as const;
    let evidence: VmEvidence;
    try {
      evidence = await gatherEvidence(this.hv, step.vm, this.options.callTimeoutMs, hint);
    } catch (err) {
      problems.push(`could not gather evidence: ${errorMessage(err)}`);
      return null;
    }
    if (evidence.diagnosis === 'postcopy-failed') {
      // Neither end holds the whole guest: nothing is destroyed or resumed here. The migration can only be
      // resumed once the link works again (`drover recover VM`); the reconciler keeps reporting it until then.
      problems.push(`post-copy failed: ${evidence.summary}; run \`drover recover ${step.vm}\``);
      return evidence;
    }
    if (outcome !== 'stuck') {
      for (const action of evidence.actions.filter((a) => !a.forcing)) {
        try {
          ctx.log.warn({ action }, 'recovering from evidence');
          await applyRecoveryAction(this.hv, step.vm, action, this.options.callTimeoutMs);
        } catch (err) {
          problems.push(`recovery ${action.kind} on ${action.hostId} failed: ${errorMessage(err)}`);
        }
      }
      if (evidence.actions.some((a) => !a.forcing)) {
        evidence = await gatherEvidence(this.hv, step.vm, this.options.callTimeoutMs, hint).catch(
          () => evidence,
        );
      }
    }
    const runningSrc = evidence.hosts.find((h) => h.hostId === step.from && h.state === 'running');
    const onDest = evidence.hosts.find((h) => h.hostId === step.to && h.state !== 'shutoff');
    if (!runningSrc) problems.push(`not running on the source ${step.from}`);
    if (onDest) problems.push(`still ${onDest.state} on the destination ${step.to}`);
    return evidence;
  }

  private observe(report: MigrationReport): void {
    const m = this.metrics;
    if (!m) return;
    m.migrations.inc({ result: report.outcome, kind: report.kind });
    m.migrationDurationSeconds.observe({ result: report.outcome }, report.durationS);
    if (m.perVmSeries && report.outcome === 'completed') m.vmMigrations.inc({ vm: report.vmId });
    if (report.downtimeMs !== null) {
      m.migrationDowntimeSeconds.observe(report.downtimeMs / 1000);
      if (report.downtimeBudgetMs > 0) {
        m.migrationDowntimeOverBudgetRatio.observe(report.downtimeMs / report.downtimeBudgetMs);
        // Initialised at 0 by the first measured downtime, so a rate() over it works before any overrun.
        m.migrationDowntimeOverBudget.inc(
          { kind: report.kind },
          report.downtimeMs > report.downtimeBudgetMs ? 1 : 0,
        );
      }
    }
  }
}
