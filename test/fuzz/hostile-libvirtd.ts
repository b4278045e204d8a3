// A loopback TCP server that speaks just enough of libvirt's RPC to let drover's client connect (feature
// query, auth list, open) and then answers every other call, or pushes events, with whatever bytes a test
// hands it: truncated, corrupted, hostile. Used by the libvirt fuzz suite only.
import { createServer, type Server, type Socket } from 'node:net';
import { encodePacket, PacketDecoder, type Packet } from '../../src/libvirt/packet-decoder.js';
import {
  MessageStatus,
  MessageType,
  Procedure,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
} from '../../src/libvirt/remote-protocol.js';
import { XdrWriter } from '../../src/libvirt/xdr.js';

/** What the server sends for a call after the handshake (raw bytes, written as they are). */
export type Responder = (call: Packet) => Buffer;

export function replyPacket(call: Packet, body?: XdrWriter, status: number = MessageStatus.OK): Buffer {
  return encodePacket(
    {
      program: REMOTE_PROGRAM,
      version: REMOTE_PROTOCOL_VERSION,
      procedure: call.header.procedure,
      type: MessageType.REPLY,
      serial: call.header.serial,
      status,
    },
    body,
  );
}

/** A server-pushed event (MESSAGE packet) of `procedure` with the given body bytes. */
export function eventPacket(procedure: number, body: Buffer): Buffer {
  const w = new XdrWriter();
  w.fixedOpaque(body);
  // fixedOpaque pads to 4; the padding is part of what the client must cope with.
  return encodePacket(
    {
      program: REMOTE_PROGRAM,
      version: REMOTE_PROTOCOL_VERSION,
      procedure,
      type: MessageType.MESSAGE,
      serial: 0,
      status: MessageStatus.OK,
    },
    w,
  );
}

/** The 28-byte header of a reply to `call` followed by `body` as raw bytes, with `declaredLength` (default: true length). */
export function rawReply(call: Packet, body: Buffer, declaredLength?: number, status = 0): Buffer {
  const head = Buffer.alloc(28);
  head.writeUInt32BE(declaredLength ?? 28 + body.length, 0);
  head.writeUInt32BE(REMOTE_PROGRAM, 4);
  head.writeUInt32BE(REMOTE_PROTOCOL_VERSION, 8);
  head.writeInt32BE(call.header.procedure, 12);
  head.writeInt32BE(MessageType.REPLY, 16);
  head.writeUInt32BE(call.header.serial, 20);
  head.writeInt32BE(status, 24);
  return Buffer.concat([head, body]);
}

export class HostileLibvirtd {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  responder: Responder = () => Buffer.alloc(0);
  /** When false, the handshake calls go to the responder too. */
  handshake = true;
  port = 0;

  constructor() {
    this.server = createServer((socket) => this.accept(socket));
  }

  get uri(): string {
    return `qemu+tcp://127.0.0.1:${this.port}/system`;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
  }

  /** Sends raw bytes to every connected client. */
  push(bytes: Buffer): void {
    for (const s of this.sockets) s.write(bytes);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const decoder = new PacketDecoder();
    socket.on('data', (chunk: Buffer) => {
      let calls: Packet[];
      try {
        calls = decoder.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const call of calls) {
        if (call.header.program !== REMOTE_PROGRAM) continue; // keepalive
        const out = this.answer(call);
        if (out.length > 0 && !socket.destroyed) socket.write(out);
      }
    });
  }

  private answer(call: Packet): Buffer {
    if (!this.handshake) return this.responder(call);
    switch (call.header.procedure) {
      case Procedure.CONNECT_SUPPORTS_FEATURE:
        return replyPacket(call, new XdrWriter().int(0));
      case Procedure.AUTH_LIST:
        return replyPacket(call, new XdrWriter().uint(1).int(0));
      case Procedure.CONNECT_OPEN:
      case Procedure.CONNECT_CLOSE:
        return replyPacket(call);
      default:
        return this.responder(call);
    }
  }
}
