// The per-step watchdog forecasts the service hands the executor with a plan.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/domain/policy.js';
import { parseSnapshot } from '../../src/domain/snapshot.js';
import type { Plan } from '../../src/domain/plan.js';
import { predictiveWatchdogPlan } from '../../src/planner/index.js';
import { stepForecasts } from '../../src/service/step-forecasts.js';

const host = (id: string, bandwidthMiBps: number) => ({
  id,
  cpus: 32,
  memMiB: 262144,
  state: 'active',
  cpuPct: 10,
  memUsedMiB: 8192,
  bandwidthMiBps,
  cpuModel: 'Cascadelake-Server',
  labels: {},
});
const vm = (id: string, state: 'running' | 'shutoff', dirtyMiBps: number | null) => ({
  id,
  name: id,
  host: 'a',
  state,
  vcpus: 2,
  memMiB: 4096,
  cpuPct: 10,
  memUsedMiB: 3000,
  dirtyMiBps,
  storage: 'shared',
  labels: {},
});
const snapshot = parseSnapshot({
  version: 1,
  takenAt: '2026-11-26T05:00:00Z',
  hosts: [host('a', 500), host('b', 119)],
  vms: [vm('web', 'running', 20), vm('off', 'shutoff', null), vm('churn', 'running', 400)],
});
const step = (v: string, kind: 'live' | 'offline', concurrency?: number) => ({
  vm: v,
  from: 'a',
  to: 'b',
  kind,
  why: 'test',
  predicted: { converges: true, durationS: 10, downtimeMs: 10, transferMiB: 100 },
  ...(concurrency !== undefined ? { concurrency } : {}),
});
const plan: Plan = {
  id: 'p',
  reason: 'drain',
  createdAt: '2026-11-26T05:00:00Z',
  steps: [step('web', 'live', 1), step('off', 'offline'), step('gone', 'live'), step('churn', 'live')],
  skipped: [],
  before: { cpuSpreadPct: 0, memSpreadPct: 0 },
  after: { cpuSpreadPct: 0, memSpreadPct: 0 },
};

describe('stepForecasts', () => {
  const policy = parsePolicy({});
  it('forecasts live steps at their link (the slower end) and concurrency', () => {
    const out = stepForecasts(plan, snapshot, policy);
    const web = snapshot.vms.find((v) => v.id === 'web');
    if (!web) throw new Error('fixture');
    const expected = predictiveWatchdogPlan(web, { bandwidthMiBps: 119, concurrency: 1 }, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    // The expected duration (what a waiting migration's ETA is) is the forecast's on this link, not the step's
    // own prediction (10 s in this fixture).
    expect(out.web).toEqual({
      deadlineS: expected.deadlineS,
      stallWindowS: expected.stallWindowS,
      expectedDurationS: Math.round(expected.expectedDurationS * 10) / 10,
    });
    expect(out.web?.expectedDurationS).not.toBe(10);
    // At the policy's default concurrency (2) the same VM would get a longer deadline.
    const shared = predictiveWatchdogPlan(web, { bandwidthMiBps: 119, concurrency: 2 }, policy, {
      kind: 'live',
      downtimeBudgetMs: 300,
    });
    expect(shared.deadlineS).toBeGreaterThan(expected.deadlineS);
  });

  it('gives none to offline steps, unknown VMs and VMs predicted not to finish', () => {
    const out = stepForecasts(plan, snapshot, policy);
    expect(Object.keys(out)).toEqual(['web']);
    expect(stepForecasts(plan, null, policy)).toEqual({});
  });
});
