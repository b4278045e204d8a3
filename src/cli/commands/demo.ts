// `drover demo` (`make demo`): the main job on a simulated cluster, told as a story. drover serves with its
// API and /metrics on a private Redis; the demo then plans a rebalance (a JVM-like churner is skipped with its
// numbers), runs it with progress bars while one VM's dirty rate spikes so that the watchdog aborts its
// migration and keeps it on its source, drains a host for maintenance, and ends with a summary table.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { pino } from 'pino';
import type { Snapshot } from '../../domain/snapshot.js';
import { loadConfig } from '../../service/config.js';
import { startService, type RunningService } from '../../service/main.js';
import type { ClusterView, CreatedPlan, MigrationView } from '../../service/operations.js';
import type { PlanRecord } from '../../service/plan-store.js';
import { ApiClient, CliError, runCli } from '../api-client.js';
import { DEMO_DRAIN_HOST, demoCluster } from '../demo/demo-cluster.js';
import { summaryRows, withNames } from '../demo/story-report.js';
import { EXIT, type ExitCode } from '../exit-codes.js';
import { num, paint, table } from '../output.js';
import { followPlan, planTable } from './drain.js';
import { hostsTable } from './status.js';

interface DemoFlags {
  speed: string;
  keep?: boolean;
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const say = (text = '') => process.stdout.write(`${text}\n`);
const heading = (text: string) => say(`\n${paint(`== ${text}`, 'bold')}`);

async function writeDemoConfig(dir: string, speed: number, token: string): Promise<string> {
  await writeFile(join(dir, 'cluster.json'), JSON.stringify(demoCluster(), null, 2));
  const config = {
    instance: 'drover-demo',
    hypervisor: { kind: 'sim', cluster: 'cluster.json', speed, bandwidthNoisePct: 3 },
    policy: { file: join(REPO_ROOT, 'policies', 'default.yaml'), watch: false },
    // The demo drives planning itself; the daemon still collects and reconciles on its own schedule.
    schedules: { rebalance: { enabled: false }, reconcile: { intervalS: 5 } },
    automation: { level: 'manual', planMaxAgeS: 3600 },
    api: { host: '127.0.0.1', port: 0, tokens: [{ name: 'demo', role: 'admin', value: token }] },
    collector: { intervalS: 10, primeDelayMs: 200, dirtyRate: { windowS: 5, maxPerHost: 8, remeasureS: 60 } },
    executor: { pollIntervalMs: 500, progressIntervalMs: 500 },
    log: { level: 'info' },
  };
  const path = join(dir, 'drover.yaml');
  await writeFile(path, JSON.stringify(config, null, 2));
  return path;
}

/** Waits until the collector has measured every running VM's dirty rate (the planner needs it). */
async function waitForSnapshot(client: ApiClient, timeoutMs: number): Promise<Snapshot> {
  const deadline = Date.now() + timeoutMs;
  let last: Snapshot | null = null;
  while (Date.now() < deadline) {
    try {
      last = await client.get<Snapshot>('/v1/snapshots/latest');
    } catch (err) {
      if (!(err instanceof CliError) || err.code !== 'no_snapshot') throw err;
    }
    const running = last?.vms.filter((v) => v.state === 'running') ?? [];
    if (last && running.length > 0 && running.every((v) => v.dirtyMiBps !== null && v.cpuPct !== null))
      return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new CliError(EXIT.failure, 'demo_timeout', 'the collector did not measure every VM in time');
}

async function runPlan(
  client: ApiClient,
  record: PlanRecord,
  duringRun?: (migrations: MigrationView[]) => void,
): Promise<{ record: PlanRecord; migrations: MigrationView[] }> {
  if (record.status === 'pending')
    await client.post(`/v1/plans/${encodeURIComponent(record.plan.id)}/approve`, {});
  return followPlan(client, record.plan, { pollMs: 300, quiet: false, onPoll: duringRun });
}

async function story(running: RunningService, client: ApiClient): Promise<ExitCode> {
  const sim = running.sim;
  if (!sim) throw new CliError(EXIT.failure, 'demo_needs_sim', 'the demo runs on the simulator');

  heading('1. The cluster, as the collector sees it');
  const first = await waitForSnapshot(client, 90_000);
  const names = new Map(first.vms.map((v) => [v.id, v.name]));
  const view = await client.get<ClusterView>('/v1/cluster');
  say(hostsTable(view.hosts));
  if (view.spread)
    say(`spread: cpu ${num(view.spread.cpuSpreadPct)} pts, memory ${num(view.spread.memSpreadPct)} pts`);

  heading('2. Rebalance plan (dirty rates decide what can move)');
  const created = await client.post<CreatedPlan>('/v1/plans', { reason: 'rebalance', dryRun: false });
  const rebalance = created.record;
  if (!rebalance) throw new CliError(EXIT.failure, 'bad_response', 'the daemon stored no plan');
  say(planTable(withNames(created.plan, names)));

  heading('3. Running it; one VM starts churning memory mid-migration');
  // The first web VM seen early in its migration gets the spike (chosen live, so it is surely mid-way).
  const spike: { vm: string | null } = { vm: null };
  const ran = await runPlan(client, rebalance, (migrations) => {
    if (spike.vm !== null) return;
    const m = migrations.find(
      (x) =>
        x.state === 'running' &&
        (names.get(x.vm) ?? '').startsWith('web-') &&
        x.remainingMiB !== null &&
        x.totalMiB !== null &&
        x.remainingMiB > x.totalMiB / 3,
    );
    if (!m) return;
    spike.vm = m.vm;
    sim.faults.dirtySpike(m.vm, { dirtyMiBps: 2600, durationMs: 30 * 60_000 });
    process.stderr.write(
      `${paint('!', 'yellow')} ${names.get(m.vm)} now dirties 2600 MiB/s, faster than its 10 GbE link can copy\n`,
    );
  });
  const victim = spike.vm;
  if (victim !== null) {
    const where = await running.hypervisor.locateVm(victim);
    const m = ran.migrations.find((x) => x.vm === victim);
    say(
      `${names.get(victim)}: migration ${m?.state ?? 'not run'}${m?.reason ? ` (${m.reason})` : ''}; ` +
        `it runs on ${where.map((p) => `${p.hostId} (${p.state})`).join(', ')}`,
    );
  }

  heading(`4. Draining ${DEMO_DRAIN_HOST} for maintenance`);
  const drain = await client.post<CreatedPlan>(`/v1/hosts/${DEMO_DRAIN_HOST}/drain`, { dryRun: false });
  if (!drain.record) throw new CliError(EXIT.failure, 'bad_response', 'the daemon stored no drain plan');
  say(planTable(withNames(drain.plan, names)));
  const drained = await runPlan(client, drain.record);
  const left = (await client.get<Snapshot>('/v1/snapshots/latest')).vms.filter(
    (v) => v.host === DEMO_DRAIN_HOST,
  );
  say(
    `${DEMO_DRAIN_HOST}: ${left.length === 0 ? 'empty, ready for maintenance' : `${left.length} VM(s) left`}`,
  );

  heading('5. Summary');
  const rows = [
    ...summaryRows(ran.record.plan, ran.migrations, names),
    ...summaryRows(drained.record.plan, drained.migrations, names),
  ];
  say(table(['VM', 'MOVE', 'KIND', 'RESULT', '>TOOK', '>DOWNTIME', '>BUDGET', 'WITHIN'], rows));
  const after = await client.get<ClusterView>('/v1/cluster');
  const completed = [...ran.migrations, ...drained.migrations].filter((m) => m.state === 'completed').length;
  const aborted = [...ran.migrations, ...drained.migrations].filter((m) => m.state === 'aborted').length;
  say(
    `moves: ${completed} completed, ${aborted} aborted by the watchdog, ` +
      `${ran.record.plan.skipped.length + drained.record.plan.skipped.length} skipped by the planner`,
  );
  if (view.spread && after.spread)
    say(
      `cpu spread ${num(view.spread.cpuSpreadPct)} -> ${num(after.spread.cpuSpreadPct)} pts, ` +
        `memory spread ${num(view.spread.memSpreadPct)} -> ${num(after.spread.memSpreadPct)} pts`,
    );
  const twice = await vmsOnSeveralHosts(running, first);
  say(
    twice === 0 ? 'every VM runs on exactly one host' : paint(`${twice} VM(s) on more than one host`, 'red'),
  );
  return twice === 0 ? EXIT.ok : EXIT.failure;
}

async function vmsOnSeveralHosts(running: RunningService, snapshot: Snapshot): Promise<number> {
  let count = 0;
  for (const vm of snapshot.vms) {
    const where = await running.hypervisor.locateVm(vm.id);
    if (where.filter((p) => p.state !== 'shutoff').length > 1 || where.filter((p) => p.persistent).length > 1)
      count += 1;
  }
  return count;
}

async function runDemo(flags: DemoFlags): Promise<ExitCode> {
  const speed = Number(flags.speed);
  if (!Number.isFinite(speed) || speed <= 0)
    throw new CliError(
      EXIT.usage,
      'invalid_input',
      `--speed: expected a positive number, got ${JSON.stringify(flags.speed)}`,
    );
  const dir = await mkdtemp(join(tmpdir(), 'drover-demo-'));
  const token = randomBytes(24).toString('hex');
  const logPath = join(dir, 'drover.log');
  let running: RunningService | null = null;
  try {
    const loaded = await loadConfig(await writeDemoConfig(dir, speed, token));
    // Its own state directory inside the run's temporary one: never the operator's, removed at the end.
    running = await startService(loaded, {
      logger: pino({ level: 'info' }, pino.destination(logPath)),
      stateDir: join(dir, 'state'),
    });
    const url = running.apiUrl;
    if (url === null) throw new CliError(EXIT.failure, 'demo_no_api', 'the API did not start');
    say(paint('drover demo', 'bold') + ` — a simulated 10-host cluster at ${speed}x real time`);
    say(`API ${url}/v1 · metrics ${url}/metrics · redis ${running.redis.description} · log ${logPath}`);
    const code = await story(running, new ApiClient(url, token));
    if (flags.keep) {
      say(`\nstill serving at ${url} (token ${token}); Ctrl-C to stop`);
      await new Promise<void>((r) => process.once('SIGINT', () => r()));
    }
    return code;
  } finally {
    await running?.stop('demo finished');
    await rm(dir, { recursive: true, force: true });
  }
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('the main job on a simulated cluster: plan, migrate under a watchdog, drain (private Redis)')
    .option('--speed <x>', 'simulated seconds per real second', '10')
    .option('--keep', 'keep serving the API and /metrics after the story, until Ctrl-C')
    .action((flags: DemoFlags) => runCli(false, () => runDemo(flags)));
}
