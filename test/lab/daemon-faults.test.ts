// A hung or killed libvirt daemon never hangs drover: calls fail with typed errors within their timeout,
// keepalive declares a silent daemon dead, and LibvirtHypervisor reconnects once the daemon is back.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { errorCode } from '../../src/domain/errors.js';
import { HYPERVISOR_ERROR_CODES, type HypervisorEvent } from '../../src/hypervisor/hypervisor.js';
import { isConnectionLost, isTimeout, LibvirtTimeoutError } from '../../src/libvirt/errors.js';
import type { LibvirtClient } from '../../src/libvirt/libvirt-client.js';
import {
  defineGuest,
  guestName,
  killDaemon,
  labClient,
  libvirtHypervisor,
  pauseDaemon,
  removeGuest,
  resumeDaemon,
  startDaemon,
  waitFor,
} from './lab-client.js';

const HOST = 'lab2';

describe('daemon faults', () => {
  const clients: LibvirtClient[] = [];

  afterEach(async () => {
    await resumeDaemon(HOST);
    await startDaemon(HOST);
    for (const c of clients.splice(0)) c.destroy();
  });

  afterAll(async () => {
    await startDaemon(HOST);
  });

  it('fails a call to a hung daemon with a typed timeout error, and the connection stays usable', async () => {
    const client = await labClient(HOST, { keepaliveIntervalMs: 0 });
    clients.push(client);
    await pauseDaemon(HOST);
    const started = Date.now();
    const timedOut: unknown = await client.call(59, undefined, { timeoutMs: 1_000 }).catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(LibvirtTimeoutError);
    expect(isTimeout(timedOut)).toBe(true);
    expect((timedOut as LibvirtTimeoutError).procedure).toBe('CONNECT_GET_HOSTNAME');
    expect(Date.now() - started).toBeLessThan(20_000);
    await resumeDaemon(HOST);
    // the late replies are dropped; new calls work on the same connection
    expect(await client.hostname()).toBe(HOST);
  });

  it('declares a silent daemon dead through keepalive', async () => {
    const client = await labClient(HOST, {
      keepaliveIntervalMs: 300,
      keepaliveCount: 3,
      callTimeoutMs: 60_000,
    });
    clients.push(client);
    const closed = new Promise<Error | null>((resolve) =>
      client.events.once('close', ({ error }) => resolve(error)),
    );
    await pauseDaemon(HOST);
    const started = Date.now();
    const pending = client.hostname().catch((e: unknown) => e);
    const reason = await closed;
    expect(reason && 'code' in reason ? reason.code : null).toBe('libvirt_peer_dead');
    expect(isConnectionLost(await pending)).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('gives a typed error when the daemon is killed mid-call, then reconnects and delivers events again', async () => {
    const hv = libvirtHypervisor({ callTimeoutMs: 10_000, reconnectMinMs: 100, reconnectMaxMs: 500 });
    const events: HypervisorEvent[] = [];
    hv.subscribe((e) => events.push(e));
    await hv.eventsReady();
    const name = guestName('fault');
    try {
      expect((await hv.sampleHost(HOST)).hostId).toBe(HOST);
      await pauseDaemon(HOST); // so the next call is surely still in flight when the daemon dies
      const started = Date.now();
      const inFlight = hv.sampleVms(HOST).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 200));
      await killDaemon(HOST);
      const err = await inFlight;
      expect(errorCode(err)).toBe(HYPERVISOR_ERROR_CODES.hostUnreachable);
      expect(isConnectionLost((err as Error).cause)).toBe(true);
      expect(Date.now() - started).toBeLessThan(10_000);
      // while the daemon is down, calls fail fast with a typed error too
      expect(errorCode(await hv.sampleHost(HOST).catch((e: unknown) => e))).toBe(
        HYPERVISOR_ERROR_CODES.hostUnreachable,
      );

      await startDaemon(HOST);
      const sample = await waitFor('a call after reconnecting', () => hv.sampleHost(HOST), 20_000, 200);
      expect(sample.cpuTotalNs).toBeGreaterThan(0);
      // events were registered again on the new connection
      const guest = await defineGuest({ name, host: HOST });
      await waitFor('a started event after the reconnect', () =>
        events.some((e) => e.kind === 'lifecycle' && e.vmId === guest.id && e.event === 'started')
          ? true
          : undefined,
      );
    } finally {
      await hv.close();
      await removeGuest(name);
    }
  });
});
