// `drover recover VM`: shows where the VM is, what its jobs say, the diagnosis, and the recovery actions.
// `--apply N` carries out action N; an action the evidence does not prove safe also needs `--force`.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { errorMessage } from '../../domain/errors.js';
import type { Hypervisor } from '../../hypervisor/hypervisor.js';
import {
  applyRecoveryAction,
  applyWithRetry,
  gatherEvidence,
  type MigrationHint,
  type VmEvidence,
} from '../../executor/recovery.js';
import { EXIT } from '../exit-codes.js';

const EXIT_OK = EXIT.ok;
const EXIT_FAILURE = EXIT.failure;
const EXIT_USAGE = EXIT.usage;
const EXIT_UNREACHABLE = EXIT.unreachable;

export interface RecoverOptions {
  /** Indexes (1-based, as printed) of actions to carry out. */
  apply?: number[];
  force?: boolean;
  json?: boolean;
  timeoutMs?: number;
  /** The last migration's source and destination, when known: lets the evidence prove a side. */
  from?: string;
  to?: string;
}

export interface RecoverIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** Renders the evidence for people. */
export function formatEvidence(e: VmEvidence): string {
  const lines = [`VM ${e.vmId} at ${e.at}`, `diagnosis: ${e.diagnosis} — ${e.summary}`, ''];
  const rows = e.hosts.map((h) => [
    h.hostId,
    h.postCopy ? `${h.state} (post-copy ${h.postCopy})` : h.state,
    h.persistent ? 'yes' : 'no',
    h.job?.type ?? '?',
    h.lastJob ? `${h.lastJob.type}${h.lastJob.postCopy ? ' (post-copy)' : ''}` : '-',
    h.error ?? '',
  ]);
  const header = ['host', 'state', 'defined', 'job', 'last job', 'error'];
  const widths = header.map((t, i) => Math.max(t.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  lines.push(line(header), ...rows.map(line));
  if (rows.length === 0) lines.push('(the VM exists on no host)');
  lines.push('');
  if (e.actions.length === 0) lines.push('no action needed or possible');
  e.actions.forEach((a, i) => {
    const target = a.toHostId === undefined ? a.hostId : `${a.hostId} -> ${a.toHostId}`;
    lines.push(`${i + 1}. ${a.kind} on ${target}${a.forcing ? '  [needs --force]' : ''} — ${a.why}`);
  });
  return lines.join('\n');
}

/**
 * Runs `drover recover` against a hypervisor; returns the exit code. Without --apply it only shows the
 * evidence. Forcing actions (not proven safe by the evidence) are refused without --force.
 */
export async function runRecover(
  hypervisor: Hypervisor,
  vmId: string,
  options: RecoverOptions,
  io: RecoverIo,
): Promise<number> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const hint: MigrationHint | null =
    options.from !== undefined && options.to !== undefined
      ? { from: options.from, to: options.to, outcome: null }
      : null;
  let evidence: VmEvidence;
  try {
    evidence = await gatherEvidence(hypervisor, vmId, timeoutMs, hint);
  } catch (err) {
    io.err(`could not gather evidence for ${vmId}: ${errorMessage(err)}`);
    return EXIT_UNREACHABLE;
  }
  if (evidence.hosts.length === 0) {
    // Every host answered (an unreachable one fails locateVm above) and none has the VM: an unknown VM.
    const message = `no VM ${vmId} on any host (running, paused or defined); give the VM's libvirt UUID`;
    if (options.json) io.out(JSON.stringify({ error: { code: 'not_found', message, field: 'vm' } }, null, 2));
    else io.err(message);
    return EXIT.badInput;
  }
  const chosen = options.apply ?? [];
  const applied: {
    index: number;
    kind: string;
    hostId: string;
    error: string | null;
    earlierErrors?: string[];
    waitedForDestinationMs?: number;
  }[] = [];
  for (const index of chosen) {
    const action = evidence.actions[index - 1];
    if (!action) {
      io.err(
        `there is no action ${index} (the evidence offers ${evidence.actions.length}; ${evidence.diagnosis}: ${evidence.summary})`,
      );
      return EXIT_USAGE;
    }
    if (action.forcing && !options.force) {
      io.err(
        `action ${index} (${action.kind} on ${action.hostId}) is not proven safe by the evidence: add --force to do it anyway`,
      );
      return EXIT_USAGE;
    }
  }
  for (const index of chosen) {
    const action = evidence.actions[index - 1];
    if (!action) continue;
    const { error, earlierErrors, waitedForDestinationMs } = await applyWithRetry(action, evidence, {
      apply: (a) => applyRecoveryAction(hypervisor, vmId, a, timeoutMs),
      regather: () => gatherEvidence(hypervisor, vmId, timeoutMs, hint),
      sleep: (ms) => sleep(ms),
      // progress on stderr: stdout stays the report (JSON with --json)
      onWait: (text) => io.err(text),
    });
    applied.push({
      index,
      kind: action.kind,
      hostId: action.hostId,
      error,
      ...(earlierErrors.length > 0 ? { earlierErrors } : {}),
      ...(waitedForDestinationMs !== undefined ? { waitedForDestinationMs } : {}),
    });
  }
  const after = applied.length > 0 ? await gatherEvidence(hypervisor, vmId, timeoutMs, hint) : null;
  if (options.json) {
    io.out(JSON.stringify({ evidence, applied, after }, null, 2));
  } else {
    io.out(formatEvidence(evidence));
    for (const a of applied) {
      if (a.waitedForDestinationMs !== undefined)
        io.out(
          `applied ${a.index}: waited ${a.waitedForDestinationMs / 1000} s for the destination to see the post-copy break`,
        );
      for (const [i, e] of (a.earlierErrors ?? []).entries())
        io.out(`applied ${a.index}: ${a.kind} on ${a.hostId}: attempt ${i + 1} failed: ${e}`);
      io.out(
        `applied ${a.index}: ${a.kind} on ${a.hostId}: ${a.error === null ? 'done' : `failed: ${a.error}`}`,
      );
    }
    if (after) io.out(`\nafter:\n${formatEvidence(after)}`);
  }
  return applied.some((a) => a.error !== null) ? EXIT_FAILURE : EXIT_OK;
}

/** Opens the hypervisor `drover recover` works on (the service wires the configured one). */
export type HypervisorOpener = (configPath: string | undefined) => Promise<Hypervisor>;

async function openFromConfig(configPath: string | undefined): Promise<Hypervisor> {
  if (configPath === undefined) throw new Error('no hypervisor: give --config FILE (the daemon config)');
  const [{ loadConfig }, { createHypervisor }] = await Promise.all([
    import('../../service/config.js'),
    import('../../service/main.js'),
  ]);
  const loaded = await loadConfig(configPath);
  return (await createHypervisor(loaded.config.hypervisor, loaded.dir)).hypervisor;
}

export function registerRecoverCommand(program: Command, open: HypervisorOpener = openFromConfig): void {
  program
    .command('recover')
    .description('show where a VM is and what its jobs say, and offer recovery actions')
    .argument('<vm>', 'VM id (libvirt UUID)')
    .option('--config <file>', 'daemon config naming the hypervisor hosts')
    .option('--from <host>', "the last migration's source (helps prove which side holds the guest)")
    .option('--to <host>', "the last migration's destination")
    .option('--apply <n...>', 'carry out these actions (numbers as listed)')
    .option('--force', 'allow actions the evidence does not prove safe')
    .option('--json', 'print JSON only')
    .action(async (vm: string, opts: Record<string, unknown>) => {
      const apply = Array.isArray(opts.apply) ? opts.apply.map((v) => Number(v)) : [];
      if (apply.some((n) => !Number.isInteger(n) || n < 1)) {
        process.stderr.write('--apply: expected action numbers such as 1 2\n');
        process.exitCode = EXIT_USAGE;
        return;
      }
      let hv: Hypervisor;
      try {
        hv = await open(typeof opts.config === 'string' ? opts.config : undefined);
      } catch (err) {
        process.stderr.write(`${errorMessage(err)}\n`);
        process.exitCode = EXIT_UNREACHABLE;
        return;
      }
      try {
        process.exitCode = await runRecover(
          hv,
          vm,
          {
            apply,
            force: opts.force === true,
            json: opts.json === true,
            ...(typeof opts.from === 'string' ? { from: opts.from } : {}),
            ...(typeof opts.to === 'string' ? { to: opts.to } : {}),
          },
          {
            out: (t) => process.stdout.write(`${t}\n`),
            err: (t) => process.stderr.write(`${t}\n`),
          },
        );
      } finally {
        await hv.close();
      }
    });
}
