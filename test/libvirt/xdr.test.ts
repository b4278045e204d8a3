import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LibvirtProtocolError } from '../../src/libvirt/errors.js';
import {
  readDomain,
  readTypedParams,
  writeDomain,
  writeTypedParams,
  type DomainRef,
  type TypedParam,
} from '../../src/libvirt/remote-protocol.js';
import { XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';

const reader = (w: XdrWriter) => new XdrReader(Buffer.from(w.bytes()));

describe('XDR codec', () => {
  it('encodes the RFC 4506 layouts byte for byte', () => {
    const w = new XdrWriter(4)
      .int(-2)
      .uint(0xffffffff)
      .string('abcde')
      .bool(true)
      .hyper(-1n)
      .opaque(Buffer.from([7]));
    expect(w.bytes().toString('hex')).toBe(
      [
        'fffffffe',
        'ffffffff',
        '00000005' + '6162636465' + '000000', // length, bytes, padding to 4
        '00000001',
        'ffffffffffffffff',
        '00000001' + '07' + '000000',
      ].join(''),
    );
    expect(w.byteLength % 4).toBe(0);
  });

  it('round-trips scalars, strings, opaque data, optionals and arrays', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -0x80000000, max: 0x7fffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.double({ noNaN: true }),
        fc.string({ unit: 'grapheme' }),
        fc.uint8Array({ maxLength: 40 }),
        fc.option(fc.string(), { nil: null }),
        fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 20 }),
        (i, u, h, uh, d, s, bytes, opt, arr) => {
          const w = new XdrWriter(1)
            .int(i)
            .uint(u)
            .hyper(h)
            .uhyper(uh)
            .double(d)
            .string(s)
            .opaque(bytes)
            .optional(opt, (x, v) => x.string(v))
            .array(arr, (x, v) => x.int(v));
          const r = reader(w);
          expect(r.int()).toBe(i);
          expect(r.uint()).toBe(u);
          expect(r.hyper()).toBe(h);
          expect(r.uhyper()).toBe(uh);
          expect(r.double()).toBe(d);
          expect(r.string()).toBe(s);
          expect([...r.opaque()]).toEqual([...bytes]);
          expect(r.optional((x) => x.string())).toBe(opt);
          expect(r.array((x) => x.int())).toEqual(arr);
          r.end('value');
        },
      ),
    );
  });

  const typedParam: fc.Arbitrary<TypedParam> = fc.oneof(
    fc.record({
      field: fc.string(),
      type: fc.constant('int' as const),
      value: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    }),
    fc.record({
      field: fc.string(),
      type: fc.constant('uint' as const),
      value: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
    }),
    fc.record({
      field: fc.string(),
      type: fc.constant('llong' as const),
      value: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    }),
    fc.record({
      field: fc.string(),
      type: fc.constant('ullong' as const),
      value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    }),
    fc.record({
      field: fc.string(),
      type: fc.constant('double' as const),
      value: fc.double({ noNaN: true }),
    }),
    fc.record({ field: fc.string(), type: fc.constant('boolean' as const), value: fc.boolean() }),
    fc.record({ field: fc.string(), type: fc.constant('string' as const), value: fc.string() }),
  );

  it('round-trips typed parameter lists and domain references', () => {
    fc.assert(
      fc.property(
        fc.array(typedParam, { maxLength: 12 }),
        fc.record({
          name: fc.string({ minLength: 1 }),
          uuid: fc.uint8Array({ minLength: 16, maxLength: 16 }),
          id: fc.integer({ min: -1, max: 1e6 }),
        }),
        (params, domain) => {
          const dom: DomainRef = { ...domain, uuid: Buffer.from(domain.uuid) };
          const w = new XdrWriter();
          writeDomain(w, dom);
          writeTypedParams(w, params);
          const r = reader(w);
          expect(readDomain(r)).toEqual(dom);
          expect(readTypedParams(r)).toEqual(params);
          r.end('params');
        },
      ),
    );
  });

  it('rejects truncated data of every kind with a protocol error', () => {
    const full = new XdrWriter().string('hello world').hyper(5n).bytes();
    for (let cut = 0; cut < full.length; cut++) {
      const r = new XdrReader(Buffer.from(full.subarray(0, cut)));
      expect(() => {
        r.string();
        r.hyper();
      }).toThrow(LibvirtProtocolError);
    }
  });

  it('checks lengths and counts before allocating', () => {
    // claims a 4 GiB string in an 8-byte buffer
    expect(() => new XdrReader(Buffer.from('ffffffff00000000', 'hex')).string()).toThrow(/truncated|exceeds/);
    // a string longer than the caller's limit
    expect(() => reader(new XdrWriter().string('abcdef')).string(3)).toThrow(/exceeds its limit of 3/);
    // an array of 1e9 items in 4 bytes
    expect(() => new XdrReader(Buffer.from('3b9aca0000000000', 'hex')).array((x) => x.int())).toThrow(
      /cannot fit/,
    );
    expect(() =>
      reader(new XdrWriter().array([1, 2, 3], (x, v) => x.int(v))).array((x) => x.int(), 2),
    ).toThrow(/exceeds its limit of 2/);
    // a boolean that is neither 0 nor 1
    expect(() => new XdrReader(Buffer.from('00000002', 'hex')).bool()).toThrow(/bad XDR boolean/);
    // trailing bytes
    expect(() => reader(new XdrWriter().int(1).int(2)).end('reply')).toThrow(/trailing/);
  });

  it('refuses to encode values outside their XDR type', () => {
    expect(() => new XdrWriter().int(2 ** 31)).toThrow(RangeError);
    expect(() => new XdrWriter().uint(-1)).toThrow(RangeError);
    expect(() => new XdrWriter().int(1.5)).toThrow(RangeError);
  });

  it('rejects a typed parameter of an unknown type', () => {
    const w = new XdrWriter().uint(1).string('x').int(99).int(0);
    expect(() => readTypedParams(reader(w))).toThrow(/unknown type 99/);
  });
});
