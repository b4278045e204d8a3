// A collector cycle over many hosts lets the event loop run between slices of hosts, even when the
// hypervisor answers without any I/O (the simulator): timers, sockets and the HTTP API are never held up for
// a whole cycle.
import { describe, expect, it } from 'vitest';
import { Collector, HOSTS_PER_TURN } from '../../src/collector/collector.js';
import { InMemoryCollectorStore } from '../../src/collector/collector-store.js';
import { SystemClock } from '../../src/clock/clocks.js';
import { SimHypervisor, generateCluster } from '../../src/hypervisor/sim/index.js';

describe('collector and the event loop', () => {
  it('gives the event loop a turn at least every HOSTS_PER_TURN hosts of a cycle', async () => {
    const hosts = 400;
    const sim = new SimHypervisor(generateCluster({ seed: 5, hosts, vmsPerHost: 3 }), {
      clock: new SystemClock(),
    });
    const collector = new Collector(
      { hypervisor: sim, store: new InMemoryCollectorStore() },
      { dirtyRate: { enabled: false } },
    );
    // A callback re-armed with setImmediate runs once per turn of the event loop.
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const turnsBefore = turns;
    const result = await collector.runCycle();
    ticking = false;
    expect(result.outcomes.filter((o) => o.ok)).toHaveLength(hosts);
    expect(result.snapshot.hosts).toHaveLength(hosts);
    // Sampling alone has hosts / HOSTS_PER_TURN slices; without the turns the whole cycle is one.
    expect(turns - turnsBefore).toBeGreaterThanOrEqual(Math.floor(hosts / HOSTS_PER_TURN) - 1);
    await sim.close();
  });
});
