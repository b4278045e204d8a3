// Packaging that cannot be built here (no Docker engine) is checked statically: the example config loads and
// documents every field; the Dockerfile copies only what exists and is not ignored, runs as non-root and
// has a health check; the systemd unit passes systemd-analyze.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigSchema, loadConfig } from '../../src/service/config.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '../..');

/** Every key path of a zod object schema's shape, one level into nested objects. */
function topLevelKeys(): string[] {
  return Object.keys(ConfigSchema.shape);
}

describe('drover.example.yaml', () => {
  it('is a valid config once its token sources exist', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-example-'));
    try {
      const text = (await readFile(join(root, 'drover.example.yaml'), 'utf8'))
        .replace('/etc/drover/read.token', join(dir, 'read.token'))
        .replace('policies/default.yaml', join(root, 'policies/default.yaml'));
      await writeFile(join(dir, 'read.token'), 'read-token-0123456789\n');
      await writeFile(join(dir, 'drover.yaml'), text);
      const loaded = await loadConfig(join(dir, 'drover.yaml'), {
        DROVER_ADMIN_TOKEN: 'admin-token-0123456789',
      });
      expect(loaded.config.hypervisor.kind).toBe('libvirt');
      expect(loaded.tokens.map((t) => t.role)).toEqual(['admin', 'read']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('mentions every top-level section and every collector and executor option', async () => {
    const text = await readFile(join(root, 'drover.example.yaml'), 'utf8');
    for (const key of topLevelKeys()) expect(text, key).toMatch(new RegExp(`^${key}:`, 'm'));
    const { CollectorOptionsSchema } = await import('../../src/collector/collector-options.js');
    const { ExecutorOptionsSchema } = await import('../../src/executor/executor-options.js');
    for (const key of Object.keys(CollectorOptionsSchema.shape))
      expect(text, `collector.${key}`).toContain(`${key}:`);
    for (const key of Object.keys(ExecutorOptionsSchema.shape)) {
      if (key === 'prefix') continue;
      expect(text, `executor.${key}`).toContain(`${key}:`);
    }
  });
});

describe('Dockerfile', () => {
  it('is multi-stage, runs as non-root with a health check, and copies only files that exist', async () => {
    const text = await readFile(join(root, 'Dockerfile'), 'utf8');
    expect(text.match(/^FROM /gm)).toHaveLength(2);
    expect(text).toMatch(/^USER node$/m);
    expect(text).toMatch(/^HEALTHCHECK /m);
    const ignored = (await readFile(join(root, '.dockerignore'), 'utf8'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#') && !l.startsWith('!'));
    const sources = [...text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    expect(sources.length).toBeGreaterThan(5);
    for (const src of sources) {
      expect(existsSync(join(root, src)), `COPY ${src}`).toBe(true);
      expect(ignored, `${src} is in .dockerignore`).not.toContain(src);
    }
    // The build compiles with tsconfig.build.json into dist/, which bin/drover.js runs.
    expect(text).toContain('tsc -p tsconfig.build.json');
    expect(await readFile(join(root, 'bin/drover.js'), 'utf8')).toContain(
      "join(root, 'dist', 'cli', 'main.js')",
    );
  });
});

describe('deploy/systemd/drover.service', () => {
  it('passes systemd-analyze verify', async (ctx) => {
    const result = await run('systemd-analyze', [
      'verify',
      join(root, 'deploy/systemd/drover.service'),
    ]).catch((err: { stdout?: string; stderr?: string; code?: unknown }) => err);
    // Without systemd on the machine there is nothing to verify with: say so rather than pass.
    if ('code' in result && result.code === 'ENOENT') return ctx.skip('systemd-analyze is not installed');
    const { stdout = '', stderr = '' } = result;
    const complaints = `${stdout}${stderr}`
      .split('\n')
      .filter((l) => l.includes('drover.service') && !/Failed to (resolve|look up) (user|group)/.test(l));
    expect(complaints).toEqual([]);
  });

  it('keeps its hardening: systemd-analyze security rates its exposure 2.0 or lower (4.5 before the last options)', async (ctx) => {
    const result = await run('systemd-analyze', [
      'security',
      '--offline=yes',
      '--no-pager',
      join(root, 'deploy/systemd/drover.service'),
    ]).catch((err: { stdout?: string; stderr?: string; code?: unknown }) => err);
    if ('code' in result && result.code === 'ENOENT') return ctx.skip('systemd-analyze is not installed');
    const text = `${result.stdout ?? ''}${result.stderr ?? ''}`;
    // --offline needs systemd 250 or later; an older one says it does not know the option.
    if (/unrecognized option|unknown option/i.test(text)) return ctx.skip('systemd-analyze has no --offline');
    const exposure = /Overall exposure level for drover\.service: ([\d.]+)/.exec(text)?.[1];
    expect(exposure, text.slice(-800)).toBeDefined();
    expect(Number(exposure)).toBeLessThanOrEqual(2.0);
  });
});
