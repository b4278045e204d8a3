// What the collector keeps beyond one cycle, behind one interface the composition root hands in: the live
// collector processes (membership), each host's history and snapshot record, each VM's dirty-rate history,
// the last host list, drover's own host states, and the snapshot it writes.
//
// Two implementations: RedisCollectorStore (redis-collector-store.ts), which every drover process sharing a
// Redis sees, and InMemoryCollectorStore below, for a collector that works alone (`drover collect`, tests,
// benches). Histories, records and host lists are JSON text the collector writes and validates when it reads
// them back; a store keeps them as given.
import type { Snapshot } from '../domain/snapshot.js';
import type { DroverHostState } from './snapshot-builder.js';

/** One host's entry as the collector stores it after a cycle. */
export interface StoredHost {
  hostId: string;
  /** JSON of the host's HostHistory. */
  history: string;
  /** JSON of the host's HostRecord; null when it has none yet. */
  record: string | null;
}

export interface CollectorStore {
  /** Records the member as alive at nowMs and forgets members whose last heartbeat is older than ttlMs. */
  heartbeat(memberId: string, nowMs: number, ttlMs: number): Promise<void>;
  /** Members whose last heartbeat is less than ttlMs before nowMs, sorted. */
  members(nowMs: number, ttlMs: number): Promise<string[]>;
  /** Forgets the member at once, so the others take its hosts over at their next cycle. */
  leave(memberId: string): Promise<void>;

  /** JSON of the last host list stored; null when none was. */
  loadHostList(): Promise<string | null>;
  saveHostList(text: string): Promise<void>;

  /** Histories of these hosts, in order; null where none is stored. */
  loadHistories(hostIds: readonly string[]): Promise<(string | null)[]>;
  /** Records of these hosts, in order; null where none is stored. */
  loadRecords(hostIds: readonly string[]): Promise<(string | null)[]>;
  /** Stores the hosts' histories and records together (a reader never sees one without the other). */
  saveHosts(hosts: readonly StoredHost[]): Promise<void>;

  /** Dirty-rate histories of these VMs, in order; null where none is stored or it expired. */
  loadVmDirty(vmIds: readonly string[]): Promise<(string | null)[]>;
  /** Stores VMs' dirty-rate histories (JSON), each kept for ttlMs after this write. */
  saveVmDirty(entries: readonly { vmId: string; text: string }[], ttlMs: number): Promise<void>;

  /** drover's own state of every host that is not active (a host missing here is active). */
  hostStates(): Promise<Record<string, DroverHostState>>;
  /** Publishes the newest snapshot. */
  writeSnapshot(snapshot: Snapshot): Promise<void>;
}

/**
 * A CollectorStore in this process's memory: a collector that works alone keeps its state here, and several
 * collectors given the same instance share it as they would share a Redis. Time is what the callers say it is
 * (the collector's clock), so it runs on a virtual clock too.
 */
export class InMemoryCollectorStore implements CollectorStore {
  private readonly heartbeats = new Map<string, number>();
  private hostList: string | null = null;
  private readonly histories = new Map<string, string>();
  private readonly records = new Map<string, string>();
  private readonly vmDirty = new Map<string, { text: string; expiresAtMs: number }>();
  private readonly states = new Map<string, DroverHostState>();
  private snapshot: Snapshot | null = null;

  /** clockNow: the time dirty-rate histories expire by (the collector's clock; default the system's). */
  constructor(private readonly clockNow: () => number = Date.now) {}

  heartbeat(memberId: string, nowMs: number, ttlMs: number): Promise<void> {
    this.heartbeats.set(memberId, nowMs);
    for (const [id, at] of this.heartbeats) if (at < nowMs - ttlMs) this.heartbeats.delete(id);
    return Promise.resolve();
  }

  members(nowMs: number, ttlMs: number): Promise<string[]> {
    const live = [...this.heartbeats].filter(([, at]) => at > nowMs - ttlMs).map(([id]) => id);
    return Promise.resolve(live.sort());
  }

  leave(memberId: string): Promise<void> {
    this.heartbeats.delete(memberId);
    return Promise.resolve();
  }

  loadHostList(): Promise<string | null> {
    return Promise.resolve(this.hostList);
  }

  saveHostList(text: string): Promise<void> {
    this.hostList = text;
    return Promise.resolve();
  }

  loadHistories(hostIds: readonly string[]): Promise<(string | null)[]> {
    return Promise.resolve(hostIds.map((id) => this.histories.get(id) ?? null));
  }

  loadRecords(hostIds: readonly string[]): Promise<(string | null)[]> {
    return Promise.resolve(hostIds.map((id) => this.records.get(id) ?? null));
  }

  saveHosts(hosts: readonly StoredHost[]): Promise<void> {
    for (const h of hosts) {
      this.histories.set(h.hostId, h.history);
      if (h.record !== null) this.records.set(h.hostId, h.record);
    }
    return Promise.resolve();
  }

  loadVmDirty(vmIds: readonly string[]): Promise<(string | null)[]> {
    const now = this.clockNow();
    return Promise.resolve(
      vmIds.map((id) => {
        const saved = this.vmDirty.get(id);
        if (saved === undefined) return null;
        if (saved.expiresAtMs <= now) {
          this.vmDirty.delete(id);
          return null;
        }
        return saved.text;
      }),
    );
  }

  saveVmDirty(entries: readonly { vmId: string; text: string }[], ttlMs: number): Promise<void> {
    const expiresAtMs = this.clockNow() + ttlMs;
    for (const e of entries) this.vmDirty.set(e.vmId, { text: e.text, expiresAtMs });
    return Promise.resolve();
  }

  hostStates(): Promise<Record<string, DroverHostState>> {
    return Promise.resolve(Object.fromEntries(this.states));
  }

  /** Sets drover's state of a host (what `drover drain`/`activate` do through the service with Redis). */
  setHostState(hostId: string, state: DroverHostState): void {
    if (state === 'active') this.states.delete(hostId);
    else this.states.set(hostId, state);
  }

  writeSnapshot(snapshot: Snapshot): Promise<void> {
    this.snapshot = snapshot;
    return Promise.resolve();
  }

  /** The snapshot written last; null before the first. */
  latestSnapshot(): Snapshot | null {
    return this.snapshot;
  }
}
