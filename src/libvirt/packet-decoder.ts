// Splits a byte stream into libvirt RPC packets. Each packet starts with its total length (4 bytes, big
// endian, including itself), then the 24-byte header, then the body. The length is checked against the
// protocol's bounds as soon as its 4 bytes arrive, before anything is buffered for it.
import { LibvirtProtocolError } from './errors.js';
import { HEADER_BYTES, MAX_PACKET_BYTES, readHeader, type PacketHeader } from './remote-protocol.js';
import { XdrReader, XdrWriter } from './xdr.js';

export interface Packet {
  header: PacketHeader;
  /** The body after the header (a view into the received bytes). */
  body: Buffer;
}

export class PacketDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed: LibvirtProtocolError | null = null;

  constructor(private readonly maxPacketBytes = MAX_PACKET_BYTES) {}

  /** Bytes received but not yet part of a whole packet. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Feeds bytes; returns every packet completed by them. Throws LibvirtProtocolError on a bad stream (and on every later push). */
  push(chunk: Buffer): Packet[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const packets: Packet[] = [];
    for (;;) {
      if (this.buffered < 4) return packets;
      const length = this.peekLength();
      if (length < HEADER_BYTES || length > this.maxPacketBytes) {
        this.failed = new LibvirtProtocolError(
          `bad packet length ${length} (must be ${HEADER_BYTES}..${this.maxPacketBytes} bytes)`,
        );
        throw this.failed;
      }
      if (this.buffered < length) return packets;
      const bytes = this.take(length);
      const reader = new XdrReader(bytes, 4);
      packets.push({ header: readHeader(reader), body: bytes.subarray(HEADER_BYTES) });
    }
  }

  private peekLength(): number {
    const first = this.chunks[0];
    if (first && first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.concat(this.chunks, 4);
    return head.readUInt32BE(0);
  }

  private take(length: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first && first.length >= length) {
      out = first.subarray(0, length);
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
    } else {
      const all = Buffer.concat(this.chunks, this.buffered);
      out = all.subarray(0, length);
      this.chunks = all.length > length ? [all.subarray(length)] : [];
    }
    this.buffered -= length;
    return out;
  }
}

/** Encodes one packet: length word, header, body (XDR-encoded, or raw bytes as stream data packets carry). */
export function encodePacket(header: PacketHeader, body?: XdrWriter | Uint8Array): Buffer {
  const bodyBytes = body === undefined ? Buffer.alloc(0) : body instanceof XdrWriter ? body.bytes() : body;
  const total = HEADER_BYTES + bodyBytes.length;
  if (total > MAX_PACKET_BYTES)
    throw new LibvirtProtocolError(
      `packet of ${total} bytes exceeds the protocol maximum ${MAX_PACKET_BYTES}`,
    );
  const out = Buffer.allocUnsafe(total);
  out.writeUInt32BE(total, 0);
  out.writeUInt32BE(header.program >>> 0, 4);
  out.writeUInt32BE(header.version >>> 0, 8);
  out.writeInt32BE(header.procedure, 12);
  out.writeInt32BE(header.type, 16);
  out.writeUInt32BE(header.serial >>> 0, 20);
  out.writeInt32BE(header.status, 24);
  out.set(bodyBytes, HEADER_BYTES);
  return out;
}
