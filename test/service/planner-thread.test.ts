// Rebalance planning of large clusters on a worker thread: the same plan as planning in place, while the
// event loop keeps running; small clusters stay in place.
import { afterEach, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/domain/policy.js';
import { planRebalance } from '../../src/planner/index.js';
import { PlannerThread } from '../../src/service/planner-thread.js';
import { generateCluster } from '../planner/support/generate-cluster.js';

const policy = parsePolicy({ limits: { maxMovesPerRun: 200 } });
const NOW = Date.parse('2026-11-26T05:00:00Z');

/** Counts turns of the event loop (a callback re-armed with setImmediate runs once per turn) while `work` runs. */
async function turnsDuring<T>(work: () => Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let on = true;
  const tick = () => {
    turns++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  const value = await work();
  on = false;
  return { value, turns };
}

describe('PlannerThread', () => {
  let thread: PlannerThread | null = null;
  afterEach(async () => {
    await thread?.close();
    thread = null;
  });

  it('plans a large cluster on the thread: the same plan as in place, and the event loop keeps turning', async () => {
    const snapshot = generateCluster({ hosts: 600, vms: 6000, seed: 4 });
    const expected = planRebalance(snapshot, policy, { now: NOW, history: undefined });
    expect(expected.steps.length).toBeGreaterThan(0);
    const warnings: string[] = [];
    thread = new PlannerThread({ minVms: 1000, log: { warn: (_o, msg) => warnings.push(msg) } });
    // The first plan also starts the thread (and loads the planner there).
    const { value: plan, turns } = await turnsDuring(() =>
      thread!.rebalance({ snapshot, policy, now: NOW, history: undefined }),
    );
    expect(warnings).toEqual([]);
    expect(plan).toEqual(expected);
    // Planned in place, the whole plan is one turn; on the thread the loop turns all along.
    expect(turns).toBeGreaterThan(20);
    const again = await thread.rebalance({ snapshot, policy, now: NOW, history: new Map() });
    expect(again.steps).toEqual(expected.steps);
  }, 60_000);

  it('plans a small cluster in place', async () => {
    const snapshot = generateCluster({ hosts: 20, vms: 150, seed: 2 });
    thread = new PlannerThread({ minVms: 1000 });
    const { value: plan, turns } = await turnsDuring(() =>
      thread!.rebalance({ snapshot, policy, now: NOW, history: undefined }),
    );
    expect(plan).toEqual(planRebalance(snapshot, policy, { now: NOW, history: undefined }));
    expect(turns).toBe(0);
  });
});
