// Runs the Hypervisor conformance suite against each implementation.
import type { Clock } from '../../src/domain/clock.js';
import { ScaledClock, VirtualClock } from '../../src/clock/clocks.js';
import { SimHypervisor } from '../../src/hypervisor/sim/index.js';
import { describeConformance, realTimeRun } from './conformance-suite.js';

const IDLE_VM = '6f1c2a54-3b7e-4d21-9a0f-5e8b7c6d4a31';

function simCluster(clock: Clock): SimHypervisor {
  return new SimHypervisor(
    {
      seed: 11,
      hosts: [
        { id: 'sim-a', cpus: 8, memMiB: 32768, bandwidthMiBps: 1000, cpuModel: 'Skylake-Server' },
        { id: 'sim-b', cpus: 8, memMiB: 32768, bandwidthMiBps: 1000, cpuModel: 'Skylake-Server' },
      ],
      vms: [
        { id: IDLE_VM, name: 'idle-1', host: 'sim-a', vcpus: 1, memMiB: 512, workload: 'idle' },
        {
          id: '0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a',
          name: 'web-1',
          host: 'sim-b',
          vcpus: 2,
          memMiB: 2048,
          workload: 'web',
        },
      ],
    },
    { clock, bandwidthNoisePct: 5 },
  );
}

// The simulator, on a virtual clock: time passes only inside `run`, jumping from timer to timer.
describeConformance('SimHypervisor', () => {
  const clock = new VirtualClock();
  const sim = simCluster(clock);
  return Promise.resolve({
    hypervisor: sim,
    hosts: ['sim-a', 'sim-b'],
    idleVmId: IDLE_VM,
    run: <T>(promise: Promise<T>, maxMs: number) => clock.runUntil(promise, { maxMs }),
    cleanup: () => sim.close(),
  });
});

// The simulator on real time sped up 200 times (as the demo runs it): the real-clock code paths.
describeConformance('SimHypervisor on a ScaledClock', () => {
  const factor = 200;
  const sim = simCluster(new ScaledClock(factor));
  return Promise.resolve({
    hypervisor: sim,
    hosts: ['sim-a', 'sim-b'],
    idleVmId: IDLE_VM,
    run: <T>(promise: Promise<T>, maxMs: number) => realTimeRun(promise, maxMs / factor + 5000),
    cleanup: () => sim.close(),
  });
});

// Real libvirt: test/lab/conformance-libvirt.test.ts runs the same suite against the lab's daemons
// (run: realTimeRun). Another implementation adds its own describeConformance(...) call like these.
