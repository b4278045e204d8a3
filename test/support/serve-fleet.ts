// Several `drover serve` processes sharing one Redis and one generated simulated cluster (each process builds
// the same hosts and VMs from the same seed): the collector's membership splits the hosts between them. Used
// by the multi-process test and the fleet bench; every process is a real child process, stopped by pid.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { ownerOf } from '../../src/collector/membership.js';
import { freePort } from '../../src/service/private-redis.js';
import { counter } from './serve-api.js';
import { spawnServe, until, type ServeProcess } from './serve-process.js';

export const FLEET_TOKEN = 'fleet-admin-token-0123456789abcdef';

export interface FleetOptions {
  redisUrl: string;
  prefix: string;
  processes: number;
  hosts: number;
  vmsPerHost: number;
  intervalS: number;
}

export interface FleetMember {
  proc: ServeProcess;
  port: number;
}

export interface Fleet {
  members: FleetMember[];
  admin: Redis;
  /** Collector member ids (each process's instance name) in the membership set, sorted. */
  memberIds(): Promise<string[]>;
  /** The member id of a process, while it is a member. */
  memberIdOf(m: FleetMember): Promise<string | undefined>;
  /** Host ids the generated cluster has (from a snapshot). */
  hostIds(): Promise<string[]>;
  /** Host id → its record's measuredAt, from the collectors' shared records. */
  measuredAt(): Promise<Map<string, number>>;
  /** drover_collector_owned_hosts of each live process. */
  owned(): Promise<number[]>;
  /** Host ids `memberId` owns among `members`. */
  ownedBy(memberId: string, members: readonly string[], hosts: readonly string[]): string[];
  /** utime+stime of a live process, in seconds (from /proc). */
  cpuSeconds(m: FleetMember): number;
  stop(): Promise<void>;
}

const CLK_TCK = 100;

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-fleet-'));
  const admin = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const members: FleetMember[] = [];
  const env = { ...process.env, REDIS_URL: options.redisUrl };
  await writeFile(join(dir, 'policy.yaml'), '{}\n');
  for (let i = 1; i <= options.processes; i++) {
    const port = await freePort();
    const config = {
      instance: `fleet-${i}`,
      hypervisor: {
        kind: 'sim',
        generate: { hosts: options.hosts, vmsPerHost: options.vmsPerHost },
        seed: 3,
      },
      redis: { prefix: options.prefix },
      policy: { file: 'policy.yaml', watch: false },
      schedules: { rebalance: { enabled: false } },
      api: { port, tokens: [{ name: 'ops', role: 'admin', value: FLEET_TOKEN }] },
      metrics: { processMetrics: false },
      log: { level: 'warn' },
      collector: { intervalS: options.intervalS, dirtyRate: { enabled: false } },
    };
    const file = join(dir, `fleet-${i}.yaml`);
    await writeFile(file, stringify(config));
    members.push({ proc: spawnServe(`fleet-${i}`, ['--config', file], env), port });
  }
  const ctx = () => members.map((m) => m.proc.tail()).join('\n');
  const fleet: Fleet = {
    members,
    admin,
    async memberIds() {
      // Members drop a dead one once its heartbeat is a TTL old (scores are the processes' clock).
      return (await admin.zrange(`${options.prefix}:collector:members`, 0, -1)).sort();
    },
    async memberIdOf(m) {
      // drover serve joins the membership under its instance name.
      return (await fleet.memberIds()).find((id) => id === m.proc.name);
    },
    async hostIds() {
      return admin.hkeys(`${options.prefix}:collector:records`);
    },
    async measuredAt() {
      const all = await admin.hgetall(`${options.prefix}:collector:records`);
      const out = new Map<string, number>();
      for (const [id, text] of Object.entries(all))
        out.set(id, Number((JSON.parse(text) as { measuredAt: number | null }).measuredAt ?? 0));
      return out;
    },
    async owned() {
      const live = members.filter((m) => m.proc.alive());
      return Promise.all(live.map((m) => counter(m.port, 'drover_collector_owned_hosts')));
    },
    ownedBy(memberId, ids, hosts) {
      return hosts.filter((h) => ownerOf(h, ids) === memberId);
    },
    cpuSeconds(m) {
      const stat = readFileSync(`/proc/${m.proc.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    },
    async stop() {
      for (const m of members) if (m.proc.alive()) m.proc.child.kill('SIGTERM');
      await Promise.race([
        Promise.all(members.map((m) => m.proc.exit)),
        new Promise((r) => setTimeout(r, 20_000)),
      ]);
      for (const m of members) if (m.proc.alive()) m.proc.child.kill('SIGKILL');
      await Promise.all(members.map((m) => m.proc.exit));
      const keys = await admin.keys(`${options.prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
      admin.disconnect();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await until(
      `${options.processes} collectors each own a share of ${options.hosts} hosts`,
      async () => {
        if (members.some((m) => !m.proc.alive())) throw new Error('a drover exited');
        const owned = await fleet.owned().catch(() => []);
        return owned.length === options.processes &&
          owned.every((n) => n > 0) &&
          owned.reduce((a, b) => a + b, 0) === options.hosts
          ? owned
          : null;
      },
      300_000,
      ctx,
      500,
    );
  } catch (err) {
    await fleet.stop();
    throw err;
  }
  return fleet;
}
