// A binary heap of hosts keyed by a number, with lazy invalidation: when a host's key changes it is pushed
// again with a new version, and entries whose version is old are dropped as they surface. Entries live in
// typed arrays (grown by doubling) so that pushes allocate nothing in the common case.

export class HostHeap {
  private keys = new Float64Array(64);
  private hosts = new Int32Array(64);
  private versions = new Int32Array(64);
  private size = 0;
  private readonly current: Int32Array;
  /** `sign` 1: smallest key first; -1: largest first. */
  constructor(
    hostCount: number,
    private readonly sign: 1 | -1,
  ) {
    this.current = new Int32Array(hostCount);
  }

  push(host: number, key: number): void {
    const version = ++this.current[host]!;
    if (this.size === this.keys.length) this.grow();
    // Sift up: move parents down into the hole until the new entry's place is found.
    const k = this.sign * key;
    let i = this.size;
    this.size += 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.keys[p]! <= k) break;
      this.keys[i] = this.keys[p]!;
      this.hosts[i] = this.hosts[p]!;
      this.versions[i] = this.versions[p]!;
      i = p;
    }
    this.keys[i] = k;
    this.hosts[i] = host;
    this.versions[i] = version;
  }

  /** Drops the host until it is pushed again. */
  invalidate(host: number): void {
    this.current[host] = (this.current[host] ?? 0) + 1;
  }

  /** The best valid host without removing it, or -1. */
  peek(): number {
    while (this.size > 0) {
      const host = this.hosts[0]!;
      if (this.versions[0] === this.current[host]) return host;
      this.removeTop();
    }
    return -1;
  }

  /** Removes and returns the best valid host, or -1 when none is left. */
  pop(): number {
    while (this.size > 0) {
      const host = this.hosts[0]!;
      const valid = this.versions[0] === this.current[host];
      this.removeTop();
      if (valid) {
        this.current[host] = (this.current[host] ?? 0) + 1;
        return host;
      }
    }
    return -1;
  }

  private grow(): void {
    const n = this.keys.length * 2;
    const keys = new Float64Array(n);
    const hosts = new Int32Array(n);
    const versions = new Int32Array(n);
    keys.set(this.keys);
    hosts.set(this.hosts);
    versions.set(this.versions);
    this.keys = keys;
    this.hosts = hosts;
    this.versions = versions;
  }

  /** Replaces the top with the last entry and sifts it down. */
  private removeTop(): void {
    this.size -= 1;
    const n = this.size;
    if (n === 0) return;
    const k = this.keys[n]!;
    const h = this.hosts[n]!;
    const ver = this.versions[n]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.keys[r]! < this.keys[l]! ? r : l;
      if (this.keys[c]! >= k) break;
      this.keys[i] = this.keys[c]!;
      this.hosts[i] = this.hosts[c]!;
      this.versions[i] = this.versions[c]!;
      i = c;
    }
    this.keys[i] = k;
    this.hosts[i] = h;
    this.versions[i] = ver;
  }
}
