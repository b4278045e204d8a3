// bench/collector/collection-cpu.ts: one collector process sampling simulated fleets of 100, 1,000 and 5,000 hosts with 30 VMs
// each on a 30 s interval. Reports the CPU time one cycle takes (process.cpuUsage: user + system, this
// process only — the in-process simulator answering the calls is included, redis-server is not) and the part
// spent building and writing the snapshot. Goal: 1,000 hosts x 30 VMs under 25 % of one core.
import { cpus, totalmem } from 'node:os';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Collector } from '../../src/collector/collector.js';
import { redisCollectorStore } from '../../src/collector/redis-collector-store.js';
import { SimHypervisor, VirtualClock, generateCluster } from '../../src/hypervisor/sim/index.js';
import { startPrivateRedis } from '../../src/service/private-redis.js';

const INTERVAL_S = 30;
const VMS_PER_HOST = 30;
const FLEETS = [100, 1000, 5000];
const GOAL_PCT = 25;

interface Row {
  hosts: number;
  vms: number;
  cycles: number;
  cpuMsPerCycle: number;
  cpuMsMax: number;
  corePct: number;
  buildCpuMs: number;
  wallMsPerCycle: number;
  snapshotMiB: number;
  probesPerCycle: number;
}

function machine(): { nproc: number; cpuModel: string; memGiB: number } {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('model name'));
    if (line) cpuModel = line.split(':')[1]?.trim() ?? cpuModel;
  } catch {
    // /proc is Linux-only; os.cpus() already gave a model.
  }
  return { nproc: cpus().length, cpuModel, memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10 };
}

async function runFleet(redisUrl: string, hosts: number): Promise<Row> {
  const clock = new VirtualClock(Date.UTC(2026, 10, 25, 12));
  const sim = new SimHypervisor(generateCluster({ seed: 42, hosts, vmsPerHost: VMS_PER_HOST }), { clock });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const prefix = `{bench-collector-${hosts}}`;
  const collector = new Collector(
    { hypervisor: sim, store: redisCollectorStore(redis, prefix), memberId: 'bench' },
    { intervalS: INTERVAL_S, hostConcurrency: 256 },
  );
  // Warm-up cycle (first readings, history load, JIT), then measured cycles.
  const measured = hosts >= 5000 ? 3 : 5;
  const cpu: number[] = [];
  const build: number[] = [];
  const wall: number[] = [];
  let probes = 0;
  let snapshotBytes = 0;
  for (let i = 0; i <= measured; i++) {
    await clock.advance(INTERVAL_S * 1000);
    const t0 = performance.now();
    const r = await collector.runCycle();
    const t1 = performance.now();
    if (i === 0) continue;
    cpu.push(r.cpuUs / 1000);
    build.push(r.buildCpuUs / 1000);
    wall.push(t1 - t0);
    probes += r.outcomes.reduce((n, o) => n + o.probesStarted.length, 0);
    snapshotBytes = Buffer.byteLength(JSON.stringify(r.snapshot));
    if (r.snapshot.hosts.some((h) => h.stale))
      throw new Error('a simulated host went stale during the bench');
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  await redis.del(
    `${prefix}:snapshot:latest`,
    `${prefix}:collector:history`,
    `${prefix}:collector:records`,
    `${prefix}:collector:members`,
  );
  await redis.quit();
  await sim.close();
  const cpuMsPerCycle = mean(cpu);
  return {
    hosts,
    vms: hosts * VMS_PER_HOST,
    cycles: measured,
    cpuMsPerCycle,
    cpuMsMax: Math.max(...cpu),
    corePct: (cpuMsPerCycle / (INTERVAL_S * 1000)) * 100,
    buildCpuMs: mean(build),
    wallMsPerCycle: mean(wall),
    snapshotMiB: snapshotBytes / 2 ** 20,
    probesPerCycle: probes / measured,
  };
}

function table(rows: Row[]): string {
  const header = [
    'hosts',
    'VMs',
    'cycles',
    'CPU ms/cycle',
    'max',
    '% of 1 core',
    'snapshot build ms',
    'wall ms/cycle',
    'snapshot MiB',
    'probes/cycle',
    `goal (<${GOAL_PCT}%)`,
  ];
  const body = rows.map((r) => [
    String(r.hosts),
    String(r.vms),
    String(r.cycles),
    r.cpuMsPerCycle.toFixed(0),
    r.cpuMsMax.toFixed(0),
    r.corePct.toFixed(1),
    r.buildCpuMs.toFixed(0),
    r.wallMsPerCycle.toFixed(0),
    r.snapshotMiB.toFixed(1),
    r.probesPerCycle.toFixed(0),
    r.hosts === 1000 ? (r.corePct < GOAL_PCT ? 'met' : 'MISSED') : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

export async function main(): Promise<void> {
  const m = machine();
  const date = new Date().toISOString();
  console.log(
    `collector bench — ${date} — ${m.nproc} CPUs (${m.cpuModel}), ${m.memGiB} GiB, node ${process.version}`,
  );
  console.log(
    `one process, simulated fleets x ${VMS_PER_HOST} VMs, ${INTERVAL_S} s interval, snapshot and history in a private redis-server\n`,
  );
  const redisServer = await startPrivateRedis();
  const rows: Row[] = [];
  try {
    for (const hosts of FLEETS) {
      rows.push(await runFleet(redisServer.url, hosts));
      console.log(`  ${hosts} hosts done`);
    }
  } finally {
    await redisServer.stop();
  }
  console.log(`\n${table(rows)}\n`);
  const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'results', 'collector.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        bench: 'collector',
        date,
        machine: { ...m, node: process.version },
        intervalS: INTERVAL_S,
        vmsPerHost: VMS_PER_HOST,
        goal: { hosts: 1000, maxCorePct: GOAL_PCT },
        notes:
          "CPU is process.cpuUsage (user+system) of the one process, which also runs the simulator answering the calls; redis-server CPU is not counted. snapshot build = reading other hosts' records, assembling, JSON and the Redis write.",
        rows,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`results: ${out}`);
}
