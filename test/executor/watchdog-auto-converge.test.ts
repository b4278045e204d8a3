// The predictive watchdog on the simulator: a VM the planner predicted to finish with auto-converge finishes,
// and the throttle ramp (remaining data high for many rounds while QEMU raises the throttle) is not taken for
// a stall.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/domain/policy.js';
import { MigrationRunner } from '../../src/executor/migration-runner.js';
import { chooseTechnique, precopyLimits } from '../../src/planner/index.js';
import { job, policy, simCluster, step, testOptions } from './support/sim-cluster.js';

const LINK_MIBPS = 100;

function prediction(allowAutoConverge: boolean) {
  const out = chooseTechnique(
    { memMiB: 2048, dirtyMiBps: 300, bandwidthMiBps: LINK_MIBPS, downtimeBudgetMs: 300 },
    precopyLimits(parsePolicy({})),
    { allowAutoConverge, allowPostCopy: false },
  );
  return {
    converges: out.converges,
    durationS: Math.round(out.durationS * 10) / 10,
    downtimeMs: Math.round(out.downtimeMs),
    transferMiB: Math.round(out.transferMiB),
    ...(out.technique !== 'precopy' ? { technique: out.technique } : {}),
  };
}

describe('predictive watchdog and auto-converge (simulator)', () => {
  it('lets a migration predicted to need auto-converge ramp its throttle and finish', async () => {
    const { hv, clock } = simCluster([
      {
        id: 'vm-ac',
        name: 'vm-ac',
        host: 'h1',
        vcpus: 2,
        memMiB: 2048,
        cpuModel: 'Cascadelake-Server',
        workload: { kind: 'constant', cpuPct: 50, dirtyMiBps: 300, wwsMiB: 1024 },
      },
    ]);
    const predicted = prediction(true);
    expect(predicted.technique).toBe('auto-converge');
    expect(prediction(false).converges).toBe(false);
    const runner = new MigrationRunner({ hypervisor: hv, options: testOptions() });
    const report = await clock.runUntil(
      runner.run(
        job(
          step('vm-ac', { predicted, downtimeBudgetMs: 300 }),
          policy({ profile: 'predictive', allowAutoConverge: true }),
        ),
        { bandwidthShareMiBps: () => LINK_MIBPS },
      ),
    );
    expect(report.outcome).toBe('completed');
    expect(report.watchdog.map((r) => r.action.kind)).not.toContain('abort');
    // The ramp was progress: no stall escalation happened while QEMU kept raising the throttle.
    expect(
      report.watchdog.filter((r) => r.action.kind === 'set-max-downtime' && r.action.reason === 'stalled'),
    ).toEqual([]);
    expect(report.durationS).toBeLessThan(predicted.durationS * 2 + 30);
    expect(await hv.locateVm('vm-ac')).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
    await hv.close();
  });
});
