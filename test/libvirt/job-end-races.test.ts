// LibvirtHypervisor against two scripted daemons: the answers that race the end of a migration (error 55
// "domain is not running", no domain, the domain shut off on the source and running on the destination)
// are read as facts about where the VM is, and a domain whose monitor does not answer holds up nothing but
// its own figures.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { callWithTimeout } from '../../src/executor/call-timeout.js';
import { MigrationRunner } from '../../src/executor/migration-runner.js';
import type { MigrationRequest } from '../../src/hypervisor/hypervisor.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import {
  DomainState,
  GetAllDomainStatsFlags,
  Procedure,
  readDomain,
} from '../../src/libvirt/remote-protocol.js';
import { XdrWriter } from '../../src/libvirt/xdr.js';
import { job, step, testOptions } from '../executor/support/sim-cluster.js';
import { jobParams, ScriptedDaemon, uuidString, type ScriptedCall } from './scripted-daemon.js';

const VM = '6f1c2a9e-0000-4000-8000-00000000000a';
const OTHER = '6f1c2a9e-0000-4000-8000-00000000000b';
const MiB = 1024 * 1024;
const VIR_JOB_UNBOUNDED = 2;
const VIR_JOB_COMPLETED = 3;

const request: MigrationRequest = {
  vmId: VM,
  from: 'h1',
  to: 'h2',
  kind: 'live',
  maxDowntimeMs: 300,
  bandwidthMiBps: null,
  autoConverge: false,
  postCopy: false,
  incremental: false,
};

const completedFigures = jobParams({
  time_elapsed: 4_200,
  memory_total: 64 * MiB,
  memory_processed: 70 * MiB,
  memory_remaining: 0,
  downtime: 31,
  memory_iteration: 3,
});

describe('LibvirtHypervisor: answers that race the end of a migration', () => {
  let src: ScriptedDaemon;
  let dst: ScriptedDaemon;
  let hv: LibvirtHypervisor;

  beforeEach(async () => {
    src = await new ScriptedDaemon().start();
    dst = await new ScriptedDaemon().start();
    hv = new LibvirtHypervisor(
      [
        { id: 'h1', uri: src.uri },
        { id: 'h2', uri: dst.uri },
      ],
      { callTimeoutMs: 5_000, keepaliveIntervalMs: 0 },
    );
  });

  afterEach(async () => {
    await hv.close();
    await src.stop();
    await dst.stop();
  });

  /** The migration ends on the daemons: shut off (then gone) on the source, running on the destination. */
  function land(options: { undefineSource: boolean }): void {
    const d = src.domains.get(VM);
    if (d) d.state = DomainState.SHUTOFF;
    if (options.undefineSource) src.domains.delete(VM);
    dst.addDomain({ name: 'vm-a', uuid: VM, completed: completedFigures });
  }

  it('a job-stats answer "domain is not running" while the call is out ends the wait, not the migration', async () => {
    // The job is visible without memory figures yet, so migrate() keeps asking; the next answer races the
    // end: the domain is shut off (error 55) before the migration call itself answers.
    src.addDomain({ name: 'vm-a', uuid: VM, job: { type: VIR_JOB_UNBOUNDED, params: [] } });
    let perform: ScriptedCall | null = null;
    src.on(Procedure.DOMAIN_MIGRATE_PERFORM3_PARAMS, (call) => {
      perform = call;
      return true;
    });
    src.on(Procedure.DOMAIN_GET_JOB_STATS, () => {
      if (perform === null) return false;
      land({ undefineSource: false });
      src.off(Procedure.DOMAIN_GET_JOB_STATS);
      return false; // the daemon's own answer for a shut-off domain: error 55
    });
    const answered = src.calls.length;
    setTimeout(() => {
      // the migration call answers once the race is over
      const timer = setInterval(() => {
        if (src.domains.get(VM)?.state !== DomainState.SHUTOFF || perform === null) return;
        clearInterval(timer);
        perform.reply(new XdrWriter().opaque(Buffer.alloc(0)));
      }, 10);
    }, 0);

    const handle = await hv.migrate(request);
    const outcome = await handle.done;
    expect(src.calls.slice(answered)).toContain(Procedure.DOMAIN_GET_JOB_STATS);
    expect(outcome.result).toBe('completed');
    expect(outcome.error).toBeNull();
    expect(outcome.stats).toMatchObject({ type: 'completed', memTotalMiB: 64, downtimeMs: 31 });
  });

  it('a migration call that answers error 55 after the VM landed on the destination is completed', async () => {
    src.addDomain({
      name: 'vm-a',
      uuid: VM,
      job: { type: VIR_JOB_UNBOUNDED, params: jobParams({ memory_total: 64 * MiB }) },
    });
    src.on(Procedure.DOMAIN_MIGRATE_PERFORM3_PARAMS, (call) => {
      setTimeout(() => {
        land({ undefineSource: true });
        call.error(55, 'Requested operation is not valid: domain is not running');
      }, 20);
      return true;
    });
    const outcome = await (await hv.migrate(request)).done;
    expect(outcome).toMatchObject({ result: 'completed', error: null });
    expect(outcome.stats).toMatchObject({ memProcessedMiB: 70, downtimeMs: 31 });
    expect(await hv.locateVm(VM)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
  });

  it('a migration call that fails with the VM still running on the source is failed', async () => {
    src.addDomain({
      name: 'vm-a',
      uuid: VM,
      job: { type: VIR_JOB_UNBOUNDED, params: jobParams({ memory_total: 64 * MiB }) },
    });
    src.on(Procedure.DOMAIN_MIGRATE_PERFORM3_PARAMS, (call) => {
      setTimeout(() => call.error(9, 'operation failed: migration out job: unexpectedly failed'), 20);
      return true;
    });
    const outcome = await (await hv.migrate(request)).done;
    expect(outcome.result).toBe('failed');
    expect(outcome.error).toMatch(/unexpectedly failed/);
  });

  it('the source daemon lost mid-migration, back with the guest running there and a paused copy on the destination: failed', async () => {
    src.addDomain({
      name: 'vm-a',
      uuid: VM,
      job: { type: VIR_JOB_UNBOUNDED, params: jobParams({ memory_total: 64 * MiB }) },
    });
    src.on(Procedure.DOMAIN_MIGRATE_PERFORM3_PARAMS, () => {
      setTimeout(() => {
        // The incoming side waits paused and transient on the destination; the restarted source daemon
        // has cancelled the job and resumed the guest.
        dst.addDomain({ name: 'vm-a', uuid: VM, state: DomainState.PAUSED, persistent: false });
        const d = src.domains.get(VM);
        if (d) d.job = { type: 0, params: [] };
        src.dropConnections();
      }, 20);
      return true; // never answered: the connection drops
    });
    const outcome = await (await hv.migrate(request)).done;
    expect(outcome.result).toBe('failed');
    expect(await hv.locateVm(VM)).toEqual([
      { hostId: 'h1', state: 'running', persistent: true },
      { hostId: 'h2', state: 'paused', persistent: false },
    ]);
  }, 30_000);

  it('the source daemon lost mid-migration, the guest then running on the destination only: completed', async () => {
    src.addDomain({
      name: 'vm-a',
      uuid: VM,
      job: { type: VIR_JOB_UNBOUNDED, params: jobParams({ memory_total: 64 * MiB }) },
    });
    src.on(Procedure.DOMAIN_MIGRATE_PERFORM3_PARAMS, () => {
      setTimeout(() => {
        dst.addDomain({ name: 'vm-a', uuid: VM, state: DomainState.PAUSED, persistent: false });
        src.dropConnections();
        // Paused on the destination while the switch-over finishes: not settled yet, so not an outcome.
        setTimeout(() => {
          src.domains.delete(VM);
          const d = dst.domains.get(VM);
          if (d) Object.assign(d, { state: DomainState.RUNNING, persistent: true });
        }, 1_500);
      }, 20);
      return true;
    });
    const outcome = await (await hv.migrate(request)).done;
    expect(outcome.result).toBe('completed');
  }, 30_000);

  it('a domain shut off on the source and running on the destination reads as no job, not an error', async () => {
    src.addDomain({ name: 'vm-a', uuid: VM, state: DomainState.SHUTOFF });
    dst.addDomain({ name: 'vm-a', uuid: VM });
    expect((await hv.jobStats('h1', VM)).type).toBe('none');
    expect(await hv.locateVm(VM)).toEqual([
      { hostId: 'h1', state: 'shutoff', persistent: true },
      { hostId: 'h2', state: 'running', persistent: true },
    ]);
  });
});

describe('LibvirtHypervisor: a monitor that does not answer', () => {
  let src: ScriptedDaemon;
  let dst: ScriptedDaemon;
  let hv: LibvirtHypervisor;

  beforeEach(async () => {
    src = await new ScriptedDaemon().start();
    dst = await new ScriptedDaemon().start();
    hv = new LibvirtHypervisor(
      [
        { id: 'h1', uri: src.uri },
        { id: 'h2', uri: dst.uri },
      ],
      { callTimeoutMs: 1_000, keepaliveIntervalMs: 0 },
    );
    src.addDomain({ name: 'stuck', uuid: VM, job: { type: VIR_JOB_UNBOUNDED, params: [] } });
    src.addDomain({ name: 'fine', uuid: OTHER });
    // The stuck domain's monitor never answers job questions (a QEMU stopped with SIGSTOP).
    src.on(Procedure.DOMAIN_GET_JOB_STATS, (call) => {
      return uuidString(readDomain(call.args).uuid) === VM;
    });
  });

  afterEach(async () => {
    await hv.close();
    await src.stop();
    await dst.stop();
  });

  it('asks it one question at a time, so the host keeps answering location and other domains', async () => {
    // A watchdog polling every 100 ms with a 300 ms bound: each poll gives up, none may pile up.
    for (let i = 0; i < 8; i++) {
      await expect(callWithTimeout(hv.clock, 'jobStats', 300, hv.jobStats('h1', VM))).rejects.toThrow(
        /did not answer/,
      );
    }
    expect(src.count(Procedure.DOMAIN_GET_JOB_STATS)).toBe(1);
    // Beyond libvirtd's 5 calls per connection the host would answer nothing; it answers everything.
    expect(await callWithTimeout(hv.clock, 'locateVm', 2_000, hv.locateVm(OTHER))).toEqual([
      { hostId: 'h1', state: 'running', persistent: true },
    ]);
    expect((await callWithTimeout(hv.clock, 'jobStats', 2_000, hv.jobStats('h1', OTHER))).type).toBe('none');
    // Other monitor calls of the stuck domain wait their turn in drover, not in the daemon.
    const downtime = hv.setMaxDowntime('h1', VM, 500);
    downtime.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    expect(src.count(Procedure.DOMAIN_MIGRATE_SET_MAX_DOWNTIME)).toBe(0);
  });

  it('sends an abort at once, not after the job question in flight, and one at a time', async () => {
    const question = hv.jobStats('h1', VM);
    question.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    expect(src.count(Procedure.DOMAIN_GET_JOB_STATS)).toBe(1);
    // The daemon answers the abort; the job question is still unanswered.
    await callWithTimeout(hv.clock, 'abortJob', 2_000, hv.abortJob('h1', VM));
    expect(src.count(Procedure.DOMAIN_ABORT_JOB)).toBe(1);
    // While one abort is unanswered, asking again joins it rather than adding a call to the daemon.
    src.on(Procedure.DOMAIN_ABORT_JOB, () => true);
    const first = hv.abortJob('h1', VM);
    const again = hv.abortJob('h1', VM);
    first.catch(() => undefined);
    again.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    expect(src.count(Procedure.DOMAIN_ABORT_JOB)).toBe(2);
  });

  it('samples the host without waiting for the domain: stats with NOWAIT, the stuck one counted busy', async () => {
    let flags = -1;
    src.on(Procedure.CONNECT_GET_ALL_DOMAIN_STATS, (call) => {
      call.args.array((x) => readDomain(x));
      call.args.uint();
      flags = call.args.uint();
      return false;
    });
    const started = Date.now();
    const samples = await hv.sampleVms('h1');
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(flags & GetAllDomainStatsFlags.NOWAIT).toBe(GetAllDomainStatsFlags.NOWAIT);
    expect(samples.map((s) => [s.vmId, s.state, s.migrating]).sort()).toEqual(
      [
        [VM, 'running', true],
        [OTHER, 'running', false],
      ].sort(),
    );
  });
});

// A worker that resumes the job of one that died mid-migration (a SIGKILLed `drover serve`) meets the earlier
// attempt's migration wherever it is: every answer read at its end says where the VM is, and a migration that
// completed is recorded completed.
describe('MigrationRunner resuming an earlier attempt, over scripted daemons', () => {
  let src: ScriptedDaemon;
  let dst: ScriptedDaemon;
  let hv: LibvirtHypervisor;
  const resumedJob = job(
    step(VM, { predicted: { converges: true, durationS: 5, downtimeMs: 50, transferMiB: 64 } }),
  );

  beforeEach(async () => {
    src = await new ScriptedDaemon().start();
    dst = await new ScriptedDaemon().start();
    hv = new LibvirtHypervisor(
      [
        { id: 'h1', uri: src.uri },
        { id: 'h2', uri: dst.uri },
      ],
      { callTimeoutMs: 5_000, keepaliveIntervalMs: 0 },
    );
  });

  afterEach(async () => {
    await hv.close();
    await src.stop();
    await dst.stop();
  });

  const runner = () => new MigrationRunner({ hypervisor: hv, options: testOptions({ pollIntervalMs: 100 }) });

  /** libvirt's source between the switch-over and letting the guest go: paused, its job completed. */
  function switchedOver(): void {
    const d = src.domains.get(VM);
    if (d) Object.assign(d, { state: DomainState.PAUSED, job: { type: VIR_JOB_COMPLETED, params: [] } });
    dst.addDomain({ name: 'vm-a', uuid: VM, state: DomainState.PAUSED, persistent: false });
  }

  /** The destination resumes the guest and keeps it; the source lets it go. */
  function settle(): void {
    src.domains.delete(VM);
    const d = dst.domains.get(VM);
    if (d) Object.assign(d, { state: DomainState.RUNNING, persistent: true, completed: completedFigures });
  }

  it('the source located the VM, then answers "no domain" to its job (the migration just ended): completed', async () => {
    src.addDomain({ name: 'vm-a', uuid: VM });
    src.on(Procedure.DOMAIN_GET_JOB_STATS, () => {
      src.off(Procedure.DOMAIN_GET_JOB_STATS);
      dst.addDomain({ name: 'vm-a', uuid: VM, completed: completedFigures });
      src.domains.delete(VM);
      return false; // the daemon's own answer: no domain
    });
    const report = await runner().run(resumedJob, { resumed: true });
    expect(report.outcome, report.reason).toBe('completed');
    expect(report.adopted).toBe(true);
    expect(report.problems).toEqual([]);
    expect(report.downtimeMs).toBe(31);
  });

  it('paused on both ends, the job over on the source (the destination not resumed yet): waits, completed', async () => {
    src.addDomain({ name: 'vm-a', uuid: VM });
    switchedOver();
    setTimeout(settle, 1_500);
    const report = await runner().run(resumedJob, { resumed: true });
    expect(report.outcome, report.reason).toBe('completed');
    expect(report.adopted).toBe(true);
    expect(report.problems).toEqual([]);
    expect(await hv.locateVm(VM)).toEqual([{ hostId: 'h2', state: 'running', persistent: true }]);
  });

  it('an adopted migration whose job ends while both ends are paused: completed once the destination runs it', async () => {
    src.addDomain({
      name: 'vm-a',
      uuid: VM,
      job: { type: VIR_JOB_UNBOUNDED, params: jobParams({ memory_total: 64 * MiB, time_elapsed: 2_000 }) },
    });
    dst.addDomain({ name: 'vm-a', uuid: VM, state: DomainState.PAUSED, persistent: false });
    let polls = 0;
    src.on(Procedure.DOMAIN_GET_JOB_STATS, () => {
      if (++polls === 3) {
        switchedOver();
        setTimeout(settle, 1_500);
      }
      return false;
    });
    const report = await runner().run(resumedJob, { resumed: true });
    expect(report.outcome, report.reason).toBe('completed');
    expect(report.adopted).toBe(true);
    expect(report.problems).toEqual([]);
  });
});
