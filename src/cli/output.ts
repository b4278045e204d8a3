// Output for people: aligned tables, durations and sizes, colour only on a terminal (and never with NO_COLOR).
import type { Plan } from '../domain/plan.js';

export function useColour(stream: NodeJS.WriteStream = process.stdout): boolean {
  return Boolean(stream.isTTY) && process.env.NO_COLOR === undefined;
}

const CODES = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const;
export function paint(text: string, colour: keyof typeof CODES): string {
  return useColour() ? `\u001b[${CODES[colour]}m${text}\u001b[0m` : text;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;
const visible = (s: string) => s.replace(ANSI, '').length;
const pad = (s: string, width: number, right: boolean) => {
  const fill = ' '.repeat(Math.max(0, width - visible(s)));
  return right ? fill + s : s + fill;
};

/** Left-aligned columns; numbers (right-aligned) when a column header starts with '>'. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const right = headers.map((h) => h.startsWith('>'));
  const names = headers.map((h) => (h.startsWith('>') ? h.slice(1) : h));
  const widths = names.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => pad(c, widths[i] ?? 0, right[i] ?? false))
      .join('  ')
      .trimEnd();
  return [line(names), ...rows.map(line)].join('\n');
}

export function num(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined ? '-' : value.toFixed(digits);
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '-';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  if (m < 60) return `${m}m${String(s).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * A plan's moves, one row each, in the columns every command that shows a plan uses (`plan`, `drain`, the
 * demos): VM (its name when known), FROM, TO, KIND (with the technique when not plain pre-copy), the
 * predicted DURATION, DOWNTIME and TRANSFER, and WHY.
 */
export function stepsTable(plan: Plan, names: ReadonlyMap<string, string> = new Map()): string {
  return table(
    ['VM', 'FROM', 'TO', 'KIND', '>DURATION', '>DOWNTIME', '>TRANSFER', 'WHY'],
    plan.steps.map((s) => [
      names.get(s.vm) ?? s.vm,
      s.from,
      s.to,
      s.predicted.technique && s.predicted.technique !== 'precopy'
        ? `${s.kind}+${s.predicted.technique}`
        : s.kind,
      duration(s.predicted.durationS),
      `${Math.round(s.predicted.downtimeMs)}ms`,
      `${num(s.predicted.transferMiB / 1024)}GiB`,
      s.why,
    ]),
  );
}
