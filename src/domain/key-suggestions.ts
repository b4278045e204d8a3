// "Did you mean": for a key a strict object refused, the known key at the same place that is spelt nearest.
// The known keys come from the zod schema itself, walked along the refused key's path (following the branch of
// a union that fits the input best), so a key added to a schema is suggested with no list to keep.
import type { z } from 'zod';

interface Def {
  type: string;
  [field: string]: unknown;
}

function defOf(schema: unknown): Def | undefined {
  const zod = (schema as { _zod?: { def?: Def } } | undefined)?._zod;
  return zod?.def;
}

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'nonoptional', 'readonly', 'catch']);

/** The schemas a value at this place may match, with wrappers (optional, default, lazy, pipe...) removed. */
function alternatives(schema: unknown, depth = 0): unknown[] {
  const def = defOf(schema);
  if (!def || depth > 32) return [];
  if (WRAPPERS.has(def.type)) return alternatives(def.innerType, depth + 1);
  if (def.type === 'lazy') return alternatives((def.getter as () => unknown)(), depth + 1);
  if (def.type === 'pipe') return alternatives(def.in, depth + 1);
  if (def.type === 'union') return (def.options as unknown[]).flatMap((o) => alternatives(o, depth + 1));
  if (def.type === 'intersection')
    return [...alternatives(def.left, depth + 1), ...alternatives(def.right, depth + 1)];
  return [schema];
}

function shapeOf(schema: unknown): Record<string, unknown> | undefined {
  const def = defOf(schema);
  return def?.type === 'object' ? (def.shape as Record<string, unknown>) : undefined;
}

/** Of the object schemas among `candidates`, the one sharing most keys with `data`. */
function bestObject(candidates: unknown[], data: unknown): Record<string, unknown> | undefined {
  const keys = data !== null && typeof data === 'object' ? Object.keys(data) : [];
  let best: Record<string, unknown> | undefined;
  let bestScore = -1;
  for (const c of candidates) {
    const shape = shapeOf(c);
    if (!shape) continue;
    const score = keys.filter((k) => Object.hasOwn(shape, k)).length;
    if (score > bestScore) {
      best = shape;
      bestScore = score;
    }
  }
  return best;
}

/** One step down from `schema` along `key`, or undefined when the schema says nothing about it. */
function child(schema: unknown, data: unknown, key: PropertyKey): unknown {
  const candidates = alternatives(schema);
  if (typeof key === 'number') {
    for (const c of candidates) {
      const def = defOf(c);
      if (def?.type === 'array') return def.element;
      if (def?.type === 'tuple') return (def.items as unknown[])[key] ?? def.rest;
    }
    return undefined;
  }
  const shape = bestObject(candidates, data);
  if (shape && typeof key === 'string' && Object.hasOwn(shape, key)) return shape[key];
  for (const c of candidates) {
    const def = defOf(c);
    if (def?.type === 'record') return def.valueType;
  }
  return undefined;
}

/** The keys the object schema at `path` (in `data`, validated by `schema`) knows, or [] when there is none. */
export function knownKeysAt(schema: z.ZodType, data: unknown, path: readonly PropertyKey[]): string[] {
  let at: unknown = schema;
  let value: unknown = data;
  for (const key of path) {
    at = child(at, value, key);
    if (at === undefined) return [];
    value =
      value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  }
  return Object.keys(bestObject(alternatives(at), value) ?? {});
}

/** Edit distance (insertions, deletions, substitutions), compared case-insensitively. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let previous = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const current = [i];
    for (let j = 1; j <= t.length; j++) {
      const substitute = (previous[j - 1] ?? 0) + (s[i - 1] === t[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitute));
    }
    previous = current;
  }
  return previous[t.length] ?? 0;
}

/**
 * The known key nearest to `key`, when it is near enough to be a slip: at most a third of the key's letters
 * differ (at least one may), or one contains the other (`interval` for `intervalS`).
 */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    if (candidate === key) continue;
    const distance = editDistance(key, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best === undefined) return undefined;
  const lowerKey = key.toLowerCase();
  const lowerBest = best.toLowerCase();
  const contained =
    Math.min(key.length, best.length) >= 4 && (lowerBest.includes(lowerKey) || lowerKey.includes(lowerBest));
  return bestDistance <= Math.max(1, Math.floor(key.length / 3)) || contained ? best : undefined;
}

/**
 * Whether a document validated by `schema` may hold a value at the dotted path `path` (in any branch of a union;
 * arrays are stepped through, so `api.tokens.name` is a path; any key goes in a record). For documentation
 * that names fields.
 */
export function schemaHasPath(schema: z.ZodType, path: readonly string[]): boolean {
  const [key, ...rest] = path;
  if (key === undefined) return true;
  for (const candidate of alternatives(schema)) {
    const def = defOf(candidate);
    if (!def) continue;
    if (def.type === 'array' && schemaHasPath(def.element as z.ZodType, path)) return true;
    if (def.type === 'record' && schemaHasPath(def.valueType as z.ZodType, rest)) return true;
    const shape = shapeOf(candidate);
    if (shape && key in shape && schemaHasPath(shape[key] as z.ZodType, rest)) return true;
  }
  return false;
}
