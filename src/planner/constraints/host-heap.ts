// A binary heap of hosts keyed by a number, with lazy invalidation: when a host's key changes it is pushed
// again with a new version, and entries whose version is old are dropped as they surface.

export class HostHeap {
  private keys: number[] = [];
  private hosts: number[] = [];
  private versions: number[] = [];
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
    this.keys.push(this.sign * key);
    this.hosts.push(host);
    this.versions.push(version);
    this.up(this.keys.length - 1);
  }

  /** Drops the host until it is pushed again. */
  invalidate(host: number): void {
    this.current[host] = (this.current[host] ?? 0) + 1;
  }

  /** The best valid host without removing it, or -1. */
  peek(): number {
    while (this.keys.length > 0) {
      const host = this.hosts[0] as number;
      if (this.versions[0] === this.current[host]) return host;
      this.removeTop();
    }
    return -1;
  }

  /** Removes and returns the best valid host, or -1 when none is left. */
  pop(): number {
    while (this.keys.length > 0) {
      const host = this.hosts[0] as number;
      const valid = this.versions[0] === this.current[host];
      this.removeTop();
      if (valid) {
        this.current[host] = (this.current[host] ?? 0) + 1;
        return host;
      }
    }
    return -1;
  }

  private removeTop(): void {
    const last = this.keys.length - 1;
    this.swap(0, last);
    this.keys.pop();
    this.hosts.pop();
    this.versions.pop();
    this.down(0);
  }

  private swap(i: number, j: number): void {
    [this.keys[i], this.keys[j]] = [this.keys[j] as number, this.keys[i] as number];
    [this.hosts[i], this.hosts[j]] = [this.hosts[j] as number, this.hosts[i] as number];
    [this.versions[i], this.versions[j]] = [this.versions[j] as number, this.versions[i] as number];
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((this.keys[p] as number) <= (this.keys[i] as number)) break;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const n = this.keys.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && (this.keys[l] as number) < (this.keys[m] as number)) m = l;
      if (r < n && (this.keys[r] as number) < (this.keys[m] as number)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
}
