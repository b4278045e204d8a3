// `drover lab-demo` (`make lab-demo`): the demo's story told against drover's real libvirt lab
// (test/lab/lab.sh) instead of the simulator. drover serves with its API over the lab's daemons; the story
// defines small guests on lab1 (idle, a light dirtier, a JVM-like churner, a batch guest that is idle when
// measured), prints the hosts, starts the batch guest's job so that drover's measurement of it goes stale,
// drains lab1 with progress bars (the churner skipped with its numbers, the batch guest's migration aborted
// by the watchdog, which keeps it running on lab1), and ends with a summary table and the one-host check.
// The lab's hosts share one kernel, so their CPU load is identical: there is no rebalance to show here.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { pino } from 'pino';
import type { Snapshot } from '../../domain/snapshot.js';
import { isNoDomain } from '../../libvirt/errors.js';
import { LibvirtClient, uuidToString } from '../../libvirt/libvirt-client.js';
import { DomainState, UndefineFlags } from '../../libvirt/remote-protocol.js';
import { loadConfig } from '../../service/config.js';
import { startService, type RunningService } from '../../service/main.js';
import type { ClusterView, CreatedPlan } from '../../service/operations.js';
import type { PlanRecord } from '../../service/plan-store.js';
import { ApiClient, CliError, runCli } from '../api-client.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { duration, num, paint, table } from '../output.js';
import { brief, summaryRows, withNames } from '../demo/story-report.js';
import { followPlan, planTable } from './drain.js';
import { hostsTable } from './status.js';

interface LabDemoFlags {
  labDir: string;
  bandwidth: string;
}

interface LabHostRef {
  id: string;
  uri: string;
}

/** A lab guest: the lab's guest kernel with a dirtying workload on its command line (test/lab/guest). */
interface GuestSpec {
  name: string;
  memMiB: number;
  /** MiB the guest keeps rewriting (0 = idle). */
  dirtyRegionMiB: number;
  /** 4 KiB pages written per second; 0 = as fast as the guest can. 256 pages/s = 1 MiB/s. */
  pagesPerS: number;
  /** MiB written once at boot, so the guest has non-zero RAM to copy. */
  fillMiB: number;
  role: string;
}

const SOURCE = 'lab1';
const run = promisify(execFile);

const say = (text = '') => process.stdout.write(`${text}\n`);
const heading = (text: string) => say(`\n${paint(`== ${text}`, 'bold')}`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Paced workloads (not "as fast as it can"): the lab's 2 CPUs are shared by every lab host, so the guests
// must leave room. 256 pages/s = 1 MiB/s.
const GUESTS: readonly GuestSpec[] = [
  { name: 'demo-idle', memMiB: 128, dirtyRegionMiB: 0, pagesPerS: 0, fillMiB: 32, role: 'idle' },
  { name: 'demo-web', memMiB: 128, dirtyRegionMiB: 16, pagesPerS: 512, fillMiB: 0, role: 'light dirtier' },
  {
    name: 'demo-jvm',
    memMiB: 256,
    dirtyRegionMiB: 96,
    pagesPerS: 6144,
    fillMiB: 0,
    role: 'JVM-like churner',
  },
  {
    name: 'demo-batch',
    memMiB: 256,
    dirtyRegionMiB: 0,
    pagesPerS: 0,
    fillMiB: 32,
    role: 'idle until its job',
  },
];
/** The batch guest's job: rewrite 96 MiB at 24 MiB/s. */
const BATCH_JOB: GuestSpec = { ...GUESTS[3]!, dirtyRegionMiB: 96, pagesPerS: 6144, fillMiB: 0 };

/** The lab policy: the default one, except that a host's CPU may be filled to 100 %. */
const LAB_POLICY = `# drover lab demo: the default policy (policies/default.yaml) with one change. Every lab host is the same
# machine, so each reports that machine's whole CPU load (other work included) as its own; the CPU ceiling
# is raised to 100 % so that a busy machine does not by itself leave "no room" on every host.
version: 1
hosts:
  cpuCeilingPct: 100
`;

function labHosts(labDir: string): LabHostRef[] {
  const list = join(labDir, 'hosts.list');
  if (!existsSync(list))
    throw new CliError(EXIT.failure, 'lab_down', `the lab is not up (no ${list}); run: make lab-demo`);
  return readFileSync(list, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((id) => ({
      id,
      uri: `qemu+unix:///system?socket=${join(labDir, 'hosts', id, 'sock', 'libvirt-sock')}`,
    }));
}

function guestXml(labDir: string, spec: GuestSpec, uuid: string | null): string {
  const args = [
    spec.dirtyRegionMiB > 0 ? `mb=${spec.dirtyRegionMiB} rate=${spec.pagesPerS}` : 'idle',
    ...(spec.fillMiB > 0 ? [`fill=${spec.fillMiB}`] : []),
  ];
  return `<domain type='qemu'>
  <name>${spec.name}</name>${uuid ? `\n  <uuid>${uuid}</uuid>` : ''}
  <metadata><drover:labels xmlns:drover="https://drover.dev/xmlns/labels/1"><drover:label name="role">${spec.role}</drover:label></drover:labels></metadata>
  <memory unit='MiB'>${spec.memMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${join(labDir, 'guest', 'guest.elf')}</kernel>
    <cmdline>${args.join(' ')}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='${join(labDir, 'run', `${spec.name}.serial.log`)}' append='on'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`;
}

async function withClient<T>(host: LabHostRef, fn: (c: LibvirtClient) => Promise<T>): Promise<T> {
  const client = await LibvirtClient.connect(host.uri, { callTimeoutMs: 20_000 });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Defines and starts a guest; with a uuid, replaces a stopped guest of that name keeping its identity. */
async function startGuest(
  labDir: string,
  host: LabHostRef,
  spec: GuestSpec,
  uuid: string | null = null,
): Promise<string> {
  return withClient(host, async (c) => {
    const dom = await c.defineXml(guestXml(labDir, spec, uuid));
    await c.create(dom);
    return uuidToString(dom.uuid);
  });
}

async function stopGuest(host: LabHostRef, name: string): Promise<void> {
  await withClient(host, async (c) => {
    const dom = await c.lookupDomainByName(name);
    await c.destroyDomain(dom);
  });
}

/** Destroys and undefines the guest wherever it exists; a host that cannot be reached is left alone. */
async function removeGuest(hosts: readonly LabHostRef[], name: string): Promise<void> {
  for (const host of hosts) {
    let client: LibvirtClient;
    try {
      client = await LibvirtClient.connect(host.uri, { callTimeoutMs: 10_000 });
    } catch {
      continue;
    }
    try {
      const dom = await client.lookupDomainByName(name);
      const { state } = await client.domainState(dom);
      if (state !== DomainState.SHUTOFF) await client.destroyDomain(dom);
      await client.undefine(dom, UndefineFlags.KEEP_NVRAM);
    } catch (err) {
      if (!isNoDomain(err)) throw err;
    } finally {
      await client.close();
    }
  }
}

/** The guest's heartbeat: seconds since boot, read from its RAM through that host's QEMU monitor. */
async function heartbeatS(host: LabHostRef, name: string): Promise<number> {
  const { stdout } = await run('virsh', [
    '-q',
    '-c',
    host.uri,
    'qemu-monitor-command',
    name,
    '--hmp',
    'xp /1wd 0x8000',
  ]);
  const seconds = Number(stdout.trim().split(/\s+/)[1]);
  if (!Number.isFinite(seconds))
    throw new CliError(EXIT.failure, 'bad_heartbeat', `unexpected monitor output: ${stdout}`);
  return seconds;
}

async function writeLabConfig(
  dir: string,
  hosts: readonly LabHostRef[],
  bandwidthMiBps: number,
  token: string,
): Promise<string> {
  const config = {
    instance: 'drover-lab-demo',
    hypervisor: {
      kind: 'libvirt',
      hosts: hosts.map((h) => ({ id: h.id, uri: h.uri, bandwidthMiBps, labels: { lab: 'true' } })),
      options: { callTimeoutMs: 30_000, reconnectMinMs: 200, reconnectMaxMs: 2_000 },
    },
    policy: { file: join(dir, 'lab-policy.yaml'), watch: false },
    schedules: { rebalance: { enabled: false }, reconcile: { intervalS: 10 } },
    automation: { level: 'manual', planMaxAgeS: 3600 },
    api: { host: '127.0.0.1', port: 0, tokens: [{ name: 'lab-demo', role: 'admin', value: token }] },
    // Each guest is measured once (libvirt's dirty-rate calculation over 3 s); not again during the story.
    collector: {
      intervalS: 10,
      primeDelayMs: 500,
      dirtyRate: { windowS: 3, maxPerHost: 4, remeasureS: 3600 },
    },
    executor: { pollIntervalMs: 500, progressIntervalMs: 500 },
    log: { level: 'info' },
  };
  await writeFile(join(dir, 'lab-policy.yaml'), LAB_POLICY);
  const path = join(dir, 'drover.yaml');
  await writeFile(path, JSON.stringify(config, null, 2));
  return path;
}

/** Waits until the collector has measured every running VM of ours (the planner needs dirty rates). */
async function waitForSnapshot(
  client: ApiClient,
  ids: readonly string[],
  timeoutMs: number,
): Promise<Snapshot> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    let snap: Snapshot | null = null;
    try {
      snap = await client.get<Snapshot>('/v1/snapshots/latest');
    } catch (err) {
      if (!(err instanceof CliError) || err.code !== 'no_snapshot') throw err;
    }
    const ours = snap?.vms.filter((v) => ids.includes(v.id)) ?? [];
    if (snap && ours.length === ids.length && ours.every((v) => v.dirtyMiBps !== null)) return snap;
    await sleep(500);
  }
  throw new CliError(EXIT.failure, 'demo_timeout', 'the collector did not measure every guest in time');
}

/** Resolves with the hosts' CPU % once the busiest of our guests would fit beside it, or null on timeout. */
async function waitForCpuHeadroom(
  client: ApiClient,
  ids: Map<string, string>,
  timeoutMs: number,
): Promise<number | null> {
  const ours = new Set(ids.values());
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const snap = await client.get<Snapshot>('/v1/snapshots/latest');
    const hostPct = Math.max(...snap.hosts.map((h) => h.cpuPct ?? 100));
    const cpus = Math.min(...snap.hosts.map((h) => h.cpus));
    const guestPct = Math.max(
      0,
      ...snap.vms.filter((v) => ours.has(v.id)).map((v) => ((v.cpuPct ?? 0) * v.vcpus) / cpus),
    );
    if (hostPct + guestPct <= 100) return hostPct;
    if (Date.now() > deadline) return null;
    await sleep(2_000);
  }
}

/** Waits until the snapshot shows the VM in the given state. */
async function waitForState(
  client: ApiClient,
  vmId: string,
  state: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const snap = await client.get<Snapshot>('/v1/snapshots/latest');
    if (snap.vms.find((v) => v.id === vmId)?.state === state) return;
    await sleep(1_000);
  }
  throw new CliError(EXIT.failure, 'demo_timeout', `the collector did not see ${vmId} ${state} in time`);
}

async function story(
  running: RunningService,
  client: ApiClient,
  labDir: string,
  hosts: readonly LabHostRef[],
  bandwidthMiBps: number,
): Promise<ExitCode> {
  const source = hosts.find((h) => h.id === SOURCE);
  if (!source) throw new CliError(EXIT.failure, 'lab_host_missing', `the lab has no host ${SOURCE}`);

  heading(`1. Guests on ${SOURCE} (real QEMU guests under the lab's libvirt daemons; TCG, slow)`);
  const ids = new Map<string, string>();
  for (const g of GUESTS) {
    ids.set(g.name, await startGuest(labDir, source, g));
    const work =
      g.dirtyRegionMiB === 0
        ? 'idle'
        : `rewrites ${g.dirtyRegionMiB} MiB at ${g.pagesPerS === 0 ? 'full speed' : `${g.pagesPerS / 256} MiB/s`}`;
    say(`  ${g.name.padEnd(11)} ${String(g.memMiB).padStart(4)} MiB  ${g.role}: ${work}`);
  }
  const names = new Map([...ids].map(([name, id]) => [id, name]));

  heading('2. The cluster, as the collector sees it (dirty rates measured by libvirt)');
  const first = await waitForSnapshot(client, [...ids.values()], 150_000);
  const view = await client.get<ClusterView>('/v1/cluster');
  say(hostsTable(view.hosts));
  say(
    table(
      ['VM', 'HOST', '>MEM MiB', '>CPU%', '>DIRTY MiB/s'],
      first.vms
        .filter((v) => names.has(v.id))
        .map((v) => [v.name, v.host, String(v.memMiB), num(v.cpuPct), num(v.dirtyMiBps)]),
    ),
  );
  say(
    `migration link: ${bandwidthMiBps} MiB/s per host (the hosts' bandwidthMiBps; drover caps migrations at it)`,
  );
  say(
    paint('not shown:', 'yellow') +
      ' a CPU rebalance — the lab hosts share one kernel, so every host reports the same CPU load',
  );
  say(
    "policy: policies/default.yaml except hosts.cpuCeilingPct 100 (the hosts report the whole machine's CPU)",
  );

  heading('3. demo-batch starts its job after it was measured');
  // The guest kernel fixes its workload at boot, so the job starts the way a real one would look to
  // drover: the same VM (same UUID) restarted, now rewriting 96 MiB at 24 MiB/s. drover's
  // measurement of it (taken while idle) is now stale; the collector does not measure it again this run.
  const batchId = ids.get(BATCH_JOB.name) ?? '';
  await stopGuest(source, BATCH_JOB.name);
  await startGuest(labDir, source, BATCH_JOB, batchId);
  say(
    `demo-batch (same VM, id ${batchId.slice(0, 8)}…) restarted rewriting ${BATCH_JOB.dirtyRegionMiB} MiB at ` +
      `${BATCH_JOB.pagesPerS / 256} MiB/s; drover still has it at ${num(first.vms.find((v) => v.id === batchId)?.dirtyMiBps)} MiB/s`,
  );

  // Every lab host reports this machine's CPU; when other work keeps it at 100 %, no host has room by
  // drover's capacity rules and the drain below will say so. Wait a while for the machine to have headroom.
  const headroom = await waitForCpuHeadroom(client, ids, 90_000);
  say(
    headroom
      ? `machine CPU now ${num(headroom)} %: the lab hosts have room for the guests`
      : paint(
          'the machine stays at 100 % CPU (load ' +
            readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') +
            '):',
          'yellow',
        ) + " by drover's capacity rules no lab host has room; the drain plan will say so",
  );

  heading(`4. Draining ${SOURCE} for maintenance`);
  const first_ = await client.post<CreatedPlan>(`/v1/hosts/${SOURCE}/drain`, { dryRun: true });
  say(planTable(withNames(first_.plan, names)));
  const postCopy = first_.plan.steps.some((s) => s.kind !== 'live' && s.kind !== 'block');
  say(
    postCopy
      ? 'some steps are not plain pre-copy (see KIND)'
      : 'the default policy does not allow post-copy (migration.allowPostCopy: false): a VM that cannot ' +
          'converge by pre-copy is not moved live, and a drain that cannot empty the host moves nothing',
  );
  const jvmId = ids.get('demo-jvm') ?? '';
  if (first_.plan.skipped.some((s) => s.vm === jvmId)) {
    say('\nthe operator stops demo-jvm for the maintenance window; drover moves its definition offline');
    await stopGuest(source, 'demo-jvm');
    await waitForState(client, jvmId, 'shutoff', 60_000);
  }
  const drain = await client.post<CreatedPlan>(`/v1/hosts/${SOURCE}/drain`, { dryRun: false });
  if (!drain.record) throw new CliError(EXIT.failure, 'bad_response', 'the daemon stored no drain plan');
  say(planTable(withNames(drain.plan, names)));
  const record: PlanRecord = drain.record;
  if (record.status === 'pending')
    await client.post(`/v1/plans/${encodeURIComponent(record.plan.id)}/approve`, {});
  const ran = await followPlan(client, record.plan, { pollMs: 500, quiet: false });

  heading('5. What the watchdog did');
  const batchRun = ran.migrations.find((m) => m.vm === batchId);
  if (batchRun) {
    const where = await running.hypervisor.locateVm(batchId);
    say(
      `demo-batch: migration ${batchRun.state}${batchRun.reason ? ` (${brief(batchRun.reason, batchRun.state)})` : ''} after ` +
        `${duration(batchRun.elapsedS)}; it runs on ${where.map((p) => `${p.hostId} (${p.state})`).join(', ')}`,
    );
    const host = hosts.find((h) => h.id === where.find((p) => p.state === 'running')?.hostId);
    if (host) {
      const before = await heartbeatS(host, BATCH_JOB.name);
      await sleep(3_000);
      const after = await heartbeatS(host, BATCH_JOB.name);
      say(
        `its heartbeat on ${host.id}: ${before} s -> ${after} s since boot (${after > before ? 'advancing, the guest kept running' : paint('not advancing', 'red')})`,
      );
    }
  } else say('demo-batch was not in the drain plan; no watchdog abort to show on this run');

  heading('6. Summary');
  say(
    table(
      ['VM', 'MOVE', 'KIND', 'RESULT', '>TOOK', '>DOWNTIME', '>BUDGET', 'WITHIN'],
      summaryRows(ran.record.plan, ran.migrations, names),
    ),
  );
  const completed = ran.migrations.filter((m) => m.state === 'completed').length;
  const failed = ran.migrations.filter((m) => m.state === 'failed').length;
  const aborted = ran.migrations.filter((m) => m.state === 'aborted').length;
  say(
    `moves: ${completed} completed, ${aborted} aborted by the watchdog, ${failed} failed, ${ran.record.plan.skipped.length} skipped by the planner`,
  );
  const after = await client.get<ClusterView>('/v1/cluster');
  if (view.spread && after.spread)
    say(
      `memory spread ${num(view.spread.memSpreadPct)} -> ${num(after.spread.memSpreadPct)} pts ` +
        `(cpu ${num(view.spread.cpuSpreadPct)} -> ${num(after.spread.cpuSpreadPct)}: one shared kernel)`,
    );
  const left: string[] = [];
  let twice = 0;
  for (const [name, id] of ids) {
    const where = await running.hypervisor.locateVm(id);
    const live = where.filter((p) => p.state !== 'shutoff');
    if (live.length > 1 || where.filter((p) => p.persistent).length > 1) twice += 1;
    if (where.some((p) => p.hostId === SOURCE)) left.push(name);
    const shown = where.filter((p) => p.state !== 'shutoff' || p.persistent);
    say(
      `  ${name.padEnd(11)} ${shown.map((p) => `${p.hostId} (${p.state}${p.persistent ? '' : ', transient'})`).join(', ') || 'on no host'}`,
    );
  }
  say(
    left.length === 0
      ? `${SOURCE} is empty, ready for maintenance`
      : `${SOURCE} still holds ${left.join(', ')}: not ready for maintenance; an operator decides what next`,
  );
  say(
    twice === 0 ? 'every VM runs on exactly one host' : paint(`${twice} VM(s) on more than one host`, 'red'),
  );
  return twice === 0 ? EXIT.ok : EXIT.failure;
}

async function runLabDemo(flags: LabDemoFlags): Promise<ExitCode> {
  const bandwidthMiBps = Number(flags.bandwidth);
  if (!Number.isFinite(bandwidthMiBps) || bandwidthMiBps <= 0)
    throw new CliError(
      EXIT.usage,
      'invalid_input',
      `--bandwidth: expected a positive number, got ${flags.bandwidth}`,
    );
  const labDir = resolve(flags.labDir);
  const hosts = labHosts(labDir);
  await mkdir(join(labDir, 'run'), { recursive: true });
  const dir = await mkdtemp(join(tmpdir(), 'drover-lab-demo-'));
  const token = randomBytes(24).toString('hex');
  const logPath = join(dir, 'drover.log');
  const startedMs = Date.now();
  let running: RunningService | null = null;
  try {
    for (const g of GUESTS) await removeGuest(hosts, g.name); // leftovers of an interrupted run
    const loaded = await loadConfig(await writeLabConfig(dir, hosts, bandwidthMiBps, token));
    // Its own state directory inside the run's temporary one: never the operator's, removed at the end.
    running = await startService(loaded, {
      logger: pino({ level: 'info' }, pino.destination(logPath)),
      stateDir: join(dir, 'state'),
    });
    const url = running.apiUrl;
    if (url === null) throw new CliError(EXIT.failure, 'demo_no_api', 'the API did not start');
    say(paint('drover lab demo', 'bold') + ` — ${hosts.length} real libvirt hosts (${labDir})`);
    say(`API ${url}/v1 · metrics ${url}/metrics · redis ${running.redis.description} · log ${logPath}`);
    return await story(running, new ApiClient(url, token), labDir, hosts, bandwidthMiBps);
  } finally {
    await running?.stop('lab demo finished');
    for (const g of GUESTS) await removeGuest(hosts, g.name);
    say(`\nguests removed; the story took ${duration((Date.now() - startedMs) / 1000)}`);
    await rm(dir, { recursive: true, force: true });
  }
}

export function registerLabDemoCommand(program: Command): void {
  program
    .command('lab-demo')
    .description('the demo story on the real libvirt lab (make lab-demo brings the lab up and down)')
    .option(
      '--lab-dir <dir>',
      'the lab directory (LAB_DIR of test/lab/lab.sh)',
      process.env.LAB_DIR ?? '.lab-demo',
    )
    .option('--bandwidth <MiBps>', 'migration link bandwidth of every lab host, MiB/s', '16')
    .action((flags: LabDemoFlags) => runCli(false, () => runLabDemo(flags)));
}
