// `make demo` end to end: the story runs on the simulator with its own private Redis and tells the truth.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('drover demo', () => {
  it('plans, skips the churner, aborts the spiking migration, drains a host, and leaves every VM on one host', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    delete env.REDIS_URL; // the demo must start its own Redis
    const run = spawnSync('npx', ['tsx', 'src/cli/main.ts', 'demo'], {
      env,
      encoding: 'utf8',
      timeout: 170_000,
    });
    const out = run.stdout;
    expect(run.status, `${out}\n${run.stderr}`).toBe(0);
    expect(out).toMatch(/private redis-server, pid \d+/);
    // The JVM-like VM is skipped with the numbers that rule it out.
    expect(out).toMatch(
      /skipped jvm-orders: dirty rate \d+ MiB\/s cannot converge at \d+ MiB\/s within 300 ms/,
    );
    // The VM whose dirty rate spiked was aborted and still runs on the host it was leaving.
    const aborted = /^(\S+): migration aborted .*; it runs on (\S+) \(running\)$/m.exec(out);
    expect(aborted, out).not.toBeNull();
    const [, vm, host] = aborted ?? [];
    expect(out).toMatch(new RegExp(`^${vm}\\s+${host}\\s+kvm-\\d+\\s+live`, 'm'));
    expect(out).toMatch(/^kvm-09: empty, ready for maintenance$/m);
    expect(out).toMatch(/^template-09\s+kvm-09 -> kvm-\d+\s+offline\s+completed/m);
    expect(out).toMatch(/moves: \d+ completed, 1 aborted by the watchdog, 1 skipped by the planner/);
    expect(out).toMatch(/^every VM runs on exactly one host$/m);
    // Every completed live migration stayed within its downtime budget.
    const rows = out.split('\n').filter((l) => / live\s+completed /.test(l));
    expect(rows.length).toBeGreaterThan(5);
    for (const row of rows) expect(row).toMatch(/ yes$/);
  }, 180_000);
});
