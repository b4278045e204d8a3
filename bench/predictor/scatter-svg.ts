// A predicted-vs-measured scatter plot as a standalone SVG (no browser, no dependency): the y = x line, the
// ±15 % and ±30 % bands, and one dot per point coloured by its series.

export interface ScatterPoint {
  x: number;
  y: number;
  series: string;
  label?: string;
}

export interface ScatterOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  widthPx?: number;
  heightPx?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf'];

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A "nice" step (1, 2 or 5 x 10^k) giving about `ticks` ticks over [0, max]. */
function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

export function scatterSvg(points: readonly ScatterPoint[], opts: ScatterOptions): string {
  const W = opts.widthPx ?? 640;
  const H = opts.heightPx ?? 520;
  const m = { left: 64, right: 150, top: 44, bottom: 56 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const maxData = Math.max(1, ...points.flatMap((p) => [p.x, p.y]));
  const step = niceStep(maxData * 1.05, 6);
  const max = Math.ceil((maxData * 1.05) / step) * step;
  const sx = (v: number): number => m.left + (v / max) * pw;
  const sy = (v: number): number => m.top + ph - (v / max) * ph;
  const f = (n: number): string => n.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`,
  );
  // bands: measured within ±30 % and ±15 % of predicted
  for (const [k, fill] of [
    [0.3, '#eef3fb'],
    [0.15, '#dbe6f6'],
  ] as const) {
    const poly = [
      [0, 0],
      [max / (1 + k), max],
      [max, max],
      [max, max * (1 - k)],
    ];
    out.push(
      `<polygon points="${poly.map(([x, y]) => `${f(sx(x ?? 0))},${f(sy(y ?? 0))}`).join(' ')}" fill="${fill}"/>`,
    );
  }
  // grid and ticks
  for (let v = 0; v <= max + 1e-9; v += step) {
    out.push(
      `<line x1="${f(sx(v))}" y1="${f(sy(0))}" x2="${f(sx(v))}" y2="${f(sy(max))}" stroke="#e0e0e0"/>`,
      `<line x1="${f(sx(0))}" y1="${f(sy(v))}" x2="${f(sx(max))}" y2="${f(sy(v))}" stroke="#e0e0e0"/>`,
      `<text x="${f(sx(v))}" y="${f(sy(0) + 16)}" text-anchor="middle">${Number(v.toPrecision(6))}</text>`,
      `<text x="${f(sx(0) - 6)}" y="${f(sy(v) + 4)}" text-anchor="end">${Number(v.toPrecision(6))}</text>`,
    );
  }
  out.push(
    `<line x1="${f(sx(0))}" y1="${f(sy(0))}" x2="${f(sx(max))}" y2="${f(sy(max))}" stroke="#555" stroke-dasharray="4 3"/>`,
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 16}" text-anchor="middle">${esc(opts.xLabel)}</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`,
  );
  const series = [...new Set(points.map((p) => p.series))];
  for (const p of points) {
    const color = PALETTE[series.indexOf(p.series) % PALETTE.length] ?? '#000';
    out.push(
      `<circle cx="${f(sx(p.x))}" cy="${f(sy(p.y))}" r="4.5" fill="${color}" fill-opacity="0.8" stroke="#fff">` +
        (p.label ? `<title>${esc(p.label)}</title>` : '') +
        '</circle>',
    );
  }
  // legend
  const lx = m.left + pw + 16;
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length] ?? '#000';
    const y = m.top + 12 + i * 20;
    out.push(
      `<circle cx="${lx + 5}" cy="${y - 4}" r="5" fill="${color}"/>`,
      `<text x="${lx + 16}" y="${y}">${esc(s)}</text>`,
    );
  });
  const ly = m.top + 12 + series.length * 20 + 10;
  out.push(
    `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="#dbe6f6"/><text x="${lx + 16}" y="${ly}">within 15 %</text>`,
    `<rect x="${lx}" y="${ly + 10}" width="12" height="12" fill="#eef3fb"/><text x="${lx + 16}" y="${ly + 20}">within 30 %</text>`,
    '</svg>',
  );
  return out.join('\n') + '\n';
}
