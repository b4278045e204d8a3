// Evidence about where a VM is, a diagnosis, and the recovery actions that follow from it.
// Used after aborts and failures (automatic, only where the evidence proves which side holds the guest),
// by the reconciler, and by `drover recover VM` (forcing actions need --force there).
import type {
  HypervisorClock,
  Inventory,
  MigrationJob,
  MigrationControl,
  MigrationJobs,
  VmControl,
  VmPresence,
} from '../hypervisor/hypervisor.js';
import { errorMessage } from '../domain/errors.js';
import { callWithTimeout } from './call-timeout.js';

export interface HostEvidence {
  hostId: string;
  state: VmPresence['state'];
  persistent: boolean;
  /** In a post-copy migration on this host (`failed`: it broke). */
  postCopy?: 'active' | 'failed';
  /** The VM's current job on this host, or null when the call failed (see `error`). */
  job: MigrationJob | null;
  /** The VM's last finished job on this host. */
  lastJob: MigrationJob | null;
  error: string | null;
}

export type Diagnosis =
  /** Running on exactly one host, no other copy. */
  | 'ok'
  /** A migration is in flight (the destination's paused copy is expected). */
  | 'migrating'
  /** Running (not paused) on more than one host. */
  | 'running-on-several-hosts'
  /** Paused on every host where it is active, no migration in flight. */
  | 'paused-on-several-hosts'
  /** Running on one host, with a stale paused copy elsewhere. */
  | 'stale-copy'
  /** Paused on its only host. */
  | 'paused'
  /** A post-copy migration broke: the guest's memory is split between its two ends until it is resumed. */
  | 'postcopy-failed'
  /** Not running anywhere (shut off or missing). */
  | 'not-running';

export type RecoveryActionKind = 'resume' | 'destroy' | 'postcopy-resume';

export interface RecoveryAction {
  kind: RecoveryActionKind;
  hostId: string;
  /** For `postcopy-resume`: the destination the migration resumes to (`hostId` is its source). */
  toHostId?: string;
  why: string;
  /** True when the evidence does not prove it safe: an operator must force it. */
  forcing: boolean;
}

export interface VmEvidence {
  vmId: string;
  at: string;
  hosts: HostEvidence[];
  diagnosis: Diagnosis;
  /** Which host holds the guest's true state, when the evidence proves it. */
  holder: string | null;
  summary: string;
  actions: RecoveryAction[];
}

/** What the caller knows about the VM's last migration (the job's outcome), to prove a side. */
export interface MigrationHint {
  from: string;
  to: string;
  /** `completed`: the destination holds the guest; `aborted`/`failed`: the source does; null: unknown. */
  outcome: 'completed' | 'aborted' | 'failed' | null;
  postCopy?: boolean;
}

/** The roles evidence is gathered through: where the VM is, and its jobs there. */
export type EvidenceSource = Inventory & MigrationJobs;

async function safe<T>(
  hv: HypervisorClock,
  call: string,
  timeoutMs: number,
  fn: () => Promise<T>,
): Promise<{ value: T | null; error: string | null }> {
  try {
    return { value: await callWithTimeout(hv.clock, call, timeoutMs, fn()), error: null };
  } catch (err) {
    return { value: null, error: errorMessage(err) };
  }
}

/** Collects where the VM is and what its jobs say; every call under `timeoutMs`. */
export async function gatherEvidence(
  hv: EvidenceSource,
  vmId: string,
  timeoutMs: number,
  hint: MigrationHint | null = null,
): Promise<VmEvidence> {
  const presences = await callWithTimeout(hv.clock, 'locateVm', timeoutMs, hv.locateVm(vmId));
  const hosts: HostEvidence[] = [];
  for (const p of presences) {
    const job = await safe(hv, 'jobStats', timeoutMs, () => hv.jobStats(p.hostId, vmId));
    const lastJob = await safe(hv, 'completedJobStats', timeoutMs, () =>
      hv.completedJobStats(p.hostId, vmId),
    );
    hosts.push({
      hostId: p.hostId,
      state: p.state,
      persistent: p.persistent,
      ...(p.postCopy ? { postCopy: p.postCopy } : {}),
      job: job.value,
      lastJob: lastJob.value,
      error: job.error ?? lastJob.error,
    });
  }
  return diagnose(vmId, new Date(hv.clock.now()).toISOString(), hosts, hint);
}

/** Pure: the diagnosis and actions for a set of host evidence. */
export function diagnose(
  vmId: string,
  at: string,
  hosts: HostEvidence[],
  hint: MigrationHint | null,
): VmEvidence {
  const active = hosts.filter((h) => h.state === 'running' || h.state === 'paused');
  const running = active.filter((h) => h.state === 'running');
  const paused = active.filter((h) => h.state === 'paused');
  const migrating = active.some((h) => h.job?.type === 'active');
  const out = (
    diagnosis: Diagnosis,
    holder: string | null,
    summary: string,
    actions: RecoveryAction[] = [],
  ): VmEvidence => ({ vmId, at, hosts, diagnosis, holder, summary, actions });

  // A broken post-copy first: its source may still show the job, and neither side alone holds the guest, so
  // destroying either copy (as for a stale one) would lose it. Resuming the migration is the only repair.
  const broken = active.filter((h) => h.postCopy === 'failed');
  if (broken.length > 0) {
    const source =
      (hint?.postCopy === true ? active.find((h) => h.hostId === hint.from) : undefined) ??
      broken.find((h) => h.state === 'paused');
    const dest =
      (hint?.postCopy === true ? active.find((h) => h.hostId === hint.to) : undefined) ??
      broken.find((h) => h !== source && h.state === 'running') ??
      active.find((h) => h !== source);
    const where = active.map((h) => `${h.state} on ${h.hostId}`).join(', ');
    if (source === undefined || dest === undefined || source === dest)
      return out('postcopy-failed', null, `a post-copy migration broke (${where}); its source is unclear`);
    return out(
      'postcopy-failed',
      null,
      `a post-copy migration from ${source.hostId} to ${dest.hostId} broke: the guest is split (${where})`,
      [
        {
          kind: 'postcopy-resume',
          hostId: source.hostId,
          toHostId: dest.hostId,
          why: `resume the migration to ${dest.hostId} once the link between them works again${
            dest.postCopy === 'active'
              ? ` (${dest.hostId} has not yet seen the stream break: the resume waits for it)`
              : ''
          }`,
          forcing: false,
        },
      ],
    );
  }
  const leftover = leftoverOfFailedPrecopy(running, paused, hint);
  if (leftover !== null && hint !== null) {
    return out(
      'stale-copy',
      hint.from,
      `running on ${hint.from} with no job; paused incoming copy left on ${leftover.hostId}`,
      [
        {
          kind: 'destroy',
          hostId: leftover.hostId,
          why: `the pre-copy migration to ${leftover.hostId} ${hint.outcome ?? 'ended'} and ${hint.from} runs the guest: this incoming copy never ran`,
          forcing: false,
        },
      ],
    );
  }
  if (migrating) {
    const src = active.find((h) => h.job?.type === 'active');
    return out('migrating', null, `a migration job is active on ${src?.hostId ?? '?'}`);
  }
  if (active.length === 0) return out('not-running', null, 'the VM is not running or paused on any host');
  if (active.length === 1) {
    const only = active[0];
    if (only === undefined) return out('not-running', null, 'no host');
    if (only.state === 'running') return out('ok', only.hostId, `running on ${only.hostId} only`);
    return out('paused', only.hostId, `paused on ${only.hostId}, its only host`, [
      { kind: 'resume', hostId: only.hostId, why: 'the only copy of the guest is paused', forcing: true },
    ]);
  }
  if (running.length === 1 && paused.length >= 1) {
    const holder = running[0]?.hostId ?? null;
    // Only when every host answered about its jobs (no post-copy hidden behind a failed call) is it safe.
    const allAnswered = active.every((h) => h.error === null);
    // The running side executes the guest; a paused copy elsewhere never ran past the switch-over.
    return out(
      'stale-copy',
      holder,
      `running on ${holder}; stale paused copy on ${paused.map((p) => p.hostId).join(', ')}`,
      paused.map((p) => ({
        kind: 'destroy' as const,
        hostId: p.hostId,
        why: allAnswered
          ? `the guest runs on ${holder}; this paused copy is a leftover`
          : `the guest seems to run on ${holder}, but a job query failed: check for post-copy first`,
        forcing: !allAnswered,
      })),
    );
  }
  if (running.length > 1) {
    return out(
      'running-on-several-hosts',
      null,
      `running on ${running.map((r) => r.hostId).join(' and ')}: split brain, an operator must choose`,
      running.map((r) => ({
        kind: 'destroy' as const,
        hostId: r.hostId,
        why: 'keep the copy whose disks and clients are authoritative; destroy the other',
        forcing: true,
      })),
    );
  }
  // Paused on several hosts: only a proven job outcome says which side holds the guest.
  const holder = provenHolder(hosts, hint);
  const summary = `paused on ${paused.map((p) => p.hostId).join(' and ')}`;
  if (holder === null) {
    const actions: RecoveryAction[] = [];
    for (const p of paused) {
      actions.push({
        kind: 'resume',
        hostId: p.hostId,
        why: 'unproven: resume here only if this side holds the newest guest state',
        forcing: true,
      });
    }
    return out(
      'paused-on-several-hosts',
      null,
      `${summary}; the job outcome does not prove which side holds the guest: left for an operator`,
      actions,
    );
  }
  const others = paused.filter((p) => p.hostId !== holder);
  return out(
    'paused-on-several-hosts',
    holder,
    `${summary}; the job outcome proves ${holder} holds the guest`,
    [
      ...others.map((p) => ({
        kind: 'destroy' as const,
        hostId: p.hostId,
        why: `${holder} holds the guest`,
        forcing: false,
      })),
      { kind: 'resume' as const, hostId: holder, why: 'the proven holder of the guest', forcing: false },
    ],
  );
}

/**
 * The destination's copy when a pre-copy migration is known to have failed or been aborted and the source
 * runs the guest with no job of its own (its daemon answered): the paused, transient copy on the destination
 * is the incoming side that never ran, even while it still shows its incoming job (its QEMU has not noticed
 * the stream is gone). Null in every other case, post-copy above all (there the destination may hold the guest).
 */
function leftoverOfFailedPrecopy(
  running: HostEvidence[],
  paused: HostEvidence[],
  hint: MigrationHint | null,
): HostEvidence | null {
  if (hint === null || hint.postCopy === true) return null;
  if (hint.outcome !== 'failed' && hint.outcome !== 'aborted') return null;
  const [source, ...moreRunning] = running;
  const [copy, ...morePaused] = paused;
  if (source === undefined || moreRunning.length > 0 || copy === undefined || morePaused.length > 0)
    return null;
  if (source.hostId !== hint.from || source.error !== null || source.job === null) return null;
  if (source.job.type === 'active') return null;
  if (copy.hostId !== hint.to || copy.persistent) return null;
  return copy;
}

/** The side a finished job proves to hold the guest, or null. Post-copy failures prove nothing. */
function provenHolder(hosts: HostEvidence[], hint: MigrationHint | null): string | null {
  if (hint !== null && hint.postCopy !== true) {
    if (hint.outcome === 'completed') return hint.to;
    if (hint.outcome === 'aborted' || hint.outcome === 'failed') return hint.from;
  }
  for (const h of hosts) {
    const last = h.lastJob;
    if (last === null || last.postCopy) continue;
    // The source's finished migration job: completed -> the destination holds it; cancelled -> the source.
    if (hint !== null && h.hostId === hint.from) {
      if (last.type === 'completed') return hint.to;
      if (last.type === 'cancelled' || last.type === 'failed') return hint.from;
    }
  }
  return null;
}

/** Attempts at resuming a broken post-copy migration, and the wait before the n-th retry (n x this, ms). */
export const POSTCOPY_RESUME_ATTEMPTS = 3;
export const POSTCOPY_RESUME_RETRY_MS = 3_000;
/**
 * How long a post-copy resume waits for its destination to report the migration failed, and how often it
 * looks. The destination learns the stream broke only from its socket: when the source's close, or the reset
 * answering its own page request, gets through. Sent while the link was down, those are retransmitted with
 * TCP's back-off, whose longest gap is 120 s; libvirt refuses the resume until then.
 */
export const POSTCOPY_DESTINATION_WAIT_MS = 180_000;
export const POSTCOPY_DESTINATION_POLL_MS = 2_000;

export interface RetriedAction {
  /** The error of the last attempt, null when it succeeded. */
  error: string | null;
  /** The errors of the attempts before it, oldest first. */
  earlierErrors: string[];
  /** For a post-copy resume: how long it waited for its destination to see the broken stream (ms). */
  waitedForDestinationMs?: number;
}

export interface RetryIo {
  apply: (a: RecoveryAction) => Promise<void>;
  /** Fresh evidence (null when it could not be gathered). */
  regather: () => Promise<VmEvidence | null>;
  sleep: (ms: number) => Promise<void>;
  /** Told each time a resume starts waiting for its destination. */
  onWait?: (text: string) => void;
}

/** Whether the resume's destination still reports its post-copy migration running (it has not seen it break). */
function destinationUnaware(evidence: VmEvidence | null, action: RecoveryAction): boolean {
  return evidence?.hosts.find((h) => h.hostId === action.toHostId)?.postCopy === 'active';
}

/** The same post-copy resume in fresh evidence, if it still offers it. */
function sameResume(evidence: VmEvidence | null, action: RecoveryAction): RecoveryAction | undefined {
  return evidence?.actions.find(
    (a) => a.kind === 'postcopy-resume' && a.hostId === action.hostId && a.toHostId === action.toHostId,
  );
}

/**
 * Carries out `action`, chosen from `evidence`. A post-copy resume first waits (up to
 * POSTCOPY_DESTINATION_WAIT_MS) for its destination to report the migration failed; one that fails is tried
 * again (up to POSTCOPY_RESUME_ATTEMPTS in all, waiting longer each time) while fresh evidence still offers
 * that very resume: right after the link comes back an end may still be settling its view of the broken
 * stream. A resume never destroys either end, so waiting and trying again are safe. Other actions are
 * carried out once.
 */
export async function applyWithRetry(
  action: RecoveryAction,
  evidence: VmEvidence | null,
  io: RetryIo,
): Promise<RetriedAction> {
  if (action.kind !== 'postcopy-resume') {
    const error = await io.apply(action).then(
      () => null,
      (err: unknown) => errorMessage(err),
    );
    return { error, earlierErrors: [] };
  }
  const earlierErrors: string[] = [];
  let current = action;
  let latest = evidence;
  let waitedMs = 0;
  const result = (error: string | null): RetriedAction => ({
    error,
    earlierErrors,
    ...(waitedMs > 0 ? { waitedForDestinationMs: waitedMs } : {}),
  });
  /** Waits while the destination has not seen the stream break; an error when the resume is no longer offered. */
  const waitForDestination = async (): Promise<string | null> => {
    if (!destinationUnaware(latest, current) || waitedMs >= POSTCOPY_DESTINATION_WAIT_MS) return null;
    io.onWait?.(
      `${current.toHostId ?? '?'} still reports the post-copy migration running: waiting up to ${POSTCOPY_DESTINATION_WAIT_MS / 1000} s for it to see the stream break`,
    );
    while (destinationUnaware(latest, current) && waitedMs < POSTCOPY_DESTINATION_WAIT_MS) {
      await io.sleep(POSTCOPY_DESTINATION_POLL_MS);
      waitedMs += POSTCOPY_DESTINATION_POLL_MS;
      const fresh = await io.regather().catch(() => null);
      if (fresh === null) continue; // no evidence this time: keep waiting on what was seen last
      latest = fresh;
      const same = sameResume(latest, current);
      if (same === undefined)
        return `no longer offered while waiting for ${current.toHostId ?? '?'}: ${latest.summary}`;
      current = same;
    }
    return null;
  };
  for (let attempt = 1; ; attempt += 1) {
    const gone = await waitForDestination();
    if (gone !== null) return result(gone);
    try {
      await io.apply(current);
      return result(null);
    } catch (err) {
      const error = errorMessage(err);
      if (attempt >= POSTCOPY_RESUME_ATTEMPTS) return result(error);
      await io.sleep(POSTCOPY_RESUME_RETRY_MS * attempt);
      latest = await io.regather().catch(() => null);
      const same = sameResume(latest, current);
      if (same === undefined) return result(error);
      earlierErrors.push(error);
      current = same;
    }
  }
}

/** Carries out one action (every call under the timeout). */
export async function applyRecoveryAction(
  hv: VmControl & Pick<MigrationControl, 'resumePostCopy'>,
  vmId: string,
  action: RecoveryAction,
  timeoutMs: number,
): Promise<void> {
  if (action.kind === 'resume') {
    await callWithTimeout(hv.clock, 'resumeVm', timeoutMs, hv.resumeVm(action.hostId, vmId));
  } else if (action.kind === 'postcopy-resume') {
    if (!hv.resumePostCopy || action.toHostId === undefined)
      throw new Error('this hypervisor cannot resume a post-copy migration');
    // The migration sends the rest of the guest's memory: no call time-out, it ends when the copy does.
    await hv.resumePostCopy({ vmId, from: action.hostId, to: action.toHostId });
  } else {
    await callWithTimeout(hv.clock, 'destroyVm', timeoutMs, hv.destroyVm(action.hostId, vmId));
  }
}
