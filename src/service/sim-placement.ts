// Where each simulated VM runs, kept in drover's Redis (`<prefix>:sim:placement`, VM id -> host) when the config
// asks for it (`hypervisor.keepPlacement`). The simulator lives inside the drover process and is built from its
// spec at each start; with this, a restart finds every VM where the last process left it, as a real cluster
// would. The write of a finished migration's new host is sent before the executor learns the migration ended,
// on the same Redis, so a persisted record of a completed step always has the placement that goes with it.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { errorMessage } from '../domain/errors.js';
import type { ClusterSpec } from '../hypervisor/sim/cluster-spec.js';
import type { SimHypervisor } from '../hypervisor/sim/sim-hypervisor.js';

export class SimPlacement {
  readonly key: string;
  private readonly written = new Map<string, string>();
  private unsubscribe: (() => void) | null = null;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly log?: Logger,
  ) {
    this.key = `${prefix}:sim:placement`;
  }

  /**
   * The spec with each VM on the host it was last seen on (VMs and hosts the spec no longer has are left as
   * the spec says). Returns how many VMs moved from their spec host.
   */
  async apply(spec: ClusterSpec): Promise<{ spec: ClusterSpec; moved: number }> {
    const saved = await this.redis.hgetall(this.key);
    const hosts = new Set(spec.hosts.map((h) => h.id));
    let moved = 0;
    const vms = spec.vms.map((vm) => {
      const host = saved[vm.id];
      if (host === undefined || !hosts.has(host) || host === vm.host) return vm;
      moved++;
      return { ...vm, host };
    });
    for (const vm of vms) this.written.set(vm.id, vm.host);
    return { spec: { ...spec, vms }, moved };
  }

  /** Writes each VM's host whenever the simulator reports an event of that VM and its host changed. */
  follow(sim: SimHypervisor): void {
    this.unsubscribe = sim.subscribe((event) => {
      const vmId = 'vmId' in event ? event.vmId : undefined;
      if (typeof vmId !== 'string') return;
      const home = sim.homeOf(vmId);
      if (home === null || this.written.get(vmId) === home) return;
      this.written.set(vmId, home);
      this.redis.hset(this.key, vmId, home).catch((err: unknown) => {
        this.written.delete(vmId);
        this.log?.error({ module: 'sim', vm: vmId, err: errorMessage(err) }, 'could not keep a VM placement');
      });
    });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
