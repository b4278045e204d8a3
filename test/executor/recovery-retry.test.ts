// `drover recover --apply` on a broken post-copy migration: the resume waits for its destination to see the
// stream break, and is tried again, waiting longer each time, while fresh evidence still offers that very
// resume; other actions run once.
import { describe, expect, it } from 'vitest';
import {
  applyWithRetry,
  POSTCOPY_DESTINATION_POLL_MS,
  POSTCOPY_DESTINATION_WAIT_MS,
  POSTCOPY_RESUME_ATTEMPTS,
  POSTCOPY_RESUME_RETRY_MS,
  type HostEvidence,
  type RecoveryAction,
  type VmEvidence,
} from '../../src/executor/recovery.js';

const RESUME: RecoveryAction = {
  kind: 'postcopy-resume',
  hostId: 'a',
  toHostId: 'b',
  why: 'resume the migration to b once the link between them works again',
  forcing: false,
};

/** The two ends of a broken post-copy as the evidence shows them; `b` is the destination. */
function ends(destination: 'active' | 'failed'): HostEvidence[] {
  const end = (hostId: string, postCopy: 'active' | 'failed', state: 'paused' | 'running'): HostEvidence => ({
    hostId,
    state,
    persistent: true,
    postCopy,
    job: null,
    lastJob: null,
    error: null,
  });
  return [end('a', 'failed', 'paused'), end('b', destination, 'running')];
}

function evidenceOffering(
  actions: RecoveryAction[],
  destination: 'active' | 'failed' = 'failed',
): VmEvidence {
  return {
    vmId: 'vm-1',
    at: new Date(0).toISOString(),
    hosts: ends(destination),
    diagnosis: actions.length > 0 ? 'postcopy-failed' : 'ok',
    holder: null,
    summary: '',
    actions,
  };
}

/**
 * An action that fails `failures` times, then succeeds; records what it was called with, the waits and what
 * it was told. Fresh evidence offers `offered()`, its destination unaware of the break for the first
 * `unawareFor` gatherings.
 */
function scripted(failures: number, offered: () => RecoveryAction[] = () => [RESUME], unawareFor = 0) {
  const calls: RecoveryAction[] = [];
  const waits: number[] = [];
  const told: string[] = [];
  let gathered = 0;
  return {
    calls,
    waits,
    told,
    gathered: () => gathered,
    io: () => ({
      apply: (a: RecoveryAction) => {
        calls.push(a);
        return calls.length <= failures
          ? Promise.reject(new Error(`job 'migration in' failed in post-copy phase (${calls.length})`))
          : Promise.resolve();
      },
      regather: () => {
        gathered += 1;
        return Promise.resolve(evidenceOffering(offered(), gathered <= unawareFor ? 'active' : 'failed'));
      },
      sleep: (ms: number) => {
        waits.push(ms);
        return Promise.resolve();
      },
      onWait: (text: string) => told.push(text),
    }),
  };
}

describe('applyWithRetry', () => {
  it('resumes a broken post-copy on a later attempt and keeps the earlier errors', async () => {
    const s = scripted(1);
    const r = await applyWithRetry(RESUME, evidenceOffering([RESUME]), s.io());
    expect(r).toEqual({ error: null, earlierErrors: ["job 'migration in' failed in post-copy phase (1)"] });
    expect(s.calls).toHaveLength(2);
    expect(s.waits).toEqual([POSTCOPY_RESUME_RETRY_MS]);
    expect(s.gathered()).toBe(1);
  });

  it('gives up after its attempts, waiting longer before each, and reports the last error', async () => {
    const s = scripted(10);
    const r = await applyWithRetry(RESUME, evidenceOffering([RESUME]), s.io());
    expect(s.calls).toHaveLength(POSTCOPY_RESUME_ATTEMPTS);
    expect(r.error).toBe(`job 'migration in' failed in post-copy phase (${POSTCOPY_RESUME_ATTEMPTS})`);
    expect(r.earlierErrors).toHaveLength(POSTCOPY_RESUME_ATTEMPTS - 1);
    expect(s.waits).toEqual(
      Array.from({ length: POSTCOPY_RESUME_ATTEMPTS - 1 }, (_, i) => POSTCOPY_RESUME_RETRY_MS * (i + 1)),
    );
  });

  it('stops when fresh evidence no longer offers that resume (another end, or nothing left to resume)', async () => {
    for (const offered of [[], [{ ...RESUME, toHostId: 'c' }]]) {
      const s = scripted(10, () => offered);
      const r = await applyWithRetry(RESUME, evidenceOffering([RESUME]), s.io());
      expect(s.calls).toHaveLength(1);
      expect(r).toEqual({ error: "job 'migration in' failed in post-copy phase (1)", earlierErrors: [] });
    }
  });

  it('carries out any other action once', async () => {
    const s = scripted(10);
    const resume: RecoveryAction = {
      kind: 'resume',
      hostId: 'a',
      why: 'paused on its only host',
      forcing: false,
    };
    const r = await applyWithRetry(resume, evidenceOffering([resume]), s.io());
    expect(s.calls).toEqual([resume]);
    expect(s.waits).toEqual([]);
    expect(r.error).toContain('(1)');
  });

  it('waits for the destination to see the stream break before resuming, and says so once', async () => {
    const s = scripted(0, () => [RESUME], 3);
    const r = await applyWithRetry(RESUME, evidenceOffering([RESUME], 'active'), s.io());
    // the destination reported `active` at first and in the next three gatherings, then `failed`
    expect(s.waits).toEqual(Array(4).fill(POSTCOPY_DESTINATION_POLL_MS));
    expect(s.calls).toEqual([RESUME]);
    expect(r).toEqual({
      error: null,
      earlierErrors: [],
      waitedForDestinationMs: 4 * POSTCOPY_DESTINATION_POLL_MS,
    });
    expect(s.told).toEqual([expect.stringMatching(/^b still reports the post-copy migration running/)]);
  });

  it('resumes at once when the destination already reports the post-copy failed', async () => {
    const s = scripted(0);
    const r = await applyWithRetry(RESUME, evidenceOffering([RESUME], 'failed'), s.io());
    expect(s.waits).toEqual([]);
    expect(r).toEqual({ error: null, earlierErrors: [] });
    expect(s.told).toEqual([]);
  });

  it('tries anyway once the wait is over, and waits no more on later attempts', async () => {
    const s = scripted(10, () => [RESUME], Number.POSITIVE_INFINITY);
    const r = await applyWithRetry(RESUME, evidenceOffering([RESUME], 'active'), s.io());
    const polls = POSTCOPY_DESTINATION_WAIT_MS / POSTCOPY_DESTINATION_POLL_MS;
    expect(s.waits.slice(0, polls)).toEqual(Array(polls).fill(POSTCOPY_DESTINATION_POLL_MS));
    expect(s.waits.slice(polls)).toEqual(
      Array.from({ length: POSTCOPY_RESUME_ATTEMPTS - 1 }, (_, i) => POSTCOPY_RESUME_RETRY_MS * (i + 1)),
    );
    expect(s.calls).toHaveLength(POSTCOPY_RESUME_ATTEMPTS);
    expect(r.waitedForDestinationMs).toBe(POSTCOPY_DESTINATION_WAIT_MS);
    expect(r.error).toContain(`(${POSTCOPY_RESUME_ATTEMPTS})`);
  });

  it('stops waiting, and resumes nothing, when fresh evidence no longer offers the resume', async () => {
    const s = scripted(0, () => [], Number.POSITIVE_INFINITY);
    const r = await applyWithRetry(RESUME, evidenceOffering([RESUME], 'active'), s.io());
    expect(s.calls).toEqual([]);
    expect(s.waits).toEqual([POSTCOPY_DESTINATION_POLL_MS]);
    expect(r.error).toMatch(/^no longer offered while waiting for b: /);
  });

  it('keeps waiting through evidence that could not be gathered', async () => {
    const waits: number[] = [];
    const calls: RecoveryAction[] = [];
    let gathered = 0;
    const r = await applyWithRetry(RESUME, evidenceOffering([RESUME], 'active'), {
      apply: (a) => {
        calls.push(a);
        return Promise.resolve();
      },
      regather: () => {
        gathered += 1;
        return gathered === 1
          ? Promise.reject(new Error('b did not answer'))
          : Promise.resolve(evidenceOffering([RESUME], 'failed'));
      },
      sleep: (ms) => {
        waits.push(ms);
        return Promise.resolve();
      },
    });
    expect(waits).toEqual([POSTCOPY_DESTINATION_POLL_MS, POSTCOPY_DESTINATION_POLL_MS]);
    expect(calls).toEqual([RESUME]);
    expect(r.error).toBeNull();
  });
});
