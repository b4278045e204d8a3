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
    const entries = Object.entries(weights) as [K, number][];
    const total = entries.reduce((sum, [, w]) => sum + Math.max(0, w), 0);
    let r = this.next() * total;
    for (const [key, w] of entries) {
      r -= Math.max(0, w);
      if (r < 0) return key;
    }
    const last = entries[entries.length - 1];
    if (!last) throw new RangeError('weighted pick from no weights');
    return last[0];
  }

  /** A random (version 4 layout) UUID drawn from this generator. */
  uuid(): string {
    const hex: string[] = [];
    for (let i = 0; i < 16; i++) hex.push(this.int(0, 255).toString(16).padStart(2, '0'));
    hex[6] = ((Number.parseInt(hex[6] ?? '0', 16) & 0x0f) | 0x40).toString(16).padStart(2, '0');
    hex[8] = ((Number.parseInt(hex[8] ?? '0', 16) & 0x3f) | 0x80).toString(16).padStart(2, '0');
    const h = hex.join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** A new generator whose sequence depends on this one's seed and `salt` (for independent streams). */
  fork(salt: number): Prng {
    return new Prng(Math.floor(this.next() * 4294967296) ^ Math.imul(salt + 1, 0x9e3779b1));
  }
}
