// The shared Hypervisor conformance suite on LibvirtHypervisor against the lab's real daemons and guests.
import { afterAll } from 'vitest';
import { describeConformance, realTimeRun, type ConformanceTarget } from '../hypervisor/conformance-suite.js';
import { labHostConfigs, defineGuest, removeGuest, waitFor, type LabGuest } from './lab-client.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';

const SRC = 'lab1';
const DST = 'lab2';
let guest: LabGuest | null = null;

/** The idle VM (32 MiB of non-zero RAM, so a 1 MiB/s migration stays visibly active), running on SRC only. */
async function makeLabTarget(): Promise<ConformanceTarget> {
  const hv = new LibvirtHypervisor(labHostConfigs(), {
    callTimeoutMs: 15_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 1_000,
  });
  if (!guest)
    guest = await defineGuest({
      name: `conformance-idle-${process.pid}`,
      host: SRC,
      memMiB: 96,
      fillMiB: 32,
    });
  const id = guest.id;
  // put it back where the suite expects it: no job, running and defined on SRC only
  for (const host of [SRC, DST]) {
    const job = await hv.jobStats(host, id).catch(() => null);
    if (job?.type === 'active') {
      await hv.abortJob(host, id).catch(() => undefined);
      await waitFor(
        'the aborted job to end',
        async () => ((await hv.jobStats(host, id)).type === 'active' ? undefined : true),
        30_000,
      );
    }
  }
  const where = await hv.locateVm(id);
  if (where.some((p) => p.hostId === DST)) {
    const back = await hv.migrate({ vmId: id, from: DST, to: SRC, kind: 'live', maxDowntimeMs: 1_000 });
    const outcome = await back.done;
    if (outcome.result !== 'completed')
      throw new Error(`could not move the conformance VM back: ${outcome.error}`);
  }
  const here = (await hv.locateVm(id)).find((p) => p.hostId === SRC);
  if (here?.state === 'paused') await hv.resumeVm(SRC, id);
  return {
    hypervisor: hv,
    hosts: [SRC, DST],
    idleVmId: id,
    run: realTimeRun,
    cleanup: () => hv.close(),
  };
}

describeConformance('LibvirtHypervisor (lab)', makeLabTarget, {
  migrationMaxMs: 120_000,
  testTimeoutMs: 180_000,
});

afterAll(async () => {
  if (guest) await removeGuest(guest.name);
});
