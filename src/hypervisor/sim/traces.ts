// Real VM workload traces (data/traces/) as CPU-usage time series for trace-driven simulated VMs.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DroverError } from '../../domain/errors.js';

/** Traces shipped in data/traces, by the name a workload spec uses. */
export const BUILTIN_TRACES = {
  'bitbrains-vm1': 'bitbrains_rnd_2013-7_vm1.csv',
  'bitbrains-vm2': 'bitbrains_rnd_2013-7_vm2.csv',
} as const;

export type BuiltinTraceName = keyof typeof BUILTIN_TRACES;

/** Largest trace file (CSV) a workload may name; a bigger one is refused before it is read. */
export const MAX_TRACE_FILE_BYTES = 64 * 1024 * 1024;

export interface Trace {
  name: string;
  /** Seconds between samples in the original trace. */
  sampleS: number;
  /** CPU usage of the VM's own cores, percent 0–100, one value per sample. */
  cpuPct: Float64Array;
  /** Guest memory in use (MiB) per sample. */
  memUsedMiB: Float64Array;
  cores: number;
}

const cache = new Map<string, Trace>();

/** Finds data/traces by walking up from this file (works from src/ and from a build under dist/). */
function tracesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'data', 'traces');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new DroverError('trace_not_found', 'cannot find the data/traces directory above the simulator');
}

/**
 * Parses a Bitbrains GWA-T-12 CSV: a header line, then rows whose fields are separated by `;` plus
 * whitespace; column 5 is CPU usage in percent, column 7 memory usage in KB.
 */
export function parseBitbrainsCsv(name: string, text: string): Trace {
  const lines = text.split('\n');
  const cpu: number[] = [];
  const mem: number[] = [];
  let cores = 1;
  const stamps: number[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]?.trim();
    if (!line) continue;
    const fields = line.split(';').map((f) => Number(f.trim()));
    const stamp = fields[0];
    const cpuPct = fields[4];
    const memKb = fields[6];
    if (stamp === undefined || cpuPct === undefined || memKb === undefined || !Number.isFinite(cpuPct)) {
      throw new DroverError('trace_invalid', `trace ${name}: line ${i + 1}: expected 11 numeric fields`);
    }
    stamps.push(stamp);
    cpu.push(Math.min(100, Math.max(0, cpuPct)));
    mem.push(Number.isFinite(memKb) ? memKb / 1024 : 0);
    cores = fields[1] ?? cores;
  }
  if (cpu.length === 0) throw new DroverError('trace_invalid', `trace ${name}: no samples`);
  const first = stamps[0] ?? 0;
  const last = stamps[stamps.length - 1] ?? first;
  const sampleS = stamps.length > 1 ? Math.round((last - first) / (stamps.length - 1)) : 300;
  return {
    name,
    sampleS,
    cpuPct: Float64Array.from(cpu),
    memUsedMiB: Float64Array.from(mem),
    cores,
  };
}

/** Loads a built-in trace by name, or a Bitbrains-format CSV by absolute path; cached. */
export function loadTrace(nameOrPath: string): Trace {
  const cached = cache.get(nameOrPath);
  if (cached) return cached;
  let file: string;
  if (nameOrPath in BUILTIN_TRACES) {
    file = join(tracesDir(), BUILTIN_TRACES[nameOrPath as BuiltinTraceName]);
  } else if (isAbsolute(nameOrPath)) {
    file = nameOrPath;
  } else {
    throw new DroverError(
      'trace_not_found',
      `trace: expected one of ${Object.keys(BUILTIN_TRACES).join(' | ')} or an absolute path, got ${JSON.stringify(nameOrPath)}`,
    );
  }
  const stat = statSync(file, { throwIfNoEntry: false });
  if (stat && (!stat.isFile() || stat.size > MAX_TRACE_FILE_BYTES))
    throw new DroverError(
      'trace_too_large',
      `trace: ${file} is ${stat.isFile() ? `${stat.size} bytes, more than the limit of ${MAX_TRACE_FILE_BYTES} bytes` : 'not a regular file'}`,
    );
  const trace = parseBitbrainsCsv(nameOrPath, readFileSync(file, 'utf8'));
  cache.set(nameOrPath, trace);
  return trace;
}
