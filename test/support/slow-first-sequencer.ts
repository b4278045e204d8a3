// The order test files start in: the slowest known files first, so that with two files running at a time the
// last ones to finish are short. The rest keep vitest's own order (longest by its cache when it has one, else
// largest first). The list is from the per-file times of `make test` on a busy 2-core machine; a file missing
// from it or a stale entry only costs a longer tail, never a test.
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

export const SLOW_FIRST = [
  'test/service/restart.test.ts',
  'test/cli/exit-codes.test.ts',
  'test/cli/operator-cli.test.ts',
  'test/faults/faults-sim.test.ts',
  'test/redis/cluster.test.ts',
  'test/cli/runtime-controls.test.ts',
  'test/service/strategy-schedule.test.ts',
  'test/service/fleet.test.ts',
  'test/redis/sentinel.test.ts',
  'test/security/serve-probes.test.ts',
  'test/cli/drain-output.test.ts',
  'test/fuzz/fuzz-documents.test.ts',
  'test/demo/demo.test.ts',
  'test/fuzz/fuzz-libvirt.test.ts',
  'test/security/route-walk.test.ts',
  'test/planner/plan-command.test.ts',
  'test/service/state-dir.test.ts',
  'test/fuzz/fuzz-api.test.ts',
  'test/deploy/prometheus-e2e.test.ts',
  'test/service/schedules.test.ts',
  'test/deploy/install.test.ts',
];

export default class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = this.ctx.config.root;
    const rank = (spec: TestSpecification): number => {
      const at = SLOW_FIRST.indexOf(relative(root, spec.moduleId));
      return at < 0 ? SLOW_FIRST.length : at;
    };
    return base
      .map((spec, at) => ({ spec, at, rank: rank(spec) }))
      .sort((a, b) => a.rank - b.rank || a.at - b.at)
      .map((x) => x.spec);
  }
}
