// Faults a test can inject into the simulator. The state lives here; SimHypervisor consults it on every
// call (gates) and reacts to changes through FaultHooks.
import { HypervisorError } from '../hypervisor.js';

export type HostDownMode =
  /** Calls to the host fail at once with HypervisorError `host_unreachable`. */
  | 'error'
  /** Calls to the host never answer until hostUp() (callers see their own time-outs). */
  | 'hang';

export interface HostDownOptions {
  mode?: HostDownMode;
  /**
   * True: the host crashed, its running VMs are gone (persistent ones stay defined, shut off, when it comes
   * back). False (default): a partition, its VMs keep running but nobody can reach them.
   */
  crash?: boolean;
}

export interface HostLoad {
  /** Host CPU utilisation to report from now on, percent of all its CPUs. */
  cpuPct?: number;
  memUsedMiB?: number;
}

/** What the simulator does when a fault changes the world. */
export interface FaultHooks {
  hostWentDown(hostId: string, crash: boolean): void;
  linkChanged(hostId: string, factor: number): void;
  dirtySpike(vmId: string, dirtyMiBps: number, durationMs: number): void;
  pausedOnBothEnds(vmId: string): void;
  setHostLoad(hostId: string, load: HostLoad | null): void;
  knowsHost(hostId: string): boolean;
  knowsVm(vmId: string): boolean;
}

interface Waiter {
  release: () => void;
}

export class SimFaults {
  private readonly down = new Map<string, HostDownMode>();
  private readonly hostWaiters = new Map<string, Waiter[]>();
  private readonly hung = new Map<string, Waiter[]>();

  constructor(private readonly hooks: FaultHooks) {}

  /** Takes a host down: its migrations fail, calls to it fail or hang (see HostDownOptions). */
  hostDown(hostId: string, options: HostDownOptions = {}): void {
    this.requireHost(hostId);
    this.down.set(hostId, options.mode ?? 'error');
    this.hooks.hostWentDown(hostId, options.crash ?? false);
  }

  /** Brings a host back; calls that were hanging on it proceed. */
  hostUp(hostId: string): void {
    this.requireHost(hostId);
    this.down.delete(hostId);
    const waiters = this.hostWaiters.get(hostId) ?? [];
    this.hostWaiters.delete(hostId);
    for (const w of waiters) w.release();
  }

  isDown(hostId: string): boolean {
    return this.down.has(hostId);
  }

  /**
   * Makes the VM's QEMU monitor unresponsive: jobStats, completedJobStats, abortJob, setMaxDowntime,
   * setMaxBandwidth and startPostCopy for this VM (on any host) do not answer until the returned release
   * function is called; then they run. The migration itself keeps going meanwhile.
   */
  hangProgress(vmId: string): () => void {
    this.requireVm(vmId);
    if (!this.hung.has(vmId)) this.hung.set(vmId, []);
    return () => {
      const waiters = this.hung.get(vmId) ?? [];
      this.hung.delete(vmId);
      for (const w of waiters) w.release();
    };
  }

  /**
   * Arms the VM's current (or next) live migration to break at switch-over: the VM is left paused on the
   * source and a paused copy exists on the destination, no job runs, and the migration ends `failed`.
   */
  pausedOnBothEnds(vmId: string): void {
    this.requireVm(vmId);
    this.hooks.pausedOnBothEnds(vmId);
  }

  /** Slows the host's migration link to `factor` (0 < factor <= 1) of its bandwidth; 1 restores it. */
  slowLink(hostId: string, factor: number): void {
    this.requireHost(hostId);
    if (!(factor > 0 && factor <= 1)) {
      throw new HypervisorError(
        'invalid_argument',
        `slowLink factor: expected 0 < factor <= 1, got ${factor}`,
      );
    }
    this.hooks.linkChanged(hostId, factor);
  }

  /** Replaces the VM's dirty rate by `dirtyMiBps` for `durationMs` from now. */
  dirtySpike(vmId: string, spike: { dirtyMiBps: number; durationMs: number }): void {
    this.requireVm(vmId);
    if (!(spike.dirtyMiBps >= 0 && spike.durationMs > 0)) {
      throw new HypervisorError(
        'invalid_argument',
        'dirtySpike: expected dirtyMiBps >= 0 and durationMs > 0',
      );
    }
    this.hooks.dirtySpike(vmId, spike.dirtyMiBps, spike.durationMs);
  }

  /** Test-only: sets what the host reports as its load (null: back to the sum of its VMs). */
  setHostLoad(hostId: string, load: HostLoad | null): void {
    this.requireHost(hostId);
    this.hooks.setHostLoad(hostId, load);
  }

  /**
   * Resolves when the host may be called, or throws `host_unreachable`. Returns null (no promise at all)
   * when there is nothing to wait for, so the common path costs nothing.
   */
  hostGate(hostId: string): Promise<void> | null {
    const mode = this.down.get(hostId);
    if (mode === undefined) return null;
    if (mode === 'error') {
      return Promise.reject(new HypervisorError('host_unreachable', `host ${hostId} is not answering`));
    }
    return new Promise<void>((resolve) => {
      const list = this.hostWaiters.get(hostId) ?? [];
      list.push({ release: resolve });
      this.hostWaiters.set(hostId, list);
    });
  }

  /** Resolves when the VM's monitor answers again (null when it answers now). */
  progressGate(vmId: string): Promise<void> | null {
    const list = this.hung.get(vmId);
    if (!list) return null;
    return new Promise<void>((resolve) => list.push({ release: resolve }));
  }

  private requireHost(hostId: string): void {
    if (!this.hooks.knowsHost(hostId)) throw new HypervisorError('no_host', `unknown host ${hostId}`);
  }

  private requireVm(vmId: string): void {
    if (!this.hooks.knowsVm(vmId)) throw new HypervisorError('no_domain', `unknown VM ${vmId}`);
  }
}
