// The fault suites' shared pieces: the invariant (every VM runs on exactly one host and is defined on exactly
// one host), and the fault table each suite prints and merges into bench/results/faults.json.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hypervisor } from '../../src/hypervisor/hypervisor.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FAULTS_JSON = join(REPO, 'bench/results/faults.json');

export interface FaultRow {
  /** Which suite ran it: `sim` or `lab`. */
  suite: string;
  fault: string;
  outcome: string;
  vmsChecked: number;
  violations: number;
  /** The violations, one line each (empty when there are none). */
  details: string[];
  durationS: number;
}

/**
 * Checks the invariant for `vmIds` on every host: exactly one host where the VM is not shut off, and exactly
 * one host where it is defined (persistent). Returns one line per violation.
 */
export async function checkInvariant(hv: Hypervisor, vmIds: readonly string[]): Promise<string[]> {
  const violations: string[] = [];
  for (const vmId of vmIds) {
    const where = await hv.locateVm(vmId);
    const running = where.filter((p) => p.state !== 'shutoff');
    const defined = where.filter((p) => p.persistent);
    if (running.length !== 1)
      violations.push(`${vmId}: running on ${running.length} hosts (${JSON.stringify(where)})`);
    if (defined.length !== 1)
      violations.push(`${vmId}: defined on ${defined.length} hosts (${JSON.stringify(where)})`);
  }
  return violations;
}

const rows: FaultRow[] = [];

export function addRow(row: FaultRow): void {
  rows.push(row);
}

/** Prints the suite's table and merges its rows into bench/results/faults.json (rows of other suites stay). */
export function writeTable(suite: string): FaultRow[] {
  const mine = rows.filter((r) => r.suite === suite);
  const header = `${'fault'.padEnd(58)} ${'outcome'.padEnd(52)} ${'VMs'.padStart(4)} ${'violations'.padStart(10)}`;
  const lines = mine.map(
    (r) =>
      `${r.fault.padEnd(58)} ${r.outcome.slice(0, 52).padEnd(52)} ${String(r.vmsChecked).padStart(4)} ${String(r.violations).padStart(10)}`,
  );
  console.log([`fault suite (${suite})`, header, ...lines, ...mine.flatMap((r) => r.details)].join('\n'));
  let existing: FaultRow[] = [];
  if (existsSync(FAULTS_JSON)) {
    try {
      existing = (JSON.parse(readFileSync(FAULTS_JSON, 'utf8')) as { rows?: FaultRow[] }).rows ?? [];
    } catch {
      existing = [];
    }
  }
  const merged = [...existing.filter((r) => r.suite !== suite), ...mine];
  mkdirSync(dirname(FAULTS_JSON), { recursive: true });
  const cpuModel = cpus()[0]?.model ?? 'unknown';
  writeFileSync(
    FAULTS_JSON,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { nproc: cpus().length, cpuModel, memMiB: Math.round(totalmem() / 2 ** 20) },
        totalViolations: merged.reduce((n, r) => n + r.violations, 0),
        rows: merged,
      },
      null,
      2,
    )}\n`,
  );
  return mine;
}
