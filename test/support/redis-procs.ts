// Redis topologies on loopback for tests, each process with its own port and directory and stopped by its pid:
// one redis-server, a Sentinel set (primary, replica, three sentinels) and a Redis Cluster of primaries.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from '../../src/service/private-redis.js';
import { killAndWait, running, until } from './serve-process.js';

const run = promisify(execFile);

export interface RedisProc {
  readonly name: string;
  readonly port: number;
  readonly dir: string;
  pid: number;
  child: ChildProcess;
  /** The last of its log (stdout and stderr). */
  stderr: string;
  /** SIGKILL by pid, wait until gone. */
  kill(): Promise<void>;
  /** SIGTERM by pid (SIGKILL after 10 s), wait until gone. */
  stop(): Promise<void>;
  /** Starts the same server again on its port and directory (after kill or stop). */
  restart(): Promise<void>;
}

/** PING answered (a server may answer LOADING for a while after start). */
async function answers(port: number): Promise<boolean> {
  const client = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/**
 * Starts `binary` (redis-server or redis-sentinel) with `args` after `--port P --bind 127.0.0.1 --dir D`, or,
 * when `configFile` is given, with that file (written into the directory; sentinels rewrite theirs).
 */
export async function startRedisProc(
  name: string,
  options: { binary?: string; args?: string[]; configText?: (port: number, dir: string) => string } = {},
): Promise<RedisProc> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), `drover-${name}-`));
  const binary = options.binary ?? 'redis-server';
  let argv: string[];
  if (options.configText) {
    const file = join(dir, `${name}.conf`);
    await writeFile(file, options.configText(port, dir));
    argv = [file];
  } else {
    argv = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      ...(options.args ?? []),
    ];
  }
  const proc: RedisProc = {
    name,
    port,
    dir,
    pid: -1,
    child: undefined as unknown as ChildProcess,
    stderr: '',
    async kill() {
      await killAndWait(proc.pid);
    },
    async stop() {
      if (!running(proc.pid)) return;
      process.kill(proc.pid, 'SIGTERM');
      try {
        await until(`${name} stopped`, () => !running(proc.pid), 10_000);
      } catch {
        await killAndWait(proc.pid);
      }
    },
    async restart() {
      await launch();
    },
  };
  const launch = async () => {
    // Redis logs to stdout; both are kept (the last 2,000 characters) for failure messages.
    const child = spawn(binary, argv, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (c: Buffer) => {
      proc.stderr = (proc.stderr + c.toString()).slice(-2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    proc.child = child;
    proc.pid = child.pid ?? -1;
    await until(
      `${name} (${binary}) answers on 127.0.0.1:${port}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${proc.stderr}`);
        return answers(port);
      },
      30_000,
      () => proc.stderr,
      100,
    );
  };
  await launch();
  return proc;
}

async function removeDirs(procs: RedisProc[]): Promise<void> {
  await Promise.all(procs.map((p) => rm(p.dir, { recursive: true, force: true })));
}

export interface SentinelSet {
  readonly masterName: string;
  readonly primary: RedisProc;
  readonly replica: RedisProc;
  readonly sentinels: RedisProc[];
  /** drover's `redis.sentinel` config section. */
  config(): { sentinels: { host: string; port: number }[]; name: string };
  /** The port the sentinels now name as the master (asks each until one answers). */
  masterPort(): Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * A primary, a replica of it and three sentinels (quorum 2) watching it, with down-after-milliseconds 1000
 * and failover-timeout 5000 so that a killed primary is replaced in a few seconds. Resolves once every
 * sentinel sees the replica and the other two sentinels (a failover needs a majority of them to agree).
 */
export async function startSentinelSet(masterName = 'drover'): Promise<SentinelSet> {
  const primary = await startRedisProc('sentinel-primary');
  const replica = await startRedisProc('sentinel-replica', {
    args: ['--replicaof', '127.0.0.1', String(primary.port)],
  });
  const sentinels: RedisProc[] = [];
  const all = () => [primary, replica, ...sentinels];
  try {
    await until(
      'replica in sync',
      async () => {
        const c = new Redis({ port: replica.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
        try {
          return (await c.info('replication')).includes('master_link_status:up');
        } finally {
          c.disconnect();
        }
      },
      30_000,
    );
    for (let i = 1; i <= 3; i++) {
      sentinels.push(
        await startRedisProc(`sentinel-${i}`, {
          binary: 'redis-sentinel',
          configText: (port, dir) =>
            [
              `port ${port}`,
              'bind 127.0.0.1',
              `dir ${dir}`,
              `sentinel monitor ${masterName} 127.0.0.1 ${primary.port} 2`,
              `sentinel down-after-milliseconds ${masterName} 1000`,
              `sentinel failover-timeout ${masterName} 5000`,
              `sentinel parallel-syncs ${masterName} 1`,
              '',
            ].join('\n'),
        }),
      );
    }
    await until(
      'each sentinel sees the replica and the other two sentinels',
      async () => {
        for (const s of sentinels) {
          const c = new Redis({ port: s.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
          try {
            const flat = (await c.call('SENTINEL', 'MASTER', masterName)) as string[];
            const info = new Map<string, string>();
            for (let i = 0; i + 1 < flat.length; i += 2) info.set(String(flat[i]), String(flat[i + 1]));
            if (info.get('num-slaves') !== '1' || info.get('num-other-sentinels') !== '2') return false;
          } finally {
            c.disconnect();
          }
        }
        return true;
      },
      60_000,
      () => sentinels.map((s) => s.stderr).join('\n'),
      200,
    );
  } catch (err) {
    await Promise.all(all().map((p) => p.stop()));
    await removeDirs(all());
    throw err;
  }
  return {
    masterName,
    primary,
    replica,
    sentinels,
    config: () => ({
      sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
      name: masterName,
    }),
    async masterPort() {
      for (const s of sentinels) {
        if (!running(s.pid)) continue;
        const c = new Redis({ port: s.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
        try {
          const addr = (await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as string[] | null;
          if (addr) return Number(addr[1]);
        } catch {
          // try the next sentinel
        } finally {
          c.disconnect();
        }
      }
      return null;
    },
    async stop() {
      await Promise.all(all().map((p) => p.stop()));
      await removeDirs(all());
    },
  };
}

export interface RedisClusterProcs {
  readonly nodes: RedisProc[];
  /** drover's `redis.cluster` config section. */
  config(): { nodes: { host: string; port: number }[] };
  /** The node serving the slot of `key` (a hash-tagged prefix names one slot). */
  nodeFor(key: string): Promise<RedisProc>;
  /** Resolves once every node says cluster_state:ok. */
  waitOk(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `count` primaries without replicas (`redis-cli --cluster create --cluster-replicas 0`), AOF on so that a
 * restarted node comes back with its data, node timeout 1 s.
 */
export async function startRedisCluster(count = 3): Promise<RedisClusterProcs> {
  const nodes: RedisProc[] = [];
  const waitOk = async () => {
    await until(
      'every cluster node says cluster_state:ok',
      async () => {
        for (const n of nodes) {
          const c = new Redis({ port: n.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
          try {
            if (!((await c.call('CLUSTER', 'INFO')) as string).includes('cluster_state:ok')) return false;
          } catch {
            return false;
          } finally {
            c.disconnect();
          }
        }
        return true;
      },
      60_000,
      () => nodes.map((n) => `${n.name}: ${n.stderr}`).join('\n'),
      200,
    );
  };
  try {
    for (let i = 1; i <= count; i++) {
      nodes.push(
        await startRedisProc(`cluster-${i}`, {
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            '1000',
            '--appendonly',
            'yes',
          ],
        }),
      );
    }
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    await waitOk();
  } catch (err) {
    await Promise.all(nodes.map((p) => p.stop()));
    await removeDirs(nodes);
    throw err;
  }
  return {
    nodes,
    config: () => ({ nodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })) }),
    async nodeFor(key) {
      const c = new Redis({ port: nodes[0]!.port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
      try {
        const slot = (await c.call('CLUSTER', 'KEYSLOT', key)) as number;
        const shards = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][];
        const owner = shards.find(([from, to]) => slot >= from && slot <= to);
        const port = owner?.[2][1];
        const node = nodes.find((n) => n.port === port);
        if (!node) throw new Error(`no node serves slot ${slot} of ${key}`);
        return node;
      } finally {
        c.disconnect();
      }
    },
    waitOk,
    async stop() {
      await Promise.all(nodes.map((p) => p.stop()));
      await removeDirs(nodes);
    },
  };
}
