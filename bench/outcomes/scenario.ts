// Simulated clusters for the outcome and drain benches: VMs of the synthetic classes (idle, web, database,
// JVM-like) and VMs following the Bitbrains traces, hosts joined by 1 or 10 Gbit/s links with noise, and a
// snapshot of them taken by drover's collector after every running VM's dirty rate was measured.
import { Collector } from '../../src/collector/collector.js';
import { InMemoryCollectorStore } from '../../src/collector/collector-store.js';
import type { Snapshot } from '../../src/domain/snapshot.js';
import type { ClusterSpec, ParsedClusterSpec } from '../../src/hypervisor/sim/cluster-spec.js';
import {
  generateCluster,
  SimHypervisor,
  VirtualClock,
  type MigrationCosts,
} from '../../src/hypervisor/sim/index.js';

/** 1 and 10 Gbit/s in MiB/s. */
export const LINKS_MIBPS = { '1G': 119.2, '10G': 1192 } as const;
export type LinkName = keyof typeof LINKS_MIBPS;

/** Bandwidth noise of the simulated links: each second the rate is off by up to this percent. */
export const BANDWIDTH_NOISE_PCT = 15;

export interface ClusterOptions {
  seed: number;
  hosts: number;
  vmsPerHost: number | [number, number];
  link: LinkName;
  /** Weight of Bitbrains-trace VMs beside the presets (idle 3, web 4, database 2, jvm 1). */
  traceWeight?: number;
}

/**
 * The simulator's round 0 sends the whole guest memory, while drover's model sends what the guest uses
 * (QEMU skips never-written pages cheaply). Guests here use all their memory, so the two agree and the
 * comparison is about dirty rates, not about that difference.
 */
export function fullyUsed(spec: ParsedClusterSpec): ParsedClusterSpec {
  return { ...spec, vms: spec.vms.map((v) => ({ ...v, memUsedMiB: v.memMiB })) };
}

export function clusterSpec(o: ClusterOptions): ParsedClusterSpec {
  return fullyUsedGenerated({
    seed: o.seed,
    hosts: o.hosts,
    vmsPerHost: o.vmsPerHost,
    host: { cpus: 48, memMiB: 196_608, bandwidthMiBps: LINKS_MIBPS[o.link] },
    traceWeight: o.traceWeight ?? 2,
    localStorageFraction: 0,
  });
}

function fullyUsedGenerated(options: Parameters<typeof generateCluster>[0]): ParsedClusterSpec {
  return fullyUsed(generateCluster(options));
}

export interface SimWorld {
  hv: SimHypervisor;
  clock: VirtualClock;
  snapshot: Snapshot;
}

const START_MS = Date.UTC(2026, 10, 2, 9, 0, 0);

/**
 * A fresh simulator over the spec, run for a minute, then collector cycles until every running VM has a
 * measured dirty rate (at most 4 probes per host at once, 5 s windows). Deterministic for a given spec.
 */
export async function startWorld(spec: ClusterSpec, migrationCosts?: MigrationCosts): Promise<SimWorld> {
  const clock = new VirtualClock(START_MS);
  const hv = new SimHypervisor(spec, {
    clock,
    bandwidthNoisePct: BANDWIDTH_NOISE_PCT,
    ...(migrationCosts ? { migrationCosts } : {}),
  });
  await clock.advance(60_000);
  const collector = new Collector(
    { hypervisor: hv, store: new InMemoryCollectorStore(() => clock.now()) },
    { intervalS: 10, dirtyRate: { windowS: 5, maxPerHost: 4, remeasureS: 1 } },
  );
  let snapshot: Snapshot | null = null;
  for (let i = 0; i < 40; i += 1) {
    snapshot = (await clock.runUntil(collector.runCycle())).snapshot;
    const unmeasured = snapshot.vms.filter((v) => v.state === 'running' && v.dirtyMiBps === null);
    if (i > 0 && unmeasured.length === 0) break;
    await clock.advance(6_000);
  }
  if (!snapshot) throw new Error('the collector produced no snapshot');
  return { hv, clock, snapshot };
}
