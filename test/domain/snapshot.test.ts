import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors.js';
import { parseSnapshot } from '../../src/domain/snapshot.js';
import { parsePlan } from '../../src/domain/plan.js';

const host = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  cpus: 16,
  memMiB: 65536,
  state: 'active',
  cpuPct: 40,
  memUsedMiB: 30000,
  ...extra,
});
const vm = (id: string, hostId: string, extra: Record<string, unknown> = {}) => ({
  id,
  name: `vm-${id}`,
  host: hostId,
  state: 'running',
  vcpus: 2,
  memMiB: 4096,
  cpuPct: 10,
  memUsedMiB: 2000,
  dirtyMiBps: 5,
  storage: 'shared',
  ...extra,
});
const snap = (hosts: unknown[], vms: unknown[]) => ({
  version: 1,
  takenAt: '2026-11-25T12:00:00Z',
  hosts,
  vms,
});

function issuesOf(data: unknown): string[] {
  try {
    parseSnapshot(data);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a validation error');
}

describe('snapshot validation', () => {
  it('accepts the format of DESIGN.md, with null measurements', () => {
    const s = parseSnapshot(
      snap(
        [host('a'), host('b', { bandwidthMiBps: 1150, labels: { rack: 'r1' } })],
        [vm('1', 'a', { dirtyMiBps: null, labels: { app: 'db' } })],
      ),
    );
    expect(s.hosts).toHaveLength(2);
    expect(s.vms[0]?.dirtyMiBps).toBeNull();
  });

  it('names the path and the expected value of a wrong field', () => {
    const hosts = [host('a'), host('b'), host('c'), host('d', { memMiB: 'lots' })];
    expect(issuesOf(snap(hosts, []))).toEqual(['hosts[3].memMiB: expected a positive number, got "lots"']);
  });

  it('reports every issue at once', () => {
    const issues = issuesOf(
      snap([host('a', { cpus: -2, state: 'asleep' })], [vm('1', 'a', { storage: 'nfs' })]),
    );
    expect(issues).toContain('hosts[0].cpus: expected a positive integer, got -2');
    expect(issues).toContain(
      'hosts[0].state: expected one of active | maintenance | disabled | down, got "asleep"',
    );
    expect(issues).toContain('vms[0].storage: expected one of shared | local, got "nfs"');
  });

  it('rejects unknown fields and missing measurements that are not null', () => {
    const withExtra = issuesOf(snap([host('a', { colour: 'red' })], []));
    expect(withExtra).toEqual(['hosts[0].colour: unknown field']);
    const { cpuPct: _drop, ...noCpu } = host('a');
    expect(issuesOf(snap([noCpu], []))[0]).toMatch(/^hosts\[0\]\.cpuPct: /);
  });

  it('rejects duplicate ids and VMs on unknown hosts', () => {
    const issues = issuesOf(snap([host('a'), host('a')], [vm('1', 'zz'), vm('1', 'a')]));
    expect(issues).toEqual([
      'hosts[1].id: duplicate host id "a"',
      'vms[0].host: expected the id of a host in hosts, got "zz"',
      'vms[1].id: duplicate VM id "1"',
    ]);
  });

  it('validates plans too', () => {
    const plan = {
      id: 'p1',
      reason: 'drain',
      createdAt: '2026-11-25T12:00:00Z',
      steps: [
        {
          vm: '1',
          from: 'a',
          to: 'b',
          kind: 'live',
          why: 'drain a',
          predicted: { converges: true, durationS: 21.4, downtimeMs: 180, transferMiB: 19500 },
        },
      ],
      skipped: [],
      before: { cpuSpreadPct: 38, memSpreadPct: 22.1 },
      after: { cpuSpreadPct: 9.6, memSpreadPct: 11 },
    };
    expect(parsePlan(plan).steps[0]?.kind).toBe('live');
    expect(() => parsePlan({ ...plan, reason: 'tidy' })).toThrow(
      /reason: expected one of rebalance \| drain/,
    );
  });
});
