// `drover watchdog schedule`: the report behind it, its table, and the command end to end.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { formatScheduleTable, scheduleReport } from '../../src/cli/commands/watchdog.js';
import { DROVER_BIN } from '../support/serve-process.js';

const run = promisify(execFile);

describe('drover watchdog schedule', () => {
  it('reports the nova timetable with each action and its time', () => {
    const report = scheduleReport({ profile: 'nova', memMib: '8192', diskGib: '20' });
    expect(report.input).toEqual({ memMiB: 8192, diskGiB: 20, kind: 'block', downtimeBudgetMs: null });
    // data_gb = 8 + 20 = 28: delay int(75 x 28) = 2100 s, deadline 22400 s
    expect(report.timeline.filter((e) => e.atS !== null).map((e) => e.atS)).toEqual([
      0, 2100, 4200, 6300, 8400, 10500, 12600, 14700, 16800, 18900, 21000, 22400,
    ]);
    const table = formatScheduleTable(report);
    expect(table).toMatch(/profile nova: 8192 MiB RAM, 20 GiB disk \(block\), data 28 GiB/);
    expect(table).toMatch(/raise max downtime to 500 ms/);
  });

  it('names the bad field', () => {
    expect(() => scheduleReport({ profile: 'nova', memMib: 'lots' })).toThrow(
      /memMib: expected a positive number/,
    );
    expect(() => scheduleReport({ profile: 'vmware', memMib: '1024' })).toThrow(
      /profile: expected one of predictive/,
    );
  });

  it('prints JSON only with --json, and exits 3 on bad input', async () => {
    const { stdout } = await run(process.execPath, [
      DROVER_BIN,
      'watchdog',
      'schedule',
      '--profile',
      'kubevirt',
      '--mem-mib',
      '2048',
      '--json',
    ]);
    const parsed = JSON.parse(stdout) as { schedule: { deadlineMs: number; stallWindowMs: number } };
    expect(parsed.schedule.deadlineMs).toBe(150_000 * 3); // 2048 MiB = 2.15 GB -> 3
    expect(parsed.schedule.stallWindowMs).toBe(150_000);
    const bad = await run(process.execPath, [
      DROVER_BIN,
      'watchdog',
      'schedule',
      '--profile',
      'kubevirt',
      '--mem-mib',
      '-1',
    ]).catch((err: { code: number; stderr: string }) => err);
    expect('code' in bad ? bad.code : 0).toBe(3);
  }, 120_000);
});
