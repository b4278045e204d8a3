// The join of `make test`'s two vitest reports: the totals count both runs, a run without a report counts as
// a failed suite, and the closing summary names each failed test with the start of its error.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failureSummary, mergeReports } from './merge-test-results.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-merge-'));
  const report = (over: object) => ({
    numTotalTests: 0,
    numPassedTests: 0,
    numFailedTests: 0,
    success: true,
    startTime: 1000,
    testResults: [],
    ...over,
  });
  await writeFile(join(dir, 'unit.json'), JSON.stringify(report({ numTotalTests: 3, numPassedTests: 3 })));
  await writeFile(
    join(dir, 'lab.json'),
    JSON.stringify(
      report({
        numTotalTests: 2,
        numPassedTests: 1,
        numFailedTests: 1,
        success: false,
        startTime: 900,
        testResults: [
          {
            name: '/x/test/lab/a.test.ts',
            status: 'failed',
            assertionResults: [
              { fullName: 'lab a passes', status: 'passed', failureMessages: [] },
              {
                fullName: 'lab a keeps its budget',
                status: 'failed',
                failureMessages: [
                  'AssertionError: expected 31 to be <= 30\n\n   at a.test.ts:9\n' + 'x\n'.repeat(20),
                ],
              },
            ],
          },
          {
            name: '/x/test/lab/b.test.ts',
            status: 'failed',
            message: 'beforeAll: lab did not come up',
            assertionResults: [],
          },
        ],
      }),
    ),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('merge-test-results', () => {
  it('adds both runs, keeps the earliest start and fails when either failed', () => {
    const merged = mergeReports([join(dir, 'unit.json'), join(dir, 'lab.json')]);
    expect(merged.numTotalTests).toBe(5);
    expect(merged.numPassedTests).toBe(4);
    expect(merged.numFailedTests).toBe(1);
    expect(merged.startTime).toBe(900);
    expect(merged.success).toBe(false);
  });

  it('counts a run that wrote no report as a failed suite', () => {
    const merged = mergeReports([join(dir, 'unit.json'), join(dir, 'missing.json')]);
    expect(merged.success).toBe(false);
    expect(merged.numRuntimeErrorTestSuites).toBe(1);
  });

  it('names each failed test and each file that failed outside its tests, with the first lines of the error', () => {
    const lines = failureSummary(mergeReports([join(dir, 'unit.json'), join(dir, 'lab.json')]), 3);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(
      'FAILED test/lab/a.test.ts > lab a keeps its budget\n' +
        '    AssertionError: expected 31 to be <= 30\n    at a.test.ts:9\n    x',
    );
    expect(lines[1]).toBe(
      'FAILED test/lab/b.test.ts (outside its tests)\n    beforeAll: lab did not come up',
    );
  });

  it('says nothing when every test passed', () => {
    expect(failureSummary(mergeReports([join(dir, 'unit.json')]))).toEqual([]);
  });
});
