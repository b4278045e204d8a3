// Shared pieces of the fuzz suites: outcome tallies with a printed summary, and arbitraries that mutate a
// valid document (replace a leaf, drop a key, add an unknown key, change a type) so inputs land near the
// accepted shape, where parsers are most likely to slip.
import fc from 'fast-check';

export type Outcome = 'accepted' | 'refused';

export interface Tally {
  name: string;
  accepted: number;
  refused: number;
  /** Inputs that crashed the parser (an untyped error); the suites assert this stays 0. */
  crashed: number;
  codes: Map<string, number>;
  /** Slowest single case (ms): a parser that hangs on some input shows here. */
  slowestMs: number;
}

const tallies = new Map<string, Tally>();

export function tally(name: string): Tally {
  let t = tallies.get(name);
  if (!t) {
    t = { name, accepted: 0, refused: 0, crashed: 0, codes: new Map(), slowestMs: 0 };
    tallies.set(name, t);
  }
  return t;
}

export function record(t: Tally, outcome: Outcome, code?: string, tookMs = 0): void {
  t[outcome] += 1;
  t.slowestMs = Math.max(t.slowestMs, tookMs);
  if (code !== undefined) t.codes.set(code, (t.codes.get(code) ?? 0) + 1);
}

/**
 * Runs one case: `accepted` when `parse` returns, `refused` when it throws an error `isTyped` recognises
 * (its `code` is tallied); anything else is a crash: tallied and rethrown so the property fails.
 */
export function classify(t: Tally, parse: () => unknown, isTyped: (err: unknown) => boolean): Outcome {
  const started = performance.now();
  try {
    parse();
    record(t, 'accepted', undefined, performance.now() - started);
    return 'accepted';
  } catch (err) {
    if (isTyped(err)) {
      record(t, 'refused', codeOf(err), performance.now() - started);
      return 'refused';
    }
    t.crashed += 1;
    throw err;
  }
}

/** Async form of classify. */
export async function classifyAsync(
  t: Tally,
  parse: () => Promise<unknown>,
  isTyped: (err: unknown) => boolean,
): Promise<Outcome> {
  const started = performance.now();
  try {
    await parse();
    record(t, 'accepted', undefined, performance.now() - started);
    return 'accepted';
  } catch (err) {
    if (isTyped(err)) {
      record(t, 'refused', codeOf(err), performance.now() - started);
      return 'refused';
    }
    t.crashed += 1;
    throw err;
  }
}

function codeOf(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return undefined;
}

/** The case count of every tally so far and the summary line per tally (printed by the suites' afterAll). */
export function summary(): { cases: number; crashed: number; lines: string[] } {
  let cases = 0;
  let crashed = 0;
  const lines: string[] = [];
  for (const t of tallies.values()) {
    const n = t.accepted + t.refused + t.crashed;
    cases += n;
    crashed += t.crashed;
    const codes = [...t.codes.entries()].map(([c, k]) => `${c}=${k}`).join(' ');
    lines.push(
      `  ${t.name.padEnd(34)} ${String(n).padStart(6)} cases  ${String(t.accepted).padStart(5)} accepted  ${String(t.refused).padStart(6)} refused  ${t.crashed} crashed  slowest ${t.slowestMs.toFixed(0)} ms  ${codes}`,
    );
  }
  return { cases, crashed, lines };
}

export function printSummary(suite: string): { cases: number; crashed: number } {
  const s = summary();
  console.log([`fuzz ${suite}: ${s.cases} cases run, ${s.crashed} crashed`, ...s.lines].join('\n'));
  return s;
}

/** Number of fast-check runs per property; FUZZ_RUNS scales the whole suite (default 1). */
export function runs(base: number): number {
  const scale = Number(process.env.FUZZ_RUNS ?? '1');
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function paths(value: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...prefix, i])));
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]));
  return out;
}

function setAt(root: Json, path: (string | number)[], make: (old: Json) => Json | undefined): Json {
  if (path.length === 0) return make(root) ?? null;
  const [head, ...rest] = path;
  if (Array.isArray(root) && typeof head === 'number') {
    const copy = [...root];
    if (rest.length === 0) {
      const v = make(copy[head] ?? null);
      if (v === undefined) copy.splice(head, 1);
      else copy[head] = v;
    } else copy[head] = setAt(copy[head] ?? null, rest, make);
    return copy;
  }
  if (root !== null && typeof root === 'object' && !Array.isArray(root) && typeof head === 'string') {
    const copy: { [key: string]: Json } = { ...root };
    if (rest.length === 0) {
      const v = make(copy[head] ?? null);
      if (v === undefined) delete copy[head];
      else copy[head] = v;
    } else copy[head] = setAt(copy[head] ?? null, rest, make);
    return copy;
  }
  return root;
}

const oddValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(
    null,
    true,
    false,
    0,
    -1,
    -0,
    1e308,
    -1e308,
    0.5,
    2 ** 53 + 1,
    '',
    ' ',
    '0',
    'NaN',
    '-1',
    '__proto__',
    'constructor',
    '\u0000',
    '\ud800',
    'x'.repeat(5000),
    [],
    {},
    [null],
    { __proto__: 1 },
  ),
  fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
);

/** One mutation of `valid`: a leaf replaced with an odd value, a key dropped, an unknown key added. */
export function mutated(valid: unknown, maxMutations = 3): fc.Arbitrary<unknown> {
  const base = JSON.parse(JSON.stringify(valid)) as Json;
  const all = paths(base);
  const mutation = fc.tuple(
    fc.integer({ min: 0, max: all.length - 1 }),
    fc.constantFrom('replace', 'drop', 'addKey', 'wrap'),
    oddValue,
    fc.string({ maxLength: 12 }),
  );
  return fc.array(mutation, { minLength: 1, maxLength: maxMutations }).map((ms) => {
    let doc = base;
    for (const [i, kind, value, key] of ms) {
      const path = all[i] ?? [];
      doc = setAt(doc, path, (old) => {
        switch (kind) {
          case 'replace':
            return value;
          case 'drop':
            return path.length === 0 ? null : undefined;
          case 'addKey':
            return old !== null && typeof old === 'object' && !Array.isArray(old)
              ? { ...old, [key || 'extra']: value }
              : value;
          case 'wrap':
            return [old];
        }
        return old;
      });
    }
    return doc;
  });
}

/** Text near `valid`: bytes deleted, inserted or replaced at random places. */
export function mutatedText(valid: string): fc.Arbitrary<string> {
  const edit = fc.tuple(
    fc.integer({ min: 0, max: Math.max(0, valid.length - 1) }),
    fc.integer({ min: 0, max: 8 }),
    fc.string({ maxLength: 8, unit: 'binary' }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => {
    let text = valid;
    for (const [at, del, insert] of edits) text = text.slice(0, at) + insert + text.slice(at + del);
    return text;
  });
}
