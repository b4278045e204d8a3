// `npm run bench:report`: regenerates BENCHMARKS.md from bench/results/*.json. Also the small helpers every
// bench of this repository shares: the machine description, statistics and the text table.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { format } from 'prettier';

const here = dirname(fileURLToPath(import.meta.url));
export const RESULTS_DIR = join(here, 'results');
const REPO_ROOT = resolve(here, '..');

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memMiB: number;
  freeMemMiB: number;
  /** 1, 5 and 15 minute load averages when the bench started. */
  loadAvg: number[];
  node: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    if (line) cpuModel = line.split(':').slice(1).join(':').trim();
  } catch {
    // not Linux: os.cpus() already gave the model
  }
  return {
    nproc: cpus().length,
    cpuModel,
    memMiB: Math.round(totalmem() / 2 ** 20),
    freeMemMiB: Math.round(freemem() / 2 ** 20),
    loadAvg: loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
  };
}

export function machineLine(m: MachineInfo): string {
  return `${m.nproc} CPUs (${m.cpuModel}), ${m.memMiB} MiB RAM, load ${m.loadAvg.join(' / ')}, node ${m.node}`;
}

/** The p-th percentile (0..100) by linear interpolation; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] ?? Number.NaN;
  const b = sorted[hi] ?? Number.NaN;
  return a + (b - a) * (pos - lo);
}

export const median = (values: readonly number[]): number => percentile(values, 50);

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** A result table: header cells and rows of cells, kept as data so BENCHMARKS.md can render it again. */
export interface ResultTable {
  title?: string;
  header: string[];
  rows: (string | number | null)[][];
}

const cellText = (c: string | number | null): string =>
  c === null ? '-' : typeof c === 'number' ? String(c) : c;

/** Fixed-width text rendering for the terminal. */
export function textTable(t: ResultTable): string {
  const rows = t.rows.map((r) => r.map(cellText));
  const widths = t.header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const out = [line(t.header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  return (t.title ? `${t.title}\n` : '') + out.join('\n');
}

/** GitHub-flavoured Markdown rendering. */
export function markdownTable(t: ResultTable): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const lines = [
    `| ${t.header.map(esc).join(' | ')} |`,
    `|${t.header.map(() => ' --- ').join('|')}|`,
    ...t.rows.map((r) => `| ${r.map((c) => esc(cellText(c))).join(' | ')} |`),
  ];
  return (t.title ? `**${t.title}**\n\n` : '') + lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// BENCHMARKS.md

/** The order benches appear in; any other result file follows alphabetically. */
const ORDER = [
  'libvirt-rpc',
  'collector',
  'fleet',
  'planner',
  'rules',
  'executor',
  'predictor',
  'outcomes',
  'drain',
  'load',
];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isTable(v: Json | undefined): v is { header: Json[]; rows: Json[] } & { [key: string]: Json } {
  return isObject(v) && Array.isArray(v.header) && Array.isArray(v.rows);
}

/** A number as a table shows it: integers as they are, others to 4 significant digits (1 decimal from 1000). */
function tidy(n: number): number {
  if (Number.isInteger(n) || !Number.isFinite(n)) return n;
  return Math.abs(n) >= 1000 ? round(n, 1) : Number(n.toPrecision(4));
}

function scalar(v: Json | undefined): string | number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number') return tidy(v);
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return JSON.stringify(v);
}

/** Every table a result file holds: `tables: [...]`, `table: {...}`, or rows of flat objects (`rows`/`results`). */
export function tablesOf(result: { [key: string]: Json }): ResultTable[] {
  const out: ResultTable[] = [];
  const asTable = (v: Json): ResultTable | null => {
    if (isTable(v)) {
      const t: ResultTable = {
        header: v.header.map((h) => String(scalar(h))),
        rows: v.rows.map((r) => (Array.isArray(r) ? r.map(scalar) : [scalar(r)])),
      };
      if (typeof v.title === 'string') t.title = v.title;
      return t;
    }
    return null;
  };
  if (Array.isArray(result.tables)) {
    for (const t of result.tables) {
      const table = asTable(t);
      if (table) out.push(table);
    }
  }
  if (result.table !== undefined) {
    const table = asTable(result.table);
    if (table) out.push(table);
  }
  if (out.length === 0) {
    for (const key of ['rows', 'results', 'cases', 'scenarios']) {
      const list = result[key];
      if (!Array.isArray(list) || list.length === 0 || !list.every(isObject)) continue;
      const objects = list.filter(isObject);
      const header = [
        ...new Set(objects.flatMap((o) => Object.keys(o).filter((k) => !isObject(o[k] ?? null)))),
      ];
      out.push({ header, rows: objects.map((o) => header.map((h) => scalar(o[h]))) });
      break;
    }
  }
  if (out.length === 0) {
    // No table: the scalar measures, one level of nesting flattened (`rssMiB.max`).
    const skip = new Set(['bench', 'date', 'machine', 'mode', 'notes', 'summary', 'charts']);
    const rows: (string | number | null)[][] = [];
    for (const [k, v] of Object.entries(result)) {
      if (skip.has(k)) continue;
      if (isObject(v)) {
        for (const [k2, v2] of Object.entries(v))
          if (!isObject(v2) && !Array.isArray(v2)) rows.push([`${k}.${k2}`, scalar(v2)]);
      } else if (!Array.isArray(v)) rows.push([k, scalar(v)]);
    }
    if (rows.length > 0) out.push({ header: ['measure', 'value'], rows });
  }
  return out;
}

function machineText(v: Json | undefined): string {
  if (!isObject(v)) return typeof v === 'string' ? v : 'not recorded';
  const parts: string[] = [];
  if (v.nproc !== undefined) parts.push(`${scalar(v.nproc)} CPUs`);
  const model = v.cpuModel ?? v.cpu ?? v.model;
  if (model !== undefined) parts.push(String(scalar(model)));
  const mem = v.memMiB ?? v.memoryMiB ?? v.memTotalMiB;
  if (mem !== undefined) parts.push(`${scalar(mem)} MiB RAM`);
  if (mem === undefined && v.memGiB !== undefined) parts.push(`${scalar(v.memGiB)} GiB RAM`);
  if (v.memory !== undefined && mem === undefined && v.memGiB === undefined)
    parts.push(String(scalar(v.memory)));
  if (Array.isArray(v.loadAvg)) parts.push(`load ${v.loadAvg.map((x) => scalar(x)).join(' / ')}`);
  else if (typeof v.loadavg1m === 'number') parts.push(`load ${scalar(v.loadavg1m)}`);
  return parts.join(', ');
}

interface BenchSection {
  name: string;
  file: string;
  result: { [key: string]: Json };
}

function readResults(): BenchSection[] {
  if (!existsSync(RESULTS_DIR)) return [];
  const sections: BenchSection[] = [];
  for (const file of readdirSync(RESULTS_DIR).filter((f) => f.endsWith('.json'))) {
    const name = file.replace(/\.json$/, '');
    const parsed = JSON.parse(readFileSync(join(RESULTS_DIR, file), 'utf8')) as Json;
    if (isObject(parsed)) sections.push({ name, file, result: parsed });
  }
  const rank = (n: string): number => {
    const i = ORDER.indexOf(n);
    return i === -1 ? ORDER.length : i;
  };
  return sections.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
}

/** The whole BENCHMARKS.md text from the result files present. */
export function renderBenchmarks(): string {
  const sections = readResults();
  const present = new Set(sections.map((s) => s.name));
  const lines: string[] = [
    '# drover benchmarks',
    '',
    'Generated by `npm run bench:report` from `bench/results/*.json`; do not edit by hand. Each section',
    'shows the latest run of one bench, the machine it ran on and when. Rerun one with',
    '`npm run bench -- <name>` (all of them: `npm run bench`), then `npm run bench:report`.',
    '',
  ];
  for (const s of sections) {
    const r = s.result;
    lines.push(`## ${s.name}`, '');
    const date = scalar(r.date ?? r.ranAt ?? r.startedAt ?? r.timestamp) ?? 'not recorded';
    lines.push(`- Rerun: \`npm run bench -- ${s.name}\``);
    lines.push(`- Date: ${date}`);
    lines.push(`- Machine: ${machineText(r.machine)}`);
    if (typeof r.mode === 'string') lines.push(`- Mode: ${r.mode}`);
    lines.push('');
    if (typeof r.summary === 'string') lines.push(r.summary, '');
    if (typeof r.notes === 'string') lines.push(r.notes, '');
    if (Array.isArray(r.notes)) {
      for (const n of r.notes) if (typeof n === 'string') lines.push(`- ${n}`);
      lines.push('');
    }
    const tables = tablesOf(r);
    if (tables.length === 0)
      lines.push('_This result file holds no table this report knows how to read._', '');
    for (const t of tables) lines.push(markdownTable(t), '');
    if (Array.isArray(r.goals)) {
      const goals = r.goals.filter(isObject);
      if (goals.length > 0) {
        lines.push(
          markdownTable({
            title: 'Goals',
            header: ['goal', 'target', 'measured', 'met'],
            rows: goals.map((g) => [scalar(g.goal), scalar(g.target), scalar(g.measured), scalar(g.met)]),
          }),
          '',
        );
      }
    }
    if (Array.isArray(r.charts)) {
      for (const c of r.charts) if (typeof c === 'string') lines.push(`![${s.name} chart](${c})`, '');
    }
  }
  const missing = ORDER.filter((n) => !present.has(n));
  if (missing.length > 0) {
    lines.push('## Not yet measured', '');
    lines.push(
      `No result file in bench/results/ for: ${missing.map((m) => `\`${m}\``).join(', ')}. Run`,
      '`npm run bench -- <name>` for each, then `npm run bench:report`.',
      '',
    );
  }
  return lines.join('\n');
}

/** Writes BENCHMARKS.md (formatted as the repository's prettier check wants it). */
export async function writeBenchmarks(): Promise<string> {
  const path = join(REPO_ROOT, 'BENCHMARKS.md');
  writeFileSync(path, await format(renderBenchmarks(), { parser: 'markdown', printWidth: 110 }));
  return path;
}

/** Writes bench/results/<name>.json, formatted like the rest of the repository. */
export async function writeResult(name: string, result: object): Promise<void> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const text = await format(JSON.stringify(result), { parser: 'json', printWidth: 110 });
  writeFileSync(join(RESULTS_DIR, `${name}.json`), text);
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(resolve(invokedPath)).href) {
  console.log(`wrote ${await writeBenchmarks()}`);
}
