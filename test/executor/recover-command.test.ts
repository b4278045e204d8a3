// `drover recover` over the simulator: evidence, proven actions, and forcing actions behind --force.
import { describe, expect, it } from 'vitest';
import { runRecover } from '../../src/cli/commands/recover.js';
import { VMS, simCluster } from './support/sim-cluster.js';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (t: string) => out.push(t), err: (t: string) => err.push(t) } };
}

async function pausedOnBothEnds() {
  const sim = simCluster();
  sim.hv.faults.pausedOnBothEnds(VMS.idle);
  const m = await sim.hv.migrate({ vmId: VMS.idle, from: 'h1', to: 'h2', kind: 'live', maxDowntimeMs: 300 });
  await sim.clock.runUntil(m.done);
  return sim;
}

describe('drover recover', () => {
  it('shows a healthy VM with nothing to do', async () => {
    const { hv, clock } = simCluster();
    const o = io();
    const code = await clock.runUntil(runRecover(hv, VMS.idle, {}, o.io));
    expect(code).toBe(0);
    expect(o.out.join('\n')).toMatch(/diagnosis: ok/);
    expect(o.out.join('\n')).toMatch(/no action needed/);
  });

  it('without the migration it cannot prove a side: every action needs --force', async () => {
    const { hv, clock } = await pausedOnBothEnds();
    const o = io();
    const code = await clock.runUntil(runRecover(hv, VMS.idle, { json: true }, o.io));
    expect(code).toBe(0);
    const shown = JSON.parse(o.out.join('\n')) as {
      evidence: { diagnosis: string; actions: { forcing: boolean }[] };
    };
    expect(shown.evidence.diagnosis).toBe('paused-on-several-hosts');
    expect(shown.evidence.actions.length).toBeGreaterThan(0);
    expect(shown.evidence.actions.every((a) => a.forcing)).toBe(true);
    const refused = io();
    expect(await clock.runUntil(runRecover(hv, VMS.idle, { apply: [1] }, refused.io))).toBe(2);
    expect(refused.err.join('\n')).toMatch(/add --force/);
    expect((await hv.locateVm(VMS.idle)).map((p) => p.state)).toEqual(['paused', 'paused']);
  });

  it('with the source and destination named, the failed job proves the source and the actions apply', async () => {
    const { hv, clock } = await pausedOnBothEnds();
    const o = io();
    const code = await clock.runUntil(
      runRecover(hv, VMS.idle, { from: 'h1', to: 'h2', apply: [1, 2] }, o.io),
    );
    expect(code).toBe(0);
    expect(o.out.join('\n')).toMatch(/1\. destroy on h2/);
    expect(o.out.join('\n')).toMatch(/2\. resume on h1/);
    expect(await hv.locateVm(VMS.idle)).toEqual([{ hostId: 'h1', state: 'running', persistent: true }]);
  });

  it('--force carries out an unproven action', async () => {
    const { hv, clock } = await pausedOnBothEnds();
    const o = io();
    // Actions are listed in host order: 1 = resume on h1.
    const code = await clock.runUntil(runRecover(hv, VMS.idle, { apply: [1], force: true }, o.io));
    expect(code).toBe(0);
    const states = await hv.locateVm(VMS.idle);
    expect(states.find((p) => p.hostId === 'h1')?.state).toBe('running');
  });
});
