// Fleets of other shapes than the size runs' generated clusters, for the side-by-side planner bench: hot
// spots in a mostly idle fleet, one hot rack, memory-bound hosts, tiny lopsided clusters, a fleet just over
// its target spread. Each host gets VMs until its memory reaches the utilisation drawn for it; its CPU load
// is then shared among them, so every host lands on the utilisation its shape gives it. A few VMs dirty
// memory faster than a link carries (no plan should move them), and some carry the default policy's labels:
// HA pairs (anti-affinity, a few of them already sharing a host), pinned and excluded VMs.
import type { Host, Snapshot, Vm } from '../../src/domain/snapshot.js';
import { rng } from '../../test/planner/support/generate-cluster.js';

const GiB = 1024;
const MEM_SIZES = [2, 4, 4, 8, 8, 16, 16, 32] as const;
const VCPUS = [1, 2, 2, 4, 4, 8] as const;

export interface HostShape {
  cpus: number;
  memGiB: number;
  /** Utilisations (0..1) the host is filled to. */
  cpu: number;
  mem: number;
  rack: string;
}

export interface FleetOptions {
  seed: number;
  /** Memory sizes drawn for VMs (GiB). */
  memSizes?: readonly number[];
  /** Share of VMs dirtying memory at 400-1500 MiB/s. */
  jvmShare?: number;
  /** HA pairs (drover/ha-group), and how many of them start on one host (a broken rule). */
  haPairs?: number;
  haBroken?: number;
}

/** Builds a snapshot whose hosts are filled to the given utilisations. */
export function buildFleet(shapes: readonly HostShape[], opts: FleetOptions): Snapshot {
  const r = rng(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const memSizes = opts.memSizes ?? MEM_SIZES;
  const jvm = opts.jvmShare ?? 0.02;
  const hosts: Host[] = [];
  const vms: Vm[] = [];
  shapes.forEach((s, i) => {
    const id = `kvm-${String(i + 1).padStart(5, '0')}`;
    const memMiB = s.memGiB * GiB;
    const target = s.mem * memMiB;
    const mine: Vm[] = [];
    let mem = 0;
    for (let k = 0; k < 500; k += 1) {
      const size = pick(memSizes) * GiB;
      if (mem + size > target) {
        // Smallest size fills the rest when it still fits.
        const small = Math.min(...memSizes) * GiB;
        if (mem + small > target) break;
        continue;
      }
      mem += size;
      const n = vms.length + mine.length + 1;
      const isJvm = r() < jvm;
      const dirty = isJvm ? 400 + r() * 1100 : r() * 30;
      mine.push({
        id: `vm-${String(n).padStart(6, '0')}`,
        name: `vm-${n}`,
        host: id,
        state: 'running',
        vcpus: pick(VCPUS),
        memMiB: size,
        cpuPct: 0,
        memUsedMiB: Math.round(size * (0.4 + r() * 0.5)),
        dirtyMiBps: Math.round(dirty * 10) / 10,
        dirtyPeakMiBps: Math.round(dirty * 1.3 * 10) / 10,
        storage: 'shared',
        labels: {},
      });
    }
    // CPU: the host's load shared by weight; a VM needing more than its vCPUs gets more vCPUs.
    const load = s.cpu * s.cpus;
    const weights = mine.map((v) => v.memMiB * (0.3 + r()));
    const total = weights.reduce((a, b) => a + b, 0) || 1;
    let cpuUnits = 0;
    mine.forEach((v, k) => {
      const l = (load * (weights[k] ?? 0)) / total;
      v.vcpus = Math.max(v.vcpus, Math.ceil(l / 0.95));
      v.cpuPct = Math.round((l / v.vcpus) * 1000) / 10;
      cpuUnits += (v.cpuPct / 100) * v.vcpus;
    });
    hosts.push({
      id,
      cpus: s.cpus,
      memMiB,
      state: 'active',
      cpuPct: Math.min(100, Math.round((cpuUnits / s.cpus) * 1000) / 10),
      memUsedMiB: mem,
      bandwidthMiBps: 1150,
      cpuModel: 'Cascadelake-Server',
      labels: { rack: s.rack },
    });
    vms.push(...mine);
  });
  // Labels the default policy's rules read: a few pinned and excluded VMs, HA pairs.
  for (const v of vms) {
    const x = r();
    if (x < 0.01) v.labels = { 'drover/pin': 'true' };
    else if (x < 0.02) v.labels = { 'drover/exclude': 'true' };
  }
  const unlabelled = (v: Vm | undefined): v is Vm =>
    v !== undefined && Object.keys(v.labels ?? {}).length === 0;
  const byHost = new Map<string, Vm[]>();
  for (const v of vms) if (unlabelled(v)) byHost.set(v.host, [...(byHost.get(v.host) ?? []), v]);
  const pairs = opts.haPairs ?? 0;
  const broken = Math.min(opts.haBroken ?? 0, pairs);
  for (let p = 0; p < pairs; p += 1) {
    // A broken pair: two VMs of one host; else two VMs of different hosts.
    const a = vms[Math.floor(r() * vms.length)];
    if (!unlabelled(a)) continue;
    let b: Vm | undefined;
    if (p < broken) b = byHost.get(a.host)?.find((x) => x !== a && unlabelled(x));
    else
      for (let tries = 0; tries < 20 && !b; tries += 1) {
        const c = vms[Math.floor(r() * vms.length)];
        if (unlabelled(c) && c.host !== a.host) b = c;
      }
    if (!b) continue;
    a.labels = { 'drover/ha-group': `ha-${p}` };
    b.labels = { 'drover/ha-group': `ha-${p}` };
  }
  return { version: 1, takenAt: '2026-12-03T00:00:00Z', hosts, vms };
}

export interface Fleet {
  name: string;
  description: string;
  /** Several independent clusters planned one by one (their results summed), or one. */
  clusters: Snapshot[];
}

const between = (r: () => number, lo: number, hi: number): number => lo + r() * (hi - lo);

/** A mostly idle fleet (CPU 15-35 %, memory 25-45 %) with `hot` hosts at 87-99 % CPU. */
function idleWithHotSpots(hosts: number, hot: number, seed: number): Snapshot {
  const r = rng(seed * 7919);
  const hotAt = new Set<number>();
  while (hotAt.size < hot) hotAt.add(Math.floor(r() * hosts));
  const shapes: HostShape[] = Array.from({ length: hosts }, (_, i) => ({
    cpus: 64,
    memGiB: 256,
    cpu: hotAt.has(i) ? between(r, 0.87, 0.99) : between(r, 0.15, 0.35),
    mem: hotAt.has(i) ? between(r, 0.4, 0.7) : between(r, 0.25, 0.45),
    rack: `r${i % 40}`,
  }));
  return buildFleet(shapes, {
    seed,
    haPairs: Math.round(hosts / 5),
    haBroken: Math.max(2, Math.round(hosts / 500)),
  });
}

/** 200 hosts in 10 racks; one rack at 90-100 % CPU and memory, the rest at 30-55 %. */
function hotRack(seed: number): Snapshot {
  const r = rng(seed * 104729);
  const shapes: HostShape[] = Array.from({ length: 200 }, (_, i) => {
    const rack = Math.floor(i / 20);
    const hot = rack === 3;
    return {
      cpus: 64,
      memGiB: 256,
      cpu: hot ? between(r, 0.9, 1) : between(r, 0.3, 0.55),
      mem: hot ? between(r, 0.9, 0.99) : between(r, 0.3, 0.55),
      rack: `r${rack}`,
    };
  });
  return buildFleet(shapes, { seed, haPairs: 30, haBroken: 2 });
}

/** 300 hosts where memory binds: CPU 10-30 %, memory 50-75 %, 20 hosts at 92-99 % memory; large VMs. */
function memoryBound(seed: number): Snapshot {
  const r = rng(seed * 31337);
  const shapes: HostShape[] = Array.from({ length: 300 }, (_, i) => {
    const hot = i % 15 === 7;
    return {
      cpus: 48,
      memGiB: 384,
      cpu: between(r, 0.1, 0.3),
      mem: hot ? between(r, 0.92, 0.99) : between(r, 0.5, 0.75),
      rack: `r${i % 12}`,
    };
  });
  return buildFleet(shapes, { seed, memSizes: [8, 16, 16, 32, 32, 64], haPairs: 40, haBroken: 2 });
}

/** 30 clusters of 3-6 hosts of mixed sizes, one host of each loaded far above the others. */
function tinyLopsided(seed: number): Snapshot[] {
  const r = rng(seed * 65537);
  const out: Snapshot[] = [];
  for (let c = 0; c < 30; c += 1) {
    const n = 3 + Math.floor(r() * 4);
    const shapes: HostShape[] = Array.from({ length: n }, (_, i) => {
      const big = r() < 0.5;
      return {
        cpus: big ? 64 : 32,
        memGiB: big ? 256 : 128,
        cpu: i === 0 ? between(r, 0.8, 0.99) : between(r, 0.02, 0.25),
        mem: i === 0 ? between(r, 0.75, 0.97) : between(r, 0.05, 0.3),
        rack: 'r0',
      };
    });
    out.push(buildFleet(shapes, { seed: seed * 1000 + c, haPairs: 1, haBroken: c % 5 === 0 ? 1 : 0 }));
  }
  return out;
}

/** 100 hosts spread a little over the 20-point target (CPU 42-64 %, memory 40-61 %), none above a ceiling. */
function justOverTarget(seed: number): Snapshot {
  const r = rng(seed * 4099);
  const shapes: HostShape[] = Array.from({ length: 100 }, (_, i) => ({
    cpus: 64,
    memGiB: 256,
    cpu: i < 3 ? between(r, 0.62, 0.66) : between(r, 0.44, 0.6),
    mem: i >= 3 && i < 6 ? between(r, 0.6, 0.63) : between(r, 0.42, 0.58),
    rack: `r${i % 5}`,
  }));
  return buildFleet(shapes, { seed, jvmShare: 0.02, haPairs: 10, haBroken: 0 });
}

export const FLEET_NAMES = [
  'idle-1k',
  'idle-10k',
  'hot-rack',
  'memory-bound',
  'tiny-lopsided',
  'just-over-target',
] as const;
export type FleetName = (typeof FLEET_NAMES)[number];

export function makeFleet(name: FleetName, seed: number): Fleet {
  switch (name) {
    case 'idle-1k':
      return {
        name,
        description: '1,000 hosts, ~10,000 VMs, mostly idle, 15 hosts at 87-99 % CPU',
        clusters: [idleWithHotSpots(1000, 15, seed)],
      };
    case 'idle-10k':
      return {
        name,
        description: '10,000 hosts, ~100,000 VMs, mostly idle, 100 hosts at 87-99 % CPU',
        clusters: [idleWithHotSpots(10000, 100, seed)],
      };
    case 'hot-rack':
      return {
        name,
        description: '200 hosts, one rack of 20 at 90-100 % CPU and memory',
        clusters: [hotRack(seed)],
      };
    case 'memory-bound':
      return {
        name,
        description: '300 hosts, CPU 10-30 %, memory 50-75 %, 20 hosts at 92-99 % memory',
        clusters: [memoryBound(seed)],
      };
    case 'tiny-lopsided':
      return {
        name,
        description: '30 clusters of 3-6 mixed hosts, one loaded far above the rest (results summed)',
        clusters: tinyLopsided(seed),
      };
    case 'just-over-target':
      return {
        name,
        description: '100 hosts, spreads a few points over the 20-point target, no host above a ceiling',
        clusters: [justOverTarget(seed)],
      };
  }
}
