// The CollectorStore every drover process sharing a Redis sees. Keys (prefix hash-tagged, so all land in one
// Cluster slot):
//   <prefix>:collector:members      sorted set, member -> clock time of its last heartbeat
//   <prefix>:collector:hosts        the last host list
//   <prefix>:collector:history      hash, host -> HostHistory
//   <prefix>:collector:records      hash, host -> HostRecord
//   <prefix>:collector:vm-dirty:<vm> a VM's dirty-rate history (expires)
//   <prefix>:host-state, <prefix>:snapshot:latest   through HostStateStore and SnapshotStore
import type { Redis } from 'ioredis';
import type { Snapshot } from '../domain/snapshot.js';
import type { CollectorStore, StoredHost } from './collector-store.js';
import { HostStateStore } from './host-state-store.js';
import type { DroverHostState } from './snapshot-builder.js';
import { SnapshotStore } from './snapshot-store.js';

export interface RedisCollectorStoreDeps {
  redis: Redis;
  /** Key prefix, the same the other stores of the process use (`{drover}` by default in the config). */
  keyPrefix: string;
  /** Where the snapshot goes; the service reads it from the same store. */
  snapshots: SnapshotStore;
  /** drover's host states, as the service's drain and activate set them. */
  hostStates: HostStateStore;
}

export class RedisCollectorStore implements CollectorStore {
  readonly membersKey: string;
  readonly hostListKey: string;
  readonly historyKey: string;
  readonly recordsKey: string;
  private readonly redis: Redis;
  private readonly keyPrefix: string;
  private readonly snapshots: SnapshotStore;
  private readonly states: HostStateStore;

  constructor(deps: RedisCollectorStoreDeps) {
    this.redis = deps.redis;
    this.keyPrefix = deps.keyPrefix;
    this.snapshots = deps.snapshots;
    this.states = deps.hostStates;
    this.membersKey = `${deps.keyPrefix}:collector:members`;
    this.hostListKey = `${deps.keyPrefix}:collector:hosts`;
    this.historyKey = `${deps.keyPrefix}:collector:history`;
    this.recordsKey = `${deps.keyPrefix}:collector:records`;
  }

  vmDirtyKey(vmId: string): string {
    return `${this.keyPrefix}:collector:vm-dirty:${vmId}`;
  }

  async heartbeat(memberId: string, nowMs: number, ttlMs: number): Promise<void> {
    await this.redis
      .multi()
      .zadd(this.membersKey, nowMs, memberId)
      .zremrangebyscore(this.membersKey, '-inf', `(${nowMs - ttlMs}`)
      .exec();
  }

  async members(nowMs: number, ttlMs: number): Promise<string[]> {
    const ids = await this.redis.zrangebyscore(this.membersKey, `(${nowMs - ttlMs}`, '+inf');
    return ids.sort();
  }

  async leave(memberId: string): Promise<void> {
    await this.redis.zrem(this.membersKey, memberId);
  }

  loadHostList(): Promise<string | null> {
    return this.redis.get(this.hostListKey);
  }

  async saveHostList(text: string): Promise<void> {
    await this.redis.set(this.hostListKey, text);
  }

  async loadHistories(hostIds: readonly string[]): Promise<(string | null)[]> {
    if (hostIds.length === 0) return [];
    return this.redis.hmget(this.historyKey, ...hostIds);
  }

  async loadRecords(hostIds: readonly string[]): Promise<(string | null)[]> {
    if (hostIds.length === 0) return [];
    return this.redis.hmget(this.recordsKey, ...hostIds);
  }

  async saveHosts(hosts: readonly StoredHost[]): Promise<void> {
    if (hosts.length === 0) return;
    const histories = hosts.flatMap((h) => [h.hostId, h.history]);
    const records = hosts.flatMap((h) => (h.record === null ? [] : [h.hostId, h.record]));
    // One transaction: a host's history and record change together.
    const tx = this.redis.multi().hset(this.historyKey, ...histories);
    if (records.length > 0) tx.hset(this.recordsKey, ...records);
    await tx.exec();
  }

  async loadVmDirty(vmIds: readonly string[]): Promise<(string | null)[]> {
    if (vmIds.length === 0) return [];
    return this.redis.mget(...vmIds.map((id) => this.vmDirtyKey(id)));
  }

  async saveVmDirty(entries: readonly { vmId: string; text: string }[], ttlMs: number): Promise<void> {
    if (entries.length === 0) return;
    const tx = this.redis.multi();
    for (const e of entries) tx.set(this.vmDirtyKey(e.vmId), e.text, 'PX', Math.max(1, Math.round(ttlMs)));
    await tx.exec();
  }

  hostStates(): Promise<Record<string, DroverHostState>> {
    return this.states.all();
  }

  writeSnapshot(snapshot: Snapshot): Promise<void> {
    return this.snapshots.write(snapshot);
  }
}

/** A RedisCollectorStore with its own snapshot and host-state stores on the same Redis and prefix. */
export function redisCollectorStore(redis: Redis, keyPrefix: string): RedisCollectorStore {
  return new RedisCollectorStore({
    redis,
    keyPrefix,
    snapshots: new SnapshotStore(redis, keyPrefix),
    hostStates: new HostStateStore(redis, keyPrefix),
  });
}
