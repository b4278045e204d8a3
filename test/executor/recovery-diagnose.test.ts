// diagnose(): which copy of a VM holds the guest after a migration ended badly, and what may be repaired
// without an operator.
import { describe, expect, it } from 'vitest';
import { diagnose, type HostEvidence, type MigrationHint } from '../../src/executor/recovery.js';
import { toMigrationJob } from '../../src/hypervisor/libvirt/job-stats.js';

const AT = '2026-12-03T20:00:00.000Z';
const noJob = toMigrationJob('none', {}, false);
const incoming = toMigrationJob('active', {}, false);

function host(hostId: string, state: HostEvidence['state'], extra: Partial<HostEvidence> = {}): HostEvidence {
  return { hostId, state, persistent: true, job: noJob, lastJob: null, error: null, ...extra };
}

const failed: MigrationHint = { from: 'lab1', to: 'lab2', outcome: 'failed', postCopy: false };

describe('diagnose after a failed pre-copy migration', () => {
  const source = host('lab1', 'running');
  const copy = host('lab2', 'paused', { persistent: false, job: incoming });

  it('destroys the paused incoming copy on the destination while the source runs the guest with no job', () => {
    const e = diagnose('vm', AT, [source, copy], failed);
    expect(e.diagnosis).toBe('stale-copy');
    expect(e.holder).toBe('lab1');
    expect(e.actions).toEqual([expect.objectContaining({ kind: 'destroy', hostId: 'lab2', forcing: false })]);
  });

  it('repairs nothing by itself when the migration was post-copy, the source still has a job, or it did not answer', () => {
    const cases: [HostEvidence[], MigrationHint | null][] = [
      [[source, copy], { ...failed, postCopy: true }],
      [[host('lab1', 'running', { job: incoming }), copy], failed],
      [[host('lab1', 'running', { job: null, error: 'jobStats did not answer' }), copy], failed],
      [[source, copy], null],
      [[source, host('lab2', 'paused', { persistent: true, job: incoming })], failed],
    ];
    for (const [hosts, hint] of cases) {
      const e = diagnose('vm', AT, hosts, hint);
      expect(e.actions.filter((a) => !a.forcing)).toEqual([]);
    }
  });
});

describe('diagnose a broken post-copy migration', () => {
  const source = host('lab1', 'paused', { postCopy: 'failed' });

  it('offers resuming it from its source, whether or not the destination has seen the stream break', () => {
    for (const destination of ['failed', 'active'] as const) {
      const e = diagnose('vm', AT, [source, host('lab2', 'running', { postCopy: destination })], null);
      expect(e.diagnosis).toBe('postcopy-failed');
      expect(e.holder).toBeNull();
      expect(e.actions).toEqual([
        expect.objectContaining({
          kind: 'postcopy-resume',
          hostId: 'lab1',
          toHostId: 'lab2',
          forcing: false,
        }),
      ]);
      // an operator reading the action learns why the resume may wait
      expect(e.actions[0]?.why.includes('lab2 has not yet seen the stream break')).toBe(
        destination === 'active',
      );
    }
  });
});
