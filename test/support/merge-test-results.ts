// Joins the JSON reports of the two vitest runs of `make test` (unit and lab) into one report with vitest's
// own fields, so that the totals count every test. A run that wrote no report counts as a suite that failed
// to run. It ends by naming each failed test with the first lines of its error, so the tail of `make test`'s
// output says what failed. Usage: tsx test/support/merge-test-results.ts OUT IN...
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

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

interface FileResult {
  name?: string;
  status?: string;
  message?: string;
  assertionResults?: { fullName?: string; title?: string; status?: string; failureMessages?: string[] }[];
}

/** One line per failed test (or per file that failed outside its tests), with its error's first lines. */
export function failureSummary(report: Report, maxLines = 6): string[] {
  const lines: string[] = [];
  const excerpt = (text: string | undefined): string =>
    (text ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .map((l) => (l.length > 400 ? `${l.slice(0, 400)} …` : l))
      .slice(0, maxLines)
      .map((l) => `    ${l}`)
      .join('\n');
  for (const file of report.testResults as FileResult[]) {
    const name = (file.name ?? '?').replace(/^.*?\/test\//, 'test/');
    const failed = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    for (const t of failed)
      lines.push(`FAILED ${name} > ${t.fullName ?? t.title}\n${excerpt(t.failureMessages?.[0])}`);
    if (failed.length === 0 && file.status === 'failed')
      lines.push(`FAILED ${name} (outside its tests)\n${excerpt(file.message)}`);
  }
  return lines;
}

const invoked = process.argv[1];
const [out, ...inputs] = process.argv.slice(2);
if (invoked !== undefined && import.meta.url === pathToFileURL(resolve(invoked)).href && out !== undefined) {
  const merged = mergeReports(inputs);
  writeFileSync(out, JSON.stringify(merged));
  const failures = failureSummary(merged);
  if (failures.length > 0) console.log(`== failed tests (${failures.length})\n${failures.join('\n')}`);
}
