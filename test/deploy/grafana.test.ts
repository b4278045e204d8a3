// The Grafana dashboard: well-formed, panels laid out without overlap, every query valid PromQL (checked by
// promtool as recording rules) over metrics drover exports.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createMetrics } from '../../src/metrics/metrics.js';

const run = promisify(execFile);

interface Panel {
  id: number;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { expr: string }[];
}

async function dashboard(): Promise<{ uid: string; panels: Panel[] }> {
  const text = await readFile(join(import.meta.dirname, '../../deploy/grafana/drover.json'), 'utf8');
  return JSON.parse(text) as { uid: string; panels: Panel[] };
}

describe('deploy/grafana/drover.json', () => {
  it('has unique panel ids and no overlapping panels within the 24-column grid', async () => {
    const { panels, uid } = await dashboard();
    expect(uid).toBe('drover');
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels) expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    for (const a of panels) {
      for (const b of panels) {
        if (a === b) continue;
        const overlap =
          a.gridPos.x < b.gridPos.x + b.gridPos.w &&
          b.gridPos.x < a.gridPos.x + a.gridPos.w &&
          a.gridPos.y < b.gridPos.y + b.gridPos.h &&
          b.gridPos.y < a.gridPos.y + a.gridPos.h;
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false);
      }
    }
  });

  it('queries only metrics drover exports, in valid PromQL', async () => {
    const { panels } = await dashboard();
    const exprs = panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(15);
    const metrics = createMetrics({ perVmSeries: true });
    const exported = new Set<string>();
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      exported.add(m.name);
      if (String(m.type) === 'histogram')
        for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
    }
    for (const expr of exprs) {
      for (const name of expr.match(/\bdrover_[a-z_]+/g) ?? []) expect(exported, expr).toContain(name);
    }
    const dir = await mkdtemp(join(tmpdir(), 'drover-grafana-'));
    try {
      const rules = {
        groups: [
          {
            name: 'dashboard',
            rules: exprs.map((expr, i) => ({
              record: `dashboard:query_${i}`,
              expr: expr.replaceAll('$__rate_interval', '5m'),
            })),
          },
        ],
      };
      await writeFile(join(dir, 'queries.yml'), stringify(rules));
      const { stdout } = await run('promtool', ['check', 'rules', join(dir, 'queries.yml')]);
      expect(stdout).toContain(`SUCCESS: ${exprs.length} rules found`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('has job and instance variables, and every query filters on both', async () => {
    const text = await readFile(join(import.meta.dirname, '../../deploy/grafana/drover.json'), 'utf8');
    const board = JSON.parse(text) as { templating: { list: { name: string }[] }; panels: Panel[] };
    expect(board.templating.list.map((v) => v.name)).toEqual(['datasource', 'job', 'instance']);
    for (const expr of board.panels.flatMap((p) => p.targets.map((t) => t.expr))) {
      for (const m of expr.matchAll(/\bdrover_[a-z_]+(\{[^}]*\})?/g))
        expect(m[1] ?? '', expr).toBe('{job=~"$job",instance=~"$instance"}');
    }
  });
});
