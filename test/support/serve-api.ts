// Talking to a `drover serve` process from a test: its API with the admin token, its Prometheus counters,
// and the invariant read from its latest snapshot (the simulated cluster lives inside the process, so the
// snapshot, built from every host's own VM list, is the outside view of where each VM runs).
import type { ClusterSpec } from '../../src/hypervisor/sim/cluster-spec.js';
import { until } from './serve-process.js';

/** kvm-01 carries six 1 GiB VMs on a 250 MiB/s link (about 4 s a move); three empty hosts take them. */
export function drainSpec(): ClusterSpec {
  const hosts = ['kvm-01', 'kvm-02', 'kvm-03', 'kvm-04'].map((id) => ({
    id,
    cpus: 16,
    memMiB: 65536,
    bandwidthMiBps: 250,
  }));
  const vms = [1, 2, 3, 4, 5, 6].map((i) => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    name: `vm-${i}`,
    host: 'kvm-01',
    vcpus: 2,
    memMiB: 1024,
    workload: { kind: 'constant' as const, cpuPct: 20, dirtyMiBps: 5, wwsMiB: 64 },
  }));
  return { seed: 5, hosts, vms };
}
export interface ApiReply {
  status: number;
  body: Record<string, unknown>;
}

export function apiClient(port: number, token: string) {
  return async (method: string, path: string, body: unknown = {}): Promise<ApiReply> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
}

/** Sum of a Prometheus counter's samples whose labels include every `labels` pair. */
export async function counter(
  port: number,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Completed migrations per VM (`drover_vm_migrations_total`, needs metrics.perVmSeries). */
export async function migrationsPerVm(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^drover_vm_migrations_total\{[^}]*vm="([^"]+)"[^}]*\} (\S+)$/.exec(line);
    if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

export interface SnapshotView {
  takenAt: string;
  hosts: { id: string; state: string }[];
  vms: { id: string; host: string; state: string }[];
}

/** One line per VM of `vmIds` that does not run on exactly one host in the snapshot. */
export function placementViolations(snapshot: SnapshotView, vmIds: readonly string[]): string[] {
  const on = new Map<string, string[]>();
  for (const v of snapshot.vms) if (v.state !== 'shutoff') on.set(v.id, [...(on.get(v.id) ?? []), v.host]);
  const out: string[] = [];
  for (const id of vmIds) {
    const hosts = on.get(id) ?? [];
    if (hosts.length !== 1) out.push(`${id}: running on ${hosts.length} hosts (${hosts.join(', ')})`);
  }
  return out;
}

const FINAL_PLAN_STATES = ['completed', 'failed', 'cancelled', 'expired'];

/** Waits (up to `timeoutMs`) for the plan to reach a final state and returns that state. */
export async function planFinalState(
  api: ReturnType<typeof apiClient>,
  planId: string,
  timeoutMs: number,
  context: () => string,
): Promise<string> {
  return until(
    'the plan reached a final state',
    async () => {
      const res = await api('GET', `/v1/plans/${planId}`).catch(() => null);
      const s = String(((res?.body.record ?? res?.body) as { status?: string } | undefined)?.status);
      return FINAL_PLAN_STATES.includes(s) ? s : null;
    },
    timeoutMs,
    context,
    300,
  );
}

/**
 * The planned VMs that did not migrate exactly once by drover's per-VM counter, each as a line saying how
 * often it did (empty when every one moved once).
 */
export async function notMigratedOnce(port: number, planned: readonly string[]): Promise<string[]> {
  const perVm = await migrationsPerVm(port);
  return planned
    .filter((vm) => (perVm.get(vm) ?? 0) !== 1)
    .map((vm) => `${vm}: migrated ${perVm.get(vm) ?? 0} times`);
}

/** The first snapshot taken after `afterMs` (the process's view of where each VM runs now). */
export async function snapshotAfter(
  api: ReturnType<typeof apiClient>,
  afterMs: number,
  context: () => string,
): Promise<SnapshotView> {
  return until(
    'a snapshot taken after the plan',
    async () => {
      const res = await api('GET', '/v1/snapshots/latest');
      const snap = res.body as unknown as SnapshotView;
      return res.status === 200 && Date.parse(snap.takenAt) > afterMs ? snap : null;
    },
    30_000,
    context,
    200,
  );
}
