// Fuzzing of the libvirt client's wire decoding: XDR readers, the packet framer, and the whole client
// against a loopback daemon that answers with truncated, corrupted and hostile packets. Every case must end
// in a value or a LibvirtClientError with a stable code, within a bounded time, and a declared length is
// checked against the bytes really present before anything is allocated for it.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtClientError, LibvirtProtocolError } from '../../src/libvirt/errors.js';
import { LibvirtClient } from '../../src/libvirt/libvirt-client.js';
import { encodePacket, PacketDecoder } from '../../src/libvirt/packet-decoder.js';
import {
  KEEPALIVE_PROGRAM,
  MAX_PACKET_BYTES,
  MessageStatus,
  MessageType,
  Procedure,
  readDomain,
  readHeader,
  readNodeInfo,
  readNodeStats,
  readRemoteError,
  readStorageVol,
  readTypedParams,
  REMOTE_PROGRAM,
  REMOTE_STRING_MAX,
  writeTypedParams,
  type TypedParam,
} from '../../src/libvirt/remote-protocol.js';
import { XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';
import { classify, classifyAsync, printSummary, runs, tally } from './fuzz-support.js';
import { eventPacket, HostileLibvirtd, rawReply, replyPacket } from './hostile-libvirtd.js';

const isClientError = (err: unknown): boolean =>
  err instanceof LibvirtClientError && typeof err.code === 'string' && err.code.startsWith('libvirt_');

afterAll(() => {
  const { crashed } = printSummary('libvirt');
  expect(crashed).toBe(0);
});

const READERS: [string, (r: XdrReader) => unknown][] = [
  ['header', readHeader],
  ['domain', readDomain],
  ['remote error', readRemoteError],
  ['typed params', readTypedParams],
  ['node stats', readNodeStats],
  ['node info', readNodeInfo],
  ['storage vol', readStorageVol],
];

const typedParam: fc.Arbitrary<TypedParam> = fc.oneof(
  fc.record({ field: fc.string(), type: fc.constant('int' as const), value: fc.integer() }),
  fc.record({
    field: fc.string(),
    type: fc.constant('ullong' as const),
    value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  }),
  fc.record({ field: fc.string(), type: fc.constant('double' as const), value: fc.double() }),
  fc.record({ field: fc.string(), type: fc.constant('boolean' as const), value: fc.boolean() }),
  fc.record({
    field: fc.string(),
    type: fc.constant('string' as const),
    value: fc.string({ maxLength: 40 }),
  }),
);

/** Bytes with a few words overwritten by hostile lengths, some bytes flipped and the tail cut. */
function corrupt(bytes: Buffer): fc.Arbitrary<Buffer> {
  return fc
    .tuple(
      fc.array(
        fc.tuple(
          fc.nat(),
          fc.constantFrom(0xffffffff, 0x80000000, 0x7fffffff, REMOTE_STRING_MAX + 1, 16_384, 16_385, 1, 0),
        ),
        { maxLength: 2 },
      ),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      fc.nat(),
    )
    .map(([words, flips, cut]) => {
      const out = Buffer.from(bytes);
      for (const [at, value] of words) {
        if (out.length >= 4) out.writeUInt32BE(value, (at % Math.floor(out.length / 4)) * 4);
      }
      for (const [at, value] of flips) if (out.length > 0) out[at % out.length] = value;
      return out.subarray(0, out.length === 0 ? 0 : cut % (out.length + 1));
    });
}

describe('XDR readers', () => {
  it('decode any byte string to a value or a LibvirtProtocolError', () => {
    for (const [name, read] of READERS) {
      const t = tally(`xdr ${name} (random bytes)`);
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 256, size: 'medium' }), (bytes) => {
          classify(t, () => read(new XdrReader(Buffer.from(bytes))), isClientError);
        }),
        { numRuns: runs(600) },
      );
    }
  });

  it('decode corrupted typed-parameter lists (lengths, flips, truncation) without escaping errors', () => {
    const t = tally('xdr typed params (corrupted)');
    fc.assert(
      fc.property(
        fc.array(typedParam, { maxLength: 6 }).chain((params) => {
          const w = new XdrWriter();
          writeTypedParams(w, params);
          return corrupt(Buffer.from(w.bytes()));
        }),
        (bytes) => {
          classify(t, () => readTypedParams(new XdrReader(bytes)), isClientError);
        },
      ),
      { numRuns: runs(2000) },
    );
    expect(t.refused).toBeGreaterThan(0);
  });

  it('refuses huge declared string, opaque and array lengths before allocating', () => {
    const t = tally('xdr hostile lengths');
    const hostile = [0xffffffff, 0x80000000, 0x7fffffff, 3 * 1024 * 1024, REMOTE_STRING_MAX + 1];
    const before = process.memoryUsage().arrayBuffers;
    for (let round = 0; round < 200; round++) {
      for (const length of hostile) {
        const bytes = Buffer.alloc(64);
        bytes.writeUInt32BE(length, 0);
        for (const read of [
          (r: XdrReader) => r.string(REMOTE_STRING_MAX),
          (r: XdrReader) => r.string(),
          (r: XdrReader) => r.opaque(),
          (r: XdrReader) => r.array((x) => x.int()),
          (r: XdrReader) => r.array((x) => x.uhyper(), 0x7fffffff, 8),
          readDomain,
          readTypedParams,
        ]) {
          const outcome = classify(
            t,
            () => read(new XdrReader(bytes)),
            (err) => err instanceof LibvirtProtocolError,
          );
          expect(outcome).toBe('refused');
        }
      }
    }
    // 7,000 refusals of lengths up to 4 GiB: had any been allocated, this would be gigabytes.
    const grownMiB = (process.memoryUsage().arrayBuffers - before) / 2 ** 20;
    expect(grownMiB).toBeLessThan(16);
  });
});

describe('packet framer', () => {
  const header = fc.record({
    program: fc.constantFrom(REMOTE_PROGRAM, KEEPALIVE_PROGRAM),
    version: fc.constant(1),
    procedure: fc.integer({ min: 0, max: 500 }),
    type: fc.constantFrom(MessageType.REPLY, MessageType.MESSAGE),
    serial: fc.integer({ min: 0, max: 0x7fffffff }),
    status: fc.constantFrom(MessageStatus.OK, MessageStatus.ERROR),
  });

  it('reassembles any packets split at any byte boundaries', () => {
    const t = tally('framer round trip');
    fc.assert(
      fc.property(
        fc.array(fc.tuple(header, fc.uint8Array({ maxLength: 200 })), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (packets, cuts) => {
          const wire = Buffer.concat(
            packets.map(([h, body]) => {
              const w = new XdrWriter();
              w.fixedOpaque(body);
              return encodePacket(h, w);
            }),
          );
          const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
          const decoder = new PacketDecoder();
          const got: unknown[] = [];
          classify(
            t,
            () => {
              let at = 0;
              for (const p of [...points, wire.length]) {
                got.push(...decoder.push(wire.subarray(at, p)));
                at = p;
              }
            },
            isClientError,
          );
          expect(got).toHaveLength(packets.length);
          expect(decoder.pendingBytes).toBe(0);
        },
      ),
      { numRuns: runs(800) },
    );
    expect(t.refused).toBe(0);
  });

  it('turns any byte stream into packets or a LibvirtProtocolError that sticks', () => {
    const t = tally('framer random stream');
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const decoder = new PacketDecoder();
        const outcome = classify(
          t,
          () => {
            for (const c of chunks) decoder.push(Buffer.from(c));
          },
          isClientError,
        );
        if (outcome === 'refused') expect(() => decoder.push(Buffer.alloc(0))).toThrow(LibvirtProtocolError);
        expect(decoder.pendingBytes).toBeLessThanOrEqual(8 * 64);
      }),
      { numRuns: runs(1500) },
    );
  });

  it('refuses a 4 GiB (or any over-limit) length word as soon as its 4 bytes arrive', () => {
    const t = tally('framer hostile length');
    for (const length of [0xffffffff, 0x80000000, MAX_PACKET_BYTES + 1, 27, 0]) {
      const decoder = new PacketDecoder();
      const word = Buffer.alloc(4);
      word.writeUInt32BE(length, 0);
      // Byte by byte: nothing is refused before the word is complete, and it is refused right then.
      for (let i = 0; i < 3; i++) expect(decoder.push(word.subarray(i, i + 1))).toEqual([]);
      expect(classify(t, () => decoder.push(word.subarray(3)), isClientError)).toBe('refused');
    }
  });

  it('buffers only the bytes received for a large declared packet, never its declared size', () => {
    const t = tally('framer large declared');
    const decoder = new PacketDecoder();
    const before = process.memoryUsage().arrayBuffers;
    const head = Buffer.alloc(64);
    head.writeUInt32BE(MAX_PACKET_BYTES, 0);
    expect(classify(t, () => decoder.push(head), isClientError)).toBe('accepted');
    expect(decoder.pendingBytes).toBe(64);
    expect((process.memoryUsage().arrayBuffers - before) / 2 ** 20).toBeLessThan(8);
  });
});

describe('client against a hostile daemon', () => {
  const daemon = new HostileLibvirtd();
  beforeAll(() => daemon.start());
  afterAll(() => daemon.stop());

  const CALL_TIMEOUT_MS = 400;

  type Answer = (call: Parameters<HostileLibvirtd['responder']>[0]) => Buffer;
  const answers: fc.Arbitrary<[string, Answer]> = fc.oneof(
    fc
      .uint8Array({ minLength: 1, maxLength: 128 })
      .map((b): [string, Answer] => ['garbage', () => Buffer.from(b)]),
    fc
      .uint8Array({ maxLength: 128 })
      .map((b): [string, Answer] => ['reply with random body', (c) => rawReply(c, Buffer.from(b))]),
    fc
      .constantFrom(0xffffffff, 0x80000000, MAX_PACKET_BYTES + 1, 3)
      .map((len): [string, Answer] => [
        'reply with hostile length',
        (c) => rawReply(c, Buffer.alloc(8), len),
      ]),
    fc
      .uint8Array({ maxLength: 24 })
      .map((b): [string, Answer] => [
        'error reply, truncated',
        (c) => rawReply(c, Buffer.from(b), undefined, MessageStatus.ERROR),
      ]),
    fc
      .integer({ min: 3, max: 1000 })
      .map((s): [string, Answer] => [
        'reply with unknown status',
        (c) => rawReply(c, Buffer.alloc(4), undefined, s),
      ]),
    fc.constant<[string, Answer]>([
      'reply to another serial',
      (c) => replyPacket({ ...c, header: { ...c.header, serial: c.header.serial + 1000 } }),
    ]),
    fc.constant<[string, Answer]>(['silence', () => Buffer.alloc(0)]),
    fc.constant<[string, Answer]>([
      'packet of an unknown program',
      (c) => encodePacket({ ...c.header, program: 0x12345678, type: MessageType.REPLY }),
    ]),
    fc
      .uint8Array({ maxLength: 48 })
      .map((b): [string, Answer] => [
        'half a reply, then nothing',
        (c) => rawReply(c, Buffer.from(b), 28 + b.length + 64),
      ]),
  );

  type Call = (client: LibvirtClient) => Promise<unknown>;
  const CALLS: [string, Call][] = [
    ['listAllDomains', (c) => c.listAllDomains()],
    ['nodeInfo', (c) => c.nodeInfo()],
    ['nodeCpuStats', (c) => c.nodeCpuStats()],
    ['nodeMemoryStats', (c) => c.nodeMemoryStats()],
    ['capabilities', (c) => c.capabilities()],
    ['allDomainStats', (c) => c.allDomainStats(1 | 2)],
    ['libVersion', (c) => c.libVersion()],
  ];

  it('every call settles with a value or a typed error within its timeout', async () => {
    const t = tally('client hostile replies');
    await fc.assert(
      fc.asyncProperty(answers, fc.constantFrom(...CALLS), async ([, answer], [, call]) => {
        daemon.responder = answer;
        const client = await LibvirtClient.connect(daemon.uri, {
          callTimeoutMs: CALL_TIMEOUT_MS,
          connectTimeoutMs: 2_000,
          keepaliveIntervalMs: 0,
        });
        const closeErrors: unknown[] = [];
        client.events.on('close', ({ error }) => closeErrors.push(error));
        try {
          const started = Date.now();
          await classifyAsync(t, () => call(client), isClientError);
          expect(Date.now() - started).toBeLessThan(CALL_TIMEOUT_MS + 2_000);
          // A close, when it came, carries a typed error too.
          for (const e of closeErrors) if (e !== null) expect(isClientError(e)).toBe(true);
        } finally {
          client.destroy();
        }
      }),
      { numRuns: runs(90) },
    );
    expect(t.refused).toBeGreaterThan(0);
  });

  it('connecting to a daemon that answers the handshake with hostile bytes fails with a typed error', async () => {
    const t = tally('client hostile handshake');
    const handshake = new HostileLibvirtd();
    await handshake.start();
    try {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 96 }), async (bytes) => {
          // Everything, including the feature query, is answered with the hostile bytes.
          handshake.handshake = false;
          handshake.responder = () => Buffer.from(bytes);
          await classifyAsync(
            t,
            async () => {
              const client = await LibvirtClient.connect(handshake.uri, {
                callTimeoutMs: CALL_TIMEOUT_MS,
                connectTimeoutMs: 1_000,
                keepaliveIntervalMs: 0,
              });
              client.destroy();
            },
            isClientError,
          );
        }),
        { numRuns: runs(30) },
      );
    } finally {
      await handshake.stop();
    }
    expect(t.refused).toBeGreaterThan(0);
  });

  it('malformed events close the connection with a protocol error; calls then fail typed', async () => {
    const t = tally('client hostile events');
    const EVENTS = [
      Procedure.DOMAIN_EVENT_CALLBACK_LIFECYCLE,
      Procedure.DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION,
      Procedure.DOMAIN_EVENT_CALLBACK_JOB_COMPLETED,
      999,
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...EVENTS),
        fc.uint8Array({ maxLength: 96 }),
        async (procedure, body) => {
          daemon.responder = (c) => replyPacket(c, new XdrWriter().string('hostile'));
          const client = await LibvirtClient.connect(daemon.uri, {
            callTimeoutMs: CALL_TIMEOUT_MS,
            connectTimeoutMs: 2_000,
            keepaliveIntervalMs: 0,
          });
          const closed = new Promise<unknown>((resolve) =>
            client.events.on('close', ({ error }) => resolve(error)),
          );
          const delivered = new Promise<string>((resolve) => {
            for (const name of [
              'lifecycle',
              'migration-iteration',
              'job-completed',
              'unknown-message',
            ] as const)
              client.events.on(name, () => resolve(name));
          });
          try {
            daemon.push(eventPacket(procedure, Buffer.from(body)));
            const first = await Promise.race([
              closed.then((e) => ({ closed: e })),
              delivered.then((name) => ({ event: name })),
              new Promise((r) => setTimeout(() => r({ silent: true }), 1_000)),
            ]);
            if ('closed' in (first as object)) {
              expect(isClientError((first as { closed: unknown }).closed)).toBe(true);
              await expect(client.hostname()).rejects.toSatisfy(isClientError);
              t.refused += 1;
            } else {
              expect('event' in (first as object)).toBe(true);
              // The connection is still usable after a well-formed (if odd) event.
              await classifyAsync(t, () => client.hostname(), isClientError);
            }
          } finally {
            client.destroy();
          }
        },
      ),
      { numRuns: runs(120) },
    );
  });
});
