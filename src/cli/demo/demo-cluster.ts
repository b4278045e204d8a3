// The demo's simulated cluster: ten 10 GbE hosts, three of them overloaded with web, database and JVM-like
// VMs, the rest nearly idle. Deterministic: the same cluster every run.
import type { ClusterSpec, SimVmSpec } from '../../hypervisor/sim/index.js';

/** 10 Gbit/s in MiB/s. */
const TEN_GBE_MIBPS = 1192;

export const DEMO_HOSTS = Array.from({ length: 10 }, (_, i) => `kvm-${String(i + 1).padStart(2, '0')}`);
/** The host the demo drains for maintenance: a quiet one, with one shut-off VM whose definition moves. */
export const DEMO_DRAIN_HOST = 'kvm-09';

function uuid(n: number): string {
  return `d0e0${String(n).padStart(4, '0')}-0000-4000-8000-${String(n).padStart(12, '0')}`;
}

export function demoCluster(): ClusterSpec {
  const vms: SimVmSpec[] = [];
  let n = 0;
  const add = (host: string, name: string, vm: Omit<SimVmSpec, 'id' | 'name' | 'host'>) => {
    n += 1;
    vms.push({ id: uuid(n), name, host, ...vm });
  };
  for (const host of DEMO_HOSTS.slice(0, 3)) {
    const h = host.slice(-2);
    for (let i = 1; i <= 6; i++) {
      add(host, `web-${h}-${i}`, {
        vcpus: 4,
        memMiB: 4096,
        memUsedMiB: 3072,
        labels: { app: 'web' },
        workload: { kind: 'constant', cpuPct: 55 + i * 3, dirtyMiBps: 40 + i * 3, wwsMiB: 1024 },
      });
    }
    add(host, `db-${h}`, {
      vcpus: 8,
      memMiB: 16384,
      memUsedMiB: 14000,
      labels: { app: 'db' },
      workload: { kind: 'constant', cpuPct: 60, dirtyMiBps: 220, wwsMiB: 4096 },
    });
  }
  add('kvm-01', 'jvm-orders', {
    vcpus: 8,
    memMiB: 32768,
    memUsedMiB: 30000,
    labels: { app: 'jvm' },
    workload: {
      kind: 'bursty',
      cpuPct: 55,
      dirtyMiBps: 900,
      burstCpuPct: 95,
      burstDirtyMiBps: 1450,
      periodS: 30,
      burstS: 4,
      wwsMiB: 8192,
    },
  });
  for (const host of DEMO_HOSTS.slice(3)) {
    const h = host.slice(-2);
    for (let i = 1; i <= 2; i++) {
      add(host, `idle-${h}-${i}`, {
        vcpus: 2,
        memMiB: 2048,
        memUsedMiB: 600,
        labels: { app: 'batch' },
        workload: { kind: 'constant', cpuPct: 3, dirtyMiBps: 1, wwsMiB: 256 },
      });
    }
  }
  add(DEMO_DRAIN_HOST, 'web-09-1', {
    vcpus: 4,
    memMiB: 4096,
    memUsedMiB: 3000,
    labels: { app: 'web' },
    workload: { kind: 'constant', cpuPct: 30, dirtyMiBps: 45, wwsMiB: 1024 },
  });
  add(DEMO_DRAIN_HOST, 'web-09-2', {
    vcpus: 4,
    memMiB: 4096,
    memUsedMiB: 2800,
    labels: { app: 'web' },
    workload: { kind: 'constant', cpuPct: 35, dirtyMiBps: 50, wwsMiB: 1024 },
  });
  add(DEMO_DRAIN_HOST, 'template-09', {
    vcpus: 2,
    memMiB: 2048,
    state: 'shutoff',
    labels: { app: 'template' },
    workload: { kind: 'constant', cpuPct: 0, dirtyMiBps: 0, wwsMiB: 0 },
  });
  return {
    seed: 7,
    // The host due for maintenance is a smaller, older box: the planner prefers the others as targets.
    hosts: DEMO_HOSTS.map((id, i) => ({
      id,
      cpus: id === DEMO_DRAIN_HOST ? 16 : 32,
      memMiB: id === DEMO_DRAIN_HOST ? 65536 : 131072,
      bandwidthMiBps: TEN_GBE_MIBPS,
      cpuModel: 'Cascadelake-Server',
      reservedMemMiB: 4096,
      labels: { rack: `r${(i % 2) + 1}` },
    })),
    vms,
  };
}
