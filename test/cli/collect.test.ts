// `drover collect` through the real command: a simulated snapshot is stamped when it is taken (not a minute
// ahead), and a config with a bad field is refused naming it, exit 3.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { parseSnapshot } from '../../src/domain/snapshot.js';
import { DROVER_BIN } from '../support/serve-process.js';

function drover(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [DROVER_BIN, ...args],
      { env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe('drover collect', () => {
  it('stamps a simulated snapshot with the time it was taken', async () => {
    const startedMs = Date.now();
    const run = await drover(['collect', '--once', '--json', '--hosts', '2', '--vms-per-host', '1']);
    const doneMs = Date.now();
    expect(run.code, run.stderr).toBe(EXIT.ok);
    const snapshot = parseSnapshot(JSON.parse(run.stdout) as unknown);
    expect(snapshot.hosts).toHaveLength(2);
    expect(Date.parse(snapshot.takenAt)).toBeGreaterThanOrEqual(startedMs - 1_000);
    expect(Date.parse(snapshot.takenAt)).toBeLessThanOrEqual(doneMs);
  }, 120_000);

  it('refuses a config with a bad field, naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-collect-'));
    try {
      await writeFile(
        join(dir, 'drover.yaml'),
        'hypervisor: { kind: sim, generate: { hosts: 2, vmsPerHost: 1 } }\npolicy: { file: p.yaml }\n' +
          'api: { enabled: false }\ncollector: { intervalS: -1 }\n',
      );
      const run = await drover(['collect', '--config', join(dir, 'drover.yaml'), '--once']);
      expect(run.code).toBe(EXIT.badInput);
      expect(run.stderr).toContain('collector.intervalS: ');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
