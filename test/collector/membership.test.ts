import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hash32, ownerOf } from '../../src/collector/membership.js';

const hosts = Array.from({ length: 1000 }, (_, i) => `kvm-${String(i).padStart(4, '0')}`);

describe('ownerOf (rendezvous hashing)', () => {
  it('is deterministic and null without members', () => {
    expect(ownerOf('kvm-1', [])).toBeNull();
    expect(ownerOf('kvm-1', ['a', 'b', 'c'])).toBe(ownerOf('kvm-1', ['c', 'a', 'b']));
    expect(hash32('abc')).toBe(hash32('abc'));
    expect(hash32('abc')).not.toBe(hash32('abd'));
  });

  it('spreads hosts about evenly over the members', () => {
    const members = ['p1', 'p2', 'p3', 'p4'];
    const counts = new Map<string, number>();
    for (const h of hosts) {
      const o = ownerOf(h, members) ?? '';
      counts.set(o, (counts.get(o) ?? 0) + 1);
    }
    for (const m of members) expect(counts.get(m)).toBeGreaterThan(180); // 250 expected each
  });

  it('moves only the leaving member’s hosts, and a joining member takes hosts only for itself', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 2, maxLength: 6 }),
        (members) => {
          const [gone, ...rest] = members;
          for (const h of hosts.slice(0, 200)) {
            const before = ownerOf(h, members);
            const after = ownerOf(h, rest);
            if (before !== gone) expect(after).toBe(before);
          }
        },
      ),
      { numRuns: 50 },
    );
  });
});
