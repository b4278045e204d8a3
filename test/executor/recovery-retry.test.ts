// `drover recover --apply` on a broken post-copy migration: the resume is tried again, waiting longer each
// time, while fresh evidence still offers that very resume; other actions run once.
import { describe, expect, it } from 'vitest';
import {
  applyWithRetry,
  POSTCOPY_RESUME_ATTEMPTS,
  POSTCOPY_RESUME_RETRY_MS,
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

function evidenceOffering(actions: RecoveryAction[]): VmEvidence {
  return {
    vmId: 'vm-1',
    at: new Date(0).toISOString(),
    hosts: [],
    diagnosis: actions.length > 0 ? 'postcopy-failed' : 'ok',
    holder: null,
    summary: '',
    actions,
  };
}

/** An action that fails `failures` times, then succeeds; records what it was called with and the waits. */
function scripted(failures: number, offered: () => RecoveryAction[] = () => [RESUME]) {
  const calls: RecoveryAction[] = [];
  const waits: number[] = [];
  let gathered = 0;
  return {
    calls,
    waits,
    gathered: () => gathered,
    apply: (a: RecoveryAction) => {
      calls.push(a);
      return calls.length <= failures
        ? Promise.reject(new Error(`job 'migration in' failed in post-copy phase (${calls.length})`))
        : Promise.resolve();
    },
    regather: () => {
      gathered += 1;
      return Promise.resolve(evidenceOffering(offered()));
    },
    sleep: (ms: number) => {
      waits.push(ms);
      return Promise.resolve();
    },
  };
}

describe('applyWithRetry', () => {
  it('resumes a broken post-copy on a later attempt and keeps the earlier errors', async () => {
    const s = scripted(1);
    const r = await applyWithRetry(RESUME, s.apply, s.regather, s.sleep);
    expect(r).toEqual({ error: null, earlierErrors: ["job 'migration in' failed in post-copy phase (1)"] });
    expect(s.calls).toHaveLength(2);
    expect(s.waits).toEqual([POSTCOPY_RESUME_RETRY_MS]);
    expect(s.gathered()).toBe(1);
  });

  it('gives up after its attempts, waiting longer before each, and reports the last error', async () => {
    const s = scripted(10);
    const r = await applyWithRetry(RESUME, s.apply, s.regather, s.sleep);
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
      const r = await applyWithRetry(RESUME, s.apply, s.regather, s.sleep);
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
    const r = await applyWithRetry(resume, s.apply, s.regather, s.sleep);
    expect(s.calls).toEqual([resume]);
    expect(s.waits).toEqual([]);
    expect(r.error).toContain('(1)');
  });
});
