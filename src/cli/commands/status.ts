// `drover status`: the hosts with their load and drover state, the spread, the leader, running migrations.
import type { Command } from 'commander';
import type { ClusterView, HostView, MigrationView } from '../../service/operations.js';
import { connect, runCli, withConnection, type ConnectionFlags } from '../api-client.js';
import { EXIT } from '../exit-codes.js';
import { duration, num, paint, printJson, table } from '../output.js';

export function hostsTable(hosts: readonly HostView[]): string {
  return table(
    ['HOST', 'STATE', '>CPUS', '>CPU%', '>MEM%', '>VMS', 'LABELS'],
    hosts.map((h) => [
      h.id,
      h.stale ? `${h.state} (stale)` : h.state,
      String(h.cpus),
      num(h.cpuPct),
      num(h.memPct),
      String(h.vms),
      Object.entries(h.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    ]),
  );
}

export function migrationsTable(migrations: readonly MigrationView[]): string {
  return table(
    ['VM', 'FROM', 'TO', 'KIND', 'STATE', '>REMAINING MiB', '>ITER', '>ELAPSED', '>ETA', 'PLAN'],
    migrations.map((m) => [
      m.vmName ?? m.vm,
      m.from,
      m.to,
      m.kind,
      m.state,
      m.remainingMiB === null ? '-' : String(m.remainingMiB),
      m.iteration === null ? '-' : String(m.iteration),
      duration(m.elapsedS),
      duration(m.etaS),
      m.planId ?? '-',
    ]),
  );
}

export function registerStatusCommand(program: Command): void {
  withConnection(
    program.command('status').description('hosts with load and spread, the leader, running migrations'),
  ).action((flags: ConnectionFlags) =>
    runCli(flags.json, async () => {
      const client = await connect(flags);
      const view = await client.get<ClusterView>('/v1/cluster');
      if (flags.json) {
        printJson(view);
        return EXIT.ok;
      }
      const leader = view.leader
        ? `${view.leader.instance} (token ${view.leader.token})`
        : paint('none', 'red');
      const age =
        view.snapshotAgeS === null ? 'no snapshot yet' : `snapshot ${duration(view.snapshotAgeS)} old`;
      const automation = view.paused
        ? paint(`automation ${view.automation} PAUSED`, 'yellow')
        : `automation ${view.automation}`;
      process.stdout.write(`leader ${leader} · ${automation} · ${age}\n`);
      if (view.spread)
        process.stdout.write(
          `spread: cpu ${num(view.spread.cpuSpreadPct)} pts, memory ${num(view.spread.memSpreadPct)} pts\n`,
        );
      process.stdout.write(`\n${hostsTable(view.hosts)}\n`);
      if (view.migrations.length > 0) process.stdout.write(`\n${migrationsTable(view.migrations)}\n`);
      else process.stdout.write('\nno migrations running\n');
      if (view.pendingPlans > 0)
        process.stdout.write(
          `${view.pendingPlans} plan(s) waiting for approval (drover plans --status pending)\n`,
        );
      return EXIT.ok;
    }),
  );
}
