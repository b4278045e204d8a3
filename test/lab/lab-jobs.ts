// Executor jobs on the libvirt lab: plans and steps as the planner would hand them over, waiting for a VM's job
// to end and reading its report, the guests a test file boots (removed after each case or at the end), the
// QEMU process of a guest (for SIGSTOP/SIGCONT faults), and the storage a test made on a host.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Plan, Step } from '../../src/domain/plan.js';
import type { Executor, MigrationStatus } from '../../src/executor/executor.js';
import type { MigrationReport } from '../../src/executor/migration-runner.js';
import { isNoStoragePool } from '../../src/libvirt/errors.js';
import type { LibvirtClient } from '../../src/libvirt/libvirt-client.js';
import { StoragePoolState } from '../../src/libvirt/remote-protocol.js';
import {
  defineGuest,
  guestName,
  heartbeatAdvances,
  labClient,
  labDir,
  labExec,
  removeGuest,
  waitFor,
  type GuestSpec,
  type LabGuest,
} from './lab-client.js';

/** A step lab1 -> lab2 (live, 10 s predicted, 500 ms downtime budget) with `extra` over it. */
export function labStep(vm: string, extra: Partial<Step> = {}): Step {
  return {
    vm,
    from: 'lab1',
    to: 'lab2',
    kind: 'live',
    why: 'lab test',
    predicted: { converges: true, durationS: 10, downtimeMs: 50, transferMiB: 64 },
    downtimeBudgetMs: 500,
    ...extra,
  };
}

/** A plan of these steps, as the planner hands one over. */
export function labPlan(id: string, steps: Step[], reason: Plan['reason'] = 'drain'): Plan {
  return {
    id,
    reason,
    createdAt: new Date().toISOString(),
    steps,
    skipped: [],
    before: { cpuSpreadPct: 0, memSpreadPct: 0 },
    after: { cpuSpreadPct: 0, memSpreadPct: 0 },
  };
}

/** Waits for the VM's job to end (completed or failed in the queue); `onPoll` sees every status on the way. */
export function jobFinished(
  ex: Executor,
  vmId: string,
  timeoutMs = 150_000,
  onPoll: (s: MigrationStatus) => void = () => undefined,
): Promise<MigrationStatus> {
  return waitFor(
    `the job of ${vmId} to finish`,
    async () => {
      const s = (await ex.list()).find((x) => x.vmId === vmId);
      if (s) onPoll(s);
      return s && (s.state === 'completed' || s.state === 'failed') ? s : undefined;
    },
    timeoutMs,
    200,
  );
}

/** The report of a job that ran its migration (null for a skip or a failure before it started). */
export function reportOf(s: MigrationStatus): MigrationReport | null {
  const result = s.result;
  return result && 'report' in result ? result.report : null;
}

/**
 * The guests one test file boots: `boot` defines and starts one (named after `prefix`, on lab1 by default)
 * and waits for its heartbeat (or only defines it, with `start: false`); `removeAll` destroys and undefines
 * them wherever they are.
 */
export class LabGuests {
  private readonly names: string[] = [];

  constructor(private readonly prefix: string) {}

  async boot(spec: Omit<GuestSpec, 'name'> = {}, heartbeatMs = 20_000): Promise<LabGuest> {
    const g = await defineGuest({ name: guestName(this.prefix), host: 'lab1', memMiB: 64, ...spec });
    this.names.push(g.name);
    if (spec.start !== false) await heartbeatAdvances(g.host, g.name, heartbeatMs);
    return g;
  }

  async removeAll(): Promise<void> {
    for (const name of this.names.splice(0)) await removeGuest(name).catch(() => undefined);
  }
}

/** The QEMU process of a lab guest (its pid file lives in the host's overlay). */
export function qemuPid(hostId: string, name: string): number {
  const pid = Number(
    readFileSync(join(labDir(), 'hosts', hostId, 'ovl/run/upper/libvirt/qemu', `${name}.pid`), 'utf8').trim(),
  );
  if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(name))
    throw new Error(`pid ${pid} is not the QEMU of ${name}`);
  return pid;
}

/** Removes every pool whose target is `dir` or below it on that host, then the directory (and its mounts). */
export async function removeStorageUnder(hostId: string, dir: string): Promise<void> {
  let client: LibvirtClient;
  try {
    client = await labClient(hostId);
  } catch {
    return;
  }
  try {
    for (const pool of await client.listAllStoragePools()) {
      const xml = await client.storagePoolXml(pool).catch(() => '');
      if (!xml.includes(`<path>${dir}`)) continue;
      const info = await client.storagePoolInfo(pool);
      if (info.state === StoragePoolState.RUNNING)
        await client.storagePoolDestroy(pool).catch(() => undefined);
      await client.storagePoolUndefine(pool).catch((err: unknown) => {
        if (!isNoStoragePool(err)) throw err;
      });
    }
  } finally {
    await client.close();
  }
  await labExec(hostId, [
    'sh',
    '-c',
    `umount ${dir}/* 2>/dev/null; umount ${dir} 2>/dev/null; rm -rf ${dir}`,
  ]);
}
