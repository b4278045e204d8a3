import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.js';
import { loadPolicy } from '../../src/planner/load-policy.js';
import { PolicyReloader } from '../../src/service/policy-reloader.js';

async function reloads(metrics: ReturnType<typeof createMetrics>, outcome: string): Promise<number> {
  return (await metrics.policyReloads.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

describe('PolicyReloader', () => {
  let dir = '';
  let reloader: PolicyReloader | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-policy-'));
  });
  afterEach(async () => {
    reloader?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies a good reload, keeps the old policy on a bad one, and counts both', async () => {
    const path = join(dir, 'policy.yaml');
    await writeFile(path, 'limits: { maxMovesPerRun: 7 }\n');
    const metrics = createMetrics();
    const errors: object[] = [];
    const seen: number[] = [];
    reloader = await PolicyReloader.open({
      path,
      load: loadPolicy,
      metrics,
      log: { info: () => undefined, error: (o) => errors.push(o) },
      onChange: (p) => seen.push(p.limits.maxMovesPerRun),
    });
    expect(reloader.current().limits.maxMovesPerRun).toBe(7);

    await writeFile(path, 'limits: { maxMovesPerRun: -3 }\n');
    const bad = await reloader.reload('SIGHUP');
    expect(bad.applied).toBe(false);
    expect(bad.applied === false && bad.error).toContain('limits.maxMovesPerRun');
    expect(reloader.current().limits.maxMovesPerRun).toBe(7);
    expect(errors).toHaveLength(1);
    expect(await reloads(metrics, 'rejected')).toBe(1);

    await writeFile(path, 'limits: { maxMovesPerRun: 9 }\n');
    expect(await reloader.reload('SIGHUP')).toEqual({ applied: true });
    expect(reloader.current().limits.maxMovesPerRun).toBe(9);
    expect(seen).toEqual([9]);
    expect(await reloads(metrics, 'applied')).toBe(1);
  });

  it('notices a file replaced on disk (as editors save) through the file watch', async () => {
    const path = join(dir, 'policy.yaml');
    await writeFile(path, 'limits: { maxMovesPerRun: 3 }\n');
    reloader = await PolicyReloader.open({ path, load: loadPolicy });
    reloader.watch(50);
    await writeFile(join(dir, 'policy.yaml.tmp'), 'limits: { maxMovesPerRun: 4 }\n');
    await rename(join(dir, 'policy.yaml.tmp'), path);
    const deadline = Date.now() + 5000;
    while (reloader.current().limits.maxMovesPerRun !== 4 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(reloader.current().limits.maxMovesPerRun).toBe(4);
  });

  it('refuses to start with a bad policy', async () => {
    const path = join(dir, 'policy.yaml');
    await writeFile(path, 'limits: { maxMovesPerRun: 0 }\nbogus: 1\n');
    await expect(PolicyReloader.open({ path, load: loadPolicy })).rejects.toThrow(/bogus: unknown field/);
  });
});
