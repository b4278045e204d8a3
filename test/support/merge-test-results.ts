// Joins the JSON reports of the two vitest runs of `make test` (unit and lab) into one report with vitest's
// own fields, so that the totals count every test. A run that wrote no report counts as a suite that failed
// to run. Usage: tsx test/support/merge-test-results.ts OUT IN...
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const COUNTS = [
  'numTotalTestSuites',
  'numPassedTestSuites',
  'numFailedTestSuites',
  'numPendingTestSuites',
  'numTotalTests',
  'numPassedTests',
  'numFailedTests',
  'numPendingTests',
  'numTodoTests',
  'numRuntimeErrorTestSuites',
] as const;

type Report = Record<(typeof COUNTS)[number], number> & {
  success: boolean;
  startTime: number;
  testResults: unknown[];
};

export function mergeReports(files: readonly string[]): Report {
  const merged = { success: true, startTime: Infinity, testResults: [] as unknown[] } as Report;
  for (const key of COUNTS) merged[key] = 0;
  for (const file of files) {
    if (!existsSync(file)) {
      console.error(`${file}: missing (that test run ended without a report)`);
      merged.success = false;
      merged.numRuntimeErrorTestSuites += 1;
      continue;
    }
    const report = JSON.parse(readFileSync(file, 'utf8')) as Partial<Report>;
    for (const key of COUNTS) merged[key] += report[key] ?? 0;
    merged.success &&= report.success === true;
    merged.startTime = Math.min(merged.startTime, report.startTime ?? Infinity);
    merged.testResults.push(...(report.testResults ?? []));
  }
  if (!Number.isFinite(merged.startTime)) merged.startTime = Date.now();
  return merged;
}

const [out, ...inputs] = process.argv.slice(2);
if (out !== undefined) writeFileSync(out, JSON.stringify(mergeReports(inputs)));
