// XDR (RFC 4506) encoding as libvirt's RPC uses it. The reader checks every length against the bytes it
// really has (and against a caller's maximum) before it allocates or slices, so a corrupt or hostile
// packet gives a LibvirtProtocolError, never a huge allocation or an out-of-range read.
import { LibvirtProtocolError } from './errors.js';

const PAD = [0, 3, 2, 1] as const;
const padOf = (n: number): number => PAD[n % 4] ?? 0;

/** Grows one buffer as values are appended (no per-value allocation). */
export class XdrWriter {
  private buf: Buffer;
  private length = 0;

  constructor(initialBytes = 256) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Makes room for `bytes` more and returns where they go. Call it before touching `this.buf`: it may replace it. */
  private reserve(bytes: number): number {
    const at = this.length;
    const need = at + bytes;
    if (need > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(next, 0, 0, at);
      this.buf = next;
    }
    this.length = need;
    return at;
  }

  int(value: number): this {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff)
      throw new RangeError(`XDR int out of range: ${value}`);
    const at = this.reserve(4);
    this.buf.writeInt32BE(value, at);
    return this;
  }

  uint(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
      throw new RangeError(`XDR unsigned int out of range: ${value}`);
    const at = this.reserve(4);
    this.buf.writeUInt32BE(value, at);
    return this;
  }

  hyper(value: bigint): this {
    const at = this.reserve(8);
    this.buf.writeBigInt64BE(value, at);
    return this;
  }

  uhyper(value: bigint): this {
    const at = this.reserve(8);
    this.buf.writeBigUInt64BE(value, at);
    return this;
  }

  double(value: number): this {
    const at = this.reserve(8);
    this.buf.writeDoubleBE(value, at);
    return this;
  }

  bool(value: boolean): this {
    return this.int(value ? 1 : 0);
  }

  /** Fixed-length opaque data: the bytes, zero-padded to a multiple of 4. */
  fixedOpaque(bytes: Uint8Array): this {
    const at = this.reserve(bytes.length + padOf(bytes.length));
    this.buf.set(bytes, at);
    this.buf.fill(0, at + bytes.length, this.length);
    return this;
  }

  /** Variable-length opaque data: length, then the padded bytes. */
  opaque(bytes: Uint8Array): this {
    return this.uint(bytes.length).fixedOpaque(bytes);
  }

  string(value: string): this {
    return this.opaque(Buffer.from(value, 'utf8'));
  }

  /** XDR optional-data (`type *name`): a boolean, then the value when present. */
  optional<T>(value: T | null | undefined, write: (w: this, v: T) => void): this {
    if (value === null || value === undefined) return this.bool(false);
    this.bool(true);
    write(this, value);
    return this;
  }

  array<T>(values: readonly T[], write: (w: this, v: T) => void): this {
    this.uint(values.length);
    for (const v of values) write(this, v);
    return this;
  }

  get byteLength(): number {
    return this.length;
  }

  /** The encoded bytes (a view; copy it if the writer is reused). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

export class XdrReader {
  private offset: number;

  constructor(
    private readonly buf: Buffer,
    offset = 0,
  ) {
    this.offset = offset;
  }

  get position(): number {
    return this.offset;
  }

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private take(bytes: number, what: string): number {
    if (bytes > this.buf.length - this.offset)
      throw new LibvirtProtocolError(
        `truncated XDR data: ${what} needs ${bytes} bytes at offset ${this.offset}, ${this.remaining} left`,
      );
    const at = this.offset;
    this.offset += bytes;
    return at;
  }

  int(): number {
    return this.buf.readInt32BE(this.take(4, 'int'));
  }

  uint(): number {
    return this.buf.readUInt32BE(this.take(4, 'unsigned int'));
  }

  hyper(): bigint {
    return this.buf.readBigInt64BE(this.take(8, 'hyper'));
  }

  uhyper(): bigint {
    return this.buf.readBigUInt64BE(this.take(8, 'unsigned hyper'));
  }

  double(): number {
    return this.buf.readDoubleBE(this.take(8, 'double'));
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new LibvirtProtocolError(`bad XDR boolean ${v}`);
    return v === 1;
  }

  fixedOpaque(length: number): Buffer {
    const at = this.take(length + padOf(length), `opaque[${length}]`);
    return Buffer.from(this.buf.subarray(at, at + length));
  }

  /** Variable-length opaque data, at most `maxBytes` long. */
  opaque(maxBytes = 0x7fffffff): Buffer {
    const length = this.uint();
    if (length > maxBytes)
      throw new LibvirtProtocolError(`XDR opaque of ${length} bytes exceeds its limit of ${maxBytes}`);
    return this.fixedOpaque(length);
  }

  string(maxBytes = 0x7fffffff): string {
    const length = this.uint();
    if (length > maxBytes)
      throw new LibvirtProtocolError(`XDR string of ${length} bytes exceeds its limit of ${maxBytes}`);
    const at = this.take(length + padOf(length), `string[${length}]`);
    return this.buf.toString('utf8', at, at + length);
  }

  optional<T>(read: (r: this) => T): T | null {
    return this.bool() ? read(this) : null;
  }

  /**
   * Variable-length array of at most `maxItems`. Every element takes at least `minItemBytes` on the wire, so
   * a count the remaining bytes cannot hold is rejected before anything is allocated.
   */
  array<T>(read: (r: this) => T, maxItems = 0x7fffffff, minItemBytes = 4): T[] {
    const count = this.uint();
    if (count > maxItems)
      throw new LibvirtProtocolError(`XDR array of ${count} items exceeds its limit of ${maxItems}`);
    if (count * minItemBytes > this.remaining)
      throw new LibvirtProtocolError(
        `truncated XDR data: array of ${count} items cannot fit in ${this.remaining} bytes`,
      );
    const out: T[] = [];
    for (let i = 0; i < count; i++) out.push(read(this));
    return out;
  }

  /** Throws unless every byte was consumed (a reply longer than its type is as wrong as a short one). */
  end(what: string): void {
    if (this.remaining !== 0)
      throw new LibvirtProtocolError(`${what}: ${this.remaining} unexpected trailing bytes`);
  }
}
