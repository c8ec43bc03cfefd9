/**
 * Writer for PostgreSQL's binary COPY format (COPY … FROM STDIN BINARY).
 *
 * Layout: 19-byte header, then per row an int16 field count and per field an
 * int32 byte length (-1 for NULL) followed by the value in network byte
 * order, then an int16 -1 trailer. All integers are big-endian.
 *
 * Bytes are written by hand rather than with Buffer#writeInt32BE and friends:
 * those re-check bounds and argument types on every call, and this runs once
 * per field at hundreds of thousands of rows per second. The backing store is
 * allocated with allocUnsafeSlow so it never lives in Node's shared pool and
 * can be moved to another thread in a transfer list.
 */
import { hexValue } from './hex';

export const PGCOPY_HEADER: Buffer = Buffer.from([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, // PGCOPY\n\377\r\n\0
  0, 0, 0, 0, // flags: no OIDs
  0, 0, 0, 0, // header extension length
]);
export const PGCOPY_TRAILER: Buffer = Buffer.from([0xff, 0xff]);

const TWO_32 = 4294967296;
// Postgres timestamps count microseconds from 2000-01-01T00:00:00Z.
const PG_EPOCH_MS = 946684800000;
// Short strings are cheaper to copy in JS than through the native utf8 writer.
const ASCII_FAST_MAX = 64;

function hexAt(s: string, i: number): number {
  return hexValue(s.charCodeAt(i));
}

export class CopyWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafeSlow(Math.max(64, initialBytes));
  }

  get length(): number {
    return this.pos;
  }

  private ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  private put16(v: number): void {
    const b = this.buf;
    const p = this.pos;
    b[p] = v >>> 8;
    b[p + 1] = v;
    this.pos = p + 2;
  }

  private put32(v: number): void {
    const b = this.buf;
    const p = this.pos;
    b[p] = v >>> 24;
    b[p + 1] = v >>> 16;
    b[p + 2] = v >>> 8;
    b[p + 3] = v;
    this.pos = p + 4;
  }

  header(): this {
    this.ensure(PGCOPY_HEADER.length);
    PGCOPY_HEADER.copy(this.buf, this.pos);
    this.pos += PGCOPY_HEADER.length;
    return this;
  }

  row(fieldCount: number): this {
    this.ensure(2);
    this.put16(fieldCount);
    return this;
  }

  /** 16 bytes from a hyphenated hex UUID; throws on anything else, since callers pass validated ids. */
  uuid(s: string): this {
    if (
      s.length !== 36 ||
      s.charCodeAt(8) !== 45 ||
      s.charCodeAt(13) !== 45 ||
      s.charCodeAt(18) !== 45 ||
      s.charCodeAt(23) !== 45
    ) {
      throw new TypeError(`not a UUID: ${s}`);
    }
    this.ensure(20);
    this.put32(16);
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < 36; i += 2) {
      if (i === 8 || i === 13 || i === 18 || i === 23) i++;
      const hi = hexAt(s, i);
      const lo = hexAt(s, i + 1);
      if (hi < 0 || lo < 0) throw new TypeError(`not a UUID: ${s}`);
      b[p++] = (hi << 4) | lo;
    }
    this.pos = p;
    return this;
  }

  /** Exact for every safe integer, negative included; bigint for the full int64 range. */
  int8(n: number | bigint): this {
    this.ensure(12);
    this.put32(8);
    if (typeof n === 'bigint') {
      this.buf.writeBigInt64BE(n, this.pos);
      this.pos += 8;
      return this;
    }
    if (!Number.isSafeInteger(n)) throw new RangeError(`int8 needs a safe integer, got ${n}`);
    // floor keeps the low word non-negative, so hi:lo is two's complement.
    const hi = Math.floor(n / TWO_32);
    this.put32(hi);
    this.put32(n - hi * TWO_32);
    return this;
  }

  int4(n: number): this {
    this.ensure(8);
    this.put32(4);
    this.put32(n);
    return this;
  }

  int2(n: number): this {
    this.ensure(6);
    this.put32(2);
    this.put16(n);
    return this;
  }

  text(s: string): this {
    this.putString(s, false);
    return this;
  }

  /** An already-serialized JSON text; jsonb's binary form is a version byte (1) then the text. */
  jsonb(s: string): this {
    this.putString(s, true);
    return this;
  }

  private putString(s: string, jsonb: boolean): void {
    const extra = jsonb ? 1 : 0;
    const len = s.length;
    // UTF-8 never needs more than 3 bytes per UTF-16 code unit.
    this.ensure(4 + extra + len * 3);
    const start = this.pos;
    const b = this.buf;
    let p = start + 4;
    if (jsonb) b[p++] = 1;
    let written = -1;
    if (len <= ASCII_FAST_MAX) {
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c > 127) break;
        b[p + i] = c;
      }
      if (i === len) written = len;
    }
    if (written < 0) written = b.write(s, p, 'utf8');
    this.pos = start;
    this.put32(written + extra);
    this.pos = p + written;
  }

  /** Milliseconds since the Unix epoch, stored as int64 microseconds since 2000-01-01. */
  timestamptz(msSinceEpoch: number): this {
    return this.int8(Math.round((msSinceEpoch - PG_EPOCH_MS) * 1000));
  }

  null(): this {
    this.ensure(4);
    this.put32(-1);
    return this;
  }

  bytes(b: Buffer): this {
    this.ensure(4 + b.length);
    this.put32(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }

  trailer(): this {
    this.ensure(2);
    this.put16(0xffff);
    return this;
  }

  /**
   * The bytes written so far, as a view on the writer's memory. Later writes
   * never touch those bytes (they append or move to a new store), so the view
   * stays valid.
   */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
