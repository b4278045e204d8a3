// The libvirt client against a real daemon over its unix socket.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtClient, uuidToString } from '../../src/libvirt/libvirt-client.js';
import { isNoDomain, LibvirtError } from '../../src/libvirt/errors.js';
import { DomainState, DomainStatsTypes, ListDomainsFlags } from '../../src/libvirt/remote-protocol.js';
import { defineGuest, guestName, labClient, labHosts, removeGuest, type LabGuest } from './lab-client.js';

describe('libvirt client over a unix socket', () => {
  let client: LibvirtClient;
  let guest: LabGuest;

  beforeAll(async () => {
    client = await labClient('lab1');
    guest = await defineGuest({ name: guestName('unix'), host: 'lab1', memMiB: 64 });
  });

  afterAll(async () => {
    await client.close();
    await removeGuest(guest.name);
  });

  it('reads the host: hostname, node info, CPU and memory counters, capabilities', async () => {
    expect(await client.hostname()).toBe('lab1');
    const info = await client.nodeInfo();
    expect(info.cpus).toBeGreaterThan(0);
    expect(info.model).toBe('x86_64');
    const cpu = await client.nodeCpuStats();
    expect([...cpu.keys()]).toEqual(expect.arrayContaining(['kernel', 'user', 'idle']));
    const mem = await client.nodeMemoryStats();
    expect(Number(mem.get('total'))).toBeGreaterThan(Number(mem.get('free')));
    expect(await client.capabilities()).toContain('<capabilities>');
    expect(Number(await client.libVersion())).toBeGreaterThanOrEqual(9_000_000);
  });

  it('lists and looks up domains by name and UUID, with their state and XML', async () => {
    const all = await client.listAllDomains();
    const mine = all.find((d) => d.name === guest.name);
    expect(mine).toBeDefined();
    expect(uuidToString(mine!.uuid)).toBe(guest.id);
    const persistent = await client.listAllDomains(ListDomainsFlags.PERSISTENT);
    expect(persistent.map((d) => d.name)).toContain(guest.name);
    const byUuid = await client.lookupDomainByUuid(guest.id);
    expect(byUuid.name).toBe(guest.name);
    const byName = await client.lookupDomainByName(guest.name);
    expect(uuidToString(byName.uuid)).toBe(guest.id);
    expect((await client.domainState(byName)).state).toBe(DomainState.RUNNING);
    expect(await client.domainXml(byName)).toContain(`<name>${guest.name}</name>`);
  });

  it('gives typed errors carrying libvirt error codes', async () => {
    const err: unknown = await client.lookupDomainByName('no-such-guest').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(isNoDomain(err)).toBe(true);
    expect((err as LibvirtError).virCode).toBe(42);
    expect((err as LibvirtError).message).toContain('DOMAIN_LOOKUP_BY_NAME');
  });

  it('suspends, resumes and reads all-domain stats', async () => {
    const dom = await client.lookupDomainByUuid(guest.id);
    await client.suspend(dom);
    expect((await client.domainState(dom)).state).toBe(DomainState.PAUSED);
    await client.resume(dom);
    expect((await client.domainState(dom)).state).toBe(DomainState.RUNNING);
    const stats = await client.allDomainStats(
      DomainStatsTypes.STATE | DomainStatsTypes.CPU_TOTAL | DomainStatsTypes.BALLOON,
    );
    const mine = stats.find((s) => s.domain.name === guest.name);
    expect(mine?.params['state.state']).toBe(DomainState.RUNNING);
    expect(typeof mine?.params['cpu.time']).toBe('bigint');
    expect(mine?.params['balloon.maximum']).toBe(64n * 1024n);
  });

  it('runs many calls concurrently on one connection (serial multiplexing)', async () => {
    const names = await Promise.all(Array.from({ length: 50 }, () => client.hostname()));
    expect(new Set(names)).toEqual(new Set(['lab1']));
    expect(labHosts().length).toBeGreaterThanOrEqual(2);
  });

  it('compares a CPU definition against the host hypervisor', async () => {
    const result = await client.compareHypervisorCpu({
      virttype: 'qemu',
      arch: 'x86_64',
      xmlCpu: "<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>",
    });
    expect(result).toBeGreaterThanOrEqual(1);
  });
});
