// What a guest writes, for the drain bench's physical bound: dirty-rate readings through the hypervisor with
// windows short enough that no guest fills one. A reading counts the distinct pages written in its window, so
// it cannot exceed memory / window: the collector's 5-s reading of a 2 GiB guest tops out at 410 MiB/s.
import type { Hypervisor } from '../../src/hypervisor/hypervisor.js';
import type { VirtualClock } from '../../src/hypervisor/sim/index.js';

/** Readings per VM and their window (s). */
export const BOUND_READINGS = 30;
export const BOUND_WINDOW_S = 1;

/**
 * Mean dirty rate (MiB/s) of each running VM on `host`: BOUND_READINGS readings of BOUND_WINDOW_S, one every
 * BOUND_WINDOW_S + 1 s of the clock (a minute in all), so a guest's bursts count at their share of the time.
 */
export async function meanDirtyMiBps(
  hv: Pick<Hypervisor, 'sampleVms' | 'startDirtyRate'>,
  clock: VirtualClock,
  host: string,
): Promise<Map<string, number>> {
  const sums = new Map<string, { sum: number; n: number }>();
  for (let i = 0; i < BOUND_READINGS; i += 1) {
    const running = (await hv.sampleVms(host)).filter((v) => v.state === 'running');
    for (const v of running) await hv.startDirtyRate(host, v.vmId, BOUND_WINDOW_S);
    await clock.advance(BOUND_WINDOW_S * 1000 + 1000);
    for (const v of await hv.sampleVms(host)) {
      if (v.dirtyRate.status !== 'measured' || v.dirtyRate.dirtyMiBps === null) continue;
      const s = sums.get(v.vmId) ?? { sum: 0, n: 0 };
      s.sum += v.dirtyRate.dirtyMiBps;
      s.n += 1;
      sums.set(v.vmId, s);
    }
  }
  return new Map([...sums].map(([id, s]) => [id, s.sum / s.n]));
}
