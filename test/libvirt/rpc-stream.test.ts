// libvirt data streams against a scripted peer on a real unix socket: the peer decodes our packets and
// answers as libvirtd does (remote_daemon_stream.c): the opening call gets a REPLY, data travels as
// STREAM + CONTINUE raw bytes with the call's procedure and serial, the end is STREAM + OK confirmed by
// STREAM + OK, failures are STREAM + ERROR (or REPLY + ERROR) with a remote_error body. The same framing
// against a real libvirtd is in test/lab/block-migration.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isConnectionLost, isTimeout, LibvirtError } from '../../src/libvirt/errors.js';
import { encodePacket, PacketDecoder, type Packet } from '../../src/libvirt/packet-decoder.js';
import { MessageStatus, MessageType, Procedure } from '../../src/libvirt/remote-protocol.js';
import { RpcConnection } from '../../src/libvirt/rpc-connection.js';
import { STREAM_CHUNK_BYTES } from '../../src/libvirt/rpc-stream.js';
import { XdrWriter } from '../../src/libvirt/xdr.js';

type Handler = (packet: Packet, peer: Peer) => void;

class Peer {
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

  send(to: Packet, type: number, status: number, body?: XdrWriter | Uint8Array): void {
    this.socket?.write(encodePacket({ ...to.header, type, status }, body));
  }

  replyOk(to: Packet): void {
    this.send(to, MessageType.REPLY, MessageStatus.OK);
  }

  data(to: Packet, bytes: Uint8Array): void {
    this.send(to, MessageType.STREAM, MessageStatus.CONTINUE, bytes);
  }

  streamOk(to: Packet): void {
    this.send(to, MessageType.STREAM, MessageStatus.OK);
  }

  error(to: Packet, type: number, code: number, message: string): void {
    const body = new XdrWriter()
      .int(code)
      .int(18)
      .optional(message, (w, m) => w.string(m))
      .int(2);
    body.bool(false).bool(false).bool(false).bool(false).int(0).int(0).bool(false);
    this.send(to, type, MessageStatus.ERROR, body);
  }

  /** Packets of type STREAM we received. */
  streamPackets(): Packet[] {
    return this.received.filter((p) => p.header.type === MessageType.STREAM);
  }
}

/** Arguments of STORAGE_VOL_UPLOAD / _DOWNLOAD: volume, offset, length, flags. */
function volArgs(): XdrWriter {
  return new XdrWriter()
    .string('pool')
    .string('vol.qcow2')
    .string('/p/vol.qcow2')
    .uhyper(0n)
    .uhyper(0n)
    .uint(0);
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('libvirt data streams against a scripted peer', () => {
  let dir: string;
  let server: Server;
  let peer: Peer;
  let path: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'drover-stream-'));
    path = join(dir, 'sock');
    peer = new Peer(() => undefined);
    server = createServer((s) => peer.attach(s));
    await new Promise<void>((r) => server.listen(path, r));
  });

  afterEach(async () => {
    peer.socket?.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function rpc(): Promise<RpcConnection> {
    const socket = connect(path);
    await new Promise<void>((r) => socket.once('connect', () => r()));
    return new RpcConnection(socket, { callTimeoutMs: 2_000, keepaliveIntervalMs: 0 });
  }

  it('download: data right behind the reply is kept, read in order; an empty data packet ends it, then the client finishes', async () => {
    const parts = [pattern(100_000, 1), pattern(1, 2), pattern(300_000, 3)];
    peer.handler = (p, s) => {
      if (p.header.type === MessageType.CALL) {
        // the reply and all the data in one write: nothing may be lost before openStream resolves
        s.socket?.write(
          Buffer.concat([
            encodePacket({ ...p.header, type: MessageType.REPLY, status: MessageStatus.OK }),
            ...parts.map((d) =>
              encodePacket({ ...p.header, type: MessageType.STREAM, status: MessageStatus.CONTINUE }, d),
            ),
            // libvirtd's end of data: a CONTINUE packet with no bytes
            encodePacket({ ...p.header, type: MessageType.STREAM, status: MessageStatus.CONTINUE }),
          ]),
        );
      } else if (p.header.type === MessageType.STREAM && p.header.status === MessageStatus.OK) {
        s.streamOk(p); // confirm the client's finish
      }
    };
    const c = await rpc();
    const stream = await c.openStream(Procedure.STORAGE_VOL_DOWNLOAD, volArgs());
    const got: Buffer[] = [];
    for await (const chunk of stream) got.push(chunk);
    expect(Buffer.concat(got).equals(Buffer.concat(parts))).toBe(true);
    expect(stream.bytesReceived).toBe(400_001);
    await stream.finish();
    expect(stream.closed).toBe(true);
    const call = peer.received[0]!;
    expect(peer.streamPackets()).toHaveLength(1);
    expect(peer.streamPackets()[0]!.header).toMatchObject({
      procedure: Procedure.STORAGE_VOL_DOWNLOAD,
      serial: call.header.serial,
      status: MessageStatus.OK,
    });
    expect(peer.streamPackets()[0]!.body.length).toBe(0);
    expect(c.openStreams).toBe(0);
    c.destroy();
  });

  it('upload: raw data packets of at most 256 KiB with the call serial, then finish and its confirmation', async () => {
    peer.handler = (p, s) => {
      if (p.header.type === MessageType.CALL) s.replyOk(p);
      else if (p.header.type === MessageType.STREAM && p.header.status === MessageStatus.OK) s.streamOk(p);
    };
    const c = await rpc();
    const stream = await c.openStream(Procedure.STORAGE_VOL_UPLOAD, volArgs());
    const data = pattern(3 * STREAM_CHUNK_BYTES + 777, 9);
    await stream.write(data.subarray(0, 1000));
    await stream.write(data.subarray(1000));
    await stream.finish();
    const call = peer.received[0]!;
    const packets = peer.streamPackets();
    const dataPackets = packets.filter((p) => p.header.status === MessageStatus.CONTINUE);
    expect(dataPackets.every((p) => p.body.length <= STREAM_CHUNK_BYTES && p.body.length > 0)).toBe(true);
    expect(
      packets.every(
        (p) => p.header.serial === call.header.serial && p.header.procedure === Procedure.STORAGE_VOL_UPLOAD,
      ),
    ).toBe(true);
    expect(Buffer.concat(dataPackets.map((p) => p.body)).equals(data)).toBe(true);
    expect(packets.at(-1)?.header.status).toBe(MessageStatus.OK);
    expect(stream.bytesSent).toBe(data.length);
    c.destroy();
  });

  it('a STREAM + ERROR from the daemon fails the reader with the daemon error', async () => {
    peer.handler = (p, s) => {
      if (p.header.type !== MessageType.CALL) return;
      s.replyOk(p);
      s.data(p, pattern(10, 0));
      s.error(p, MessageType.STREAM, 38, 'cannot read /p/vol.qcow2: Input/output error');
    };
    const c = await rpc();
    const stream = await c.openStream(Procedure.STORAGE_VOL_DOWNLOAD, volArgs());
    expect((await stream.read())?.length).toBe(10);
    const err = await stream.read().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(err).toMatchObject({ virCode: 38, procedure: 'STORAGE_VOL_DOWNLOAD' });
    expect(String((err as Error).message)).toMatch(/Input\/output error/);
    expect(c.openStreams).toBe(0);
    c.destroy();
  });

  it('an upload the daemon cannot write fails at finish with its REPLY + ERROR on the stream serial', async () => {
    peer.handler = (p, s) => {
      if (p.header.type === MessageType.CALL) s.replyOk(p);
      else if (p.header.status === MessageStatus.CONTINUE)
        s.error(p, MessageType.REPLY, 38, 'unable to write: No space left on device');
    };
    const c = await rpc();
    const stream = await c.openStream(Procedure.STORAGE_VOL_UPLOAD, volArgs());
    await stream.write(pattern(1000, 1));
    await expect(stream.finish()).rejects.toThrow(/No space left on device/);
    c.destroy();
  });

  it('abort sends an empty STREAM + ERROR and waits for the confirmation', async () => {
    peer.handler = (p, s) => {
      if (p.header.type === MessageType.CALL) s.replyOk(p);
      else if (p.header.type === MessageType.STREAM && p.header.status === MessageStatus.ERROR) s.streamOk(p);
    };
    const c = await rpc();
    const stream = await c.openStream(Procedure.STORAGE_VOL_UPLOAD, volArgs());
    await stream.abort();
    const last = peer.streamPackets().at(-1);
    expect(last?.header.status).toBe(MessageStatus.ERROR);
    expect(last?.body.length).toBe(0);
    expect(stream.closed).toBe(true);
    await expect(stream.write(pattern(1, 1))).rejects.toThrow(/aborted/);
    c.destroy();
  });

  it('a refused opening call leaves no stream behind', async () => {
    peer.handler = (p, s) => {
      if (p.header.type === MessageType.CALL) s.error(p, MessageType.REPLY, 50, 'Storage volume not found');
    };
    const c = await rpc();
    await expect(c.openStream(Procedure.STORAGE_VOL_DOWNLOAD, volArgs())).rejects.toThrow(
      /Storage volume not found/,
    );
    expect(c.openStreams).toBe(0);
    c.destroy();
  });

  it('a silent daemon times the reader out; a dropped connection fails it as lost', async () => {
    peer.handler = (p, s) => {
      if (p.header.type === MessageType.CALL) s.replyOk(p);
    };
    const c = await rpc();
    const quiet = await c.openStream(Procedure.STORAGE_VOL_DOWNLOAD, volArgs(), { idleTimeoutMs: 150 });
    const timedOut = await quiet.read().catch((e: unknown) => e);
    expect(isTimeout(timedOut)).toBe(true);
    const dropped = await c.openStream(Procedure.STORAGE_VOL_DOWNLOAD, volArgs());
    const pending = dropped.read().catch((e: unknown) => e);
    peer.socket?.destroy();
    expect(isConnectionLost(await pending)).toBe(true);
    c.destroy();
  });

  it('a reader slower than the daemon pauses the socket and still gets every byte (back-pressure)', async () => {
    const total = 40 * 64 * 1024;
    peer.handler = (p, s) => {
      if (p.header.type === MessageType.CALL) {
        s.replyOk(p);
        for (let i = 0; i < 40; i++) s.data(p, pattern(64 * 1024, i));
        s.data(p, new Uint8Array(0));
      } else if (p.header.type === MessageType.STREAM && p.header.status === MessageStatus.OK) s.streamOk(p);
    };
    const c = await rpc();
    const stream = await c.openStream(Procedure.STORAGE_VOL_DOWNLOAD, volArgs(), {
      highWaterBytes: 128 * 1024,
    });
    let got = 0;
    for await (const chunk of stream) {
      got += chunk.length;
      await new Promise((r) => setTimeout(r, 2));
    }
    await stream.finish();
    expect(got).toBe(total);
    c.destroy();
  });
});
