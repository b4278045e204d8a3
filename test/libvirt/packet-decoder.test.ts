import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LibvirtProtocolError } from '../../src/libvirt/errors.js';
import { encodePacket, PacketDecoder } from '../../src/libvirt/packet-decoder.js';
import {
  MessageStatus,
  MessageType,
  REMOTE_PROGRAM,
  type PacketHeader,
} from '../../src/libvirt/remote-protocol.js';
import { XdrWriter } from '../../src/libvirt/xdr.js';

const header = (serial: number, procedure = 59): PacketHeader => ({
  program: REMOTE_PROGRAM,
  version: 1,
  procedure,
  type: MessageType.REPLY,
  serial,
  status: MessageStatus.OK,
});

describe('packet framing', () => {
  it('encodes length + header + body', () => {
    const p = encodePacket(header(7), new XdrWriter().string('lab1'));
    expect(p.readUInt32BE(0)).toBe(p.length);
    expect(p.length).toBe(28 + 8);
    expect(p.readUInt32BE(4)).toBe(REMOTE_PROGRAM);
    expect(p.readUInt32BE(20)).toBe(7);
  });

  it('reassembles packets however the stream splits them', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 30 }),
        (bodies, cuts) => {
          const stream = Buffer.concat(
            bodies.map((b, i) => encodePacket(header(i + 1), new XdrWriter().opaque(b))),
          );
          const decoder = new PacketDecoder();
          const got: { serial: number; body: Buffer }[] = [];
          let at = 0;
          let k = 0;
          while (at < stream.length) {
            const n = cuts[k++ % cuts.length] ?? 1;
            for (const p of decoder.push(stream.subarray(at, at + n)))
              got.push({ serial: p.header.serial, body: Buffer.from(p.body) });
            at += n;
          }
          expect(got.map((g) => g.serial)).toEqual(bodies.map((_, i) => i + 1));
          got.forEach((g, i) =>
            expect(g.body.equals(new XdrWriter().opaque(bodies[i] ?? new Uint8Array()).bytes())).toBe(true),
          );
          expect(decoder.pendingBytes).toBe(0);
        },
      ),
    );
  });

  it('waits for the rest of a truncated packet without producing anything', () => {
    const p = encodePacket(header(1), new XdrWriter().string('x'.repeat(100)));
    const decoder = new PacketDecoder();
    expect(decoder.push(p.subarray(0, 3))).toEqual([]);
    expect(decoder.push(p.subarray(3, p.length - 1))).toEqual([]);
    expect(decoder.pendingBytes).toBe(p.length - 1);
    expect(decoder.push(p.subarray(p.length - 1))).toHaveLength(1);
  });

  it.each([
    ['shorter than a header', 27],
    ['zero', 0],
    ['larger than the protocol maximum', 0x7fffffff],
    ['just over the maximum', 32 * 1024 * 1024 + 5],
  ])('rejects a length word %s at once, before buffering for it', (_what, length) => {
    const decoder = new PacketDecoder();
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(length >>> 0);
    expect(() => decoder.push(bytes)).toThrow(LibvirtProtocolError);
    // the stream stays failed
    expect(() => decoder.push(encodePacket(header(1)))).toThrow(LibvirtProtocolError);
  });

  it('honours a smaller configured maximum', () => {
    const decoder = new PacketDecoder(64);
    expect(() => decoder.push(encodePacket(header(1), new XdrWriter().opaque(new Uint8Array(100))))).toThrow(
      /bad packet length 132/,
    );
  });

  it('finds corrupted length words anywhere in random garbage without crashing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 200 }), (garbage) => {
        const decoder = new PacketDecoder(4096);
        try {
          decoder.push(Buffer.from(garbage));
        } catch (err) {
          expect(err).toBeInstanceOf(LibvirtProtocolError);
        }
      }),
    );
  });
});
