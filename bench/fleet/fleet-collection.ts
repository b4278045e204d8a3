// bench/fleet/fleet-collection.ts: four `drover serve` processes (real child processes) share one private
// redis-server and a generated simulated cluster of 5,000 hosts x 4 VMs, collecting every 15 s. Over four
// intervals it reports each process's CPU (utime + stime from /proc, the in-process simulator included) and the
// age of the shared snapshot (sampled every second from Redis); then one process is SIGKILLed and it reports how
// long until the membership drops it and until the other three have sampled every host it owned.
import { Redis } from 'ioredis';
import { startPrivateRedis } from '../../src/service/private-redis.js';
import { startFleet, type FleetMember } from '../../test/support/serve-fleet.js';
import { machineInfo, machineLine, percentile, round, textTable, writeResult } from '../report.js';

const PROCESSES = 4;
const HOSTS = 5000;
const VMS_PER_HOST = 4;
const INTERVAL_S = 15;
const MEASURE_INTERVALS = 4;
const PREFIX = '{bench-fleet}';
const CPU_GOAL_PCT = 25;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function main(): Promise<void> {
  const machine = machineInfo();
  const redis = await startPrivateRedis();
  const fleet = await startFleet({
    redisUrl: redis.url,
    prefix: PREFIX,
    processes: PROCESSES,
    hosts: HOSTS,
    vmsPerHost: VMS_PER_HOST,
    intervalS: INTERVAL_S,
  });
  const reader = new Redis(redis.url, { maxRetriesPerRequest: null });
  try {
    // One interval to settle (every process past its first cycles), then measure.
    await sleep(INTERVAL_S * 1000);
    const cpu0 = fleet.members.map((m) => fleet.cpuSeconds(m));
    const t0 = Date.now();
    const ages: number[] = [];
    while (Date.now() - t0 < MEASURE_INTERVALS * INTERVAL_S * 1000) {
      const text = await reader.get(`${PREFIX}:snapshot:latest`);
      if (text)
        ages.push((Date.now() - Date.parse((JSON.parse(text) as { takenAt: string }).takenAt)) / 1000);
      await sleep(1000);
    }
    const wallS = (Date.now() - t0) / 1000;
    const owned = await fleet.owned();
    const perProcess = fleet.members.map((m: FleetMember, i) => ({
      process: m.proc.name,
      ownedHosts: owned[i] ?? null,
      cpuPctOfOneCore: round(((fleet.cpuSeconds(m) - (cpu0[i] ?? 0)) / wallS) * 100, 1),
    }));

    const ids = await fleet.memberIds();
    const hosts = await fleet.hostIds();
    const victim = fleet.members[PROCESSES - 1]!;
    const victimId = await fleet.memberIdOf(victim);
    if (!victimId) throw new Error('the victim is not in the membership');
    const theirs = fleet.ownedBy(victimId, ids, hosts);
    const before = await fleet.measuredAt();
    process.kill(victim.proc.pid, 'SIGKILL');
    await victim.proc.exit;
    const killedAt = Date.now();
    while ((await fleet.memberIds()).includes(victimId)) await sleep(100);
    const droppedAt = Date.now();
    for (;;) {
      const now = await fleet.measuredAt();
      if (theirs.every((h) => (now.get(h) ?? 0) > (before.get(h) ?? 0))) break;
      if (Date.now() - killedAt > 10 * INTERVAL_S * 1000) throw new Error('hosts not taken over');
      await sleep(100);
    }
    const takenAt = Date.now();

    const ageP50 = round(percentile(ages, 50), 1);
    const ageP99 = round(percentile(ages, 99), 1);
    const ageMax = round(Math.max(...ages), 1);
    const takeoverAfterDropS = round((takenAt - droppedAt) / 1000, 1);
    const maxCpu = Math.max(...perProcess.map((p) => p.cpuPctOfOneCore));
    const table = {
      title: `${PROCESSES} drover serve processes, ${HOSTS} hosts x ${VMS_PER_HOST} VMs, interval ${INTERVAL_S} s`,
      header: ['process', 'owned hosts', 'CPU % of one core'],
      rows: perProcess.map((p) => [p.process, p.ownedHosts, p.cpuPctOfOneCore]),
    };
    const result = {
      bench: 'fleet',
      date: new Date().toISOString(),
      machine,
      processes: PROCESSES,
      hosts: HOSTS,
      vmsPerHost: VMS_PER_HOST,
      intervalS: INTERVAL_S,
      notes: [
        `CPU over ${round(wallS, 0)} s: utime + stime of each drover process from /proc (its simulator included; redis-server not).`,
        `Snapshot age: now minus the shared snapshot's takenAt, sampled every second (${ages.length} samples): p50 ${ageP50} s, p99 ${ageP99} s, max ${ageMax} s.`,
        `SIGKILL of one process (${theirs.length} hosts): the membership dropped it after ${round((droppedAt - killedAt) / 1000, 1)} s (its heartbeat TTL is one interval), and the others had sampled all its hosts ${takeoverAfterDropS} s after that.`,
      ],
      tables: [table],
      goals: [
        {
          goal: `each process's CPU with ${PROCESSES} sharing ${HOSTS} hosts, % of one core`,
          target: `<= ${CPU_GOAL_PCT}`,
          measured: maxCpu,
          met: maxCpu <= CPU_GOAL_PCT,
        },
        {
          goal: 'shared snapshot age, p99 s',
          target: `<= ${2 * INTERVAL_S}`,
          measured: ageP99,
          met: ageP99 <= 2 * INTERVAL_S,
        },
        {
          goal: 'killed process: its hosts sampled by the others after the membership drops it, s',
          target: `<= ${INTERVAL_S}`,
          measured: takeoverAfterDropS,
          met: takeoverAfterDropS <= INTERVAL_S,
        },
      ],
    };
    console.log(machineLine(machine));
    console.log(textTable(table));
    for (const n of result.notes) console.log(n);
    await writeResult('fleet', result);
  } finally {
    reader.disconnect();
    await fleet.stop();
    await redis.stop();
  }
}
