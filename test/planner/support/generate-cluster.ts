// Seeded synthetic clusters for the planner's tests and benchmark: some hosts run hot, some cold, most in
// between; a few VMs dirty memory faster than any link can carry (JVM-like); labels for the rules.
import type { Host, Snapshot, Vm } from '../../../src/domain/snapshot.js';
import type { PolicyInput } from '../../../src/domain/policy.js';

/** mulberry32: small, fast, good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ClusterShape {
  hosts: number;
  vms: number;
  seed: number;
  /** Share of hosts given extra load, and share left nearly idle. */
  hotShare?: number;
  coldShare?: number;
  /** Share of VMs dirtying memory at 400-1500 MiB/s. */
  jvmShare?: number;
}

const MEM_SIZES = [1024, 2048, 4096, 4096, 8192, 8192, 16384] as const;
const VCPUS = [1, 2, 2, 4, 4, 8] as const;

export function generateCluster(shape: ClusterShape): Snapshot {
  const r = rng(shape.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const hot = shape.hotShare ?? 0.1;
  const cold = shape.coldShare ?? 0.1;
  const jvm = shape.jvmShare ?? 0.02;
  const hosts: Host[] = [];
  const weight: number[] = [];
  for (let i = 0; i < shape.hosts; i += 1) {
    const x = r();
    weight.push(x < hot ? 1.7 : x < hot + cold ? 0.35 : 0.8 + r() * 0.4);
    hosts.push({
      id: `kvm-${String(i + 1).padStart(5, '0')}`,
      cpus: 64,
      memMiB: 262144,
      state: 'active',
      cpuPct: 0,
      memUsedMiB: 0,
      bandwidthMiBps: 1150,
      cpuModel: 'Cascadelake-Server',
      labels: { rack: `r${i % 16}` },
    });
  }
  // Distribute VMs by weight (cumulative table + binary search).
  const cum: number[] = [];
  let total = 0;
  for (const w of weight) cum.push((total += w));
  const vms: Vm[] = [];
  const cpuUnits = new Float64Array(shape.hosts);
  const memSum = new Float64Array(shape.hosts);
  for (let i = 0; i < shape.vms; i += 1) {
    const x = r() * total;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cum[mid] ?? 0) >= x) hi = mid;
      else lo = mid + 1;
    }
    const h = lo;
    const memMiB = pick(MEM_SIZES);
    const vcpus = pick(VCPUS);
    const cpuPct = Math.round(r() * 90 * 10) / 10;
    const isJvm = r() < jvm;
    const dirty = isJvm ? 400 + r() * 1100 : r() * 40;
    const app = r() < 0.02 ? 'infra' : pick(['web', 'web', 'web', 'db', 'cache', 'batch'] as const);
    const id = `vm-${String(i + 1).padStart(6, '0')}`;
    vms.push({
      id,
      name: `${app}-${i + 1}`,
      host: hosts[h]?.id ?? '',
      state: r() < 0.03 ? 'shutoff' : 'running',
      vcpus,
      memMiB,
      cpuPct,
      memUsedMiB: Math.round(memMiB * (0.4 + r() * 0.5)),
      dirtyMiBps: Math.round(dirty * 10) / 10,
      dirtyPeakMiBps: Math.round(dirty * 1.3 * 10) / 10,
      storage: r() < 0.05 ? 'local' : 'shared',
      diskMiB: 20480,
      labels: { app, cluster: `${app}-${i % 500}` },
    });
    const vm = vms[vms.length - 1] as Vm;
    if (vm.state !== 'shutoff') {
      cpuUnits[h] = (cpuUnits[h] ?? 0) + (cpuPct / 100) * vcpus;
      memSum[h] = (memSum[h] ?? 0) + memMiB;
    }
  }
  hosts.forEach((host, h) => {
    host.cpuPct = Math.min(100, Math.round(((cpuUnits[h] ?? 0) / host.cpus) * 1000) / 10);
    host.memUsedMiB = Math.min(host.memMiB, memSum[h] ?? 0);
  });
  return { version: 1, takenAt: '2026-11-26T00:00:00Z', hosts, vms };
}

/** The three rules the benchmark and the scale tests plan with. */
export const BENCH_RULES: PolicyInput['rules'] = [
  {
    name: 'infra-stays',
    conditions: { all: [{ fact: 'vm.labels.app', operator: 'equal', value: 'infra' }] },
    event: { type: 'exclude', params: { reason: 'infrastructure VMs are moved by hand' } },
  },
  {
    name: 'db-tight-downtime',
    priority: 2,
    conditions: {
      all: [
        { fact: 'vm.labels.app', operator: 'equal', value: 'db' },
        { fact: 'vm.memMiB', operator: 'greaterThanInclusive', value: 4096 },
      ],
    },
    event: { type: 'downtimeBudget', params: { ms: 150 } },
  },
  {
    name: 'cache-apart',
    conditions: {
      any: [
        { fact: 'vm.labels.app', operator: 'equal', value: 'cache' },
        { fact: 'vm.dirtyMiBps', operator: 'greaterThan', value: 1200 },
      ],
    },
    event: { type: 'antiAffinity', params: { byLabel: 'cluster' } },
  },
];
