// The RPC layer against a scripted peer on a real unix socket: the peer speaks just enough of libvirt's
// wire protocol to exercise timeouts, keepalive, errors, corrupted packets, back-pressure and auth.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  isAuthError,
  isConnectionLost,
  isNoDomain,
  isProtocolError,
  isTimeout,
  LibvirtAuthError,
  LibvirtError,
} from '../../src/libvirt/errors.js';
import { LibvirtClient } from '../../src/libvirt/libvirt-client.js';
import { encodePacket, PacketDecoder, type Packet } from '../../src/libvirt/packet-decoder.js';
import {
  AuthType,
  KEEPALIVE_PROGRAM,
  KeepaliveProcedure,
  MessageStatus,
  MessageType,
  Procedure,
  REMOTE_PROGRAM,
} from '../../src/libvirt/remote-protocol.js';
import { RpcConnection } from '../../src/libvirt/rpc-connection.js';
import { XdrWriter } from '../../src/libvirt/xdr.js';
import { connect } from 'node:net';

type Handler = (packet: Packet, peer: ScriptedPeer) => void;

/** A fake daemon: decodes our packets and lets each test decide what to answer. */
class ScriptedPeer {
  readonly received: Packet[] = [];
  socket: Socket | null = null;
  constructor(public handler: Handler) {}

  attach(socket: Socket): void {
    this.socket = socket;
    const decoder = new PacketDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) {
        this.received.push(p);
        this.handler(p, this);
      }
    });
    socket.on('error', () => undefined);
  }

  reply(to: Packet, body?: XdrWriter): void {
    this.socket?.write(
      encodePacket({ ...to.header, type: MessageType.REPLY, status: MessageStatus.OK }, body),
    );
  }

  replyError(to: Packet, code: number, message: string): void {
    const body = new XdrWriter()
      .int(code)
      .int(10)
      .optional(message, (w, m) => w.string(m))
      .int(2);
    body.bool(false).bool(false).bool(false).bool(false).int(0).int(0).bool(false);
    this.socket?.write(
      encodePacket({ ...to.header, type: MessageType.REPLY, status: MessageStatus.ERROR }, body),
    );
  }

  ping(): void {
    this.socket?.write(
      encodePacket({
        program: KEEPALIVE_PROGRAM,
        version: 1,
        procedure: KeepaliveProcedure.PING,
        type: MessageType.MESSAGE,
        serial: 0,
        status: 0,
      }),
    );
  }
}

/** Answers the connect handshake (keepalive feature, auth list, open) like a daemon with auth none. */
function handshake(authTypes: number[] = [AuthType.NONE]): Handler {
  return (p, peer) => {
    if (p.header.procedure === Procedure.CONNECT_SUPPORTS_FEATURE) peer.reply(p, new XdrWriter().int(1));
    else if (p.header.procedure === Procedure.AUTH_LIST)
      peer.reply(
        p,
        new XdrWriter().array(authTypes, (w, t) => w.int(t)),
      );
    else if (p.header.procedure === Procedure.AUTH_POLKIT) peer.reply(p, new XdrWriter().int(1));
    else if (p.header.procedure === Procedure.CONNECT_OPEN || p.header.procedure === Procedure.CONNECT_CLOSE)
      peer.reply(p);
  };
}

describe('RPC connection against a scripted peer', () => {
  let dir: string;
  let path: string;
  let server: Server;
  let peer: ScriptedPeer;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'drover-rpc-'));
    path = join(dir, 'sock');
    peer = new ScriptedPeer(() => undefined);
    server = createServer((s) => peer.attach(s));
    await new Promise<void>((r) => server.listen(path, r));
  });

  afterEach(async () => {
    peer.socket?.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function rpc(options: ConstructorParameters<typeof RpcConnection>[1] = {}): Promise<RpcConnection> {
    const socket = connect(path);
    await new Promise<void>((r) => socket.once('connect', () => r()));
    return new RpcConnection(socket, options);
  }

  it('matches replies to calls by serial, in any order', async () => {
    const held: Packet[] = [];
    peer.handler = (p, s) => {
      held.push(p);
      if (held.length === 3)
        for (const q of [...held].reverse()) s.reply(q, new XdrWriter().uint(q.header.serial * 10));
    };
    const c = await rpc();
    const replies = await Promise.all([1, 2, 3].map(() => c.call(Procedure.CONNECT_GET_HOSTNAME)));
    expect(replies.map((r) => r.uint())).toEqual([10, 20, 30]);
    c.destroy();
  });

  it('fails an unanswered call with a typed timeout and ignores its late reply', async () => {
    const held: Packet[] = [];
    peer.handler = (p) => held.push(p);
    const c = await rpc();
    const started = Date.now();
    const err: unknown = await c
      .call(Procedure.CONNECT_GET_HOSTNAME, undefined, { timeoutMs: 150 })
      .catch((e: unknown) => e);
    expect(isTimeout(err)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(c.inFlight).toBe(0);
    peer.handler = (p, s) => s.reply(p, new XdrWriter().uint(7));
    const late = held[0];
    if (late) peer.reply(late, new XdrWriter().uint(99)); // late reply to the timed-out call: dropped
    expect((await c.call(Procedure.CONNECT_GET_HOSTNAME)).uint()).toBe(7);
    c.destroy();
  });

  it('turns error replies into LibvirtError with libvirt code, domain and message', async () => {
    peer.handler = (p, s) => s.replyError(p, 42, "Domain not found: no domain with matching name 'x'");
    const c = await rpc();
    const err: unknown = await c
      .call(Procedure.DOMAIN_LOOKUP_BY_NAME, new XdrWriter().string('x'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(isNoDomain(err)).toBe(true);
    expect((err as LibvirtError).virDomain).toBe(10);
    expect((err as LibvirtError).message).toMatch(/^DOMAIN_LOOKUP_BY_NAME: Domain not found/);
    c.destroy();
  });

  it('answers the daemon PING with PONG', async () => {
    const c = await rpc();
    peer.ping();
    await expect
      .poll(() => peer.received.find((p) => p.header.program === KEEPALIVE_PROGRAM)?.header.procedure, {
        timeout: 2_000,
      })
      .toBe(KeepaliveProcedure.PONG);
    c.destroy();
  });

  it('sends PINGs when idle and declares a silent peer dead, failing pending calls', async () => {
    const c = await rpc({ keepaliveIntervalMs: 100, keepaliveCount: 3 });
    c.startKeepalive();
    const closed = new Promise<unknown>((r) => c.events.once('close', ({ error }) => r(error)));
    const pending = c
      .call(Procedure.CONNECT_GET_HOSTNAME, undefined, { timeoutMs: 60_000 })
      .catch((e: unknown) => e);
    const reason = await closed;
    expect(reason).toMatchObject({ code: 'libvirt_peer_dead' });
    expect(
      peer.received.some(
        (p) => p.header.program === KEEPALIVE_PROGRAM && p.header.procedure === KeepaliveProcedure.PING,
      ),
    ).toBe(true);
    expect(isConnectionLost(await pending)).toBe(true);
    expect(isConnectionLost(await c.call(Procedure.CONNECT_GET_HOSTNAME).catch((e: unknown) => e))).toBe(
      true,
    );
  });

  it('stays alive while the peer answers PINGs', async () => {
    peer.handler = (p, s) => {
      if (p.header.program === KEEPALIVE_PROGRAM && p.header.procedure === KeepaliveProcedure.PING)
        s.socket?.write(encodePacket({ ...p.header, procedure: KeepaliveProcedure.PONG }));
    };
    const c = await rpc({ keepaliveIntervalMs: 50, keepaliveCount: 3 });
    c.startKeepalive();
    await new Promise((r) => setTimeout(r, 500));
    expect(c.closed).toBe(false);
    c.destroy();
  });

  it.each([
    ['a length word below the header size', () => Buffer.from('00000004', 'hex')],
    ['a 2 GiB length word', () => Buffer.from('7fffffff00000000', 'hex')],
    [
      'a packet for an unknown program',
      () =>
        encodePacket({
          program: 0x1234,
          version: 1,
          procedure: 1,
          type: MessageType.REPLY,
          serial: 1,
          status: 0,
        }),
    ],
    [
      'an error reply cut short',
      () =>
        encodePacket(
          {
            program: REMOTE_PROGRAM,
            version: 1,
            procedure: 59,
            type: MessageType.REPLY,
            serial: 1,
            status: MessageStatus.ERROR,
          },
          new XdrWriter().int(1),
        ),
    ],
  ])('fails pending calls with a protocol error on %s', async (_what, bytes) => {
    peer.handler = (_p, s) => s.socket?.write(bytes());
    const c = await rpc();
    const err: unknown = await c
      .call(Procedure.CONNECT_GET_HOSTNAME, undefined, { timeoutMs: 5_000 })
      .catch((e: unknown) => e);
    expect(isProtocolError(err)).toBe(true);
  });

  it('fails pending calls with a connection error when the peer disconnects mid-call', async () => {
    peer.handler = (_p, s) => s.socket?.destroy();
    const c = await rpc();
    const err: unknown = await c
      .call(Procedure.CONNECT_GET_HOSTNAME, undefined, { timeoutMs: 5_000 })
      .catch((e: unknown) => e);
    expect(isConnectionLost(err)).toBe(true);
  });

  it('queues writes while the peer does not read, and delivers them once it does', async () => {
    const c = await rpc({ maxQueuedBytes: 256 * 1024 * 1024 });
    peer.socket?.pause();
    peer.handler = (p, s) => s.reply(p, new XdrWriter().uint(p.header.serial));
    const big = 'x'.repeat(1024 * 1024);
    const calls = Array.from({ length: 40 }, () =>
      c.call(Procedure.DOMAIN_DEFINE_XML, new XdrWriter().string(big), { timeoutMs: 20_000 }),
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(peer.received.length).toBeLessThan(40); // the socket buffer filled up: the rest waited in the queue
    peer.socket?.resume();
    const serials = (await Promise.all(calls)).map((r) => r.uint());
    expect(serials).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    c.destroy();
  });

  it('refuses new calls when too much is already queued for a peer that does not read', async () => {
    const c = await rpc({ maxQueuedBytes: 4 * 1024 * 1024 });
    peer.socket?.pause();
    const big = 'y'.repeat(1024 * 1024);
    const calls = Array.from({ length: 30 }, () =>
      c
        .call(Procedure.DOMAIN_DEFINE_XML, new XdrWriter().string(big), { timeoutMs: 2_000 })
        .catch((e: unknown) => e),
    );
    const results = await Promise.all(calls);
    expect(results.some((e) => isConnectionLost(e) && String(e).includes('not reading'))).toBe(true);
    c.destroy();
  });

  it('connects through LibvirtClient with auth none, and with polkit', async () => {
    peer.handler = handshake([AuthType.POLKIT]);
    const client = await LibvirtClient.connect(`qemu+unix:///system?socket=${path}`, {
      keepaliveIntervalMs: 0,
    });
    expect(peer.received.map((p) => p.header.procedure)).toEqual([
      Procedure.CONNECT_SUPPORTS_FEATURE,
      Procedure.AUTH_LIST,
      Procedure.AUTH_POLKIT,
      Procedure.CONNECT_OPEN,
    ]);
    await client.close();
    expect(peer.received.at(-1)?.header.procedure).toBe(Procedure.CONNECT_CLOSE);
  });

  it('names SASL when the daemon demands it', async () => {
    peer.handler = handshake([AuthType.SASL]);
    const err: unknown = await LibvirtClient.connect(`qemu+unix:///system?socket=${path}`).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LibvirtAuthError);
    expect(isAuthError(err)).toBe(true);
    expect(String(err)).toMatch(/SASL/);
  });

  it('fails to connect to a missing socket with a typed connection error', async () => {
    const err: unknown = await LibvirtClient.connect(`qemu+unix:///system?socket=${join(dir, 'nope')}`).catch(
      (e: unknown) => e,
    );
    expect(isConnectionLost(err)).toBe(true);
    expect(String(err)).toMatch(/cannot connect/);
  });
});
