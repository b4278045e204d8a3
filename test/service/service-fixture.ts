// A drover config on the simulator for tests: a small cluster spec, the default policy, API on a free port,
// the run's Redis (single server or Cluster) with a unique prefix, fast collector and reconcile intervals.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { ClusterSpec } from '../../src/hypervisor/sim/cluster-spec.js';
import { loadConfig, type LoadedConfig } from '../../src/service/config.js';
import { serviceRedis } from '../support/redis.js';

export const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
export const READ_TOKEN = 'read-token-0123456789abcdef';

/** Four 16-CPU hosts; kvm-01 carries six small VMs, the rest one each. Migrations take about a second. */
export function smallCluster(): ClusterSpec {
  const hosts = ['kvm-01', 'kvm-02', 'kvm-03', 'kvm-04'].map((id, i) => ({
    id,
    cpus: 16,
    memMiB: 65536,
    bandwidthMiBps: 1000,
    labels: { rack: `r${(i % 2) + 1}` },
  }));
  const vms = [];
  for (let i = 1; i <= 9; i++) {
    const host = i <= 6 ? 'kvm-01' : `kvm-0${i - 5}`;
    vms.push({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      name: `vm-${i}`,
      host,
      vcpus: 4,
      memMiB: 1024,
      workload: { kind: 'constant' as const, cpuPct: 80, dirtyMiBps: 5, wwsMiB: 64 },
    });
  }
  return { seed: 7, hosts, vms };
}

export interface Fixture {
  dir: string;
  prefix: string;
  load(): Promise<LoadedConfig>;
  cleanup(): Promise<void>;
}

export async function writeFixture(
  prefix: string,
  overrides: Record<string, unknown> = {},
  cluster: ClusterSpec = smallCluster(),
): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-service-'));
  await writeFile(join(dir, 'cluster.yaml'), stringify(cluster));
  await writeFile(join(dir, 'policy.yaml'), '{}\n');
  const config = {
    instance: `test-${prefix}`,
    hypervisor: { kind: 'sim', cluster: 'cluster.yaml' },
    redis: serviceRedis(prefix),
    policy: { file: 'policy.yaml', watch: false },
    schedules: { rebalance: { enabled: false }, reconcile: { intervalS: 2 }, plans: { intervalS: 0.5 } },
    automation: { level: 'partial' },
    leader: { leaseMs: 1000 },
    api: {
      port: 0,
      tokens: [
        { name: 'ops', role: 'admin', value: ADMIN_TOKEN },
        { name: 'viewer', role: 'read', value: READ_TOKEN },
      ],
      bodyLimitBytes: 4096,
    },
    metrics: { processMetrics: false },
    log: { level: 'silent' },
    collector: { intervalS: 0.5, hostTimeoutMs: 2000, dirtyRate: { windowS: 1, remeasureS: 5 } },
    executor: { pollIntervalMs: 100, progressIntervalMs: 200, lockDurationMs: 2000, stalledIntervalMs: 1000 },
    ...overrides,
  };
  await writeFile(join(dir, 'drover.yaml'), stringify(config));
  return {
    dir,
    prefix,
    load: () => loadConfig(join(dir, 'drover.yaml'), {}),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
