// A small seeded pseudo-random generator, so simulated clusters and their noise are reproducible.
// The algorithm is mulberry32 (a public-domain 32-bit generator): fast, good enough for simulation,
// not for anything secret.

export class Prng {
  private state: number;

  constructor(seed: number) {
    // Fold any number (also non-integers and large ones) into a 32-bit state.
    this.state = Math.floor(Math.abs(seed * 2654435761) % 4294967296) >>> 0;
  }

  /** A uniformly distributed number in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** Integer uniform in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new RangeError('pick from an empty list');
    return item;
  }

  /** Picks a key with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    return weightedPicker(weights)(this);
  }

  /** A random (version 4 layout) UUID drawn from this generator. */
  uuid(): string {
    const w = (): string =>
      Math.floor(this.next() * 4294967296)
        .toString(16)
        .padStart(8, '0');
    const a = w();
    const b = w();
    const c = w();
    const d = w();
    const version = `4${b.slice(5, 8)}`;
    const variant = ((Number.parseInt(c.slice(0, 1), 16) & 0x3) | 0x8).toString(16) + c.slice(1, 4);
    return `${a}-${b.slice(0, 4)}-${version}-${variant}-${c.slice(4, 8)}${d}`;
  }

  /** A new generator whose sequence depends on this one's seed and `salt` (for independent streams). */
  fork(salt: number): Prng {
    return new Prng(Math.floor(this.next() * 4294967296) ^ Math.imul(salt + 1, 0x9e3779b1));
  }
}

/** Precomputes a weighted choice over `weights`' keys; the returned function draws one key from `rng`. */
export function weightedPicker<K extends string>(weights: Readonly<Record<K, number>>): (rng: Prng) => K {
  const keys: K[] = [];
  const cumulative: number[] = [];
  let total = 0;
  for (const [key, w] of Object.entries(weights) as [K, number][]) {
    if (!(w > 0)) continue;
    total += w;
    keys.push(key);
    cumulative.push(total);
  }
  if (keys.length === 0) throw new RangeError('weighted pick from no positive weights');
  return (rng) => {
    const r = rng.next() * total;
    for (let i = 0; i < cumulative.length; i++) if (r < (cumulative[i] ?? 0)) return keys[i] as K;
    return keys[keys.length - 1] as K;
  };
}
