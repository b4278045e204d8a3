// Which collector process samples which host. Every process heartbeats into the CollectorStore (collector-store.ts);
// the live members are those seen within the TTL. Each host goes to the member with the highest
// rendezvous hash of (member, host), so every process computes the same owner without talking to the
// others, a joining process takes about 1/n of the hosts, and a dead one's hosts spread over the rest.

/** FNV-1a over UTF-16 code units, then a final avalanche mix; 32-bit unsigned. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The member that owns the host (highest rendezvous weight; ties by member id). Null with no members. */
export function ownerOf(hostId: string, members: readonly string[]): string | null {
  let best: string | null = null;
  let bestWeight = -1;
  for (const m of members) {
    const w = hash32(`${m}\u0000${hostId}`);
    if (w > bestWeight || (w === bestWeight && best !== null && m < best)) {
      best = m;
      bestWeight = w;
    }
  }
  return best;
}
