// The shipped alert rules: valid for Prometheus, their promtool unit tests pass, and every metric they use
// is one drover exports (so renaming a metric cannot silently break an alert).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createMetrics } from '../../src/metrics/metrics.js';

const run = promisify(execFile);
const dir = join(import.meta.dirname, '../../deploy/prometheus');

interface RuleFile {
  groups: {
    name: string;
    rules: { alert: string; expr: string; for?: string; annotations: Record<string, string> }[];
  }[];
}

async function rules(): Promise<RuleFile> {
  return parse(await readFile(join(dir, 'alerts.yml'), 'utf8')) as RuleFile;
}

describe('deploy/prometheus/alerts.yml', () => {
  it('passes promtool check rules', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', 'alerts.yml'], { cwd: dir });
    expect(stdout).toContain('SUCCESS: 13 rules found');
  });

  it('passes its promtool unit tests', async () => {
    const { stdout } = await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: dir });
    expect(stdout).toContain('SUCCESS');
  });

  it('has the alerts operators rely on, and uses only metrics drover exports', async () => {
    const file = await rules();
    const alerts = file.groups.flatMap((g) => g.rules);
    expect(alerts.map((a) => a.alert).sort()).toEqual([
      'DroverDown',
      'DroverDrainNotProgressing',
      'DroverHostOverloaded',
      'DroverHostStale',
      'DroverMigrationAbortRateHigh',
      'DroverMigrationDowntimeOverBudget',
      'DroverMigrationStuck',
      'DroverNoLeader',
      'DroverPolicyReloadRejected',
      'DroverScheduleFailed',
      'DroverSnapshotStale',
      'DroverVmMigratedTooOften',
      'DroverVmOnTwoHosts',
    ]);
    const metrics = createMetrics({ perVmSeries: true });
    const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
    for (const alert of alerts) {
      const used = alert.expr.match(/\bdrover_[a-z_]+/g) ?? [];
      if (alert.alert === 'DroverDown') continue; // reads Prometheus's own `up`
      expect(used.length, alert.alert).toBeGreaterThan(0);
      for (const name of used) expect(exported, `${alert.alert} uses ${name}`).toContain(name);
    }
  });

  it('links every alert to its runbook, which says what it means, its impact, how to diagnose and mitigate it', async () => {
    const alerts = (await rules()).groups.flatMap((g) => g.rules);
    const root = join(dir, '../..');
    for (const alert of alerts) {
      expect(alert.annotations.runbook_url, alert.alert).toBe(
        `{{ with $externalLabels.drover_runbook_base }}{{ . }}{{ else }}docs/runbooks{{ end }}/${alert.alert}.md`,
      );
      const text = await readFile(join(root, 'docs/runbooks', `${alert.alert}.md`), 'utf8');
      expect(text, alert.alert).toMatch(new RegExp(`^# ${alert.alert}$`, 'm'));
      for (const section of ['Meaning', 'Impact', 'Diagnosis', 'Mitigation'])
        expect(text, `${alert.alert}: ${section}`).toMatch(new RegExp(`^## ${section}$`, 'm'));
      expect(text, `${alert.alert} names drover commands`).toMatch(/`drover [a-z]+/);
    }
  });

  it('keeps the job label in every aggregation, so two clusters on one Prometheus stay apart', async () => {
    for (const alert of (await rules()).groups.flatMap((g) => g.rules)) {
      for (const m of alert.expr.matchAll(/\b(sum|max|min|count)\s*(by\s*\(([^)]*)\))?\s*\(/g))
        expect(m[3] ?? '', `${alert.alert}: ${m[0]}`).toMatch(/\bjob\b/);
    }
  });
});
