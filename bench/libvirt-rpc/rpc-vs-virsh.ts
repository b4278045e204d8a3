// bench/libvirt-rpc: time per call of drover's libvirt client versus one `virsh` process per call, against the
// lab (test/lab/lab.sh; brought up here when it is not). All-domain stats (state, cpu, balloon, vcpu,
// dirtyrate of every guest) is compared with `virsh domstats`; job stats of a guest with `virsh domjobinfo`.
// Both sides run sequentially, one call at a time, in the same run. Goal: drover >= 20x less time per call.
// The cpu and vcpu stats groups cost the daemon itself tens of ms per call on a loaded machine (the same for
// both clients), so the state+balloon row shows the per-call cost of the client path on its own.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { format } from 'prettier';
import { LibvirtClient } from '../../src/libvirt/libvirt-client.js';
import { DomainStatsTypes } from '../../src/libvirt/remote-protocol.js';
import { defineGuest, labCommand, labHost, labIsUp, removeGuest } from '../../test/lab/lab-client.js';
import {
  machineInfo,
  machineLine,
  median,
  percentile,
  RESULTS_DIR,
  round,
  textTable,
  type ResultTable,
} from '../report.js';

const run = promisify(execFile);
const GUESTS = 8;
const DROVER_CALLS = 300;
const VIRSH_CALLS = 30;
const GOAL_SPEEDUP = 20;
const STATS =
  DomainStatsTypes.STATE |
  DomainStatsTypes.CPU_TOTAL |
  DomainStatsTypes.BALLOON |
  DomainStatsTypes.VCPU |
  DomainStatsTypes.DIRTYRATE;

async function timeCalls(n: number, call: () => Promise<unknown>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await call();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return ms;
}

export async function main(): Promise<void> {
  const startedLab = !labIsUp();
  if (startedLab) await labCommand('up');
  const host = labHost('lab1');
  const names = Array.from({ length: GUESTS }, (_, i) => `bench-rpc-${process.pid}-${i}`);
  const client = await LibvirtClient.connect(host.uri);
  try {
    for (const name of names) await defineGuest({ name, host: host.id, memMiB: 32 });
    const target = await client.lookupDomainByName(names[0] ?? '');
    const machine = machineInfo();
    console.log(`${new Date().toISOString()}  machine: ${machineLine(machine)}`);
    console.log(
      `lab host ${host.id}, ${GUESTS} running guests; ${DROVER_CALLS} drover calls vs ${VIRSH_CALLS} virsh processes each\n`,
    );

    // warm-up both paths once
    await client.allDomainStats(STATS);
    await run('virsh', [
      '-q',
      '-c',
      host.uri,
      'domstats',
      '--state',
      '--cpu-total',
      '--balloon',
      '--vcpu',
      '--dirtyrate',
    ]);

    const cases = [
      {
        name: 'all-domain stats (state, balloon)',
        virshCommand: 'virsh domstats --state --balloon',
        drover: () => client.allDomainStats(DomainStatsTypes.STATE | DomainStatsTypes.BALLOON),
        virsh: () => run('virsh', ['-q', '-c', host.uri, 'domstats', '--state', '--balloon']),
      },
      {
        name: 'all-domain stats (state, cpu, balloon, vcpu, dirtyrate)',
        virshCommand: 'virsh domstats --state --cpu-total --balloon --vcpu --dirtyrate',
        drover: () => client.allDomainStats(STATS),
        virsh: () =>
          run('virsh', [
            '-q',
            '-c',
            host.uri,
            'domstats',
            '--state',
            '--cpu-total',
            '--balloon',
            '--vcpu',
            '--dirtyrate',
          ]),
      },
      {
        name: 'job stats (one guest)',
        virshCommand: 'virsh domjobinfo GUEST',
        drover: () => client.jobStats(target),
        virsh: () => run('virsh', ['-q', '-c', host.uri, 'domjobinfo', names[0] ?? '']),
      },
    ];
    const table: ResultTable = {
      title: `per-call time, ${GUESTS} guests on one lab host (ms; lower is better)`,
      header: [
        'call',
        'drover median',
        'drover p95',
        'virsh process median',
        'virsh p95',
        'speedup (median)',
        `goal >= ${GOAL_SPEEDUP}x`,
      ],
      rows: [],
    };
    const results = [];
    for (const c of cases) {
      const droverMs = await timeCalls(DROVER_CALLS, c.drover);
      const virshMs = await timeCalls(VIRSH_CALLS, c.virsh);
      const speedup = median(virshMs) / median(droverMs);
      table.rows.push([
        c.name,
        round(median(droverMs), 3),
        round(percentile(droverMs, 95), 3),
        round(median(virshMs), 1),
        round(percentile(virshMs, 95), 1),
        `${round(speedup, 1)}x`,
        speedup >= GOAL_SPEEDUP ? 'met' : 'missed',
      ]);
      results.push({
        call: c.name,
        virshCommand: c.virshCommand,
        droverCalls: DROVER_CALLS,
        virshCalls: VIRSH_CALLS,
        droverMedianMs: round(median(droverMs), 4),
        droverP95Ms: round(percentile(droverMs, 95), 4),
        virshMedianMs: round(median(virshMs), 2),
        virshP95Ms: round(percentile(virshMs, 95), 2),
        speedup: round(speedup, 1),
        goalMet: speedup >= GOAL_SPEEDUP,
      });
    }
    console.log(textTable(table));
    mkdirSync(RESULTS_DIR, { recursive: true });
    const out = join(RESULTS_DIR, 'libvirt-rpc.json');
    const json = JSON.stringify({
      bench: 'libvirt-rpc',
      date: new Date().toISOString(),
      machine,
      guests: GUESTS,
      goalSpeedup: GOAL_SPEEDUP,
      results,
      tables: [table],
    });
    // formatted as the repository's prettier check expects
    writeFileSync(out, await format(json, { parser: 'json' }));
    console.log(`\nwrote ${out}`);
  } finally {
    await client.close();
    for (const name of names) await removeGuest(name);
    if (startedLab) await labCommand('down');
  }
}
